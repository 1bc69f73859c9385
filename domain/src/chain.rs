//! Running handlers in priority order, with the modify / forbid / failure
//! semantics of the handler protocol.
//!
//! - [`run_before`]: the decision chain. One overall deadline; a failing
//!   handler resolves by its `on_error`; the result is allow or forbid, the
//!   reason, the final data and one record per handler.
//! - [`run_after`]: the notification chain. Resumable: given the handlers
//!   already done and the data as they left it ([`Progress`]), it calls only
//!   the rest, and returns where it stands ([`AfterRun`]) for the caller to
//!   save, so a completed handler is never called again. A [`Gatekeeper`]
//!   says before each call whether the handler may be called (pausing) and
//!   hears what each call came to.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::condition::EvalError;
use crate::config::{Defaults, Handler, HandlerId, OnError, OnFailure, Phase, Status};
use crate::events::Event;
use crate::pause::Gate;
use crate::protocol::{Data, EventEnvelope, read_answer, request_body, webhook_id};
use crate::targets::{Call, FailureKind, Invoker, Reply, excerpt};

pub mod changes;
pub use changes::FieldChange;

/// The longest response excerpt kept in a record.
pub const RESPONSE_EXCERPT_BYTES: usize = 2048;

/// The longest error message kept in a record (a redirect's `Location`, a
/// script's stderr… can be far longer): records are stored in DynamoDB items.
pub const ERROR_BYTES: usize = 1024;

/// What one handler call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Success; the data is unchanged.
    Processed,
    /// Success; the handler replaced the data.
    Modified,
    /// The handler forbade the action; the chain stopped.
    Forbidden,
    /// Non-2xx, connection error, redirect, refused address, failed script…
    Failed,
    /// No answer within the timeout.
    TimedOut,
    /// Not called: the decision deadline had passed.
    Skipped,
    /// Not called: the handler is paused ([`crate::pause`]) and is `skip`,
    /// so the event passed it.
    Paused,
    /// Not called: the handler's `when` condition was false for the data
    /// as the handlers before it left it (or could not be evaluated; then
    /// `error` says why). Not a failure.
    ConditionFalse,
    /// The run ended while the call was in flight (a crash, the invocation's
    /// end): the handler may have received it. Logged by the next run, which
    /// calls the handler again with the same `webhook-id`.
    Interrupted,
}

impl Outcome {
    pub const NAMES: &'static [&'static str] = &[
        "processed",
        "modified",
        "forbidden",
        "failed",
        "timed_out",
        "skipped",
        "interrupted",
        "condition_false",
        "paused",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Processed => "processed",
            Outcome::Modified => "modified",
            Outcome::Forbidden => "forbidden",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed_out",
            Outcome::Skipped => "skipped",
            Outcome::Interrupted => "interrupted",
            Outcome::ConditionFalse => "condition_false",
            Outcome::Paused => "paused",
        }
    }

    /// The handler was (or may have been) called: not passed over by its
    /// condition or the decision deadline.
    pub fn was_called(self) -> bool {
        !matches!(
            self,
            Outcome::Skipped | Outcome::ConditionFalse | Outcome::Paused
        )
    }

    /// The handler answered 2xx in time (whatever it answered).
    pub fn is_success(self) -> bool {
        matches!(
            self,
            Outcome::Processed | Outcome::Modified | Outcome::Forbidden
        )
    }
}

/// How a failure was resolved by the handler's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// `on_error = "forbid"`: the decision is forbid.
    Forbid,
    /// `on_error = "allow"`: passed over; the chain went on.
    Allow,
    /// `on_failure = "block"`: the chain stopped; the event is retried from here.
    Block,
    /// `on_failure = "skip"`: logged; the chain went on.
    Skip,
}

/// One handler call, as the execution log stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub event_id: String,
    pub event: Event,
    pub phase: Phase,
    pub handler_id: HandlerId,
    pub handler_name: String,
    /// 1 for the first call of this handler for this event.
    pub attempt: u32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For failures: whether a later attempt may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// For failures: how long the handler asked to wait (`Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// The forbid reason, when the handler forbade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The first [`RESPONSE_EXCERPT_BYTES`] of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// What the handler changed in the data (when it returned other data).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
    /// A shadow handler's call: its answer was not applied (`outcome` and
    /// `changes` are what it would have done).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// The span id of the call's `traceparent` (16 hex digits); the trace
    /// id and flags are the event's. Only the span is kept: 16 bytes a call
    /// rather than 55, in an item billed per KB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// The call was the probe of a paused handler ([`crate::pause`]); a
    /// failed probe uses none of the event's attempts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub probe: bool,
    /// A failure that is not the handler's answer: the handler was not
    /// called, because its `when` condition could not be evaluated within
    /// its bounds. It counts neither for nor against the handler's health.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_called: bool,
}

impl CallRecord {
    /// The outcome as people read it: a shadow call says what it would have
    /// done (`would have modified`, `would have forbidden`, `failed (shadow)`).
    pub fn outcome_label(&self) -> String {
        let label = match (self.shadow, self.outcome) {
            (false, o) => o.as_str().to_owned(),
            (true, Outcome::Modified) => "would have modified".to_owned(),
            (true, Outcome::Forbidden) => "would have forbidden".to_owned(),
            (true, o) => format!("{} (shadow)", o.as_str()),
        };
        if self.probe {
            format!("{label} (probe)")
        } else {
            label
        }
    }
}

impl CallRecord {
    /// A record with nothing of a call in it yet — no status, answer or
    /// duration — for handler `handler_id` of event `event_id`: what a
    /// handler not called, or a call whose end is unknown, is logged as.
    pub fn without_call(
        event_id: &str,
        event: Event,
        phase: Phase,
        handler_id: HandlerId,
        handler_name: &str,
        outcome: Outcome,
        error: Option<String>,
    ) -> CallRecord {
        CallRecord {
            event_id: event_id.to_owned(),
            event,
            phase,
            handler_id,
            handler_name: handler_name.to_owned(),
            attempt: 1,
            started_at: Utc::now(),
            duration_ms: 0,
            status_code: None,
            outcome,
            error,
            retryable: None,
            retry_after_secs: None,
            resolution: None,
            reason: None,
            response: None,
            changes: Vec::new(),
            shadow: false,
            span_id: None,
            probe: false,
            not_called: false,
        }
    }

    /// The record of a handler that was not called (`outcome` says why).
    fn not_called(
        event: &EventEnvelope,
        handler: &Handler,
        outcome: Outcome,
        error: Option<String>,
    ) -> CallRecord {
        Self::without_call(
            &event.id,
            event.event,
            handler.phase,
            handler.id,
            &handler.name,
            outcome,
            error,
        )
    }
}

/// What a handler's `when` condition says of the data.
enum Check {
    /// Call the handler (no condition, or it is true).
    Call,
    /// Pass it over: the condition is false, or could not be evaluated
    /// (counts as false); the record says which.
    Pass(CallRecord),
    /// The condition could not be evaluated within its bounds: the
    /// handler fails, not called ([`CallRecord::not_called`]).
    Fail(CallRecord),
}

/// Checks `handler`'s `when` condition against `data`; the record carries
/// how long the evaluation took.
fn check_condition(handler: &Handler, event: &EventEnvelope, data: &Data) -> Check {
    let Some(when) = handler.when.as_ref() else {
        return Check::Call;
    };
    let clock = Instant::now();
    let result = when.eval(event.event, data);
    let took = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (outcome, error) = match result {
        Ok(true) => return Check::Call,
        Ok(false) => (Outcome::ConditionFalse, None),
        Err(EvalError::Unevaluable(e)) => (
            Outcome::ConditionFalse,
            Some(format!(
                "`when` could not be evaluated, so counts as false: {e}"
            )),
        ),
        Err(EvalError::OverBudget(e)) => (Outcome::Failed, Some(format!("not called: {e}"))),
    };
    let error = error.map(|e| crate::protocol::cut(e, ERROR_BYTES));
    let mut record = CallRecord::not_called(event, handler, outcome, error);
    record.shadow = handler.status == Status::Shadow;
    record.duration_ms = took;
    if outcome == Outcome::Failed {
        record.retryable = Some(false);
        record.not_called = true;
        Check::Fail(record)
    } else {
        Check::Pass(record)
    }
}

/// The event's trace id, for the function logs (empty without one).
fn trace_id(event: &EventEnvelope) -> String {
    event.trace.map(|t| t.trace_id_hex()).unwrap_or_default()
}

/// A shadow handler's step: whatever it answered, the chain goes on as if
/// it had answered "done, nothing changed".
fn unapplied(handler: &Handler, record: &mut CallRecord, step: Step) -> Step {
    if handler.status == Status::Shadow {
        record.shadow = true;
        Step::Done { data: None }
    } else {
        step
    }
}

/// What reading one reply amounts to.
enum Step {
    Done {
        data: Option<Data>,
    },
    Forbid {
        data: Option<Data>,
        reason: String,
    },
    Fail {
        retryable: bool,
        retry_after: Option<Duration>,
    },
}

struct Called {
    record: CallRecord,
    step: Step,
}

async fn call_one<I: Invoker>(
    invoker: &I,
    handler: &Handler,
    event: &EventEnvelope,
    data: &Data,
    attempt: u32,
    timeout: Duration,
) -> Called {
    let body = Bytes::from(request_body(event, handler, attempt, data));
    let id = webhook_id(&event.id, handler.id);
    let span = event.trace.map(|t| t.child());
    let traceparent = span.map(|t| t.to_string());
    let call = Call {
        handler,
        body,
        webhook_id: &id,
        traceparent: traceparent.as_deref(),
        timeout,
    };
    let started_at = Utc::now();
    let clock = Instant::now();
    let reply = invoker.invoke(&call).await;
    let elapsed = clock.elapsed();
    let mut record = CallRecord {
        event_id: event.id.clone(),
        event: event.event,
        phase: handler.phase,
        handler_id: handler.id,
        handler_name: handler.name.clone(),
        attempt,
        started_at,
        duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        status_code: reply.status,
        outcome: Outcome::Processed,
        error: None,
        retryable: None,
        retry_after_secs: None,
        resolution: None,
        reason: None,
        response: excerpt(&reply.body, RESPONSE_EXCERPT_BYTES),
        changes: Vec::new(),
        shadow: false,
        span_id: span.map(|t| hex::encode(t.parent_id)),
        probe: false,
        not_called: false,
    };
    let step = read_reply(&reply, data, &mut record);
    if let Step::Done { data: Some(new) }
    | Step::Forbid {
        data: Some(new), ..
    } = &step
    {
        record.changes = changes::changes(data, new);
    }
    Called { record, step }
}

fn read_reply(reply: &Reply, current: &Data, record: &mut CallRecord) -> Step {
    let fail = |record: &mut CallRecord,
                kind: FailureKind,
                message: String,
                retryable: bool,
                retry_after: Option<Duration>| {
        record.outcome = if kind == FailureKind::Timeout {
            Outcome::TimedOut
        } else {
            Outcome::Failed
        };
        record.error = Some(crate::protocol::cut(message, ERROR_BYTES));
        record.retryable = Some(retryable);
        record.retry_after_secs = retry_after.map(|d| d.as_secs());
        Step::Fail {
            retryable,
            retry_after,
        }
    };
    if let Some(e) = &reply.error {
        return fail(
            record,
            e.kind,
            e.message.clone(),
            reply.retryable(),
            e.retry_after,
        );
    }
    match read_answer(&reply.body, reply.declared_json) {
        Err(e) => fail(
            record,
            FailureKind::Protocol,
            format!("unusable answer: {e}"),
            false,
            None,
        ),
        Ok(answer) => {
            let data = answer.data.filter(|d| d != current);
            match answer.forbid {
                Some(reason) => {
                    record.outcome = Outcome::Forbidden;
                    record.reason = Some(reason.clone());
                    Step::Forbid { data, reason }
                }
                None => {
                    record.outcome = if data.is_some() {
                        Outcome::Modified
                    } else {
                        Outcome::Processed
                    };
                    Step::Done { data }
                }
            }
        }
    }
}

/// Allow or forbid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Forbid,
}

/// The answer of the decision chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The data as the handlers left it.
    pub data: Data,
    /// Which handler decided a forbid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forbidden_by: Option<HandlerId>,
    pub handlers: Vec<CallRecord>,
}

/// Runs the `before` handlers under one overall `deadline`.
#[tracing::instrument(skip_all, fields(event.id = %event.id, event = %event.event, trace_id = %trace_id(event)))]
pub async fn run_before<I: Invoker>(
    invoker: &I,
    handlers: &[&Handler],
    defaults: &Defaults,
    event: &EventEnvelope,
    deadline: Duration,
) -> Decision {
    let end = Instant::now() + deadline;
    let mut data = event.data.clone();
    let mut records = Vec::with_capacity(handlers.len());
    for handler in handlers {
        let (mut record, step) =
            decide_one(invoker, handler, defaults, event, &data, end, deadline).await;
        let Some(step) = step else {
            records.push(record); // passed over by its condition
            continue;
        };
        let step = unapplied(handler, &mut record, step);
        if let Some(forbid) = settle_before(handler, &mut record, step, &mut data) {
            records.push(record);
            return Decision {
                verdict: Verdict::Forbid,
                reason: Some(forbid),
                data,
                forbidden_by: Some(handler.id),
                handlers: records,
            };
        }
        records.push(record);
    }
    Decision {
        verdict: Verdict::Allow,
        reason: None,
        data,
        forbidden_by: None,
        handlers: records,
    }
}

/// One `before` handler: its condition first (bounded: a handler it passes
/// over is not "out of time", whatever the clock), then the call within
/// what is left of the decision's deadline. No step: the condition passed
/// the handler over.
async fn decide_one<I: Invoker>(
    invoker: &I,
    handler: &Handler,
    defaults: &Defaults,
    event: &EventEnvelope,
    data: &Data,
    end: Instant,
    deadline: Duration,
) -> (CallRecord, Option<Step>) {
    let permanent = Step::Fail {
        retryable: false,
        retry_after: None,
    };
    match check_condition(handler, event, data) {
        Check::Call => {}
        Check::Pass(record) => return (record, None),
        Check::Fail(record) => return (record, Some(permanent)),
    }
    let remaining = end.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        let mut record = CallRecord::not_called(
            event,
            handler,
            Outcome::Skipped,
            Some(format!(
                "not called: the decision deadline of {} had passed",
                humantime::format_duration(deadline)
            )),
        );
        record.retryable = Some(true);
        let step = Step::Fail {
            retryable: true,
            retry_after: None,
        };
        return (record, Some(step));
    }
    let own = handler.timeout().unwrap_or(defaults.timeout);
    let c = call_one(invoker, handler, event, data, 1, own.min(remaining)).await;
    (c.record, Some(c.step))
}

/// Applies a `before` handler's step to the data; `Some(reason)` when the
/// decision is forbid (the handler forbade, or failed and fails closed).
fn settle_before(
    handler: &Handler,
    record: &mut CallRecord,
    step: Step,
    data: &mut Data,
) -> Option<String> {
    match step {
        Step::Done { data: new } => {
            if let Some(new) = new {
                *data = new;
            }
            None
        }
        Step::Forbid { data: new, reason } => {
            if let Some(new) = new {
                *data = new;
            }
            Some(reason)
        }
        Step::Fail { .. } => match handler.on_error {
            OnError::Allow => {
                record.resolution = Some(Resolution::Allow);
                None
            }
            OnError::Forbid => {
                record.resolution = Some(Resolution::Forbid);
                Some(format!(
                    "handler {} ({}) failed and fails closed: {}",
                    handler.id,
                    handler.name,
                    record.error.as_deref().unwrap_or("failure")
                ))
            }
        },
    }
}

/// Where an event's `after` chain stands: what a retry resumes from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Handlers that are done with this event (succeeded, or failed with
    /// `on_failure = "skip"`); they are never called again.
    pub completed: BTreeSet<HandlerId>,
    /// Calls made so far, per handler.
    pub attempts: BTreeMap<HandlerId, u32>,
    /// The data as the completed handlers left it.
    pub data: Data,
}

impl Progress {
    pub fn new(data: Data) -> Self {
        Progress {
            completed: BTreeSet::new(),
            attempts: BTreeMap::new(),
            data,
        }
    }
}

/// How a run of the `after` chain ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AfterOutcome {
    /// Every handler is done.
    Completed,
    /// A handler forbade; the handlers after it were not called.
    Forbidden { handler: HandlerId, reason: String },
    /// A `block` handler failed; retry the event from it.
    Blocked {
        handler: HandlerId,
        attempt: u32,
        retryable: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_secs: Option<u64>,
    },
    /// Stopped before `next` because its timeout would overrun the deadline.
    Paused { next: HandlerId },
    /// Stopped at a `block` handler that is paused ([`crate::pause`]): the
    /// event waits until `until` without using an attempt.
    HandlerPaused {
        handler: HandlerId,
        until: DateTime<Utc>,
        reason: String,
    },
}

/// The result of one run of the `after` chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AfterRun {
    pub outcome: AfterOutcome,
    pub progress: Progress,
    /// The calls made in this run.
    pub handlers: Vec<CallRecord>,
}

/// What the `after` chain asks of the world around it between calls:
/// whether a handler may be called now (pausing), and what each handler
/// came to (a handler's health counts its calls). Neither can stop the
/// chain: the event's own progress is saved by the caller, from the
/// [`AfterRun`] it gets back.
pub trait Gatekeeper: Send {
    /// Whether `handler` may be called now ([`Gate`]).
    fn gate(&mut self, handler: &Handler) -> impl Future<Output = Gate> + Send;

    /// What `handler`'s turn came to: a call, or a handler passed over.
    fn observe(&mut self, record: &CallRecord) -> impl Future<Output = ()> + Send;
}

/// Calls every handler and keeps nothing (for one-off runs such as `hooks
/// try`, and benchmarks).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unguarded;

impl Gatekeeper for Unguarded {
    async fn gate(&mut self, _: &Handler) -> Gate {
        Gate::Call
    }
    async fn observe(&mut self, _: &CallRecord) {}
}

/// Runs the `after` handlers that `progress` has not completed, in order.
/// With a `deadline`, stops cleanly before a handler whose timeout could
/// overrun it; the first handler of a run is always called (with its timeout
/// cut to the time left), so every run makes progress.
#[tracing::instrument(skip_all, fields(event.id = %event.id, event = %event.event, trace_id = %trace_id(event)))]
pub async fn run_after<I: Invoker, G: Gatekeeper>(
    invoker: &I,
    handlers: &[&Handler],
    defaults: &Defaults,
    event: &EventEnvelope,
    progress: Progress,
    deadline: Option<Instant>,
    gatekeeper: &mut G,
) -> AfterRun {
    let mut run = AfterChain {
        event,
        defaults,
        deadline,
        progress,
        records: Vec::new(),
    };
    for handler in handlers {
        if run.progress.completed.contains(&handler.id) {
            continue;
        }
        if let Some(outcome) = run.turn(invoker, handler, gatekeeper).await {
            return run.end(outcome);
        }
    }
    run.end(AfterOutcome::Completed)
}

/// One run of the `after` chain, handler by handler.
struct AfterChain<'a> {
    event: &'a EventEnvelope,
    defaults: &'a Defaults,
    deadline: Option<Instant>,
    progress: Progress,
    /// The calls made in this run.
    records: Vec<CallRecord>,
}

/// Whether a handler is called, and how (a probe of a paused handler).
enum Admission {
    Call {
        probe: Option<(DateTime<Utc>, String)>,
    },
    Stop(AfterOutcome),
    PassedOver(CallRecord),
}

impl AfterChain<'_> {
    fn end(self, outcome: AfterOutcome) -> AfterRun {
        AfterRun {
            outcome,
            progress: self.progress,
            handlers: self.records,
        }
    }

    /// Keeps `record`, tells the gatekeeper.
    async fn keep<G: Gatekeeper>(&mut self, gatekeeper: &mut G, record: CallRecord) {
        gatekeeper.observe(&record).await;
        self.records.push(record);
    }

    /// `handler`'s turn: its condition, then its call (if the deadline and
    /// its gate allow), then its answer applied. `Some`: the run stops.
    async fn turn<I: Invoker, G: Gatekeeper>(
        &mut self,
        invoker: &I,
        handler: &Handler,
        gatekeeper: &mut G,
    ) -> Option<AfterOutcome> {
        let attempt = self
            .progress
            .attempts
            .get(&handler.id)
            .copied()
            .unwrap_or(0)
            + 1;
        let (mut record, step, probe) =
            match check_condition(handler, self.event, &self.progress.data) {
                Check::Pass(record) => {
                    self.progress.completed.insert(handler.id);
                    self.keep(gatekeeper, record).await;
                    return None;
                }
                Check::Fail(mut record) => {
                    // The condition's failure is the handler's, permanent
                    // (the same data fails the same way): resolved by
                    // `on_failure` below.
                    record.attempt = attempt;
                    let step = Step::Fail {
                        retryable: false,
                        retry_after: None,
                    };
                    (record, step, None)
                }
                Check::Call => {
                    let Some(timeout) = self.timeout(handler) else {
                        return Some(AfterOutcome::Paused { next: handler.id });
                    };
                    let probe = match self.admit(handler, gatekeeper).await {
                        Admission::Call { probe } => probe,
                        Admission::Stop(outcome) => return Some(outcome),
                        Admission::PassedOver(record) => {
                            self.progress.completed.insert(handler.id);
                            self.keep(gatekeeper, record).await;
                            return None;
                        }
                    };
                    let data = &self.progress.data;
                    let Called { mut record, step } =
                        call_one(invoker, handler, self.event, data, attempt, timeout).await;
                    record.probe = probe.is_some();
                    (record, step, probe)
                }
            };
        let step = unapplied(handler, &mut record, step);
        if let Some((until, reason)) = probe
            && handler.on_failure == OnFailure::Block
            && matches!(
                step,
                Step::Fail {
                    retryable: true,
                    ..
                }
            )
        {
            // The handler stays paused; the event waits again, its attempts
            // untouched. (A permanent failure is an answer: it resumes the
            // handler, and the event fails as it would have.)
            self.keep(gatekeeper, record).await;
            return Some(AfterOutcome::HandlerPaused {
                handler: handler.id,
                until,
                reason,
            });
        }
        self.progress.attempts.insert(handler.id, attempt);
        let stop = self.settle(handler, &mut record, step, attempt);
        self.keep(gatekeeper, record).await;
        stop
    }

    /// The handler's timeout within the run's deadline; `None` when it
    /// could overrun it (the first call of a run always happens, shortened
    /// to the time left if need be: a handler whose timeout is longer than
    /// a whole invocation still gets called, and fails or retries, instead
    /// of pausing forever).
    fn timeout(&self, handler: &Handler) -> Option<Duration> {
        let timeout = handler.timeout().unwrap_or(self.defaults.timeout);
        let Some(deadline) = self.deadline else {
            return Some(timeout);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if self.records.is_empty() && !left.is_zero() {
            Some(timeout.min(left))
        } else {
            (timeout <= left).then_some(timeout)
        }
    }

    /// Asks the gatekeeper whether `handler` may be called: a paused `skip`
    /// handler is passed over, a paused `block` handler stops the run.
    async fn admit<G: Gatekeeper>(&self, handler: &Handler, gatekeeper: &mut G) -> Admission {
        match gatekeeper.gate(handler).await {
            Gate::Call => Admission::Call { probe: None },
            Gate::Probe { until, reason } => Admission::Call {
                probe: Some((until, reason)),
            },
            Gate::Paused { reason, .. } if handler.on_failure == OnFailure::Skip => {
                Admission::PassedOver(CallRecord::not_called(
                    self.event,
                    handler,
                    Outcome::Paused,
                    Some(reason),
                ))
            }
            Gate::Paused { until, reason } => Admission::Stop(AfterOutcome::HandlerPaused {
                handler: handler.id,
                until,
                reason,
            }),
        }
    }

    /// Applies a call's step to the progress; `Some`: the run stops there.
    fn settle(
        &mut self,
        handler: &Handler,
        record: &mut CallRecord,
        step: Step,
        attempt: u32,
    ) -> Option<AfterOutcome> {
        let progress = &mut self.progress;
        match step {
            Step::Done { data } => {
                if let Some(d) = data {
                    progress.data = d;
                }
                progress.completed.insert(handler.id);
                None
            }
            Step::Forbid { data, reason } => {
                if let Some(d) = data {
                    progress.data = d;
                }
                progress.completed.insert(handler.id);
                Some(AfterOutcome::Forbidden {
                    handler: handler.id,
                    reason,
                })
            }
            Step::Fail {
                retryable,
                retry_after,
            } => match handler.on_failure {
                OnFailure::Skip => {
                    record.resolution = Some(Resolution::Skip);
                    progress.completed.insert(handler.id);
                    None
                }
                OnFailure::Block => {
                    record.resolution = Some(Resolution::Block);
                    Some(AfterOutcome::Blocked {
                        handler: handler.id,
                        attempt,
                        retryable,
                        retry_after_secs: retry_after.map(|d| d.as_secs()),
                    })
                }
            },
        }
    }
}

#[cfg(test)]
mod tests;
