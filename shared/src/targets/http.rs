//! The HTTP target: a POST of the request JSON with Standard Webhooks headers,
//! through one shared client that never follows redirects, never uses a proxy,
//! reads at most a fixed number of bytes, and reaches only allowed addresses.
//! A handler with `tls` settings (a client certificate, a private CA) is
//! called through a client of its TLS identity, built once and shared by
//! every handler with the same identity, with the same rules.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use chrono::Utc;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue, LOCATION, RETRY_AFTER};

use super::network::{ForbiddenAddress, GuardedResolver, NetworkPolicy};
use super::{Call, CallError, FailureKind, Reply, Secrets};
use crate::config::pem;
use crate::config::{HttpTarget, TlsSettings, TrustSource};
use crate::signature::SigningKey;

/// Distinct TLS identities kept at once; past it the clients start over
/// (a warm process that loaded many revisions), never an unbounded map.
const MAX_TLS_CLIENTS: usize = 64;
/// The largest CA bundle or client certificate read.
const MAX_PEM_BYTES: usize = 1 << 20;

/// Settings of the shared HTTP client.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub policy: NetworkPolicy,
    /// Longest answer read; a longer 2xx answer is a failure.
    pub max_response_bytes: usize,
    pub connect_timeout: Duration,
    pub secrets: Secrets,
    /// Where CA files of `tls = { ca = { file } }` are read (the scripts
    /// folder: the bundle's files); `None`: no file can be named.
    pub bundle_dir: Option<PathBuf>,
}

/// Public addresses only, no secrets.
impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            policy: NetworkPolicy::public_only(),
            max_response_bytes: 256 * 1024,
            connect_timeout: Duration::from_secs(5),
            secrets: Secrets::default(),
            bundle_dir: None,
        }
    }
}

/// Calls HTTP handlers. Cheap to clone: clones share one connection pool.
///
/// The client is built at the first call, not with the caller: building it
/// loads the platform's root certificates (a few milliseconds at a cold
/// start), which ingest needs only for a decision, not for `POST /events`.
#[derive(Debug, Clone)]
pub struct HttpCaller {
    client: Arc<std::sync::OnceLock<reqwest::Client>>,
    /// One client per TLS identity (the hash of its certificate, key and
    /// CA bundle): handlers that share one share its connections. Reached
    /// by the handler's settings, so that a call reads and hashes no PEM
    /// (the secret's values and the bundle do not change in a process).
    tls_clients: Arc<Mutex<TlsClients>>,
    connect_timeout: Duration,
    policy: Arc<NetworkPolicy>,
    max_response_bytes: usize,
    secrets: Secrets,
    bundle_dir: Option<PathBuf>,
}

impl HttpCaller {
    pub fn new(opts: HttpOptions) -> Result<Self, reqwest::Error> {
        Ok(HttpCaller {
            client: Arc::default(),
            tls_clients: Arc::default(),
            connect_timeout: opts.connect_timeout,
            policy: Arc::new(opts.policy),
            max_response_bytes: opts.max_response_bytes,
            secrets: opts.secrets,
            bundle_dir: opts.bundle_dir,
        })
    }

    /// The rules every client follows: no redirect, no proxy, only the
    /// addresses the policy allows.
    fn builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(GuardedResolver {
                policy: self.policy.clone(),
            })
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("provisioning-hooks/", env!("CARGO_PKG_VERSION")))
    }

    /// The shared client, built once (a failed build is tried again at the
    /// next call: the call fails as a connection would, and is retried).
    fn client(&self) -> Result<&reqwest::Client, CallError> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let built = self.builder().build().map_err(|e| {
            CallError::new(
                FailureKind::Connect,
                format!("cannot build the HTTP client: {e}"),
            )
        })?;
        Ok(self.client.get_or_init(|| built))
    }

    /// The client of `target`: the shared one, or the one of its TLS
    /// identity (built at its first call, from the secret's values).
    fn client_for(&self, target: &HttpTarget) -> Result<reqwest::Client, CallError> {
        let Some(tls) = &target.tls else {
            return self.client().cloned();
        };
        let mut clients = self.tls_clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients
            .by_settings
            .get(tls)
            .and_then(|key| clients.by_identity.get(key))
        {
            return Ok(c.clone());
        }
        let identity = self.tls_identity(tls)?;
        let key = identity.key();
        let client = match clients.by_identity.get(&key) {
            Some(c) => c.clone(),
            None => identity.client(self.builder())?,
        };
        if clients.by_identity.len() >= MAX_TLS_CLIENTS
            || clients.by_settings.len() >= MAX_TLS_CLIENTS
        {
            *clients = TlsClients::default();
        }
        clients.by_settings.insert(tls.clone(), key);
        clients.by_identity.insert(key, client.clone());
        Ok(client)
    }

    /// The PEM texts of `tls`, read from the secret and the bundle, each
    /// checked (a bad one is a configuration failure naming its source).
    fn tls_identity(&self, tls: &TlsSettings) -> Result<TlsIdentity, CallError> {
        let bad = |what: String| CallError::new(FailureKind::Config, what);
        let client = match &tls.client {
            None => None,
            Some(c) => {
                let cert = self.secrets.resolve(&c.cert)?;
                let key = self.secrets.resolve(&c.key)?;
                pem::certificates(cert.as_bytes())
                    .map_err(|e| bad(format!("the client certificate {} {e}", c.cert)))?;
                pem::private_key(key.as_bytes())
                    .map_err(|e| bad(format!("the client key {} {e}", c.key)))?;
                Some((cert, key))
            }
        };
        let ca = match &tls.ca {
            None => None,
            Some(TrustSource::Secret(r)) => Some((self.secrets.resolve(r)?, r.to_string())),
            Some(TrustSource::File(path)) => Some((self.ca_file(path)?, format!("file {path}"))),
        };
        if let Some((pem_text, from)) = &ca {
            pem::certificates(pem_text.as_bytes())
                .map_err(|e| bad(format!("the CA bundle ({from}) {e}")))?;
        }
        Ok(TlsIdentity {
            client,
            ca: ca.map(|(text, _)| text),
        })
    }

    /// A CA file of the bundle, within [`MAX_PEM_BYTES`], not leading out
    /// of the folder.
    fn ca_file(&self, path: &str) -> Result<String, CallError> {
        let bad = |what: String| CallError::new(FailureKind::Config, what);
        let Some(dir) = &self.bundle_dir else {
            return Err(bad(format!(
                "CA file {path}: no bundle folder is set (HOOKS_SCRIPTS_DIR)"
            )));
        };
        let file = dir.join(path);
        match (std::fs::canonicalize(&file), std::fs::canonicalize(dir)) {
            (Ok(real), Ok(d)) if real.starts_with(&d) => {}
            (Ok(_), Ok(_)) => {
                return Err(bad(format!(
                    "CA file {path} leads outside {}",
                    dir.display()
                )));
            }
            (Err(e), _) | (_, Err(e)) => return Err(bad(format!("CA file {path}: {e}"))),
        }
        // At most one byte past the limit is read: a large file is not
        // read whole to learn that it is too large.
        let mut text = Vec::new();
        std::fs::File::open(&file)
            .and_then(|f| {
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(f, MAX_PEM_BYTES as u64 + 1),
                    &mut text,
                )
            })
            .map_err(|e| bad(format!("CA file {path}: {e}")))?;
        if text.len() > MAX_PEM_BYTES {
            return Err(bad(format!(
                "CA file {path} is larger than {MAX_PEM_BYTES} bytes"
            )));
        }
        String::from_utf8(text).map_err(|_| bad(format!("CA file {path} is not PEM text")))
    }

    #[tracing::instrument(skip_all, fields(handler.id = call.handler.id, url = %target.url))]
    pub async fn call(&self, target: &HttpTarget, call: &Call<'_>) -> Reply {
        match tokio::time::timeout(call.timeout, self.send(target, call)).await {
            Ok(reply) => reply,
            Err(_) => Reply::failed(timed_out(call.timeout)),
        }
    }

    async fn send(&self, target: &HttpTarget, call: &Call<'_>) -> Reply {
        // A URL that names an address is never resolved: check it here.
        let literal = match target.url.host() {
            Some(url::Host::Ipv4(a)) => Some(a.into()),
            Some(url::Host::Ipv6(a)) => Some(a.into()),
            _ => None,
        };
        if let Some(ip) = literal
            && let Err(e) = self.policy.check(ip)
        {
            return Reply::failed(CallError::new(FailureKind::Refused, e.to_string()));
        }
        let request = match self.build(target, call) {
            Ok(r) => r,
            Err(e) => return Reply::failed(e),
        };
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Reply::failed(classify(&e, call.timeout)),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let declared_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_media_type);
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (body, truncated) = match read_capped(response, self.max_response_bytes).await {
            Ok(b) => b,
            Err(e) => {
                let mut reply = Reply::failed(classify(&e, call.timeout));
                reply.status = Some(status.as_u16());
                return reply;
            }
        };
        let code = status.as_u16();
        let error = if status.is_success() {
            truncated.then(|| {
                CallError::new(
                    FailureKind::TooLarge,
                    format!(
                        "response body larger than {} bytes",
                        self.max_response_bytes
                    ),
                )
            })
        } else if status.is_redirection() {
            Some(CallError::new(
                FailureKind::Redirect,
                format!(
                    "HTTP {code}: redirect to {} not followed; point the handler at the final URL",
                    location.as_deref().unwrap_or("(no Location)")
                ),
            ))
        } else {
            Some(CallError {
                kind: FailureKind::Status,
                message: format!("HTTP {status}"),
                retry_after,
            })
        };
        Reply {
            status: Some(code),
            body,
            error,
            declared_json,
        }
    }

    fn build(
        &self,
        target: &HttpTarget,
        call: &Call<'_>,
    ) -> Result<reqwest::RequestBuilder, CallError> {
        let timestamp = Utc::now().timestamp();
        let mut req = self
            .client_for(target)?
            .post(target.url.clone())
            // No per-request timeout: `call` bounds the whole exchange (the
            // send and the capped read) with one timer.
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", call.webhook_id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(t) = call.traceparent {
            req = req.header("traceparent", t);
        }
        if let Some(secret) = &target.secret {
            let value = self.secrets.resolve(secret)?;
            let key = SigningKey::parse(&value).map_err(|e| {
                CallError::new(
                    FailureKind::Config,
                    format!("secret {secret} is not a Standard Webhooks key (whsec_…): {e}"),
                )
            })?;
            req = req.header(
                "webhook-signature",
                key.sign(call.webhook_id, timestamp, &call.body),
            );
        }
        for (name, source) in &target.headers {
            let value = self.secrets.value(source)?;
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                CallError::new(FailureKind::Config, format!("invalid header name `{name}`"))
            })?;
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                CallError::new(
                    FailureKind::Config,
                    format!("the value of header `{name}` is not a valid header value"),
                )
            })?;
            value.set_sensitive(matches!(source, crate::config::ValueSource::Secret(_)));
            req = req.header(name, value);
        }
        Ok(req.body(call.body.clone()))
    }
}

/// The TLS clients, by identity, and the identity of each handler setting.
#[derive(Debug, Default)]
struct TlsClients {
    by_settings: HashMap<TlsSettings, [u8; 32]>,
    by_identity: HashMap<[u8; 32], reqwest::Client>,
}

/// The PEM texts of one TLS identity.
struct TlsIdentity {
    /// The client certificate chain and its key.
    client: Option<(String, String)>,
    /// The CA bundle trusted instead of the public CAs.
    ca: Option<String>,
}

impl TlsIdentity {
    /// What tells identities apart: a hash of every text.
    fn key(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            self.client.as_ref().map(|c| c.0.as_str()),
            self.client.as_ref().map(|c| c.1.as_str()),
            self.ca.as_deref(),
        ] {
            let text = part.unwrap_or("");
            h.update((text.len() as u64).to_be_bytes());
            h.update(text.as_bytes());
        }
        h.finalize().into()
    }

    /// A client of `builder`'s rules with this identity.
    fn client(&self, mut builder: reqwest::ClientBuilder) -> Result<reqwest::Client, CallError> {
        let bad = |what: String| CallError::new(FailureKind::Config, what);
        if let Some((cert, key)) = &self.client {
            let identity = reqwest::Identity::from_pem(format!("{cert}\n{key}\n").as_bytes())
                .map_err(|e| {
                    bad(format!(
                        "the client certificate and key do not go together: {}",
                        error_chain(&e)
                    ))
                })?;
            builder = builder.identity(identity);
        }
        if let Some(ca) = &self.ca {
            let roots = reqwest::Certificate::from_pem_bundle(ca.as_bytes())
                .map_err(|e| bad(format!("the CA bundle: {}", error_chain(&e))))?;
            builder = builder.tls_certs_only(roots);
        }
        builder.build().map_err(|e| {
            bad(format!(
                "cannot build the handler's TLS client: {}",
                error_chain(&e)
            ))
        })
    }
}

fn timed_out(timeout: Duration) -> CallError {
    CallError::new(
        FailureKind::Timeout,
        format!("no answer within {}", humantime::format_duration(timeout)),
    )
}

/// Sorts a transport error into a failure kind, by its type, not its text.
fn classify(e: &reqwest::Error, timeout: Duration) -> CallError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(f) = s.downcast_ref::<ForbiddenAddress>() {
            return CallError::new(FailureKind::Refused, f.to_string());
        }
        source = s.source();
    }
    if e.is_timeout() {
        return timed_out(timeout);
    }
    if e.is_builder() {
        // The request itself is malformed (e.g. a header value): retrying cannot help.
        return CallError::new(FailureKind::Config, error_chain(e));
    }
    CallError::new(FailureKind::Connect, error_chain(e))
}

/// "outer: inner: root cause", without repeating a message already said.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Reads at most `cap` bytes; says whether more was there.
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<(Bytes, bool), reqwest::Error> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        // Read what fits for the excerpt, but do not wait for the rest.
        let mut buf = BytesMut::new();
        if let Some(chunk) = response.chunk().await? {
            buf.extend_from_slice(&chunk[..chunk.len().min(cap)]);
        }
        return Ok((buf.freeze(), true));
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if buf.len() + chunk.len() > cap {
            let room = cap - buf.len();
            buf.extend_from_slice(&chunk[..room]);
            return Ok((buf.freeze(), true));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((buf.freeze(), false))
}

/// `Retry-After` as seconds or an HTTP date, relative to `now`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `application/json`, `application/problem+json`, `text/json`…, with or
/// without parameters, in any case.
fn is_json_media_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((_, subtype)) = essence.split_once('/') else {
        return false;
    };
    subtype == "json" || subtype.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn a_ca_file_is_read_within_its_bound_and_inside_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("scripts")).unwrap();
        std::fs::write(dir.path().join("scripts/ok.pem"), "PEM").unwrap();
        std::fs::write(
            dir.path().join("scripts/big.pem"),
            vec![b'x'; MAX_PEM_BYTES + 1],
        )
        .unwrap();
        let caller = HttpCaller::new(HttpOptions {
            bundle_dir: Some(dir.path().to_owned()),
            ..HttpOptions::default()
        })
        .unwrap();
        assert_eq!(caller.ca_file("scripts/ok.pem").unwrap(), "PEM");
        let big = caller.ca_file("scripts/big.pem").unwrap_err();
        assert!(big.to_string().contains("is larger than"), "{big}");
        let none = caller.ca_file("scripts/none.pem").unwrap_err();
        assert!(none.to_string().contains("scripts/none.pem"), "{none}");
    }
}
