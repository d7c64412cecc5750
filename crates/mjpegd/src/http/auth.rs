//! Access control: HTTP Basic auth and `?key=` access keys, checked before routing on every request.
//!
//! Users come from `--auth USER:PASSWORD` (compared in constant time, through SHA-256 digests so the
//! lengths match) and from `--auth-file` (one `user:bcrypt-hash` a line, as `htpasswd -nB` or
//! `mjpegd hash-password` writes). A bcrypt check costs tens of milliseconds of CPU by design, so it is not
//! paid on every request: an Authorization value that verified once is remembered (as a salted SHA-256
//! digest, never in clear, at most [`CACHE_CAP`] of them). The checks that must run go through a
//! [`lanes::Gate`]: at most [`VERIFY_SLOTS`] at once, fair between client addresses, bounded, each
//! waiting at most [`QUEUE_DEADLINE`]; past that the request is answered [`Verdict::Busy`] (a 503), so a
//! flood of wrong passwords costs at most that many cores and cannot keep a real user waiting behind it.
//!
//! Every failed check costs the same time whoever it names: hashes in the file may have different costs
//! (`htpasswd -nB` writes 5, `mjpegd hash-password` 12), so an unknown user is checked against the
//! costliest hash, and a check against a cheaper hash is padded with bcrypt work up to the costliest one
//! (no user enumeration by timing).
//!
//! Access keys (`--access-key`) are for players that cannot send an Authorization header: any URL with
//! `?key=KEY` is let in. The key is in the URL, so it ends up in browser history, proxy logs, Referer
//! headers and screenshots; treat it as a password that leaks easily, and prefer Basic auth. What a key
//! lets in is told apart ([`Verdict::Key`]) so it can be shown less (no client addresses in `/state`).
//!
//! Users are viewers unless named in `admins` (`--admin`): only an admin's verdict says so
//! ([`Verdict::User`] `admin`), and only admins may change anything ([`super::access`]). A key is always a
//! viewer.
//!
//! A reload builds new rules, but verified passwords whose hash did not change are kept
//! ([`Auth::keep_verified_from`]): a run of API writes does not pay a bcrypt check each.

mod lanes;

use super::request::Request;
use anyhow::{bail, Context};
use base64::Engine;
use lanes::Gate;
use ring::digest::{digest, SHA256};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Most remembered verified Authorization values (the set is cleared when full).
pub const CACHE_CAP: usize = 1024;
/// Most bcrypt checks at once.
pub const VERIFY_SLOTS: usize = 2;
/// Most password checks waiting from one client address.
pub const QUEUE_PER_ADDRESS: usize = 4;
/// Most password checks waiting in all.
pub const QUEUE_TOTAL: usize = 64;
/// Longest a password check waits for its turn.
pub const QUEUE_DEADLINE: Duration = Duration::from_secs(5);
/// Highest bcrypt cost accepted in a users file (cost 16 is about 4 s of CPU a check; every failed check
/// costs as much as the costliest hash).
pub const MAX_COST: u32 = 16;
/// The challenge sent with a 401.
pub const CHALLENGE: &str = "Basic realm=\"mjpegd\", charset=\"UTF-8\"";

type Digest = [u8; 32];

/// What the access rules say about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No access rules: everyone is let in.
    Open,
    /// A user with a valid password; an admin if named in `admins`.
    User { admin: bool },
    /// An access key (a player): let in, but shown less.
    Key,
    /// No valid credentials (401).
    Refused,
    /// Too many password checks waiting, or this one waited past its deadline (503, try again).
    Busy,
}

impl Verdict {
    /// Whether the request may proceed.
    pub fn admitted(self) -> bool {
        matches!(self, Verdict::Open | Verdict::User { .. } | Verdict::Key)
    }

    /// Whether the request may see who watches (client addresses and user agents).
    pub fn sees_clients(self) -> bool {
        matches!(self, Verdict::Open | Verdict::User { .. })
    }
}

enum Secret {
    /// SHA-256 of `user:password`.
    Plain(Digest),
    /// A bcrypt hash of the password, and its cost.
    Bcrypt { hash: String, cost: u32 },
}

struct User {
    name: String,
    secret: Secret,
}

/// Who may connect. Absent (no `--auth`, `--auth-file` or `--access-key`): everyone.
pub struct Auth {
    users: Vec<User>,
    keys: Vec<Digest>,
    /// Names of the users who may change things.
    admins: HashSet<String>,
    salt: [u8; 16],
    /// Verified Authorization values (salted digests), each with the bcrypt hash it was verified against.
    verified: Mutex<HashMap<Digest, String>>,
    /// The costliest bcrypt hash and its cost: what an unknown user is checked against, and what every
    /// check is padded up to.
    costliest: Option<(String, u32)>,
    gate: Arc<Gate>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field(
                "users",
                &self.users.iter().map(|u| &u.name).collect::<Vec<_>>(),
            )
            .field("keys", &self.keys.len())
            .finish()
    }
}

fn sha256(parts: &[&[u8]]) -> Digest {
    let mut ctx = ring::digest::Context::new(&SHA256);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish().as_ref().try_into().expect("32 bytes")
}

impl Auth {
    /// Builds the access rules from the flags; `None` when none is set.
    pub fn from_flags(
        auth: Option<&str>,
        auth_file: Option<&Path>,
        access_keys: &[String],
        admins: &[String],
    ) -> anyhow::Result<Option<Auth>> {
        let mut users = Vec::new();
        if let Some(a) = auth {
            let (user, pass) = a.split_once(':').context("--auth wants USER:PASSWORD")?;
            if user.is_empty() || pass.is_empty() {
                bail!("--auth wants USER:PASSWORD, both non-empty");
            }
            users.push(User {
                name: user.to_string(),
                secret: Secret::Plain(sha256(&[a.as_bytes()])),
            });
        }
        if let Some(path) = auth_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --auth-file {}", path.display()))?;
            let parsed = parse_users(&text)
                .map_err(|e| anyhow::anyhow!("--auth-file {}: {e}", path.display()))?;
            users.extend(parsed);
        }
        let keys: Vec<Digest> = access_keys
            .iter()
            .map(|k| {
                if k.len() < 16 {
                    bail!("--access-key must be at least 16 characters (it travels in URLs)");
                }
                Ok(digest(&SHA256, k.as_bytes())
                    .as_ref()
                    .try_into()
                    .expect("32"))
            })
            .collect::<anyhow::Result<_>>()?;
        for admin in admins {
            if !users.iter().any(|u| &u.name == admin) {
                bail!("admins: {admin:?} is not a user of --auth or --auth-file");
            }
        }
        if users.is_empty() && keys.is_empty() {
            return Ok(None);
        }
        let mut salt = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
            .map_err(|_| anyhow::anyhow!("no randomness"))?;
        let costliest = users
            .iter()
            .filter_map(|u| match &u.secret {
                Secret::Bcrypt { hash, cost } => Some((hash.clone(), *cost)),
                Secret::Plain(_) => None,
            })
            .max_by_key(|(_, cost)| *cost);
        Ok(Some(Auth {
            users,
            keys,
            admins: admins.iter().cloned().collect(),
            salt,
            verified: Mutex::new(HashMap::new()),
            costliest,
            gate: Gate::new(VERIFY_SLOTS, QUEUE_PER_ADDRESS, QUEUE_TOTAL, QUEUE_DEADLINE),
        }))
    }

    /// Keeps what `old` verified against bcrypt hashes this one still has (a reload that did not change a
    /// user's hash does not make them pay a check again).
    pub fn keep_verified_from(&mut self, old: &Auth) {
        self.salt = old.salt;
        let hashes: HashSet<&str> = self
            .users
            .iter()
            .filter_map(|u| match &u.secret {
                Secret::Bcrypt { hash, .. } => Some(hash.as_str()),
                Secret::Plain(_) => None,
            })
            .collect();
        let old = old.verified.lock().unwrap_or_else(|e| e.into_inner());
        let kept = old
            .iter()
            .filter(|(_, hash)| hashes.contains(hash.as_str()))
            .map(|(d, h)| (*d, h.clone()));
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(kept);
    }

    /// Whether `name` is an admin.
    fn is_admin(&self, credentials: &[u8]) -> bool {
        let name = credentials.split(|&b| b == b':').next().unwrap_or_default();
        std::str::from_utf8(name).is_ok_and(|n| self.admins.contains(n))
    }

    /// Number of users and of access keys, for the startup log.
    pub fn summary(&self) -> (usize, usize) {
        (self.users.len(), self.keys.len())
    }

    /// What the rules say about `request`, which came from `ip` (whose lane its password check waits in).
    ///
    /// Valid Basic credentials win over a key (a user sees everything); a valid key is not refused for a
    /// wrong or slow Authorization header beside it.
    pub async fn check(&self, request: &Request, ip: IpAddr) -> Verdict {
        let key_ok = request.param("key").is_some_and(|key| {
            let candidate = sha256(&[key.as_bytes()]);
            // Compare with every key, without stopping early.
            let mut ok = subtle::Choice::from(0);
            for k in &self.keys {
                ok |= k.ct_eq(&candidate);
            }
            bool::from(ok)
        });
        let basic = match request.header("authorization").and_then(basic_credentials) {
            Some(credentials) => self.check_basic(&credentials, ip).await,
            None => Verdict::Refused,
        };
        match basic {
            Verdict::User { admin } => Verdict::User { admin },
            _ if key_ok => Verdict::Key,
            other => other,
        }
    }

    async fn check_basic(&self, credentials: &[u8], ip: IpAddr) -> Verdict {
        let plain = sha256(&[credentials]);
        let mut ok = subtle::Choice::from(0);
        for u in &self.users {
            if let Secret::Plain(d) = &u.secret {
                ok |= d.ct_eq(&plain);
            }
        }
        let user = Verdict::User {
            admin: self.is_admin(credentials),
        };
        if bool::from(ok) {
            return user;
        }
        let Some(colon) = credentials.iter().position(|&b| b == b':') else {
            return Verdict::Refused;
        };
        let Some((costliest, max_cost)) = self.costliest.clone() else {
            return Verdict::Refused;
        };
        let remembered = sha256(&[&self.salt, credentials]);
        if self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&remembered)
        {
            return user;
        }
        let (name, password) = (&credentials[..colon], &credentials[colon + 1..]);
        let own = self.users.iter().find_map(|u| match &u.secret {
            Secret::Bcrypt { hash, cost } if u.name.as_bytes() == name => {
                Some((hash.clone(), *cost))
            }
            _ => None,
        });
        // An unknown user is checked against the costliest hash all the same, and refused.
        let known = own.is_some();
        let (hash, cost) = own.unwrap_or((costliest, max_cost));
        let password = password.to_vec();
        let against = hash.clone();
        let checked = self
            .gate
            .run(ip, move || {
                padded_verify(&password, &against, cost, max_cost)
            })
            .await;
        match checked {
            Err(why) => {
                tracing::debug!(%ip, ?why, "password check not run");
                Verdict::Busy
            }
            Ok(Some(true)) if known => {
                let mut set = self.verified.lock().unwrap_or_else(|e| e.into_inner());
                if set.len() >= CACHE_CAP {
                    set.clear();
                }
                set.insert(remembered, hash);
                user
            }
            Ok(_) => Verdict::Refused,
        }
    }
}

/// Checks `password` against `hash` (of bcrypt cost `cost`), then pads the work up to that of a check at
/// `max_cost`: bcrypt at cost k costs 2^k rounds, and 2^c + (2^c + 2^(c+1) + ... + 2^(max-1)) = 2^max, so
/// extra hashes at costs c..max-1 make every check as long as one against the costliest hash.
fn padded_verify(password: &[u8], hash: &str, cost: u32, max_cost: u32) -> bool {
    let ok = bcrypt::verify(password, hash).unwrap_or(false);
    for k in cost..max_cost {
        std::hint::black_box(bcrypt::hash_with_salt(password, k, [0x5a; 16]).ok());
    }
    ok
}

/// The decoded `user:password` of a `Basic` Authorization value.
fn basic_credentials(value: &str) -> Option<Vec<u8>> {
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") || rest.len() > 1024 {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()
}

/// Reads a users file: `user:hash` lines, `#` comments and blank lines ignored; bcrypt hashes only.
fn parse_users(text: &str) -> anyhow::Result<Vec<User>> {
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, hash)) = line.split_once(':') else {
            bail!("line {}: expected user:hash", n + 1);
        };
        let parts =
            (hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$"))
                .then(|| hash.parse::<bcrypt::HashParts>().ok())
                .flatten();
        let Some(parts) = parts else {
            bail!(
                "line {}: user {name:?} has no bcrypt hash (make one with `mjpegd hash-password` or `htpasswd -nB {name}`)",
                n + 1
            );
        };
        let cost = parts.get_cost();
        if !(4..=MAX_COST).contains(&cost) {
            bail!(
                "line {}: user {name:?} has a bcrypt hash of cost {cost}; mjpegd checks costs 4 to {MAX_COST} (every failed login costs as much as the costliest hash)",
                n + 1
            );
        }
        users.push(User {
            name: name.to_string(),
            secret: Secret::Bcrypt {
                hash: hash.to_string(),
                cost,
            },
        });
    }
    if users.is_empty() {
        bail!("no users in the file");
    }
    Ok(users)
}

/// A bcrypt hash of `password`, for a users file.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    Ok(bcrypt::hash(password, bcrypt::DEFAULT_COST)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn request(auth: Option<&str>, query: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: "/stream".into(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            version: 1,
            headers: auth
                .map(|a| vec![("authorization".to_string(), a.to_string())])
                .unwrap_or_default(),
            framing: crate::http::body::Framing::None,
        }
    }

    fn basic(s: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }

    #[tokio::test]
    async fn plain_users_keys_and_bcrypt_users() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let dir = std::env::temp_dir().join(format!("mjpegd-auth-{}", std::process::id()));
        std::fs::write(&dir, format!("# users\n\nbob:{hash}\n")).unwrap();
        let keys = vec!["0123456789abcdef".to_string()];
        let auth = Auth::from_flags(Some("alice:pw"), Some(&dir), &keys, &["bob".into()])
            .unwrap()
            .unwrap();
        std::fs::remove_file(&dir).unwrap();
        let auth = &auth;
        let verdict = |a: Option<String>, key: Option<&str>| {
            let r = request(a.as_deref(), key.map(|k| ("key", k)).as_slice());
            async move { auth.check(&r, LOCAL).await }
        };
        const VIEWER: Verdict = Verdict::User { admin: false };
        const ADMIN: Verdict = Verdict::User { admin: true };
        assert_eq!(verdict(Some(basic("alice:pw")), None).await, VIEWER);
        assert_eq!(verdict(Some(basic("bob:s3cret")), None).await, ADMIN);
        // Second time from the cache.
        assert_eq!(verdict(Some(basic("bob:s3cret")), None).await, ADMIN);
        assert_eq!(auth.verified.lock().unwrap().len(), 1);
        for bad in [
            "alice:pW",
            "alice:",
            "bob:pw",
            "carol:s3cret",
            "bob:s3cret2",
            "",
            ":",
        ] {
            assert_eq!(
                verdict(Some(basic(bad)), None).await,
                Verdict::Refused,
                "{bad}"
            );
        }
        for header in ["Bearer x", "Basic !!!"] {
            assert_eq!(verdict(Some(header.into()), None).await, Verdict::Refused);
        }
        assert_eq!(verdict(None, None).await, Verdict::Refused);
        let key = Some("0123456789abcdef");
        assert_eq!(verdict(None, key).await, Verdict::Key);
        assert_eq!(
            verdict(None, Some("0123456789abcdeF")).await,
            Verdict::Refused
        );
        // Credentials beside a key: a valid user sees as a user; wrong ones do not cost the key its way in.
        assert_eq!(verdict(Some(basic("bob:s3cret")), key).await, ADMIN);
        assert_eq!(verdict(Some(basic("bob:nope")), key).await, Verdict::Key);
        assert!(Verdict::Key.admitted() && !Verdict::Key.sees_clients());
        assert!(VIEWER.sees_clients() && Verdict::Open.sees_clients());
        assert!(!Verdict::Busy.admitted() && !Verdict::Refused.admitted());
    }

    #[tokio::test]
    async fn a_rebuilt_rule_set_keeps_what_it_verified_for_unchanged_hashes() {
        let (h1, h2) = (
            bcrypt::hash("one", 4).unwrap(),
            bcrypt::hash("two", 4).unwrap(),
        );
        let file = std::env::temp_dir().join(format!("mjpegd-auth-keep-{}", std::process::id()));
        let rules = |text: String| {
            std::fs::write(&file, text).unwrap();
            Auth::from_flags(None, Some(&file), &[], &[])
                .unwrap()
                .unwrap()
        };
        let old = rules(format!("ann:{h1}\nben:{h2}\n"));
        for who in ["ann:one", "ben:two"] {
            let r = request(Some(&basic(who)), &[]);
            assert!(old.check(&r, LOCAL).await.admitted());
        }
        // ben's hash changes, ann's does not: only ann's verification is kept.
        let mut new = rules(format!(
            "ann:{h1}\nben:{}\n",
            bcrypt::hash("two", 4).unwrap()
        ));
        new.keep_verified_from(&old);
        std::fs::remove_file(&file).unwrap();
        assert_eq!(new.verified.lock().unwrap().len(), 1);
        let r = request(Some(&basic("ann:one")), &[]);
        let salted = sha256(&[&new.salt, b"ann:one"]);
        assert!(new.verified.lock().unwrap().contains_key(&salted));
        assert!(new.check(&r, LOCAL).await.admitted());
    }

    #[test]
    fn admins_must_be_users() {
        let e = Auth::from_flags(Some("alice:pw"), None, &[], &["mallory".into()]).unwrap_err();
        assert!(e.to_string().contains("mallory"), "{e}");
    }

    #[test]
    fn padding_brings_a_cheap_check_to_the_work_of_the_costliest() {
        let cheap = bcrypt::hash("pw", 4).unwrap();
        let time = |cost, max| {
            let t = std::time::Instant::now();
            for _ in 0..3 {
                padded_verify(b"wrong", &cheap, cost, max);
            }
            t.elapsed()
        };
        // Padding from 4 up to 8 is 16 times the work of cost 4 alone.
        let (alone, padded) = (time(4, 4), time(4, 8));
        assert!(padded > alone * 6, "{alone:?} vs {padded:?}");
        assert!(
            padded_verify(b"pw", &cheap, 4, 8),
            "padding keeps the answer"
        );
    }

    #[test]
    fn bad_flags_and_files_are_refused() {
        assert!(Auth::from_flags(Some("nocolon"), None, &[], &[]).is_err());
        assert!(Auth::from_flags(Some(":pw"), None, &[], &[]).is_err());
        assert!(Auth::from_flags(None, None, &["short".into()], &[]).is_err());
        assert!(Auth::from_flags(None, None, &[], &[]).unwrap().is_none());
        assert!(parse_users("bob:{SHA}abc\n").is_err());
        assert!(parse_users("# nobody\n").is_err());
        let hash = bcrypt::hash("x", 4).unwrap();
        assert!(parse_users(&format!("bob:{hash}\n")).is_ok());
        for cost in ["03", "17", "31", "xx"] {
            let bad = format!("bob:$2b${cost}{}\n", &hash[6..]);
            assert!(parse_users(&bad).is_err(), "{bad}");
        }
    }
}
