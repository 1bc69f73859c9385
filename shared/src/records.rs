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
    /// Recorded by ingest; not yet confirmed on the queue.
    Accepted,
    /// On the queue, waiting for dispatch (also between retries).
    Queued,
    /// Dispatch is running its handlers.
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
    /// Calls not yet in the execution log (an outbox): saved with the
    /// progress after every handler, written to the log in batches and then
    /// cleared, so a crash between a call and the log write loses no entry.
    /// A run's last entries are saved here before they are written, and stay
    /// until the record's next save (reads merge them with the log).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unlogged: Vec<LogEntry>,
    /// While `failed`: the receipt handle of the event's message, hidden
    /// until `next_attempt_at`, so that a replay can bring the retry forward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    /// The call under way, saved before it is made: if the run ends during
    /// it, the next run logs it as `interrupted` and calls the handler again
    /// with the next attempt number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<InFlight>,
}

/// A call that was made and may not have ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub handler: HandlerId,
    pub attempt: u32,
    pub started_at: DateTime<Utc>,
}

/// What [`EventStore::accept`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    /// A new event id.
    New,
    /// The id was seen before: its record.
    Seen(Box<EventRecord>),
}

impl EventRecord {
    /// A new event id's record: `accepted`, nothing done yet.
    pub fn accepted(event: &QueuedEvent, now: DateTime<Utc>) -> EventRecord {
        EventRecord {
            event: event.clone(),
            status: EventStatus::Accepted,
            updated_at: now,
            runs: 0,
            progress: Progress::new(event.event.data.clone()),
            next_attempt_at: None,
            last_error: None,
            revision: None,
            unlogged: Vec::new(),
            receipt: None,
            in_flight: None,
        }
    }

    /// A call the last run left in flight (it ended during the call): its
    /// log entry, saying so, and the attempt counted, so that the next call
    /// of that handler is the next attempt.
    pub fn take_interrupted(&mut self, handler_name: &str, revision: u64) -> Option<LogEntry> {
        let f = self.in_flight.take()?;
        let attempts = self.progress.attempts.entry(f.handler).or_insert(0);
        *attempts = (*attempts).max(f.attempt);
        Some(LogEntry {
            record: CallRecord {
                event_id: self.event.event.id.clone(),
                event: self.event.event.event,
                phase: crate::config::Phase::After,
                handler_id: f.handler,
                handler_name: handler_name.to_owned(),
                attempt: f.attempt,
                started_at: f.started_at,
                duration_ms: 0,
                status_code: None,
                outcome: Outcome::Interrupted,
                error: Some(
                    "the run ended during the call (a crash or the invocation's end): the handler may have received it; it is called again with the same webhook-id".into(),
                ),
                retryable: Some(true),
                retry_after_secs: None,
                resolution: None,
                reason: None,
                response: None,
            },
            revision,
        })
    }

    /// Dispatch takes the event for a run under `revision`.
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
    pub since: Option<DateTime<Utc>>,
    pub limit: usize,
}
