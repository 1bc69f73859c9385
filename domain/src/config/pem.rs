//! PEM texts of a handler's TLS: a CA bundle and a client certificate with
//! its key, read the same way when `hooks validate` checks a CA file and
//! when a call builds its client.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What is wrong with a PEM text. The text may be a private key: no
/// message ever quotes it (the PEM parser's own errors do, byte by byte, so
/// they are never passed on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("is not PEM: {0}")]
    Malformed(&'static str),
    #[error("holds no certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    #[error("holds no private key (-----BEGIN PRIVATE KEY-----)")]
    NoKey,
    #[error(
        "holds a certificate (number {0}) that cannot be a trust anchor: it is not a valid X.509 certificate"
    )]
    NotAnAnchor(usize),
    #[error(
        "is an encrypted private key, which cannot be used without its passphrase: store it decrypted (`openssl pkcs8 -topk8 -nocrypt -in key.pem`)"
    )]
    Encrypted,
}

/// The parser's error, said without the input it quotes.
fn malformed(e: &rustls_pki_types::pem::Error) -> PemError {
    use rustls_pki_types::pem::Error;
    PemError::Malformed(match e {
        Error::MissingSectionEnd { .. } => "a -----BEGIN line has no -----END line",
        Error::IllegalSectionStart { .. } => {
            "a -----BEGIN line is malformed (is the text on one line, or are its line breaks escaped as \\n?)"
        }
        Error::Base64Decode(_) => {
            "a section's body is not base64 (are its line breaks escaped as \\n?)"
        }
        _ => "it cannot be read",
    })
}

/// The certificates of a PEM bundle, in order: at least one.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| malformed(&e))?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(certs)
}

/// The certificates of a CA bundle, each one usable as a trust anchor:
/// what the endpoint's certificate will be checked against.
pub fn trust_anchors(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = certificates(pem)?;
    if let Some(i) = certs
        .iter()
        .position(|c| webpki::anchor_from_trusted_cert(c).is_err())
    {
        return Err(PemError::NotAnAnchor(i + 1));
    }
    Ok(certs)
}

/// The private key of a PEM text (PKCS#8, PKCS#1 or SEC1, unencrypted).
pub fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, PemError> {
    let has = |marker: &[u8]| pem.windows(marker.len()).any(|w| w == marker);
    if has(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || has(b"Proc-Type: 4,ENCRYPTED") {
        return Err(PemError::Encrypted);
    }
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => PemError::NoKey,
        other => malformed(&other),
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
        assert_eq!(trust_anchors(CERT.as_bytes()).map(|c| c.len()), Ok(1));
        // PEM-wrapped bytes that are no certificate.
        let junk = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        assert_eq!(certificates(junk.as_bytes()).map(|c| c.len()), Ok(1));
        let both = format!("{CERT}{junk}");
        assert_eq!(
            trust_anchors(both.as_bytes()),
            Err(PemError::NotAnAnchor(2))
        );
        let two = format!("{CERT}{CERT}");
        assert_eq!(certificates(two.as_bytes()).map(|c| c.len()), Ok(2));
        assert_eq!(certificates(b"hello"), Err(PemError::NoCertificate));
        assert_eq!(
            private_key(CERT.as_bytes()).err(),
            Some(PemError::NoKey),
            "a certificate is not a key"
        );
    }

    /// A key pasted on one line (line breaks as spaces or as `\n`), cut
    /// short, or encrypted: each a clear reason that quotes none of it.
    #[test]
    fn a_broken_key_is_named_without_quoting_it() {
        let secret = "MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMo4RNhrnVk0kvRTZ3DpvB7h5V";
        let key = format!("-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n");
        assert!(private_key(key.as_bytes()).is_ok());
        let broken = [
            key.replace('\n', " "),
            key.replace('\n', "\\n"),
            key.replace("-----END PRIVATE KEY-----\n", ""),
            key.replace(&secret[..8], "not*b64!"),
        ];
        for text in &broken {
            let e = private_key(text.as_bytes()).unwrap_err();
            let said = e.to_string();
            assert!(
                matches!(e, PemError::Malformed(_) | PemError::NoKey),
                "{said}"
            );
            for part in [&secret[8..24], &secret[30..50]] {
                assert!(!said.contains(part), "the key is quoted: {said}");
            }
            // Nor as the parser's list of byte values.
            assert!(!said.contains("45, 45"), "{said}");
        }
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert_eq!(private_key(encrypted.as_bytes()), Err(PemError::Encrypted));
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nMIIB\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(private_key(legacy.as_bytes()), Err(PemError::Encrypted));
    }
}
