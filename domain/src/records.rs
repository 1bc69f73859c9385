//! The records of the pipeline, apart from where they are kept: the event on
//! the queue ([`QueuedEvent`]), where an event stands ([`EventRecord`], with
//! its status changes), and one logged call ([`LogEntry`]). The adapters
//! (`store::events`, `store::logs`, `queue`) store them; nothing here knows
//! about AWS.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::chain::{CallRecord, Outcome, Progress};
use crate::config::HandlerId;
use crate::protocol::EventEnvelope;

/// What travels on the queue: the event and its ordering key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedEvent {
    #[serde(flatten)]
    pub event: EventEnvelope,
    /// Events of one key are handled in the order received (the message group).
    pub key: String,
    pub received_at: DateTime<Utc>,
}

/// Where an event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Recorded by ingest, not run yet: on the queue (or, if ingest's send
    /// failed, waiting for billing's retry to send it).
    Accepted,
    /// Back on the queue for another run: out of time in the last one, or
    /// replayed.
    Queued,
    /// Being moved to the dead-letter queue. (A run under way is not
    /// written: its record shows the status before it until the run ends.)
    Running,
    /// Every handler is done.
    Succeeded,
    /// A handler forbade; the rest were not called.
    Forbidden,
    /// A handler failed; the event waits for its next attempt.
    Failed,
    /// Out of attempts (or failed for good): on the dead-letter queue.
    Dead,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Accepted => "accepted",
            EventStatus::Queued => "queued",
            EventStatus::Running => "running",
            EventStatus::Succeeded => "succeeded",
            EventStatus::Forbidden => "forbidden",
            EventStatus::Failed => "failed",
            EventStatus::Dead => "dead",
        }
    }

    /// Nothing more will happen to the event (unless it is replayed).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            EventStatus::Succeeded | EventStatus::Forbidden | EventStatus::Dead
        )
    }
}

/// One event's item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub event: QueuedEvent,
    pub status: EventStatus,
    pub updated_at: DateTime<Utc>,
    /// Dispatch runs so far.
    pub runs: u32,
    pub progress: Progress,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The config revision of the last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// Every call made for the event, oldest first, across its runs: the
    /// event's part of the execution log. Written with the run's one save at
    /// its end; `hooks logs` finds them through the events table's indexes.
    #[serde(default, alias = "unlogged", skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<LogEntry>,
    /// Calls dropped from [`EventRecord::calls`] (the oldest first) to keep
    /// the item within DynamoDB's size limit; each went to the function's log.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub calls_trimmed: u32,
    /// While `failed`: the receipt handle of the event's message, hidden
    /// until `next_attempt_at`, so that a replay can bring the retry forward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    /// The delivery that last wrote the record. A later delivery of the same
    /// message whose receive count is higher by more than one follows
    /// deliveries that ended without writing: runs that may have called
    /// handlers (see [`EventRecord::lost_deliveries`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryMark>,
    /// A decision's record (`POST /decisions`): its `before` handlers ran,
    /// never the `after` ones; it is not replayed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decision: bool,
    /// The stored item's version: each write is conditional on it (set when
    /// the record is read, not part of the document).
    #[serde(skip)]
    pub version: u64,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A delivery of an event's message: which message, and how many times the
/// queue had handed it out (SQS's `ApproximateReceiveCount`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryMark {
    pub message_id: String,
    pub receives: u32,
}

impl DeliveryMark {
    /// How many deliveries of the same message came between `self` (the one
    /// that last wrote the record) and `now` without writing it.
    pub fn lost_before(last: Option<&DeliveryMark>, now: &DeliveryMark) -> u32 {
        let seen = match last {
            Some(l) if l.message_id == now.message_id => l.receives,
            _ => 0,
        };
        now.receives.saturating_sub(seen + 1)
    }
}

/// What [`crate::store::EventLedger::accept`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    /// A new event id.
    New,
    /// The id was seen before: its record.
    Seen(Box<EventRecord>),
}

impl EventRecord {
    /// Which phase's traffic the record is: `before` for a decision (the
    /// flag; before it existed, a decision had `before` calls, or, without
    /// any, the id ingest gives decisions), `after` for an event.
    pub fn phase(&self) -> crate::config::Phase {
        use crate::config::Phase;
        let legacy_decision = self.calls.is_empty() && self.event.event.id.starts_with("decision-");
        if self.decision
            || legacy_decision
            || self.calls.iter().any(|c| c.record.phase == Phase::Before)
        {
            Phase::Before
        } else {
            Phase::After
        }
    }

    /// A new event id's record: `accepted`, nothing done yet.
    pub fn accepted(event: &QueuedEvent, now: DateTime<Utc>) -> EventRecord {
        EventRecord {
            decision: false,
            event: event.clone(),
            status: EventStatus::Accepted,
            updated_at: now,
            runs: 0,
            progress: Progress::new(event.event.data.clone()),
            next_attempt_at: None,
            last_error: None,
            revision: None,
            calls: Vec::new(),
            calls_trimmed: 0,
            receipt: None,
            delivery: None,
            version: 0,
        }
    }

    /// Deliveries of the event's message that ended without writing the
    /// record (a crash, a timeout, an error before the save): each may have
    /// called any of the handlers still `pending` (in chain order, with their
    /// names). Logged as one `interrupted` entry per pending handler, saying
    /// so, with the attempt counted: the next calls of those handlers are
    /// new attempts (same `webhook-id`). Returns the entries added.
    pub fn lost_deliveries(
        &mut self,
        lost: u32,
        pending: &[(HandlerId, String)],
        revision: u64,
        now: DateTime<Utc>,
    ) -> usize {
        if lost == 0 {
            return 0;
        }
        let error = format!(
            "{} of this event ended without recording its run (a crash, a timeout or a store error): the handler may have received the call; it is called again with the same webhook-id",
            if lost == 1 {
                "a delivery".to_owned()
            } else {
                format!("{lost} deliveries")
            }
        );
        for (handler, name) in pending {
            let attempts = self.progress.attempts.entry(*handler).or_insert(0);
            *attempts += 1;
            let attempt = *attempts;
            let mut record = CallRecord::without_call(
                &self.event.event.id,
                self.event.event.event,
                crate::config::Phase::After,
                *handler,
                name,
                Outcome::Interrupted,
                Some(error.clone()),
            );
            record.attempt = attempt;
            record.started_at = now;
            record.retryable = Some(true);
            self.calls.push(LogEntry { record, revision });
        }
        pending.len()
    }

    /// Drops the oldest calls until the record's JSON is at most `max`
    /// bytes; returns them (for the function's log), counted in
    /// [`EventRecord::calls_trimmed`]. Only an event called thousands of
    /// times comes near: a call is a few hundred bytes, its response excerpt
    /// at most 2 KiB.
    pub fn trim_calls(&mut self, max: usize) -> Vec<LogEntry> {
        let mut total = json_len(self);
        let mut over = 0;
        for call in &self.calls {
            if total <= max {
                break;
            }
            total = total.saturating_sub(json_len(call) + 1);
            over += 1;
        }
        self.calls_trimmed += over as u32;
        self.calls.drain(..over).collect()
    }

    /// Dispatch takes the event for a run under `revision` (in memory: a run
    /// is written once, when it ends).
    pub fn claim(&mut self, revision: u64, now: DateTime<Utc>) {
        self.status = EventStatus::Running;
        self.runs += 1;
        self.revision = Some(revision);
        self.next_attempt_at = None;
        self.receipt = None;
        self.updated_at = now;
    }

    /// Every handler is done.
    pub fn succeed(&mut self, now: DateTime<Utc>) {
        self.status = EventStatus::Succeeded;
        self.last_error = None;
        self.updated_at = now;
    }

    /// A handler forbade; the rest are not called.
    pub fn forbid(&mut self, handler: HandlerId, reason: &str, now: DateTime<Utc>) {
        self.status = EventStatus::Forbidden;
        self.last_error = Some(format!("handler {handler} forbade: {reason}"));
        self.updated_at = now;
    }

    /// Out of time in this run: back on the queue, to go on at once.
    pub fn pause(&mut self, now: DateTime<Utc>) {
        self.status = EventStatus::Queued;
        self.updated_at = now;
    }

    /// A handler failed: the event waits until `next_at`, its message hidden
    /// (`receipt` lets a replay bring the retry forward).
    pub fn fail_until(
        &mut self,
        next_at: Option<DateTime<Utc>>,
        receipt: &str,
        now: DateTime<Utc>,
    ) {
        self.status = EventStatus::Failed;
        self.next_attempt_at = next_at;
        self.receipt = Some(receipt.to_owned());
        self.updated_at = now;
    }

    /// Given up: on the dead-letter queue, for `reason`.
    pub fn die(&mut self, reason: String, now: DateTime<Utc>) {
        self.status = EventStatus::Dead;
        self.last_error = Some(reason);
        self.updated_at = now;
    }

    /// Prepares the event for another go: queued, a fresh retry schedule for
    /// the handlers not yet done — or, `from_start`, for every handler, with
    /// the data as billing sent it.
    pub fn reset_for_replay(&mut self, from_start: bool) {
        if from_start {
            self.progress = Progress::new(self.event.event.data.clone());
        } else {
            let done = self.progress.completed.clone();
            self.progress.attempts.retain(|id, _| done.contains(id));
        }
        self.status = EventStatus::Queued;
        self.next_attempt_at = None;
        self.last_error = None;
        self.receipt = None;
        self.updated_at = Utc::now();
    }
}

/// The size of a value as JSON.
fn json_len<T: Serialize>(v: &T) -> usize {
    serde_json::to_vec(v).map_or(0, |v| v.len())
}

/// One logged call: the record and the config revision it ran under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    #[serde(flatten)]
    pub record: CallRecord,
    pub revision: u64,
}

/// What `hooks logs` asks for. The most selective filter picks the index.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub event_id: Option<String>,
    pub handler: Option<HandlerId>,
    pub outcome: Option<Outcome>,
    /// The event's type (filtered in the index, before records are read).
    pub event: Option<crate::events::Event>,
    /// The class of the handler's HTTP status: 2 for 2xx … 5 for 5xx, 0 for
    /// calls without one (connection errors, timeouts, scripts).
    pub status_class: Option<u16>,
    pub since: Option<DateTime<Utc>>,
    /// Calls that started before this (the next page of a listing).
    pub until: Option<DateTime<Utc>>,
    pub limit: usize,
}

/// What a list of events asks for.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Any of these statuses (none: every status).
    pub statuses: Vec<EventStatus>,
    pub event: Option<crate::events::Event>,
    pub key: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// The next page: entries listed after this one (its `at` and id).
    pub after: Option<(String, String)>,
    pub limit: usize,
}

/// One listed event, as its index entry has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub id: String,
    /// The record's last change (RFC 3339, µs): the list's order and cursor.
    pub at: String,
    pub status: String,
    pub key: String,
    pub event: String,
}

impl EventRow {
    pub fn updated_at(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.at)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// The sort key of the time indexes and a listed event's `at`: RFC 3339
/// with microseconds, so that text order is time order.
pub fn time_key(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
