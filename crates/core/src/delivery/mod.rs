//! Delivery policies: how frames reach each client.
//!
//! Each client picks one in its URL, and the three live side by side on one hub:
//! - [`Policy::Latest`]: each client at its own pace, always the newest frame; a slow client skips frames.
//! - [`Policy::All`]: every frame in order, from one shared, memory-bounded backlog ([`all::Backlog`]).
//! - [`Policy::Lockstep`]: the lockstep clients move in rounds, the slowest sets the pace
//!   ([`lockstep::Lockstep`]).
//!
//! The policies are plain state machines: no sockets, no clocks. Time-based rules (the lockstep timeout, a
//! per-client fps cap) are applied by the caller, which owns the clock.

pub mod all;
pub mod ids;
pub mod lockstep;

use std::fmt;
use std::str::FromStr;

/// How one client is sent frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Policy {
    /// The newest frame whenever the client is ready: never holds anyone back, skips when slow.
    #[default]
    Latest,
    /// Every frame, in order, at the client's own pace, within the hub's memory budget.
    All,
    /// Rounds shared by all lockstep clients: the same frame at the same moment, at the slowest one's pace.
    Lockstep,
}

impl Policy {
    /// All policies, in the order of [`crate::hub::HubStats::clients`] and [`Policy::index`].
    pub const ALL: [Policy; 3] = [Policy::Latest, Policy::All, Policy::Lockstep];

    /// This policy's place in [`Policy::ALL`], for per-policy counter arrays.
    pub fn index(self) -> usize {
        match self {
            Policy::Latest => 0,
            Policy::All => 1,
            Policy::Lockstep => 2,
        }
    }

    /// The name used in URLs, flags and `/state`.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Latest => "latest",
            Policy::All => "all",
            Policy::Lockstep => "lockstep",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Policy, String> {
        match s {
            "latest" => Ok(Policy::Latest),
            "all" => Ok(Policy::All),
            "lockstep" => Ok(Policy::Lockstep),
            other => Err(format!(
                "unknown delivery policy {other:?}: expected latest, all or lockstep"
            )),
        }
    }
}

/// Why the hub disconnected a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EvictCause {
    /// An `all` client fell so far behind that keeping its frames would exceed the memory budget.
    BufferFull,
    /// A `lockstep` client took longer than the lockstep timeout to be sent one frame.
    LockstepTimeout,
    /// A client could not be sent a frame within the write timeout (latest and all policies).
    WriteTimeout,
}

impl EvictCause {
    /// All causes, for reporting counters in a stable order.
    pub const ALL: [EvictCause; 3] = [
        EvictCause::BufferFull,
        EvictCause::LockstepTimeout,
        EvictCause::WriteTimeout,
    ];

    /// The name used in logs and `/state`.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictCause::BufferFull => "buffer_full",
            EvictCause::LockstepTimeout => "lockstep_timeout",
            EvictCause::WriteTimeout => "write_timeout",
        }
    }
}

impl fmt::Display for EvictCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_round_trip() {
        for p in [Policy::Latest, Policy::All, Policy::Lockstep] {
            assert_eq!(p.as_str().parse::<Policy>(), Ok(p));
        }
        assert!("fastest".parse::<Policy>().is_err());
    }
}

/// Identifies one client of a hub for as long as it is connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}
