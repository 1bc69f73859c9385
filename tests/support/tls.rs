//! A TLS endpoint that requires a client certificate, and the certificate
//! authorities that make its certificates (rcgen): for the tests and the
//! benchmark of handlers behind mutual TLS.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// A certificate authority of the test.
#[derive(Debug)]
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("the test's TLS set-up");
        let mut params =
            CertificateParams::new(Vec::<String>::new()).expect("the test's TLS set-up");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let pem = params
            .self_signed(&key)
            .expect("the test's TLS set-up")
            .pem();
        Ca { params, key, pem }
    }

    /// A certificate and its key, for a server (of `127.0.0.1`) or a
    /// client; `expired`: valid in 2020 only.
    pub fn issue(&self, name: &str, client: bool, expired: bool) -> (String, String) {
        let key = KeyPair::generate().expect("the test's TLS set-up");
        let sans = if client {
            vec![]
        } else {
            vec!["127.0.0.1".to_owned()]
        };
        let mut params = CertificateParams::new(sans).expect("the test's TLS set-up");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2020, 12, 31);
        }
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .expect("the test's TLS set-up");
        (cert.pem(), key.serialize_pem())
    }
}

/// An HTTPS endpoint that requires a client certificate of `clients`; it
/// answers every request 200 `{}` and counts handshakes and requests.
#[derive(Debug)]
pub struct Endpoint {
    pub url: String,
    pub handshakes: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
}

impl Endpoint {
    pub async fn start(server: &(String, String), clients: &Ca) -> Endpoint {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(
                CertificateDer::from_pem_slice(clients.pem.as_bytes())
                    .expect("the test's TLS set-up"),
            )
            .expect("the test's TLS set-up");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("the test's TLS set-up");
        let chain = CertificateDer::pem_slice_iter(server.0.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("the test's TLS set-up");
        let key =
            PrivateKeyDer::from_pem_slice(server.1.as_bytes()).expect("the test's TLS set-up");
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the test's TLS set-up")
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .expect("the test's TLS set-up");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the test's TLS set-up");
        let url = format!(
            "https://{}/hooks",
            listener.local_addr().expect("the test's TLS set-up")
        );
        let (handshakes, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (h, r) = (handshakes.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, h, r) = (acceptor.clone(), h.clone(), r.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        h.fetch_add(1, Ordering::SeqCst);
                        serve(tls, &r).await;
                    }
                });
            }
        });
        Endpoint {
            url,
            handshakes,
            requests,
        }
    }
}

/// HTTP/1.1 with keep-alive: each request answered 200 `{}`.
async fn serve(
    stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    requests: &AtomicUsize,
) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            match stream.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        if stream.get_mut().write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        let _ = stream.get_mut().flush().await;
    }
}
