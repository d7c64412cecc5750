//! A child's stderr into the log, in bounded memory, at a bounded rate.
//!
//! A command may write anything to stderr: gigabytes without a line end (`cat /dev/zero >&2`), progress
//! lines ended by `\r` alone (ffmpeg), invalid UTF-8, terminal escapes, thousands of lines a second.
//! So stderr is read in fixed-size chunks, at most [`BYTES_PER_SECOND`] (a flooding child then waits on
//! its own writes rather than costing mjpegd a core); `\r` and `\n` both end a line; a line longer than
//! [`MAX_LINE`] bytes is logged cut, with a mark, and the rest of it skipped; bytes are shown lossily with
//! control characters replaced; and at most [`LINES_PER_SECOND`] lines a second are logged, then one
//! line saying how many were suppressed.

use super::url::redact_urls;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

/// Longest line logged; the rest of a longer line is skipped.
pub const MAX_LINE: usize = 500;
/// Most lines logged per second and child.
pub const LINES_PER_SECOND: u32 = 10;
/// Most bytes of stderr read per second and child.
pub const BYTES_PER_SECOND: usize = 1 << 20;
/// Size of one read.
const CHUNK: usize = 16 * 1024;
const SECOND: Duration = Duration::from_secs(1);

/// Logs `stderr` line by line as `name` until it ends.
pub fn spawn<R: AsyncRead + Send + Unpin + 'static>(stderr: R, name: String) -> JoinHandle<()> {
    tokio::spawn(log_lines(stderr, name))
}

async fn log_lines<R: AsyncRead + Unpin>(mut stderr: R, name: String) {
    let mut chunk = vec![0u8; CHUNK];
    let mut cutter = LineCutter::default();
    let mut limit = RateLimit::new(LINES_PER_SECOND);
    let mut window = Instant::now();
    let mut read_in_window = 0usize;
    loop {
        if read_in_window >= BYTES_PER_SECOND {
            tokio::time::sleep_until((window + SECOND).into()).await;
        }
        if window.elapsed() >= SECOND {
            window = Instant::now();
            read_in_window = 0;
        }
        let n = match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        read_in_window += n;
        cutter.push(&chunk[..n], |line| limit.log(&name, line, Instant::now()));
    }
    if let Some(line) = cutter.finish() {
        limit.log(&name, line, Instant::now());
    }
    limit.report_suppressed(&name);
}

/// One line of stderr, at most [`MAX_LINE`] bytes.
#[derive(Debug, PartialEq)]
struct Line<'a> {
    bytes: &'a [u8],
    /// The line was longer and the rest is skipped.
    cut: bool,
}

impl Line<'_> {
    /// Lossy UTF-8 with control characters (terminal escapes, NULs) replaced.
    fn text(&self) -> String {
        let text: String = String::from_utf8_lossy(self.bytes)
            .chars()
            .map(|c| {
                if c.is_control() && c != '\t' {
                    char::REPLACEMENT_CHARACTER
                } else {
                    c
                }
            })
            .collect();
        if self.cut {
            format!("{text} [line cut at {MAX_LINE} bytes]")
        } else {
            text
        }
    }
}

/// Cuts a byte stream into lines ended by `\n` or `\r`, keeping at most [`MAX_LINE`] bytes.
#[derive(Default)]
struct LineCutter {
    line: Vec<u8>,
    /// The current line was already logged cut: skip to its end.
    skipping: bool,
}

impl LineCutter {
    /// Feeds `bytes`, calling `out` for each complete (or cut) non-empty line.
    fn push(&mut self, mut bytes: &[u8], mut out: impl FnMut(Line<'_>)) {
        while !bytes.is_empty() {
            let end = memchr::memchr2(b'\n', b'\r', bytes);
            let part = &bytes[..end.unwrap_or(bytes.len())];
            if !self.skipping {
                let room = MAX_LINE - self.line.len();
                if part.len() > room {
                    self.line.extend_from_slice(&part[..room]);
                    out(Line {
                        bytes: &self.line,
                        cut: true,
                    });
                    self.line.clear();
                    self.skipping = true;
                } else {
                    self.line.extend_from_slice(part);
                }
            }
            match end {
                Some(i) => {
                    if !self.skipping && !self.line.is_empty() {
                        out(Line {
                            bytes: &self.line,
                            cut: false,
                        });
                    }
                    self.line.clear();
                    self.skipping = false;
                    bytes = &bytes[i + 1..];
                }
                None => bytes = &[],
            }
        }
    }

    /// The last line, if the stream ended without a line end.
    fn finish(&mut self) -> Option<Line<'_>> {
        (!self.skipping && !self.line.is_empty()).then(|| Line {
            bytes: &self.line,
            cut: false,
        })
    }
}

/// At most `per_second` lines in each one-second window; the others are counted and reported once.
struct RateLimit {
    per_second: u32,
    window: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl RateLimit {
    fn new(per_second: u32) -> RateLimit {
        RateLimit {
            per_second,
            window: None,
            logged: 0,
            suppressed: 0,
        }
    }

    /// Whether a line at `now` may be logged (and starts a new window when the last one is over).
    fn allow(&mut self, name: &str, now: Instant) -> bool {
        if self
            .window
            .is_none_or(|start| now.duration_since(start) >= SECOND)
        {
            self.report_suppressed(name);
            self.window = Some(now);
            self.logged = 0;
        }
        if self.logged < self.per_second {
            self.logged += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    fn log(&mut self, name: &str, line: Line<'_>, now: Instant) {
        if self.allow(name, now) {
            // (a command's own output may show the URLs it was given, credentials and all)
            let text = line.text();
            tracing::info!(target: "mjpegd::child", child = %redact_urls(name), "{}", redact_urls(&text));
        }
    }

    /// Logs how many lines were suppressed since the last report, if any.
    fn report_suppressed(&mut self, name: &str) {
        if self.suppressed > 0 {
            tracing::info!(
                target: "mjpegd::child",
                child = %redact_urls(name),
                suppressed = self.suppressed,
                "more than {} stderr lines a second: {} not logged",
                self.per_second,
                self.suppressed
            );
            self.suppressed = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut cutter = LineCutter::default();
        let mut got = Vec::new();
        for chunk in chunks {
            cutter.push(chunk, |l| got.push((l.bytes.to_vec(), l.cut)));
        }
        if let Some(l) = cutter.finish() {
            got.push((l.bytes.to_vec(), l.cut));
        }
        got
    }

    #[test]
    fn carriage_returns_and_newlines_end_lines_across_chunks() {
        let got = lines(&[b"frame=1\rfra", b"me=2\r\nerror: x\n\n", b"tail"]);
        let want: Vec<(Vec<u8>, bool)> = [&b"frame=1"[..], b"frame=2", b"error: x", b"tail"]
            .iter()
            .map(|l| (l.to_vec(), false))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_long_line_is_cut_once_and_the_rest_skipped() {
        let zeros = vec![0u8; 3000];
        let got = lines(&[&zeros, &zeros, b"more\nnext\n"]);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], (vec![0u8; MAX_LINE], true));
        assert_eq!(got[1], (b"next".to_vec(), false));
        let text = Line {
            bytes: &got[0].0,
            cut: true,
        }
        .text();
        assert!(text.ends_with("[line cut at 500 bytes]"));
        assert!(!text.contains('\0'));
    }

    #[test]
    fn invalid_utf8_and_escapes_are_shown_lossily() {
        let line = Line {
            bytes: b"\x1b[31mred\xff ok\t.",
            cut: false,
        };
        assert_eq!(line.text(), "\u{FFFD}[31mred\u{FFFD} ok\t.");
    }

    #[test]
    fn at_most_n_lines_a_second_are_allowed() {
        let mut limit = RateLimit::new(10);
        let start = Instant::now();
        let allowed = (0..100)
            .filter(|i| limit.allow("t", start + Duration::from_millis(*i)))
            .count();
        assert_eq!(allowed, 10);
        assert_eq!(limit.suppressed, 90);
        assert!(limit.allow("t", start + Duration::from_millis(1000)));
        assert_eq!(limit.suppressed, 0, "reported when the next second began");
    }
}
