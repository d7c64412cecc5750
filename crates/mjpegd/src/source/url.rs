//! An upstream's `http://` URL, parsed whole when the configuration is read, and shown without its
//! credentials.
//!
//! Why a type of its own: a relay URL that a relay could not use (no host, port 0 or 99999, a path a
//! request cannot carry) must be refused where it is written, with the file's line and column, not
//! discovered when the source starts (which is what let a reload start some cameras and then fail). And a
//! URL may hold `user:password@`: the parsed value keeps them only for the `Authorization` header, and its
//! `Display` and `Debug` (hence every log line, error, `/state` and `/metrics` that shows the source) never
//! print them. [`redact`] does the same for a string that failed to parse, and [`redact_urls`] for any text
//! that may hold URLs (a command line, a command's stderr).
//!
//! `snapshot+http://...` is the same URL with the relay told to poll it for still JPEGs (a camera whose
//! snapshot URL answers with a type other than `image/jpeg`); see [`super::relay`].

use std::fmt;

/// Longest URL accepted.
pub const MAX_URL: usize = 2048;

/// The prefix that makes a relay poll its URL for still JPEGs whatever their Content-Type says.
pub const SNAPSHOT_PREFIX: &str = "snapshot+";

/// A parsed `[snapshot+]http://[user[:password]@]host[:port][/path][?query]`.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayUrl {
    /// A name or an address (IPv6 without its brackets).
    pub host: String,
    /// 1 to 65535 (80 when the URL gives none).
    pub port: u16,
    /// What the request line carries: starts with `/`.
    pub path_and_query: String,
    /// `user[:password]` of the URL, percent-decoded; for the `Authorization` header only.
    pub credentials: Option<(String, String)>,
    /// Written `snapshot+http://`: each answer is one JPEG, polled at the camera's rate.
    pub snapshot: bool,
}

impl RelayUrl {
    /// Parses `url`; the error never shows credentials.
    pub fn parse(url: &str) -> Result<RelayUrl, String> {
        // Echoed without credentials, and with any control character escaped.
        let shown = redact(url).escape_debug().to_string();
        if url.len() > MAX_URL {
            return Err(format!("a URL longer than {MAX_URL} bytes"));
        }
        let (snapshot, url) = match url.strip_prefix(SNAPSHOT_PREFIX) {
            Some(rest) => (true, rest),
            None => (false, url),
        };
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("{shown}: only http:// (or snapshot+http://) upstreams are supported")
        })?;
        if let Some((i, c)) = rest
            .char_indices()
            .find(|(_, c)| c.is_control() || c.is_whitespace())
        {
            let what = match rest.find(['/', '?']) {
                Some(p) if p < i => "path",
                _ => "host",
            };
            return Err(format!(
                "{shown}: a space or control character ({c:?}) in the {what}; percent-encode it"
            ));
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if path.contains('#') {
            return Err(format!("{shown}: a fragment (#) in the path"));
        }
        if path.parse::<hyper::http::uri::PathAndQuery>().is_err() {
            return Err(format!("{shown}: the path is not valid in a request"));
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{shown}: an IPv6 host without its closing ]"))?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("{shown}: bad IPv6 host {addr:?}"));
            }
            match after {
                "" => (addr, None),
                p if p.starts_with(':') => (addr, Some(&p[1..])),
                _ => return Err(format!("{shown}: unexpected text after the IPv6 host")),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(format!(
                "{shown}: no host (expected http://HOST[:PORT]/PATH)"
            ));
        }
        if !hostport.starts_with('[')
            && !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(format!(
                "{shown}: bad host {host:?} (expected a name or an address)"
            ));
        }
        let port = match port {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("{shown}: bad port {p:?} (expected 1 to 65535)")),
            },
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let credentials = userinfo.map(|u| match u.split_once(':') {
            Some((user, pass)) => (decode(user), decode(pass)),
            None => (decode(u), String::new()),
        });
        Ok(RelayUrl {
            host: host.to_string(),
            port,
            path_and_query: path,
            credentials,
            snapshot,
        })
    }

    /// `host:port` as the `Host` header carries it (the port left out when it is 80).
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// The URL without credentials: `[snapshot+]http://host:port/path`.
impl fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let prefix = if self.snapshot { SNAPSHOT_PREFIX } else { "" };
        write!(
            f,
            "{prefix}http://{host}:{}{}",
            self.port, self.path_and_query
        )
    }
}

/// As `Display`, and says whether there are credentials, never what they are.
impl fmt::Debug for RelayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let creds = if self.credentials.is_some() {
            " (with credentials)"
        } else {
            ""
        };
        write!(f, "RelayUrl({self}{creds})")
    }
}

/// `s` with any `user:password@` after a `scheme://` replaced by `***@`, for echoing a value that did not
/// parse.
pub fn redact(s: &str) -> String {
    let Some(i) = s.find("://") else {
        return s.to_string();
    };
    let (scheme, rest) = s.split_at(i + 3);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}***{}", &rest[at..]),
        None => s.to_string(),
    }
}

/// `text` with the credentials of every URL in it (`scheme://user:password@host`) replaced by `***`: for
/// what shows a command line or a command's output (`ffmpeg -i rtsp://admin:pw@cam/...`).
pub fn redact_urls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        // The authority ends at a path, query, fragment, space or quote.
        let end = after
            .find(|c: char| matches!(c, '/' | '?' | '#' | '\'' | '"' | '`') || c.is_whitespace())
            .unwrap_or(after.len());
        match after[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&after[at..end]);
            }
            None => out.push_str(&after[..end]),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_credentials() {
        let u = RelayUrl::parse("http://admin:s%40cret@cam.local:8081/mjpeg/1?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path_and_query.as_str()),
            ("cam.local", 8081, "/mjpeg/1?x=1")
        );
        assert_eq!(u.credentials, Some(("admin".into(), "s@cret".into())));
        assert_eq!(u.to_string(), "http://cam.local:8081/mjpeg/1?x=1");
        assert!(!format!("{u:?}").contains("cret"));
        let u = RelayUrl::parse("http://10.0.0.5").unwrap();
        assert_eq!((u.port, u.path_and_query.as_str()), (80, "/"));
        assert_eq!(u.host_header(), "10.0.0.5");
        let u = RelayUrl::parse("http://[::1]:9000/stream").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9000));
        assert_eq!(u.host_header(), "[::1]:9000");
        assert_eq!(u.to_string(), "http://[::1]:9000/stream");
        let u = RelayUrl::parse("http://cam?action=stream").unwrap();
        assert_eq!(u.path_and_query, "/?action=stream");
        assert!(!u.snapshot);
        let u = RelayUrl::parse("snapshot+http://admin:S3cret@cam/capture").unwrap();
        assert!(u.snapshot);
        assert_eq!(u.credentials, Some(("admin".into(), "S3cret".into())));
        assert_eq!(u.to_string(), "snapshot+http://cam:80/capture");
        assert!(!format!("{u:?}").contains("S3cret"));
        assert!(RelayUrl::parse("snapshot+https://cam/").is_err());
        assert!(RelayUrl::parse("snapshot+snapshot+http://cam/").is_err());
    }

    #[test]
    fn what_a_relay_could_not_use_is_refused_without_showing_credentials() {
        for (url, what) in [
            ("https://x/", "only http://"),
            ("http://", "no host"),
            ("http:///x", "no host"),
            ("http://:80/", "no host"),
            ("http://u:S3cret@/", "no host"),
            ("http://x:notaport/", "bad port"),
            ("http://x:0/", "bad port"),
            ("http://u:S3cret@x:99999/", "bad port"),
            ("http://x:/", "bad port"),
            ("http://x/a b", "in the path"),
            ("http://x y/", "in the host"),
            ("http://x/\u{1b}[31m", "control"),
            ("http://[::1/", "closing ]"),
            ("http://[zz]/", "IPv6"),
            ("http://a^b/", "bad host"),
            ("http://x/#frag", "fragment"),
        ] {
            let e = RelayUrl::parse(url).unwrap_err();
            assert!(e.contains(what), "{url}: {e}");
            assert!(!e.contains("S3cret"), "{url}: {e}");
        }
        assert!(RelayUrl::parse(&format!("http://x/{}", "a".repeat(MAX_URL))).is_err());
    }

    #[test]
    fn redacting() {
        assert_eq!(redact("http://a:b@h/p@q"), "http://***@h/p@q");
        assert_eq!(redact("ftp://u:p@x"), "ftp://***@x");
        assert_eq!(redact("http://h/x"), "http://h/x");
        assert_eq!(redact("pattern"), "pattern");
        assert_eq!(
            redact_urls("ffmpeg -i 'rtsp://admin:pw@cam:554/s' -f mjpeg http://u:p@x/ -"),
            "ffmpeg -i 'rtsp://***@cam:554/s' -f mjpeg http://***@x/ -"
        );
        assert_eq!(redact_urls("a@b c://d"), "a@b c://d");
        assert_eq!(redact_urls("x://u:p@"), "x://***@");
    }
}
