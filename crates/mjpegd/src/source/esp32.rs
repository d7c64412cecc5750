//! The settings of a relayed ESP32-CAM: its `/control?var=&val=` and `/status`, forwarded.
//!
//! Espressif's CameraWebServer firmware (the seed's own camera) serves its stream on port 81 and takes its
//! settings on port 80: `GET /control?var=framesize&val=8` (an empty 200, 500 for an unknown var) and
//! `GET /status` (flat JSON of integers). For a relayed camera, mjpegd forwards `/cams/NAME/control` and
//! `/cams/NAME/status` to that address (the camera key `control-url`; without it, port 80 of a stream URL
//! on port 81), with the relay's credentials, so one server is the one place a person sets the camera up.
//!
//! Forwarding is bounded, as anything that reaches another machine must be: a var must be one the firmware
//! knows and its value in that var's range before anything is sent; one request is in flight per camera
//! (the next few wait their turn, up to [`TURN_WAIT`]; past that, or past [`MAX_WAITING`] waiting, a 503);
//! the connection and the answer each have a deadline, and the answer
//! is read up to [`MAX_ANSWER`] bytes. A camera that is down is a 502 with the reason, never a hang.

use super::spec::SourceSpec;
use super::url::RelayUrl;
use crate::config::CameraSettings;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Longest answer read from the camera.
pub const MAX_ANSWER: usize = 64 * 1024;
/// Longest a forwarded request may take, connection included.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// The settings the firmware takes, with the values it accepts (`app_httpd.cpp` and the sensor drivers).
pub const VARS: &[(&str, i32, i32)] = &[
    ("framesize", 0, 24),
    ("quality", 4, 63),
    ("brightness", -2, 2),
    ("contrast", -2, 2),
    ("saturation", -2, 2),
    ("sharpness", -2, 2),
    ("denoise", 0, 255),
    ("gainceiling", 0, 6),
    ("colorbar", 0, 1),
    ("awb", 0, 1),
    ("agc", 0, 1),
    ("aec", 0, 1),
    ("hmirror", 0, 1),
    ("vflip", 0, 1),
    ("awb_gain", 0, 1),
    ("agc_gain", 0, 30),
    ("aec_value", 0, 1200),
    ("aec2", 0, 1),
    ("dcw", 0, 1),
    ("bpc", 0, 1),
    ("wpc", 0, 1),
    ("raw_gma", 0, 1),
    ("lenc", 0, 1),
    ("special_effect", 0, 6),
    ("wb_mode", 0, 4),
    ("ae_level", -2, 2),
    ("face_detect", 0, 1),
    ("face_recognize", 0, 1),
    ("face_enroll", 0, 1),
    ("led_intensity", 0, 255),
];

/// The firmware's vars under the native controls API's names (v4l2-ctl's), where they mean the same thing,
/// so that one API and one panel serve a V4L2 camera and an ESP32-CAM alike. Other vars keep their names.
pub const NATIVE: &[(&str, &str)] = &[
    ("hmirror", "horizontal_flip"),
    ("vflip", "vertical_flip"),
    ("awb", "white_balance_automatic"),
    ("agc", "gain_automatic"),
    ("agc_gain", "gain"),
    ("aec_value", "exposure_time_absolute"),
    ("quality", "compression_quality"),
];

/// The native key of firmware var `var`.
pub fn native_key(var: &str) -> &str {
    NATIVE
        .iter()
        .find(|(v, _)| *v == var)
        .map_or(var, |(_, k)| *k)
}

/// The firmware var of a native key (or of the var's own name), with its range.
pub fn var_of(key: &str) -> Option<(&'static str, i32, i32)> {
    let var = NATIVE
        .iter()
        .find(|(_, k)| *k == key)
        .map_or(key, |(v, _)| *v);
    VARS.iter().find(|(n, _, _)| *n == var).copied()
}

/// A `/control` request checked against [`VARS`]: the query to forward, or why not (a 400).
pub fn check_control(var: Option<&str>, val: Option<&str>) -> Result<String, String> {
    let var = var.ok_or("control: expected ?var=NAME&val=NUMBER")?;
    let val = val.ok_or("control: expected ?var=NAME&val=NUMBER")?;
    let Some(&(name, min, max)) = VARS.iter().find(|(n, _, _)| *n == var) else {
        let known: Vec<&str> = VARS.iter().map(|(n, _, _)| *n).collect();
        return Err(format!(
            "control: unknown var {:?}; the firmware knows {}",
            var.chars().take(40).collect::<String>(),
            known.join(", ")
        ));
    };
    let value: i32 = val.parse().map_err(|_| {
        format!(
            "control: {name} takes a whole number, not {:?}",
            val.chars().take(20).collect::<String>()
        )
    })?;
    if !(min..=max).contains(&value) {
        return Err(format!("control: {name} takes {min} to {max}, not {value}"));
    }
    Ok(format!("control?var={name}&val={value}"))
}

/// Where `camera` takes its settings: its `control-url`, or for a relay of `http://HOST:81/...` (the
/// firmware's stream port) `http://HOST/`. None for a camera that is not relayed, or a relay elsewhere.
pub fn control_address(camera: &CameraSettings) -> Option<RelayUrl> {
    if let Some(url) = &camera.options.control_url {
        return Some(url.clone());
    }
    match &camera.source {
        SourceSpec::Relay(url) if url.port == 81 => Some(RelayUrl {
            port: 80,
            path_and_query: "/".to_string(),
            ..url.clone()
        }),
        _ => None,
    }
}

/// Why a forwarded request got no answer to pass on.
#[derive(Debug, PartialEq, Eq)]
pub enum ForwardError {
    /// Other requests to this camera kept it busy past [`TURN_WAIT`] (503).
    Busy,
    /// Nothing, or nothing usable, came back in time (502 / 504).
    Unreachable(String),
    TimedOut,
}

/// What the camera answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// How long a request waits for its turn while another to the same camera is in flight.
pub const TURN_WAIT: Duration = Duration::from_secs(2);
/// Requests that may wait for a camera's turn at once; more are answered 503 at once.
pub const MAX_WAITING: usize = 4;

/// A camera's one place in flight, and how many hold or wait for it.
type Gate = (Arc<Semaphore>, usize);

/// Each camera's gate, while anyone holds or waits for it.
static GATES: Mutex<Option<HashMap<String, Gate>>> = Mutex::new(None);

/// Holds a camera's one place in flight (or waits for it); the camera's gate is forgotten when no one
/// holds or waits for it any more.
struct Turn {
    permit: Option<OwnedSemaphorePermit>,
    camera: String,
}

impl Turn {
    /// The camera's turn: at once, or after the request in flight, waiting at most [`TURN_WAIT`] and only
    /// while fewer than [`MAX_WAITING`] others wait (the firmware answers one request at a time, and a
    /// panel's settings come one after another).
    async fn take(camera: &str) -> Result<Turn, ForwardError> {
        let gate = {
            let mut gates = GATES.lock().unwrap_or_else(|e| e.into_inner());
            let (gate, users) = gates
                .get_or_insert_with(HashMap::new)
                .entry(camera.to_string())
                .or_insert_with(|| (Arc::new(Semaphore::new(1)), 0));
            // The one in flight and those waiting: too many already is a 503 at once.
            if *users > MAX_WAITING {
                return Err(ForwardError::Busy);
            }
            *users += 1;
            gate.clone()
        };
        // From here the count is this turn's, given back when it drops, whatever happens.
        let mut turn = Turn {
            permit: None,
            camera: camera.to_string(),
        };
        match tokio::time::timeout(TURN_WAIT, gate.acquire_owned()).await {
            Ok(Ok(p)) => {
                turn.permit = Some(p);
                Ok(turn)
            }
            _ => Err(ForwardError::Busy),
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.permit.take();
        let mut gates = GATES.lock().unwrap_or_else(|e| e.into_inner());
        let Some(gates) = gates.as_mut() else { return };
        if let Some((_, users)) = gates.get_mut(&self.camera) {
            *users = users.saturating_sub(1);
            if *users == 0 {
                gates.remove(&self.camera);
            }
        }
    }
}

/// Sends `GET {base}{path}` (path without its leading `/`) for `camera` with the relay's credentials,
/// one at a time per camera, within [`DEADLINE`], and reads at most [`MAX_ANSWER`] bytes of the answer.
pub async fn forward(camera: &CameraSettings, path: &str) -> Result<Answer, ForwardError> {
    let base = control_address(camera)
        .ok_or_else(|| ForwardError::Unreachable("no control address".into()))?;
    let _turn = Turn::take(&camera.name).await?;
    let credentials = camera
        .options
        .credentials
        .clone()
        .or_else(|| match &camera.source {
            SourceSpec::Relay(url) => url.credentials.clone(),
            _ => None,
        });
    let credentials = base.credentials.clone().or(credentials);
    tokio::time::timeout(DEADLINE, get(&base, path, credentials))
        .await
        .map_err(|_| ForwardError::TimedOut)?
}

async fn get(
    base: &RelayUrl,
    path: &str,
    credentials: Option<(String, String)>,
) -> Result<Answer, ForwardError> {
    let shown = base.to_string();
    let unreachable =
        |e: &dyn std::fmt::Display| ForwardError::Unreachable(format!("{shown}: {e}"));
    let stream = TcpStream::connect((base.host.as_str(), base.port))
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_ANSWER.max(8192))
        .handshake::<_, http_body_util::Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let prefix = base.path_and_query.split('?').next().unwrap_or("/");
    let prefix = if prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    let mut request = hyper::Request::get(format!("{prefix}{path}"))
        .header("Host", base.host_header())
        .header("User-Agent", concat!("mjpegd/", env!("CARGO_PKG_VERSION")));
    if let Some((user, pass)) = &credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        request = request.header("Authorization", format!("Basic {token}"));
    }
    let request = request
        .body(http_body_util::Empty::new())
        .map_err(|e| unreachable(&e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(&e))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(100).collect());
    let mut body = response.into_body();
    let mut all = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| unreachable(&e))?;
        if let Some(data) = frame.data_ref() {
            if all.len() + data.len() > MAX_ANSWER {
                return Err(unreachable(&format!(
                    "an answer longer than {MAX_ANSWER} bytes"
                )));
            }
            all.extend_from_slice(data);
        }
    }
    conn.abort();
    Ok(Answer {
        status,
        content_type,
        body: all.freeze(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_and_values_are_checked_before_anything_is_sent() {
        assert_eq!(
            check_control(Some("framesize"), Some("8")).unwrap(),
            "control?var=framesize&val=8"
        );
        assert_eq!(
            check_control(Some("brightness"), Some("-2")).unwrap(),
            "control?var=brightness&val=-2"
        );
        assert!(check_control(Some("framesize"), Some("99"))
            .unwrap_err()
            .contains("0 to 24"));
        assert!(check_control(Some("hmirror"), Some("x")).is_err());
        assert!(check_control(Some("reboot"), Some("1"))
            .unwrap_err()
            .contains("unknown var"));
        assert!(check_control(Some("quality&x=1"), Some("10")).is_err());
        assert!(check_control(None, Some("1")).is_err());
        assert!(check_control(Some("quality"), None).is_err());
    }

    #[test]
    fn the_control_address_is_given_or_guessed_from_the_stream_port() {
        let mut camera = CameraSettings {
            name: "door".into(),
            source: SourceSpec::Relay(RelayUrl::parse("http://u:p@cam.local:81/stream").unwrap()),
            options: Default::default(),
            supervisor: Default::default(),
            buffer_memory: 1 << 20,
            delivery: mjpegd_core::Policy::Latest,
            lockstep_timeout: Duration::from_secs(2),
            record: None,
            pre_roll: None,
            events: None,
            timelapse: None,
            max_variants: 4,
            warmup_frames: 0,
            controls: Default::default(),
        };
        let guessed = control_address(&camera).unwrap();
        assert_eq!((guessed.host.as_str(), guessed.port), ("cam.local", 80));
        assert_eq!(guessed.path_and_query, "/");
        assert_eq!(guessed.credentials, Some(("u".into(), "p".into())));
        camera.source = SourceSpec::Relay(RelayUrl::parse("http://cam.local:8080/stream").unwrap());
        assert!(
            control_address(&camera).is_none(),
            "no guess off the firmware's port"
        );
        camera.options.control_url = Some(RelayUrl::parse("http://10.0.0.9:8000/").unwrap());
        assert_eq!(control_address(&camera).unwrap().port, 8000);
        camera.source = SourceSpec::Pattern;
        camera.options.control_url = None;
        assert!(control_address(&camera).is_none());
    }

    #[test]
    fn vars_go_by_their_native_names_where_they_mean_the_same() {
        assert_eq!(native_key("hmirror"), "horizontal_flip");
        assert_eq!(native_key("framesize"), "framesize");
        assert_eq!(var_of("horizontal_flip"), Some(("hmirror", 0, 1)));
        assert_eq!(var_of("hmirror"), Some(("hmirror", 0, 1)));
        assert_eq!(var_of("brightness"), Some(("brightness", -2, 2)));
        assert_eq!(var_of("focus_absolute"), None);
        for (var, _) in NATIVE {
            assert!(VARS.iter().any(|(n, _, _)| n == var), "{var}");
        }
    }

    #[tokio::test]
    async fn one_request_in_flight_per_camera_and_a_few_wait_their_turn() {
        let a = Turn::take("esp-a").await.unwrap();
        // Another camera's turn is its own.
        let b = Turn::take("esp-b").await.unwrap();
        // A second request waits for the first, and gets its turn when the first is done.
        let waiting = tokio::spawn(async { Turn::take("esp-a").await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(a);
        assert_eq!(waiting.await.unwrap(), Ok(()));
        // Held past the wait: turned away.
        let a = Turn::take("esp-a").await.unwrap();
        assert_eq!(
            Turn::take("esp-a").await.map(|_| ()),
            Err(ForwardError::Busy)
        );
        // More waiting than allowed: turned away at once.
        let waiters: Vec<_> = (0..MAX_WAITING)
            .map(|_| tokio::spawn(async { Turn::take("esp-a").await.map(|_| ()) }))
            .collect();
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(matches!(
            tokio::time::timeout(Duration::from_millis(10), Turn::take("esp-a")).await,
            Ok(Err(ForwardError::Busy))
        ));
        drop(a);
        for w in waiters {
            assert_eq!(w.await.unwrap(), Ok(()));
        }
        drop(b);
        // No one holds or waits: the gates are forgotten.
        let gates = GATES.lock().unwrap();
        assert!(gates
            .as_ref()
            .is_none_or(|g| !g.contains_key("esp-a") && !g.contains_key("esp-b")));
    }
}
