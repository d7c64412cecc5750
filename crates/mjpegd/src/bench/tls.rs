//! The load tool's TLS client, for `https://` URLs: rustls (ring, the server's own provider), TLS 1.2 and
//! 1.3, trusting the certificates of `--cacert`, or with `--insecure` none at all (loopback benchmarks of a
//! self-signed server, where what is measured is the cost of the bytes, not who signed the certificate).

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// How the bench checks the server's certificate.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// Only chains to the certificates in this PEM file.
    CaFile(&'a Path),
    /// Anything: the handshake's signatures are still checked, the chain and name are not.
    Insecure,
}

/// The client configuration every TLS client of one run shares (so their session state is shared too).
pub fn client_config(trust: Trust<'_>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = match trust {
        Trust::CaFile(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read --cacert {}", path.display()))?
            {
                let cert =
                    cert.with_context(|| format!("bad PEM in --cacert {}", path.display()))?;
                roots.add(cert).with_context(|| {
                    format!("unusable certificate in --cacert {}", path.display())
                })?;
            }
            if roots.is_empty() {
                anyhow::bail!("no certificate in --cacert {}", path.display());
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name the certificate is checked against: the URL's host (an IP address or a DNS name).
pub fn server_name(host: &str) -> anyhow::Result<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string()).map_err(|e| anyhow::anyhow!("{host}: {e}"))
}

/// `--insecure`: accepts any certificate, but still checks that the server holds its key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
