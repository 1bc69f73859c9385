//! The HTTP target: a POST of the request JSON with Standard Webhooks headers,
//! through one shared client that never follows redirects, never uses a proxy,
//! reads at most a fixed number of bytes, and reaches only allowed addresses.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use chrono::Utc;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue, LOCATION, RETRY_AFTER};

use super::network::{ForbiddenAddress, GuardedResolver, NetworkPolicy};
use super::{Call, CallError, FailureKind, Reply, Secrets};
use crate::config::HttpTarget;
use crate::signature::SigningKey;

/// Settings of the shared HTTP client.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub policy: NetworkPolicy,
    /// Longest answer read; a longer 2xx answer is a failure.
    pub max_response_bytes: usize,
    pub connect_timeout: Duration,
    pub secrets: Secrets,
}

/// Public addresses only, no secrets.
impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            policy: NetworkPolicy::public_only(),
            max_response_bytes: 256 * 1024,
            connect_timeout: Duration::from_secs(5),
            secrets: Secrets::default(),
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
    connect_timeout: Duration,
    policy: Arc<NetworkPolicy>,
    max_response_bytes: usize,
    secrets: Secrets,
}

impl HttpCaller {
    pub fn new(opts: HttpOptions) -> Result<Self, reqwest::Error> {
        Ok(HttpCaller {
            client: Arc::default(),
            connect_timeout: opts.connect_timeout,
            policy: Arc::new(opts.policy),
            max_response_bytes: opts.max_response_bytes,
            secrets: opts.secrets,
        })
    }

    /// The shared client, built once (a failed build is tried again at the
    /// next call: the call fails as a connection would, and is retried).
    fn client(&self) -> Result<&reqwest::Client, CallError> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let built = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(GuardedResolver {
                policy: self.policy.clone(),
            })
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("provisioning-hooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                CallError::new(
                    FailureKind::Connect,
                    format!("cannot build the HTTP client: {e}"),
                )
            })?;
        Ok(self.client.get_or_init(|| built))
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
            .client()?
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
}
