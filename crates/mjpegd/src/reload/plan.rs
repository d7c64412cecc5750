//! What a new configuration does to the running cameras, decided before anything changes.
//!
//! A reload is all or nothing. Its plan is a pure function of the cameras' settings now and the new
//! file's (no IO, no clock), so it is computed whole, and unit-tested, before a single camera is touched;
//! applying it (see [`super`]) can then no longer fail half-way. Each camera of the new file, in the
//! file's order, is:
//! - kept, when its settings are the same: its clients see nothing;
//! - restarted, when only what its source does changed: a new source on the same hub, clients stay;
//! - replaced, when its hub's own settings (buffer memory, pre-roll) or what it writes (recording, events,
//!   timelapse) changed: a new camera;
//! - added, when no running camera has its name;
//!
//! and every running camera the file no longer names is removed.

use crate::config::CameraSettings;

/// What happens to one camera of the new configuration.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// The same settings: untouched.
    Keep,
    /// Its source restarts with these settings on the same hub.
    Restart(CameraSettings),
    /// A new camera takes its place (its clients' streams end).
    Replace(CameraSettings),
    /// A new camera.
    Add(CameraSettings),
}

/// The whole change, in the new file's order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Plan {
    /// Each camera of the new configuration (by name) and what happens to it.
    pub cameras: Vec<(String, Step)>,
    /// The running cameras the new configuration does not name.
    pub removed: Vec<String>,
}

impl Plan {
    /// Decides what `new` does to cameras running with `old` (both in file order, names unique).
    pub fn new(old: &[CameraSettings], new: Vec<CameraSettings>) -> Plan {
        let removed = old
            .iter()
            .filter(|o| !new.iter().any(|n| n.name == o.name))
            .map(|o| o.name.clone())
            .collect();
        let cameras = new
            .into_iter()
            .map(|settings| {
                let name = settings.name.clone();
                let step = match old.iter().find(|o| o.name == name) {
                    Some(o) if *o == settings => Step::Keep,
                    Some(o) if can_restart(o, &settings) => Step::Restart(settings),
                    Some(_) => Step::Replace(settings),
                    None => Step::Add(settings),
                };
                (name, step)
            })
            .collect();
        Plan { cameras, removed }
    }

    /// The names of the cameras added.
    pub fn added(&self) -> Vec<String> {
        self.names(|s| matches!(s, Step::Add(_)))
    }

    /// The names of the cameras restarted or replaced.
    pub fn restarted(&self) -> Vec<String> {
        self.names(|s| matches!(s, Step::Restart(_) | Step::Replace(_)))
    }

    fn names(&self, which: impl Fn(&Step) -> bool) -> Vec<String> {
        self.cameras
            .iter()
            .filter(|(_, s)| which(s))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// Whether a camera running with `old` can take `new` without ending its clients: everything but its
/// hub's budget and its recording may change on the same hub.
pub fn can_restart(old: &CameraSettings, new: &CameraSettings) -> bool {
    old.buffer_memory == new.buffer_memory
        && old.record == new.record
        && old.pre_roll == new.pre_roll
        && old.events == new.events
        && old.timelapse == new.timelapse
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::spec::{SourceOptions, SourceSpec};
    use crate::source::supervisor::SupervisorConfig;
    use std::time::Duration;

    fn camera(name: &str) -> CameraSettings {
        CameraSettings {
            name: name.into(),
            source: SourceSpec::Pattern,
            options: SourceOptions::default(),
            supervisor: SupervisorConfig::default(),
            buffer_memory: 256 << 20,
            delivery: mjpegd_core::Policy::Latest,
            lockstep_timeout: Duration::from_secs(2),
            record: None,
            pre_roll: None,
            events: None,
            timelapse: None,
            max_variants: 4,
            warmup_frames: 0,
            controls: Default::default(),
        }
    }

    #[test]
    fn each_camera_is_kept_restarted_replaced_added_or_removed() {
        let old = vec![camera("a"), camera("b"), camera("c"), camera("d")];
        let mut c = camera("c");
        c.options.fps = 5.0;
        let mut d = camera("d");
        d.buffer_memory = 1 << 20;
        let plan = Plan::new(&old, vec![camera("e"), d.clone(), c.clone(), camera("a")]);
        assert_eq!(
            plan.cameras,
            vec![
                ("e".to_string(), Step::Add(camera("e"))),
                ("d".to_string(), Step::Replace(d)),
                ("c".to_string(), Step::Restart(c)),
                ("a".to_string(), Step::Keep),
            ]
        );
        assert_eq!(plan.removed, ["b"]);
        assert_eq!(plan.added(), ["e"]);
        assert_eq!(plan.restarted(), ["d", "c"]);
    }

    #[test]
    fn the_same_configuration_changes_nothing() {
        let old = vec![camera("a"), camera("b")];
        let plan = Plan::new(&old, old.clone());
        assert!(plan.cameras.iter().all(|(_, s)| *s == Step::Keep));
        assert!(plan.removed.is_empty() && plan.added().is_empty() && plan.restarted().is_empty());
    }

    #[test]
    fn a_change_of_recording_replaces_the_camera() {
        let mut r = camera("a");
        r.record = Some(crate::record::RecordSettings {
            dir: "/x".into(),
            segment: Duration::from_secs(60),
            keep: None,
            max_size: None,
        });
        assert!(!can_restart(&camera("a"), &r));
        assert!(matches!(
            Plan::new(&[camera("a")], vec![r]).cameras[0].1,
            Step::Replace(_)
        ));
    }

    #[test]
    fn a_change_of_orientation_restarts_the_source_on_the_same_hub() {
        let mut turned = camera("a");
        turned.supervisor.orientation.rotate = 180;
        assert!(matches!(
            Plan::new(&[camera("a")], vec![turned]).cameras[0].1,
            Step::Restart(_)
        ));
    }
}
