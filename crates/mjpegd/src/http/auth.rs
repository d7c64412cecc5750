//! Access control: HTTP Basic auth and `?key=` access keys, checked before routing on every request.
//!
//! Users come from `--auth USER:PASSWORD` (compared in constant time, through SHA-256 digests so the
//! lengths match) and from `--auth-file` (one `user:bcrypt-hash` a line, as `htpasswd -nB` or
//! `mjpegd hash-password` writes). A bcrypt check costs tens of milliseconds of CPU by design, so it is not
//! paid on every request: an Authorization value that verified once is remembered (as a salted SHA-256
//! digest, never in clear, at most [`CACHE_CAP`] of them), and at most [`VERIFY_SLOTS`] bcrypt checks run
//! at once on the blocking pool, so a flood of wrong passwords costs at most that many cores.
//!
//! Access keys (`--access-key`) are for players that cannot send an Authorization header: any URL with
//! `?key=KEY` is let in. The key is in the URL, so it ends up in browser history, proxy logs, Referer
//! headers and screenshots; treat it as a password that leaks easily, and prefer Basic auth.

use super::request::Request;
use anyhow::{bail, Context};
use base64::Engine;
use ring::digest::{digest, SHA256};
use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// Most remembered verified Authorization values (the set is cleared when full).
pub const CACHE_CAP: usize = 1024;
/// Most bcrypt checks at once.
pub const VERIFY_SLOTS: usize = 2;
/// The challenge sent with a 401.
pub const CHALLENGE: &str = "Basic realm=\"mjpegd\", charset=\"UTF-8\"";

type Digest = [u8; 32];

enum Secret {
    /// SHA-256 of `user:password`.
    Plain(Digest),
    /// A bcrypt hash of the password.
    Bcrypt(String),
}

struct User {
    name: String,
    secret: Secret,
}

/// Who may connect. Absent (no `--auth`, `--auth-file` or `--access-key`): everyone.
pub struct Auth {
    users: Vec<User>,
    keys: Vec<Digest>,
    salt: [u8; 16],
    verified: Mutex<HashSet<Digest>>,
    slots: Semaphore,
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
        if users.is_empty() && keys.is_empty() {
            return Ok(None);
        }
        let mut salt = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
            .map_err(|_| anyhow::anyhow!("no randomness"))?;
        Ok(Some(Auth {
            users,
            keys,
            salt,
            verified: Mutex::new(HashSet::new()),
            slots: Semaphore::new(VERIFY_SLOTS),
        }))
    }

    /// Number of users and of access keys, for the startup log.
    pub fn summary(&self) -> (usize, usize) {
        (self.users.len(), self.keys.len())
    }

    /// Whether `request` may proceed.
    pub async fn allows(&self, request: &Request) -> bool {
        if let Some(key) = request.param("key") {
            if !self.keys.is_empty() {
                let candidate = sha256(&[key.as_bytes()]);
                // Compare with every key, without stopping early.
                let mut ok = subtle::Choice::from(0);
                for k in &self.keys {
                    ok |= k.ct_eq(&candidate);
                }
                if bool::from(ok) {
                    return true;
                }
            }
        }
        let Some(credentials) = request.header("authorization").and_then(basic_credentials) else {
            return false;
        };
        self.check_basic(&credentials).await
    }

    async fn check_basic(&self, credentials: &[u8]) -> bool {
        let plain = sha256(&[credentials]);
        let mut ok = subtle::Choice::from(0);
        for u in &self.users {
            if let Secret::Plain(d) = &u.secret {
                ok |= d.ct_eq(&plain);
            }
        }
        if bool::from(ok) {
            return true;
        }
        let Some(colon) = credentials.iter().position(|&b| b == b':') else {
            return false;
        };
        let (name, password) = (&credentials[..colon], &credentials[colon + 1..]);
        let hash = self.users.iter().find_map(|u| match &u.secret {
            Secret::Bcrypt(h) if u.name.as_bytes() == name => Some(h.clone()),
            _ => None,
        });
        // An unknown user is checked against another user's hash all the same, and refused: it costs the
        // same time as a wrong password (no user enumeration by timing).
        let known = hash.is_some();
        let Some(hash) = hash.or_else(|| {
            self.users.iter().find_map(|u| match &u.secret {
                Secret::Bcrypt(h) => Some(h.clone()),
                _ => None,
            })
        }) else {
            return false;
        };
        let remembered = sha256(&[&self.salt, credentials]);
        if self.verified.lock().unwrap().contains(&remembered) {
            return true;
        }
        let Ok(_slot) = self.slots.acquire().await else {
            return false;
        };
        let password = password.to_vec();
        let verified =
            tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false)
                && known;
        if verified {
            let mut set = self.verified.lock().unwrap();
            if set.len() >= CACHE_CAP {
                set.clear();
            }
            set.insert(remembered);
        }
        verified
    }
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
        if !(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$"))
            || bcrypt::verify("", hash).is_err()
        {
            bail!(
                "line {}: user {name:?} has no bcrypt hash (make one with `mjpegd hash-password` or `htpasswd -nB {name}`)",
                n + 1
            );
        }
        users.push(User {
            name: name.to_string(),
            secret: Secret::Bcrypt(hash.to_string()),
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
        let auth = Auth::from_flags(Some("alice:pw"), Some(&dir), &keys)
            .unwrap()
            .unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert!(auth.allows(&request(Some(&basic("alice:pw")), &[])).await);
        assert!(auth.allows(&request(Some(&basic("bob:s3cret")), &[])).await);
        // Second time from the cache.
        assert!(auth.allows(&request(Some(&basic("bob:s3cret")), &[])).await);
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
            assert!(
                !auth.allows(&request(Some(&basic(bad)), &[])).await,
                "{bad}"
            );
        }
        assert!(!auth.allows(&request(Some("Bearer x"), &[])).await);
        assert!(!auth.allows(&request(Some("Basic !!!"), &[])).await);
        assert!(!auth.allows(&request(None, &[])).await);
        assert!(
            auth.allows(&request(None, &[("key", "0123456789abcdef")]))
                .await
        );
        assert!(
            !auth
                .allows(&request(None, &[("key", "0123456789abcdeF")]))
                .await
        );
    }

    #[test]
    fn bad_flags_and_files_are_refused() {
        assert!(Auth::from_flags(Some("nocolon"), None, &[]).is_err());
        assert!(Auth::from_flags(Some(":pw"), None, &[]).is_err());
        assert!(Auth::from_flags(None, None, &["short".into()]).is_err());
        assert!(Auth::from_flags(None, None, &[]).unwrap().is_none());
        assert!(parse_users("bob:{SHA}abc\n").is_err());
        assert!(parse_users("# nobody\n").is_err());
    }
}
