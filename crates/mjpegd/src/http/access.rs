//! Who may change things, and from where: the checks every write (an API `PUT`, `PATCH`, `POST`,
//! `DELETE`, or a compatibility write over GET) passes before it is applied.
//!
//! Viewers watch (streams, snapshots, state, metrics, recordings); only admins write. With credentials
//! configured, an admin is a user named in `admins`; other users and access keys are viewers. With none
//! configured, there is nobody to name, so writes are taken from this machine only (a loopback TCP client
//! or a unix-socket client, not a client a proxy speaks for): the default listener is loopback anyway.
//!
//! A browser sends cached Basic credentials with requests another site's page makes, so a write must also
//! show it was not made cross-site: a `Sec-Fetch-Site` other than `same-origin` or `none`, or an `Origin`
//! that is not this server's own (the request's `Host`), is refused; and an API write with a body must say
//! `Content-Type: application/json`, which a cross-site HTML form cannot send. Nothing here does I/O.

use super::auth::Verdict;
use super::request::Request;
use crate::net::Peer;

/// Why a write was refused: a status and a reason a person can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
}

const NOT_ADMIN: Refusal = Refusal {
    status: 403,
    reason: "only admins can change settings: this user or key may watch only (name admins with admins = [\"NAME\"] in the config file, or --admin NAME)\n",
};
const NOT_LOCAL: Refusal = Refusal {
    status: 403,
    reason: "no credentials are configured, so changes are accepted from this machine only: configure users (--auth or --auth-file) and name an admin (admins = [\"NAME\"] in the config file, or --admin NAME)\n",
};
const CROSS_SITE: Refusal = Refusal {
    status: 403,
    reason: "a change made from another site's page is refused (Origin / Sec-Fetch-Site)\n",
};
const NOT_JSON: Refusal = Refusal {
    status: 415,
    reason: "send the change as JSON: Content-Type: application/json\n",
};
const UNAUTHENTICATED: Refusal = Refusal {
    status: 401,
    reason: "authentication required\n",
};

/// Whether `client` is on this machine: a loopback TCP peer or a unix-socket peer (never a client a proxy
/// named, wherever the proxy is).
fn is_local(client: &Peer) -> bool {
    match client {
        Peer::Ip(addr) => {
            addr.ip().is_loopback()
                || matches!(addr.ip(), std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
        }
        Peer::Unix { .. } => true,
        Peer::Proxied { .. } => false,
    }
}

/// Whether a request with `verdict` from `client` may change things.
pub fn may_write(verdict: Verdict, client: &Peer) -> Result<(), Refusal> {
    match verdict {
        Verdict::User { admin: true } => Ok(()),
        Verdict::User { admin: false } | Verdict::Key => Err(NOT_ADMIN),
        Verdict::Open if is_local(client) => Ok(()),
        Verdict::Open => Err(NOT_LOCAL),
        Verdict::Refused | Verdict::Busy => Err(UNAUTHENTICATED),
    }
}

/// Whether `request` shows it was not made by another site's page.
pub fn same_origin(request: &Request) -> Result<(), Refusal> {
    if let Some(site) = request.header("sec-fetch-site") {
        if !matches!(site.to_ascii_lowercase().as_str(), "same-origin" | "none") {
            return Err(CROSS_SITE);
        }
    }
    if let Some(origin) = request.header("origin") {
        // `scheme://host[:port]`; the Host a browser sends is `host[:port]` as the page's URL had it.
        let host = request.header("host").unwrap_or_default();
        let from = origin
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/'))
            .unwrap_or("");
        if from.is_empty() || !from.eq_ignore_ascii_case(host) {
            return Err(CROSS_SITE);
        }
    }
    Ok(())
}

/// Whether an API write's body is declared JSON.
pub fn json_body(request: &Request) -> Result<(), Refusal> {
    let media = request
        .header("content-type")
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    match media.as_deref() {
        Some("application/json") => Ok(()),
        _ => Err(NOT_JSON),
    }
}

/// Every check of an API write: who, from where, and (`with_body`) in what form.
pub fn check_write(
    verdict: Verdict,
    client: &Peer,
    request: &Request,
    with_body: bool,
) -> Result<(), Refusal> {
    may_write(verdict, client)?;
    same_origin(request)?;
    if with_body {
        json_body(request)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body::Framing;

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "PUT".into(),
            path: "/api/cameras/a".into(),
            query: Vec::new(),
            version: 1,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            framing: Framing::Length(2),
        }
    }

    fn peer(s: &str) -> Peer {
        Peer::Ip(s.parse().unwrap())
    }

    #[test]
    fn roles() {
        let remote = peer("192.0.2.1:5000");
        let local = peer("127.0.0.1:5000");
        let unix = Peer::Unix {
            pid: None,
            uid: None,
        };
        let proxied = Peer::Proxied {
            client: "127.0.0.1:0".parse().unwrap(),
        };
        assert!(may_write(Verdict::User { admin: true }, &remote).is_ok());
        assert_eq!(
            may_write(Verdict::User { admin: false }, &local)
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(may_write(Verdict::Key, &local).unwrap_err().status, 403);
        assert!(may_write(Verdict::Open, &local).is_ok());
        assert!(may_write(Verdict::Open, &peer("[::1]:1")).is_ok());
        assert!(may_write(Verdict::Open, &peer("[::ffff:127.0.0.1]:1")).is_ok());
        assert!(may_write(Verdict::Open, &unix).is_ok());
        let e = may_write(Verdict::Open, &remote).unwrap_err();
        assert_eq!(e.status, 403);
        assert!(e.reason.contains("admins"), "says how to name an admin");
        assert_eq!(
            may_write(Verdict::Open, &proxied).unwrap_err().status,
            403,
            "a client a proxy speaks for is not local, whatever it claims"
        );
        assert_eq!(may_write(Verdict::Refused, &local).unwrap_err().status, 401);
    }

    #[test]
    fn cross_site_writes_are_refused() {
        let json = ("content-type", "application/json; charset=utf-8");
        let host = ("host", "cams.local:8080");
        let ok = |h: &[(&str, &str)]| same_origin(&request(h)).is_ok();
        assert!(ok(&[host]));
        assert!(ok(&[host, ("origin", "http://cams.local:8080")]));
        assert!(ok(&[host, ("sec-fetch-site", "same-origin")]));
        assert!(ok(&[host, ("sec-fetch-site", "none")]));
        assert!(!ok(&[host, ("origin", "http://evil.example")]));
        assert!(!ok(&[host, ("origin", "http://cams.local:8081")]));
        assert!(!ok(&[host, ("origin", "null")]));
        assert!(!ok(&[host, ("sec-fetch-site", "cross-site")]));
        assert!(!ok(&[host, ("sec-fetch-site", "same-site")]));
        assert!(json_body(&request(&[json])).is_ok());
        for form in [
            "application/x-www-form-urlencoded",
            "text/plain",
            "multipart/form-data; boundary=x",
        ] {
            assert_eq!(
                json_body(&request(&[("content-type", form)]))
                    .unwrap_err()
                    .status,
                415
            );
        }
        assert_eq!(json_body(&request(&[])).unwrap_err().status, 415);
        let admin = Verdict::User { admin: true };
        let local = peer("127.0.0.1:1");
        assert!(check_write(admin, &local, &request(&[host, json]), true).is_ok());
        assert!(check_write(admin, &local, &request(&[host]), false).is_ok());
        assert_eq!(
            check_write(admin, &local, &request(&[host]), true)
                .unwrap_err()
                .status,
            415
        );
    }
}
