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
//! Cipher suites follow the client's preference (what it costs: bench/README.md, "HTTPS").

use crate::net::Transport;
use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The TLS side of the server: where the certificate lives and the acceptor built from it.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    acceptor: RwLock<TlsAcceptor>,
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
        let acceptor = acceptor(cert, key)?;
        Ok(Arc::new(Tls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            acceptor: RwLock::new(acceptor),
        }))
    }

    /// Reads the files again; on error the current certificate stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = acceptor(&self.cert, &self.key)?;
        *self.acceptor.write().unwrap() = fresh;
        Ok(())
    }

    /// The certificate chain's path.
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.read().unwrap().clone()
    }
}

fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read --tls-cert {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad PEM in --tls-cert {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("no certificate in --tls-cert {}", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a private key from --tls-key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and key do not make a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
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
