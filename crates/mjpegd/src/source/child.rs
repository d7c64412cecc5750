//! An `exec:` command's process group, and ending all of it.
//!
//! `sh -c CMD` forks CMD, and CMD may fork helpers of its own: killing the `sh` alone leaves the real
//! command running, holding the pipe and, for a camera, the device, so every later start fails. So each
//! command runs in a process group of its own, and ending it means SIGTERM to the whole group, then, if
//! anything in it is still alive after [`GRACE`], SIGKILL to the whole group. The group leader exiting
//! does not mean the group is empty: `kill(-pgid, 0)` is what says whether a member remains, and the
//! leader is reaped so that its zombie does not count as one.
//!
//! Ending runs in a background task (closing a source must not block the runtime), so a new command can
//! start while the old one is still going away; [`ChildGroup::end`] returns a handle to wait for it
//! first, and [`wait_for_endings`] lets the process wait, at shutdown, for those still under way, so that
//! no member outlives mjpegd.
//!
//! A member that leaves the group on purpose (`setsid`, a daemon) is out of reach of group signals.

use super::child_log;
use std::io;
use std::process::Stdio;
use std::sync::LazyLock;
use std::time::Duration;
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// Time the group has to exit after SIGTERM before it gets SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);
/// Time allowed after SIGKILL for the group to disappear before mjpegd gives up on it (with an error in
/// the log): the kernel needs a moment to tear a process down.
const KILL_WAIT: Duration = Duration::from_secs(3);
/// How often the group is checked while it is being ended.
const POLL: Duration = Duration::from_millis(20);
/// How long the stderr logger may keep reading once the group is gone (its last lines are in the pipe).
const LOG_DRAIN: Duration = Duration::from_millis(200);

/// Every group ending under way, for [`wait_for_endings`].
static ENDINGS: LazyLock<TaskTracker> = LazyLock::new(TaskTracker::new);

/// A running shell command in a process group of its own, with its stderr going to the log. Dropping it
/// ends the group, as [`ChildGroup::end`] does.
pub struct ChildGroup {
    /// The group leader (`sh`); `None` once the ending has started.
    leader: Option<Child>,
    /// The group's id: the leader's pid, always above 1 (so `-pgid` never means "every process").
    pgid: i32,
    /// The task logging stderr; stopped once the group is gone.
    log: Option<JoinHandle<()>>,
}

impl ChildGroup {
    /// Starts `sh -c command` in a new process group and returns it with its stdout. `name` labels its
    /// stderr lines in the log.
    pub fn spawn(command: &str, name: &str) -> io::Result<(ChildGroup, ChildStdout)> {
        let mut leader = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            // What systemd gave mjpegd is mjpegd's: a child must not notify, ping or take sockets.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            // Ending is this module's job: tokio's kill_on_drop would kill the leader alone.
            .kill_on_drop(false)
            .spawn()?;
        let pgid = leader.id().and_then(|id| i32::try_from(id).ok());
        let (Some(pgid), Some(stdout), Some(stderr)) =
            (pgid, leader.stdout.take(), leader.stderr.take())
        else {
            // Cannot happen with a freshly spawned child with piped outputs; never leave it running.
            let _ = leader.start_kill();
            return Err(io::Error::other("the child has no pid or no pipes"));
        };
        if pgid <= 1 {
            let _ = leader.start_kill();
            return Err(io::Error::other(format!("the child has pid {pgid}")));
        }
        let log = child_log::spawn(stderr, name.to_string());
        Ok((
            ChildGroup {
                leader: Some(leader),
                pgid,
                log: Some(log),
            },
            stdout,
        ))
    }

    /// Waits for the leader to exit and says how it did (the rest of the group may live on: [`end`] it).
    /// Cancel-safe.
    ///
    /// [`end`]: ChildGroup::end
    pub async fn wait(&mut self) -> String {
        match &mut self.leader {
            Some(leader) => match leader.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => e.to_string(),
            },
            None => "ended".to_string(),
        }
    }

    /// Starts ending the whole group: SIGTERM now, SIGKILL after [`GRACE`] if any member is left. Does
    /// not block; the returned handle completes once the group is gone (or mjpegd gave up on it, at most
    /// [`GRACE`] + [`KILL_WAIT`] later). `None` if it was already ended, or if there is no runtime to wait on (then
    /// the group gets SIGKILL at once).
    pub fn end(&mut self) -> Option<JoinHandle<()>> {
        let leader = self.leader.take()?;
        let log = self.log.take();
        signal_group(self.pgid, libc::SIGTERM);
        // A stopped member would hold SIGTERM pending until continued.
        signal_group(self.pgid, libc::SIGCONT);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => Some(ENDINGS.spawn_on(finish(leader, self.pgid, log), &runtime)),
            Err(_) => {
                signal_group(self.pgid, libc::SIGKILL);
                if let Some(log) = log {
                    log.abort();
                }
                None
            }
        }
    }
}

impl Drop for ChildGroup {
    fn drop(&mut self) {
        let _detached = self.end();
    }
}

/// Waits (at most [`GRACE`] + [`KILL_WAIT`] + 0.5 s) until every group ending under way is complete: called at shutdown
/// before the process exits, so that a member ignoring SIGTERM still gets its SIGKILL.
pub async fn wait_for_endings() {
    ENDINGS.close();
    let bound = GRACE + KILL_WAIT + Duration::from_millis(500);
    if tokio::time::timeout(bound, ENDINGS.wait()).await.is_err() {
        tracing::error!("a command's process group was still being ended at exit");
    }
}

/// Reaps the leader, waits for the group to empty, escalates to SIGKILL after the grace period.
async fn finish(mut leader: Child, pgid: i32, log: Option<JoinHandle<()>>) {
    let mut deadline = Instant::now() + GRACE;
    let mut killed = false;
    loop {
        reap(&mut leader, pgid);
        // Reading /proc is blocking work: off the runtime's workers.
        let alive = tokio::task::spawn_blocking(move || group_alive(pgid)).await;
        if !alive.unwrap_or(true) {
            break;
        }
        if Instant::now() >= deadline {
            if killed {
                tracing::error!(
                    pgid,
                    "a command's process group is still there {KILL_WAIT:?} after SIGKILL"
                );
                break;
            }
            tracing::warn!(
                pgid,
                "a command's process group was still running {GRACE:?} after SIGTERM: killed"
            );
            signal_group(pgid, libc::SIGKILL);
            killed = true;
            deadline = Instant::now() + KILL_WAIT;
        }
        tokio::time::sleep(POLL).await;
    }
    if let Some(mut log) = log {
        // Its last lines are still in the pipe; a member that left the group may hold it open forever.
        if tokio::time::timeout(LOG_DRAIN, &mut log).await.is_err() {
            log.abort();
        }
    }
}

/// Reaps the leader if it has exited, then any other member that is mjpegd's child (orphans are, when
/// mjpegd runs as PID 1 of a container): a zombie still counts as a member of its group.
fn reap(leader: &mut Child, pgid: i32) {
    // Only once tokio has reaped the leader: waitpid(-pgid) would otherwise take it from under tokio.
    if !matches!(leader.try_wait(), Ok(Some(_))) {
        return;
    }
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only the status it is given; WNOHANG keeps it from blocking.
        let pid = unsafe { libc::waitpid(-pgid, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
    }
}

/// Whether any live process of group `pgid` remains. A zombie holds nothing (no pipe, no device) but still
/// counts for `kill(-pgid, 0)`, and the orphans of the group are reaped by whatever PID 1 is, which may
/// take its time: so when the kernel says the group exists, /proc says whether anything in it still runs.
fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks that the group exists and may be signalled; pgid > 1.
    if unsafe { libc::kill(-pgid, 0) } == 0 {
        return has_live_member(pgid);
    }
    // EPERM: a member exists that mjpegd may not signal (it changed user): still alive.
    io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Whether /proc shows a process of group `pgid` that is not a zombie (or cannot tell: then yes).
fn has_live_member(pgid: i32) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return true;
    };
    for entry in procs.flatten() {
        if !entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        // "pid (comm) state ppid pgrp ...", where comm may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue; // gone meanwhile
        };
        let Some((_, fields)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = fields.split_whitespace();
        let (Some(state), Some(_ppid), Some(pgrp)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if pgrp.parse() != Ok(pgid) {
            continue;
        }
        if !matches!(state, "Z" | "X") {
            return true;
        }
        // A process whose main thread exited shows as a zombie while its other threads run.
        let threads = std::fs::read_dir(entry.path().join("task")).map_or(0, |t| t.count());
        if threads > 1 {
            return true;
        }
    }
    false
}

fn signal_group(pgid: i32, signal: i32) {
    debug_assert!(pgid > 1);
    if pgid > 1 {
        // SAFETY: kill with a negative pid signals the group `pgid` only, never all processes (pgid > 1).
        unsafe { libc::kill(-pgid, signal) };
    }
}
