//! Who may watch: HTTP Basic auth and `?key=` tokens, checked before any route, aliases included.
//!
//! Passwords come from `--auth USER:PASSWORD` (compared in constant time, as SHA-256 digests so their
//! lengths do not leak either) or from `--auth-file`, a file of `user:bcrypt-hash` lines as `htpasswd -B`
//! writes them (or `mjpegd passwd USER`). A bcrypt check costs tens of milliseconds by design, so a
//! credential once verified is remembered (by digest, in a bounded set) and a browser polling `/state`
//! pays it once; unverified attempts run one at a time on a blocking thread, so a flood of wrong passwords
//! cannot take the server's threads.
//!
//! `?key=TOKEN` (`--key`) is for players that cannot send an Authorization header. Its risk: the token is
//! part of the URL, so it ends up in browser history, proxy logs and Referer headers; use a long random
//! token, TLS, and rotate it.

use super::request::Request;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// How many verified credentials are remembered.
const CACHE: usize = 1024;

enum Credential {
    /// SHA-256 of "user:password".
    Plain([u8; 32]),
    /// A bcrypt hash for this user.
    Bcrypt { user: String, hash: String },
}

/// The access rules of a server with authentication configured.
pub struct Access {
    credentials: Vec<Credential>,
    /// SHA-256 of each accepted `?key=` token.
    keys: Vec<[u8; 32]>,
    /// Digests of Authorization values already verified against a bcrypt hash.
    verified: Mutex<HashSet<[u8; 32]>>,
    /// One bcrypt verification at a time.
    slow_lane: tokio::sync::Semaphore,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Access {
    /// Builds the rules from the flags; `None` when no authentication is configured (everyone may watch).
    pub fn from_flags(
        auth: &[String],
        auth_file: Option<&Path>,
        keys: &[String],
    ) -> anyhow::Result<Option<Access>> {
        let mut credentials = Vec::new();
        for a in auth {
            anyhow::ensure!(a.contains(':'), "--auth expects USER:PASSWORD");
            credentials.push(Credential::Plain(digest(a.as_bytes())));
        }
        if let Some(path) = auth_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--auth-file {}: {e}", path.display()))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (user, hash) = line.split_once(':').ok_or_else(|| {
                    anyhow::anyhow!("{}:{}: expected user:hash", path.display(), n + 1)
                })?;
                anyhow::ensure!(
                    hash.starts_with("$2"),
                    "{}:{}: only bcrypt hashes are accepted (htpasswd -B, or mjpegd passwd)",
                    path.display(),
                    n + 1
                );
                credentials.push(Credential::Bcrypt {
                    user: user.to_string(),
                    hash: hash.to_string(),
                });
            }
        }
        let keys: Vec<[u8; 32]> = keys.iter().map(|k| digest(k.as_bytes())).collect();
        if credentials.is_empty() && keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(Access {
            credentials,
            keys,
            verified: Mutex::new(HashSet::new()),
            slow_lane: tokio::sync::Semaphore::new(1),
        }))
    }

    /// Whether `request` may be served.
    pub async fn allows(&self, request: &Request) -> bool {
        if let Some(key) = request.param("key") {
            let d = digest(key.as_bytes());
            // Check every key, without stopping early.
            let ok = self
                .keys
                .iter()
                .fold(0u8, |acc, k| acc | k.ct_eq(&d).unwrap_u8());
            if ok == 1 {
                return true;
            }
        }
        let Some(value) = request.header("authorization") else {
            return false;
        };
        let Some(encoded) = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let d = digest(&decoded);
        let plain = self.credentials.iter().fold(0u8, |acc, c| match c {
            Credential::Plain(expected) => acc | expected.ct_eq(&d).unwrap_u8(),
            Credential::Bcrypt { .. } => acc,
        });
        if plain == 1 {
            return true;
        }
        if self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&d)
        {
            return true;
        }
        let Ok(text) = String::from_utf8(decoded) else {
            return false;
        };
        let Some((user, password)) = text.split_once(':') else {
            return false;
        };
        let Some(hash) = self.credentials.iter().find_map(|c| match c {
            Credential::Bcrypt { user: u, hash } if u == user => Some(hash.clone()),
            _ => None,
        }) else {
            return false;
        };
        let Ok(_permit) = self.slow_lane.acquire().await else {
            return false;
        };
        let password = password.to_string();
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if ok {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified.len() >= CACHE {
                verified.clear();
            }
            verified.insert(d);
        }
        ok
    }
}

/// `mjpegd passwd USER`: reads a password from stdin and prints an `--auth-file` line.
pub fn passwd_line(user: &str, password: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        !user.is_empty() && !user.contains(':'),
        "a user name must not be empty or contain ':'"
    );
    let hash = bcrypt::hash(password, bcrypt::DEFAULT_COST)?;
    Ok(format!("{user}:{hash}"))
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
                .map(|a| ("authorization".to_string(), a.to_string()))
                .into_iter()
                .collect(),
        }
    }

    fn basic(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    #[tokio::test]
    async fn plain_bcrypt_and_keys() {
        let dir = std::env::temp_dir().join(format!("mjpegd-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("users");
        let line = passwd_line("bob", "hunter2").unwrap();
        std::fs::write(&file, format!("# users\n{line}\n")).unwrap();
        let access = Access::from_flags(&["alice:secret".into()], Some(&file), &["tok3n".into()])
            .unwrap()
            .unwrap();
        assert!(
            access
                .allows(&request(Some(&basic("alice:secret")), &[]))
                .await
        );
        assert!(
            !access
                .allows(&request(Some(&basic("alice:wrong")), &[]))
                .await
        );
        assert!(
            access
                .allows(&request(Some(&basic("bob:hunter2")), &[]))
                .await
        );
        assert!(
            access
                .allows(&request(Some(&basic("bob:hunter2")), &[]))
                .await,
            "cached"
        );
        assert!(
            !access
                .allows(&request(Some(&basic("bob:hunter3")), &[]))
                .await
        );
        assert!(!access.allows(&request(Some("Bearer x"), &[])).await);
        assert!(!access.allows(&request(None, &[])).await);
        assert!(access.allows(&request(None, &[("key", "tok3n")])).await);
        assert!(!access.allows(&request(None, &[("key", "tok3")])).await);
        assert!(Access::from_flags(&[], None, &[]).unwrap().is_none());
        assert!(Access::from_flags(&["nocolon".into()], None, &[]).is_err());
        std::fs::write(&file, "eve:plaintext\n").unwrap();
        assert!(
            Access::from_flags(&[], Some(&file), &[]).is_err(),
            "plain-text passwords in files are refused"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
