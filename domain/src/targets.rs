//! What calling a handler is, whatever its target (an HTTP endpoint or a
//! script shipped with the bundle): a [`Call`] made through an [`Invoker`],
//! answered with a [`Reply`], which the chain reads the same way whatever
//! the target; and the [`Secrets`] a call may use.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

pub use crate::config::is_reserved_secret;
use crate::config::{Handler, SecretRef, ValueSource};

/// One call of one handler.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub handler: &'a Handler,
    /// The request JSON.
    pub body: Bytes,
    /// Stable across retries, unique per event and handler.
    pub webhook_id: &'a str,
    /// The call's `traceparent` (a span of the event's trace).
    pub traceparent: Option<&'a str>,
    pub timeout: Duration,
}

/// Why a call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// No answer within the timeout.
    Timeout,
    /// The connection could not be made or broke.
    Connect,
    /// A status outside 2xx (3xx excepted).
    Status,
    /// A 3xx answer: redirects are never followed.
    Redirect,
    /// The answer was larger than the limit.
    TooLarge,
    /// The destination address is not allowed.
    Refused,
    /// The handler cannot be called as configured (missing secret, script not found…).
    Config,
    /// The script exited with a non-zero code or was killed.
    Exit,
    /// A 2xx answer whose `data` or `decision` is unusable.
    Protocol,
}

/// A failed call: what kind of failure, a message for the log, and when the
/// handler asked to be called again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub kind: FailureKind,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl CallError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        CallError {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a target answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status; `None` for scripts and for calls that got no answer.
    pub status: Option<u16>,
    /// The answer body or script stdout, at most the configured limit.
    pub body: Bytes,
    /// `None` when the call succeeded (2xx, exit 0).
    pub error: Option<CallError>,
    /// The answer says its body is JSON (an HTTP `Content-Type` of
    /// `application/json` or `…+json`): a body that does not parse is then
    /// an unusable answer, whatever its first character.
    pub declared_json: bool,
}

impl Reply {
    pub fn ok(status: Option<u16>, body: impl Into<Bytes>) -> Self {
        Reply {
            status,
            body: body.into(),
            error: None,
            declared_json: false,
        }
    }

    pub fn failed(error: CallError) -> Self {
        Reply {
            status: None,
            body: Bytes::new(),
            error: Some(error),
            declared_json: false,
        }
    }

    /// The same reply, declared (or not) as JSON.
    pub fn with_declared_json(mut self, declared: bool) -> Self {
        self.declared_json = declared;
        self
    }

    /// Whether trying again later may succeed: timeouts, connection errors,
    /// 5xx, 408, 429 and failed scripts are retryable; other 4xx, redirects,
    /// refused addresses and configuration errors are permanent.
    pub fn retryable(&self) -> bool {
        match &self.error {
            None => false,
            Some(e) => match e.kind {
                FailureKind::Timeout | FailureKind::Connect | FailureKind::Exit => true,
                FailureKind::Status => {
                    matches!(self.status, Some(s) if s >= 500 || s == 408 || s == 429)
                }
                FailureKind::Redirect
                | FailureKind::TooLarge
                | FailureKind::Refused
                | FailureKind::Config
                | FailureKind::Protocol => false,
            },
        }
    }
}

/// Calls a handler. The real one is [`Targets`]; tests may bring their own.
pub trait Invoker: Send + Sync {
    fn invoke(&self, call: &Call<'_>) -> impl Future<Output = Reply> + Send;
}

/// Resolves secret references (`{ env = "NAME" }`) from the values the
/// wiring loaded: the Secrets Manager secret, as deployed, or (for the
/// `hooks` command on a laptop) the process environment captured at start.
/// Nothing here reads the environment.
#[derive(Clone, Default)]
pub struct Secrets {
    values: std::sync::Arc<HashMap<String, String>>,
    /// Where the values came from, for the message when one is missing.
    source: &'static str,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.values.keys().collect();
        names.sort();
        f.debug_struct("Secrets")
            .field("names", &names)
            .field("source", &self.source)
            .finish()
    }
}

impl Secrets {
    /// These values; `source` says where they came from ("the Secrets
    /// Manager secret", "the environment").
    pub fn new(values: impl IntoIterator<Item = (String, String)>, source: &'static str) -> Self {
        Secrets {
            values: std::sync::Arc::new(values.into_iter().collect()),
            source,
        }
    }

    /// A value, as stored (see [`Secrets::resolve`] for the trimmed one).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The values a handler may be given: without the reserved names
    /// ([`is_reserved_secret`]), so billing's tokens and AWS credentials
    /// never reach a handler, whatever the config says.
    pub fn for_handlers(&self) -> Secrets {
        Secrets {
            values: std::sync::Arc::new(
                self.values
                    .iter()
                    .filter(|(k, _)| !is_reserved_secret(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            source: self.source,
        }
    }

    pub fn resolve(&self, r: &SecretRef) -> Result<String, CallError> {
        let SecretRef::Env(name) = r;
        // Values from secret stores often end with a newline; it is never meant.
        match self.values.get(name) {
            Some(v) => Ok(v.trim_end_matches(['\n', '\r']).to_owned()),
            None => Err(CallError::new(
                FailureKind::Config,
                format!(
                    "secret {r} is not set: add `{name}` to {}",
                    if self.source.is_empty() {
                        "the secrets"
                    } else {
                        self.source
                    }
                ),
            )),
        }
    }

    pub fn value(&self, v: &ValueSource) -> Result<String, CallError> {
        match v {
            ValueSource::Literal(s) => Ok(s.clone()),
            ValueSource::Secret(r) => self.resolve(r),
        }
    }
}

/// The first `limit` bytes of `body` as text, for logs.
pub fn excerpt(body: &[u8], limit: usize) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let cut = &body[..body.len().min(limit)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if body.len() > limit {
        // A multi-byte character cut in half shows as U+FFFD; drop it.
        while text.ends_with('\u{FFFD}') {
            text.pop();
        }
        text.push('…');
    }
    Some(text)
}
