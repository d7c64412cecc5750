//! HTTPS: rustls (ring provider, TLS 1.2 and 1.3) over the same connections and routes.
//!
//! The certificate chain and key are PEM files (`--tls-cert`, `--tls-key`); SIGHUP reloads them (`reload.rs`) (a renewed
//! certificate takes effect for new connections, existing ones keep theirs; a reload that fails keeps the
//! old pair and says why). The handshake and the first request head share one `--head-timeout` from
//! accept, so a client that opens a connection and says nothing costs no more over TLS than over plain
//! HTTP. rustls's own warnings about odd client hellos are kept out of the log by default (see main.rs):
//! any client could write them.
//!
//! A stream over TLS is still one write per part into rustls, which encrypts it into 16 KiB records in its
//! own buffer, written with one writev and flushed with the part (`http/stream.rs`): zero copy ends at TLS.
//! The send queue the delivery policies look at is the TCP socket's, in ciphertext ([`Transport::wire_len`]).
//! Cipher suites follow the server's preference, AES-128-GCM first, unless the client lists ChaCha20 first
//! ([`provider`]; what it saves: bench/README.md, "HTTPS").

use crate::net::Transport;
use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::Acceptor;
use rustls::ServerConfig;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

/// The TLS side of the server: where the certificate lives and the acceptor built from it.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    configs: RwLock<Configs>,
}

/// The same certificate with two suite orders: the server's (AES-128-GCM first) for most clients, the
/// client's for one that lists ChaCha20-Poly1305 first, the sign of a device without AES instructions.
#[derive(Clone)]
struct Configs {
    server_order: Arc<ServerConfig>,
    client_order: Arc<ServerConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

impl Tls {
    /// Loads the certificate chain and key.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<Tls>> {
        let configs = configs(cert, key)?;
        Ok(Arc::new(Tls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            configs: RwLock::new(configs),
        }))
    }

    /// Reads the files again; on error the current certificate stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = configs(&self.cert, &self.key)?;
        *self.configs.write().unwrap() = fresh;
        Ok(())
    }

    /// The certificate chain's path.
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// The server side of a new connection's handshake: reads the client's hello, picks the suite order
    /// for it ([`Configs`]) and completes the handshake.
    pub async fn handshake(&self, socket: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let start = LazyConfigAcceptor::new(Acceptor::default(), socket).await?;
        let configs = self.configs.read().unwrap().clone();
        let chacha_first = start
            .client_hello()
            .cipher_suites()
            .first()
            .is_some_and(|s| {
                matches!(
                    s,
                    rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
                        | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                        | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
                )
            });
        let config = if chacha_first {
            configs.client_order
        } else {
            configs.server_order
        };
        start.into_stream(config).await
    }
}

fn configs(cert: &Path, key: &Path) -> anyhow::Result<Configs> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read --tls-cert {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad PEM in --tls-cert {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("no certificate in --tls-cert {}", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a private key from --tls-key {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and key do not make a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client_order = Arc::new(config.clone());
    config.ignore_client_order = true;
    Ok(Configs {
        server_order: Arc::new(config),
        client_order,
    })
}

/// ring's suites with AES-128-GCM first: of the suites a client offers, the server picks the first in this
/// order (`ignore_client_order`), unless the client lists ChaCha20-Poly1305 first ([`Configs`]). rustls
/// and OpenSSL clients list AES-256-GCM first; AES-128 has 10 rounds to its 14 and every frame is
/// encrypted once per client (what it saves: bench/README.md, "HTTPS").
pub fn provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| match suite.suite() {
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
            | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
            _ => 1,
        });
    provider
}

impl Transport for TlsStream<TcpStream> {
    fn tune_for_stream(&self, send_buffer: Option<usize>) {
        self.get_ref().0.tune_for_stream(send_buffer)
    }

    fn discard_unsent_on_close(&self) {
        self.get_ref().0.discard_unsent_on_close()
    }

    fn unsent_bytes(&self) -> Option<usize> {
        self.get_ref().0.unsent_bytes()
    }

    fn unsent_bytes_quick(&self) -> Option<usize> {
        self.get_ref().0.unsent_bytes_quick()
    }

    /// At most 16 KiB of plaintext a record, each with at most 29 bytes around it (TLS 1.2 AES-GCM: a
    /// 5-byte header, an 8-byte explicit nonce, a 16-byte tag; TLS 1.3: 22). Without it a part just
    /// written looked like more than a part queued, and every client seemed behind.
    fn wire_len(&self, len: usize) -> usize {
        len + len.div_ceil(16 * 1024) * 29
    }
}
