//! A real Digest server for relay tests: Debian's apache2 with mod_auth_digest, started by the test on a
//! free loopback port with its own configuration in a temporary folder (`-f CONF -DFOREGROUND`, no
//! system service), and stopped by its pid when dropped. `scripts/setup.sh` installs it.
#![allow(dead_code)]

use super::TempDir;
use md5::{Digest as _, Md5};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const APACHE: &str = "/usr/sbin/apache2";

/// What apache serves behind Digest (realm "cam", user `cam`).
pub struct ApacheSetup<'a> {
    pub password: &'a str,
    /// Seconds a nonce lives (`AuthDigestNonceLifetime`).
    pub nonce_lifetime: u32,
    /// Files in its document root.
    pub files: &'a [(&'a str, &'a [u8])],
    /// `ProxyPass PATH URL`: an upstream stream behind the same Digest.
    pub proxy: Option<(&'a str, String)>,
}

pub struct Apache {
    pub addr: SocketAddr,
    child: Child,
    pub dir: TempDir,
}

impl Apache {
    pub fn start(name: &str, setup: ApacheSetup) -> Apache {
        assert!(
            std::path::Path::new(APACHE).exists(),
            "{APACHE} is missing: scripts/setup.sh installs apache2"
        );
        let dir = TempDir::new(&format!("apache-{name}"));
        let root = dir.0.join("www");
        std::fs::create_dir_all(&root).unwrap();
        for (file, bytes) in setup.files {
            std::fs::write(root.join(file), bytes).unwrap();
        }
        let ha1: String = Md5::digest(format!("cam:cam:{}", setup.password).as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(dir.0.join("users"), format!("cam:cam:{ha1}\n")).unwrap();
        let port = super::free_port();
        let d = dir.0.display();
        // Apache drops root for its workers: they must read the files.
        for p in [dir.0.clone(), root.clone()] {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755));
        }
        let proxy = match &setup.proxy {
            Some((path, url)) => format!("ProxyPass {path} {url} flushpackets=on\n"),
            None => String::new(),
        };
        let user = if unsafe { libc::geteuid() } == 0 {
            "User nobody\nGroup nogroup\n"
        } else {
            ""
        };
        let conf = format!(
            r#"ServerRoot /usr/lib/apache2
ServerName 127.0.0.1
LoadModule mpm_event_module modules/mod_mpm_event.so
LoadModule authn_core_module modules/mod_authn_core.so
LoadModule authn_file_module modules/mod_authn_file.so
LoadModule authz_core_module modules/mod_authz_core.so
LoadModule authz_user_module modules/mod_authz_user.so
LoadModule auth_digest_module modules/mod_auth_digest.so
LoadModule mime_module modules/mod_mime.so
LoadModule proxy_module modules/mod_proxy.so
LoadModule proxy_http_module modules/mod_proxy_http.so
{user}Listen 127.0.0.1:{port}
PidFile {d}/apache.pid
Mutex file:{d}
ErrorLog {d}/error.log
LogFormat "%r %>s [%{{Authorization}}i] [%{{WWW-Authenticate}}o]" digest
CustomLog {d}/access.log digest
DocumentRoot {d}/www
TypesConfig /dev/null
AddType image/jpeg .jpg
KeepAlive On
MaxKeepAliveRequests 1000
{proxy}<Location />
    AuthType Digest
    AuthName "cam"
    AuthDigestProvider file
    AuthUserFile {d}/users
    AuthDigestNonceLifetime {lifetime}
    Require valid-user
</Location>
"#,
            lifetime = setup.nonce_lifetime,
        );
        let conf_path = dir.0.join("apache.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(APACHE)
            .arg("-f")
            .arg(&conf_path)
            .arg("-DFOREGROUND")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("apache2 starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let apache = Apache { addr, child, dir };
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < until,
                "apache did not listen: {}",
                std::fs::read_to_string(apache.dir.0.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        apache
    }

    pub fn url(&self, userinfo: &str, path: &str) -> String {
        format!("http://{userinfo}@{}{path}", self.addr)
    }

    /// The access log's lines: `GET /path HTTP/1.1 STATUS [Authorization] [WWW-Authenticate]`.
    pub fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.0.join("access.log")
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        // SIGTERM to the parent by its pid (it stops its workers), then reap it.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
