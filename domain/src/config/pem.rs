//! PEM texts of a handler's TLS: a CA bundle and a client certificate with
//! its key, read the same way when `hooks validate` checks a CA file and
//! when a call builds its client.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What is wrong with a PEM text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("is not PEM: {0}")]
    Malformed(String),
    #[error("holds no certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    #[error("holds no private key (-----BEGIN PRIVATE KEY-----)")]
    NoKey,
}

/// The certificates of a PEM bundle, in order: at least one.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Malformed(e.to_string()))?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(certs)
}

/// The private key of a PEM text (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => PemError::NoKey,
        other => PemError::Malformed(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A self-signed certificate (EC P-256), for the format only.
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBfTCCASOgAwIBAgIUPW51R0kcGiUCAHiiVIs1et904hswCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJdGVzdC1jZXJ0MB4XDTI2MTIwMzE3MTAwNFoXDTM2MTEzMDE3
MTAwNFowFDESMBAGA1UEAwwJdGVzdC1jZXJ0MFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAEIEJNk1aZWRBVDUtZXn5PFWxyLyc0eypf4dk1MS8kCu/sJh69FVu9G8kX
0VrRbsK9h9DXV7R+rzGE9etu/k/oEKNTMFEwHQYDVR0OBBYEFHhMYmRjczj+a4vp
/0A31MLn6HnVMB8GA1UdIwQYMBaAFHhMYmRjczj+a4vp/0A31MLn6HnVMA8GA1Ud
EwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgRT4jmM7apBR2RzVVb0rqI2Zd
N0nBzSSZeQVSRfa12OYCIQCh6Asyf5vwV9wXmnS/lAfQUG+WfVjxA6RQWt5Csdo8
9g==
-----END CERTIFICATE-----
";

    #[test]
    fn a_bundle_holds_certificates_and_nothing_else_passes() {
        assert_eq!(certificates(CERT.as_bytes()).map(|c| c.len()), Ok(1));
        let two = format!("{CERT}{CERT}");
        assert_eq!(certificates(two.as_bytes()).map(|c| c.len()), Ok(2));
        assert_eq!(certificates(b"hello"), Err(PemError::NoCertificate));
        assert_eq!(
            private_key(CERT.as_bytes()).err(),
            Some(PemError::NoKey),
            "a certificate is not a key"
        );
    }
}
