//! TLS to an `https://` server: the system's root certificates plus an
//! optional CA file (`--ca-file`), and optionally a name to verify the
//! server's certificate for other than the URL's host
//! (`--tls-server-name`; local agents dial the server's loopback address).
//! The same configuration serves the WebSocket and package downloads.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;

/// The client configuration for the server; `ca_files` add trusted
/// certificates, `server_name` replaces the name verified.
pub fn client_config(ca_files: &[PathBuf], server_name: Option<&str>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        let _ = roots.add(c);
    }
    for path in ca_files {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate (PEM 'BEGIN CERTIFICATE') in the file", path.display()));
        }
        for c in certs {
            roots.add(c).map_err(|e| format!("{}: unusable certificate: {e}", path.display()))?;
        }
    }
    if roots.is_empty() {
        return Err("no trusted certificates: the system has no root certificates; give --ca-file".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let roots = Arc::new(roots);
    let config = match server_name {
        None => builder.with_root_certificates(roots).with_no_client_auth(),
        Some(name) => {
            let name =
                ServerName::try_from(name.to_string()).map_err(|_| format!("--tls-server-name {name}: not a host name or address"))?;
            let inner = WebPkiServerVerifier::builder_with_provider(roots, provider).build().map_err(|e| format!("TLS: {e}"))?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(NamedVerifier { inner, name })).with_no_client_auth()
        }
    };
    Ok(Arc::new(config))
}

/// Full WebPKI verification, for a fixed name rather than the one dialled.
#[derive(Debug)]
struct NamedVerifier {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NamedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
