//! Running under a service manager (systemd): telling it how the server is doing ([`notify`]: ready,
//! reloading, stopping) and proving to it that the server still works ([`watchdog`]). Outside systemd
//! (no `NOTIFY_SOCKET`) all of it is off and costs nothing.

pub mod notify;
pub mod watchdog;
