//! The validated handler configuration: what `handlers.toml` means once it has
//! passed every check. Everything here is serializable so that a config
//! revision can be stored and read back exactly.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::condition::Condition;
use crate::events::{Event, EventPattern};

/// A handler's stable numeric id: never reused, not even after deletion.
pub type HandlerId = u32;

/// The schema version this build understands.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole `handlers.toml`, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub version: u32,
    pub defaults: Defaults,
    /// The event types' JSON Schemas (`[schemas]`), with the documents.
    #[serde(default, skip_serializing_if = "super::schemas::Schemas::is_empty")]
    pub schemas: super::schemas::Schemas,
    pub handlers: Vec<Handler>,
}

impl Config {
    /// The handlers called for `event` in `phase` (enabled or shadow), in
    /// the order they run: priority first (1 before 2), then id.
    pub fn chain_for(&self, event: Event, phase: Phase) -> Vec<&Handler> {
        let mut selected: Vec<&Handler> = self
            .handlers
            .iter()
            .filter(|h| {
                matches!(h.status, Status::Enabled | Status::Shadow)
                    && h.phase == phase
                    && h.listens_to(event)
            })
            .collect();
        selected.sort_by_key(|h| (h.priority, h.id));
        selected
    }

    pub fn handler(&self, id: HandlerId) -> Option<&Handler> {
        self.handlers.iter().find(|h| h.id == id)
    }

    /// The timeout a handler's call gets: its own, or the file's default.
    pub fn timeout_of(&self, handler: &Handler) -> Duration {
        handler.timeout().unwrap_or(self.defaults.timeout)
    }

    /// The failures in a row that pause `handler` (0: never). Only `after`
    /// handlers that are not shadows pause.
    pub fn pause_after_of(&self, handler: &Handler) -> u32 {
        if handler.phase != Phase::After || handler.status == Status::Shadow {
            return 0;
        }
        handler.pause_after.unwrap_or(self.defaults.pause_after)
    }

    /// The retry schedule that applies when `handler` fails in the after phase.
    pub fn retry_of<'a>(&'a self, handler: &'a Handler) -> &'a RetryPolicy {
        handler.retry.as_ref().unwrap_or(&self.defaults.retry)
    }
}

/// The `[defaults]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Timeout of one handler call unless the handler sets its own.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// One deadline for the whole `before` chain of a decision.
    #[serde(with = "humantime_serde")]
    pub decision_timeout: Duration,
    /// How a failing `after` handler is retried.
    pub retry: RetryPolicy,
    /// An `after` handler is paused after this many retryable failures in
    /// a row, across events (0: never); see [`crate::pause`].
    #[serde(default = "default_pause_after")]
    pub pause_after: u32,
    /// A handler is paused only when its failures in a row also span at
    /// least this long (0: the count alone decides): a burst of failures
    /// from one batch, or a blip of a few seconds, does not pause it.
    #[serde(default = "default_pause_window", with = "humantime_serde")]
    pub pause_window: Duration,
    /// The wait between probes of a paused handler; it doubles, up to
    /// [`crate::pause::PROBE_MAX`] (or this, if longer), only once
    /// [`crate::pause::PROBES_BEFORE_BACKOFF`] probes in a row have failed.
    #[serde(default = "default_probe_every", with = "humantime_serde")]
    pub probe_every: Duration,
}

/// The wait between probes of an automatically paused handler, unless
/// `[defaults] probe_every` says otherwise.
pub const PROBE_FIRST: Duration = Duration::from_secs(30);
/// How long a handler's failures in a row must span before it pauses,
/// unless `[defaults] pause_window` says otherwise.
pub const PAUSE_WINDOW: Duration = Duration::from_secs(60);

fn default_pause_window() -> Duration {
    PAUSE_WINDOW
}

fn default_probe_every() -> Duration {
    PROBE_FIRST
}

/// The default of `pause_after`.
pub const DEFAULT_PAUSE_AFTER: u32 = 10;

fn default_pause_after() -> u32 {
    DEFAULT_PAUSE_AFTER
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            timeout: Duration::from_secs(10),
            decision_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            pause_after: DEFAULT_PAUSE_AFTER,
            pause_window: PAUSE_WINDOW,
            probe_every: PROBE_FIRST,
        }
    }
}

/// Delays between the attempts of a failing `after` handler. The number of
/// attempts is one more than the number of delays; each delay gets ±10 %
/// jitter when it is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(with = "humantime_serde_vec")]
    pub schedule: Vec<Duration>,
}

/// The longest single delay: SQS cannot hide a message for longer than 12 hours.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(12 * 3600);

impl RetryPolicy {
    /// The jitter applied to each delay: ± this fraction.
    pub const JITTER: f64 = 0.1;

    /// Total attempts, the first one included.
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.schedule.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// The delay before attempt `next_attempt` (2 = the first retry), or `None`
    /// once the schedule is exhausted.
    pub fn delay_before(&self, next_attempt: u32) -> Option<Duration> {
        let index = usize::try_from(next_attempt.checked_sub(2)?).ok()?;
        self.schedule.get(index).copied()
    }

    /// [`Self::delay_before`] with ±10 % jitter; `unit` is a random number in `[0, 1)`.
    pub fn jittered_delay_before(&self, next_attempt: u32, unit: f64) -> Option<Duration> {
        let base = self.delay_before(next_attempt)?;
        Some(base.mul_f64(1.0 - Self::JITTER + 2.0 * Self::JITTER * unit.clamp(0.0, 1.0)))
    }

    pub fn total(&self) -> Duration {
        self.schedule.iter().sum()
    }
}

impl Default for RetryPolicy {
    /// 14 attempts over about 3.2 days.
    fn default() -> Self {
        let m = |mins: u64| Duration::from_secs(mins * 60);
        RetryPolicy {
            schedule: vec![
                Duration::from_secs(30),
                m(2),
                m(10),
                m(30),
                m(60),
                m(2 * 60),
                m(4 * 60),
                m(8 * 60),
                m(12 * 60),
                m(12 * 60),
                m(12 * 60),
                m(12 * 60),
                m(12 * 60),
            ],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Enabled,
    Disabled,
    Archived,
    /// Called with the real event at its place in the chain and logged in
    /// full, but its answer is never applied: no modification, no forbid,
    /// and its failures neither block nor retry. For trying an endpoint on
    /// live traffic before enabling it.
    Shadow,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Asked synchronously, before billing commits the action; may forbid it.
    Before,
    /// Notified asynchronously, after the action happened.
    #[default]
    After,
}

/// What a failing `before` handler means for the decision.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Fail closed: the action is forbidden.
    #[default]
    Forbid,
    /// Fail open: the handler is passed over and the chain goes on.
    Allow,
}

/// What a failing `after` handler means for the rest of the chain.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The chain stops here and the event is retried from this handler.
    #[default]
    Block,
    /// The failure is logged and the chain goes on.
    Skip,
}

macro_rules! str_enum {
    ($ty:ident { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            pub const NAMES: &'static [&'static str] = &[$($name),*];
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),* }
            }
            pub fn from_name(s: &str) -> Option<Self> {
                match s { $($name => Some($ty::$variant),)* _ => None }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl std::str::FromStr for $ty {
            type Err = NotOneOf;
            fn from_str(s: &str) -> Result<Self, NotOneOf> {
                Self::from_name(s).ok_or_else(|| NotOneOf {
                    value: s.to_owned(),
                    allowed: Self::NAMES,
                })
            }
        }
    };
}

/// A name that is none of a closed set's (`enabled`, `disabled`, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not one of: {}", allowed.join(", "))]
pub struct NotOneOf {
    pub value: String,
    pub allowed: &'static [&'static str],
}

str_enum!(Status { Enabled => "enabled", Disabled => "disabled", Archived => "archived", Shadow => "shadow" });
str_enum!(Phase { Before => "before", After => "after" });
str_enum!(OnError { Forbid => "forbid", Allow => "allow" });
str_enum!(OnFailure { Block => "block", Skip => "skip" });

/// One `[[handler]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handler {
    pub id: HandlerId,
    pub name: String,
    pub events: Vec<EventPattern>,
    pub priority: u32,
    pub status: Status,
    pub phase: Phase,
    /// Meaningful for `before` handlers only.
    pub on_error: OnError,
    /// Meaningful for `after` handlers only.
    pub on_failure: OnFailure,
    /// Overrides `[defaults] retry` (after handlers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Overrides `[defaults] pause_after` (after handlers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_after: Option<u32>,
    /// `when = "…"`: called only for events whose data meets it (see
    /// [`crate::config::condition`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    pub target: Target,
}

impl Handler {
    pub fn listens_to(&self, event: Event) -> bool {
        self.events.iter().any(|p| p.matches(event))
    }

    pub fn timeout(&self) -> Option<Duration> {
        match &self.target {
            Target::Http(h) => h.timeout,
            Target::Script(s) => s.timeout,
        }
    }

    /// The events as written: `clients.create, clients.*`.
    pub fn events_display(&self) -> String {
        self.events
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    Http(HttpTarget),
    Script(ScriptTarget),
}

impl Target {
    pub fn kind(&self) -> TargetKind {
        match self {
            Target::Http(_) => TargetKind::Http,
            Target::Script(_) => TargetKind::Script,
        }
    }

    /// A one-line description for listings: the URL (and how its TLS is
    /// set up, when it is) or the command.
    pub fn summary(&self) -> String {
        match self {
            Target::Http(h) => match h.tls.as_ref().map(TlsSettings::describe) {
                Some(tls) => format!("{} ({tls})", h.url),
                None => h.url.to_string(),
            },
            Target::Script(s) => s.command.join(" "),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Http,
    Script,
}

str_enum!(TargetKind { Http => "http", Script => "script" });

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTarget {
    pub url: Url,
    /// Extra request headers, in the order written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, ValueSource)>,
    /// Standard Webhooks signing secret (`whsec_…`), by reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    #[serde(
        default,
        with = "humantime_serde_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// A client certificate to present, and whom to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
}

/// An HTTP handler's TLS beyond the default (public CAs, no client
/// certificate): `tls = { client_cert, client_key, ca }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// A client certificate (mutual TLS): the PEM certificate chain and its
    /// PEM private key, both from the secret store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientCertificate>,
    /// The CA certificates (PEM) the endpoint's certificate must chain to,
    /// instead of the public ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<TrustSource>,
}

/// A client certificate and its key, by reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificate {
    pub cert: SecretRef,
    pub key: SecretRef,
}

/// Where a CA bundle comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TrustSource {
    /// A value of the secret store.
    Secret(SecretRef),
    /// A PEM file of the bundle, relative to the scripts folder (shipped in
    /// the scripts layer).
    File(String),
}

impl TlsSettings {
    /// `mTLS`, `private CA` or both: what listings show.
    pub fn describe(&self) -> String {
        match (&self.client, &self.ca) {
            (Some(_), Some(_)) => "mTLS, private CA".into(),
            (Some(_), None) => "mTLS".into(),
            (None, Some(_)) => "private CA".into(),
            (None, None) => "TLS".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptTarget {
    /// Program and arguments. A relative program path containing `/` is
    /// resolved against the scripts directory.
    pub command: Vec<String>,
    #[serde(
        default,
        with = "humantime_serde_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// The script's whole environment (besides a fixed `PATH`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, ValueSource>,
}

/// Where a secret comes from. Never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretRef {
    /// An environment variable of the running function (filled from AWS
    /// Secrets Manager by the deployment).
    Env(String),
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env:{name}"),
        }
    }
}

/// A header or environment value: written in the file, or a secret reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ValueSource {
    Literal(String),
    Secret(SecretRef),
}

mod humantime_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(&humantime::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let s = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

mod humantime_serde_vec {
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for d in v {
            seq.serialize_element(&humantime::format_duration(*d).to_string())?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let v = <Vec<String>>::deserialize(d)?;
        v.iter()
            .map(|s| humantime::parse_duration(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// Names that are never a handler's secret: the deployment's own settings
/// and credentials (`HOOKS_INGEST_TOKENS`, `AWS_SECRET_ACCESS_KEY`, …).
pub fn is_reserved_secret(name: &str) -> bool {
    name.starts_with("HOOKS_") || name.starts_with("AWS_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_retry_schedule_spans_at_least_three_days_in_ten_or_more_attempts() {
        let p = RetryPolicy::default();
        assert!(p.attempts() >= 10, "{} attempts", p.attempts());
        assert!(
            p.total() >= Duration::from_secs(3 * 24 * 3600),
            "{:?}",
            p.total()
        );
        assert!(p.schedule.iter().all(|d| *d <= MAX_RETRY_DELAY));
        assert_eq!(p.delay_before(1), None);
        assert_eq!(p.delay_before(2), Some(Duration::from_secs(30)));
        assert_eq!(p.delay_before(p.attempts() + 1), None);
        assert_eq!(
            p.jittered_delay_before(2, 0.0),
            Some(Duration::from_secs(27))
        );
        assert_eq!(
            p.jittered_delay_before(2, 1.0),
            Some(Duration::from_secs(33))
        );
    }
}
