//! The log: text for people (the default), or JSON lines for journald and log stores (`--log-format
//! json`, or `MJPEGD_LOG_FORMAT=json`), always on stderr. `MJPEGD_LOG` filters it (default `info`).
//!
//! A JSON line is one event with its fields at the top level beside `timestamp`, `level`, `target` and
//! `message`, so a log store can index `client`, `camera` or `addr` without parsing text.

use clap::ValueEnum;

/// How log lines are written.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global logger; `filter` is MJPEGD_LOG's value, if set.
pub fn init(format: LogFormat, filter: Option<String>) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(log_filter(filter))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}

/// The log filter: MJPEGD_LOG (default `info`), with rustls held at `error` unless MJPEGD_LOG names it.
/// rustls warns at every client hello it finds odd (an IP address as server name, which some clients send):
/// log lines any client could make, one per connection. Real TLS failures reach the log through mjpegd's
/// own handshake errors (at debug) and counters (`/state` rejected.tls_handshakes).
fn log_filter(env: Option<String>) -> tracing_subscriber::EnvFilter {
    let spec = env.unwrap_or_else(|| "info".to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if spec.contains("rustls") {
        return filter;
    }
    match "rustls=error".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}
