//! CPU time and memory of a process, read from /proc (the server under test, and the load tool itself).

use std::time::Instant;

/// One reading of a process.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// User plus system CPU time, seconds.
    pub cpu: f64,
    /// Resident set size, bytes.
    pub rss: u64,
    pub at: Instant,
}

/// Reads `/proc/<pid>` (`self` for this process).
pub fn sample(pid: &str) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    Some(Sample {
        cpu: (utime + stime) / ticks,
        rss: rss_kb * 1024,
        at: Instant::now(),
    })
}

/// Several processes read as one (a proxy's workers and the server behind it): CPU and RSS summed.
/// None if any of them cannot be read.
pub fn sample_all(pids: &[u32]) -> Option<Sample> {
    let mut total: Option<Sample> = None;
    for pid in pids {
        let s = sample(&pid.to_string())?;
        total = Some(match total {
            None => s,
            Some(t) => Sample {
                cpu: t.cpu + s.cpu,
                rss: t.rss + s.rss,
                at: t.at,
            },
        });
    }
    total
}

/// CPU used between two samples, as a percentage of one core.
pub fn cpu_percent(a: &Sample, b: &Sample) -> f64 {
    let wall = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    (b.cpu - a.cpu) / wall * 100.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let s = super::sample("self").unwrap();
        assert!(s.rss > 0);
    }

    #[test]
    fn several_processes_add_up() {
        let me = std::process::id();
        let one = super::sample_all(&[me]).unwrap();
        let two = super::sample_all(&[me, me]).unwrap();
        assert!(two.rss >= 2 * one.rss - 2 * 1024 * 1024 && two.cpu >= 2.0 * one.cpu);
        assert!(super::sample_all(&[me, u32::MAX]).is_none());
    }
}
