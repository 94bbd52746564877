//! TLS for the API server: a PEM certificate chain and private key loaded
//! into a rustls server configuration (HTTP/1.1), and the name local agents
//! verify the certificate for.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;

/// The certificates of a PEM file, in order.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate (PEM 'BEGIN CERTIFICATE') in the file", path.display()));
    }
    Ok(certs)
}

/// A server configuration from a PEM certificate chain (leaf first) and a
/// PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs = read_certs(cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| format!("{}: no usable private key (PEM PKCS#8, RSA or EC): {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{} and {} do not make a usable certificate and key: {e}", cert_path.display(), key_path.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The first of `candidates` (host names or IP addresses) the chain's leaf
/// certificate is valid for.
pub fn name_for(cert_path: &Path, candidates: &[String]) -> Option<String> {
    let certs = read_certs(cert_path).ok()?;
    let leaf = rustls::server::ParsedCertificate::try_from(certs.first()?).ok()?;
    candidates
        .iter()
        .find(|c| ServerName::try_from(c.as_str()).is_ok_and(|n| rustls::client::verify_server_name(&leaf, &n).is_ok()))
        .cloned()
}
