//! The log: text for people (the default), or JSON lines for journald and log stores (`--log-format
//! json`, or `MJPEGD_LOG_FORMAT=json`), always on stderr. `MJPEGD_LOG` filters it (default `info`).
//!
//! A JSON line is one event with its fields at the top level beside `timestamp`, `level`, `target` and
//! `message`, so a log store can index `client`, `camera` or `addr` without parsing text.
//!
//! Log lines carry text clients choose (paths, user agents, user names, headers). In the text log every
//! control character in a field or message (newline, carriage return, ESC, the other C0 and C1 codes,
//! DEL) is written escaped (`\n`, `\x1b`, `\u{9b}`), at every level: a client cannot forge a log line or
//! send escape sequences to the terminal of whoever reads the log. JSON escapes them by itself.

use clap::ValueEnum;
use std::fmt::Write as _;
use std::sync::OnceLock;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::Writer;

/// How log lines are written.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The format [`init`] installed (text until then).
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// The format of the log, so that other output meant for the same reader (the startup banner, a fatal
/// error) follows it.
pub fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or_default()
}

/// Installs the global logger; `filter` is MJPEGD_LOG's value, if set.
pub fn init(format: LogFormat, filter: Option<String>) {
    let _ = FORMAT.set(format);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(log_filter(filter))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .fmt_fields(escaped_fields())
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}

/// The text log's fields as tracing writes them (`message`, then `name=value`), with control characters
/// escaped in every value.
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> {
    tracing_subscriber::fmt::format::debug_fn(|writer: &mut Writer<'_>, field, value| {
        if field.name() != "message" {
            write!(writer, "{}=", field.name())?;
        }
        write!(Escaping(writer), "{value:?}")
    })
    .delimited(" ")
}

/// Writes through to `0` with every control character escaped.
struct Escaping<'a, W: std::fmt::Write>(&'a mut W);

impl<W: std::fmt::Write> std::fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(char::is_control) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c if (c as u32) < 0x80 => write!(self.0, "\\x{:02x}", c as u32)?,
                c => write!(self.0, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// `text` with its control characters escaped as the text log writes them.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let _ = write!(Escaping(&mut out), "{text}");
    out
}

/// One line in the shape of the JSON log (`timestamp`, `level`, `target`, `message`, then `fields`), for
/// output written beside the log rather than through it: the startup banner on stdout, a fatal error.
pub fn json_line(
    level: &str,
    target: &str,
    message: &str,
    fields: serde_json::Map<String, serde_json::Value>,
) -> String {
    let mut line = serde_json::Map::new();
    let now = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    line.insert("timestamp".into(), now.into());
    line.insert("level".into(), level.into());
    line.insert("message".into(), message.into());
    line.extend(fields);
    line.insert("target".into(), target.into());
    let mut text = serde_json::Value::Object(line).to_string();
    text.push('\n');
    text
}

/// Writes why the program stops to stderr, as a JSON line when the log is JSON.
pub fn fatal(error: &dyn std::fmt::Display) {
    let text = match format() {
        LogFormat::Text => format!("mjpegd: {error}\n"),
        LogFormat::Json => json_line("ERROR", "mjpegd", &error.to_string(), Default::default()),
    };
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(
            escape("/a\nINFO forged\r\x1b]0;t\x07\x7f\u{9b}é ok"),
            "/a\\nINFO forged\\r\\x1b]0;t\\x07\\x7f\\u{9b}é ok"
        );
        assert_eq!(escape("plain /stream?x=1"), "plain /stream?x=1");
        assert_eq!(escape(""), "");
    }
}
