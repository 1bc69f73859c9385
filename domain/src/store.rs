//! Persistence as the domain sees it: the stores' traits (the config and
//! its revisions, the events' ledger, redelivery), what they hold, and the
//! errors their adapters map their failures to ([`StoreError`], [`QueueError`]).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Config, HandlerId};
use crate::fault::Fault;
use crate::pause::{HandlerHealth, Health};
use crate::records::{EventQuery, EventRecord, EventRow, LogEntry, LogQuery, QueuedEvent};

/// Where the live revision is: the `HEAD` item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub revision: u64,
    pub blob: String,
    pub chunks: u32,
    pub content_hash: String,
}

/// What is recorded about a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionInfo {
    pub revision: u64,
    /// SHA-256 of the validated config (comments and layout do not count).
    pub content_hash: String,
    /// The git commit of the synced file, `-dirty` when it had local changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    pub synced_by: String,
    pub synced_at: DateTime<Utc>,
    pub file: String,
    pub handlers: u32,
    /// `+created ~changed -deleted`.
    pub summary: String,
}

/// A handler id that is gone from the config and may never be used again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredHandler {
    pub name: String,
    /// The revision that deleted it.
    pub retired_in: u64,
}

/// A revision's whole document, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    pub info: RevisionInfo,
    pub config: Config,
    /// Every id ever deleted, with the handler's last name.
    pub retired: BTreeMap<HandlerId, RetiredHandler>,
    /// The file as it was synced, comments included.
    pub source: String,
}

/// SHA-256 of the config's canonical JSON, in hex.
pub fn content_hash(config: &Config) -> String {
    let json = serde_json::to_vec(config).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}

/// Why the store could not do what was asked. Each says what to do in one line.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "table `{table}` does not exist: create it with `hooks bootstrap` (local) or deploy the stack, or set {env} to the right name"
    )]
    MissingTable { table: String, env: &'static str },
    #[error("{}", conflict_message(*.expected, *.actual))]
    Conflict {
        expected: Option<u64>,
        actual: Option<u64>,
    },
    /// A revision's stored items cannot be put back together.
    #[error("stored revision data is damaged: {0}")]
    Corrupt(String),
    /// An event's stored record cannot be read back (damaged, or written
    /// by a version that allowed what this one cannot read).
    #[error("the event's stored record cannot be read: {0}")]
    Unreadable(String),
    /// Not done, on purpose; the message says why and what to do.
    #[error("{0}")]
    Refused(String),
    /// The database did not do it (unreachable, refused, no credentials).
    #[error(transparent)]
    Service(#[from] Fault),
}

fn conflict_message(expected: Option<u64>, actual: Option<u64>) -> String {
    let show = |r: Option<u64>| r.map_or("none".to_owned(), |r| format!("revision {r}"));
    if expected == actual {
        // Refused while nothing had moved yet: another sync's transaction
        // on the same items was in flight (DynamoDB's TransactionConflict).
        return format!(
            "another sync was being applied at the same moment (it was planned against {} too); run `hooks plan` again and review the changes",
            show(expected)
        );
    }
    format!(
        "the live config changed while this sync was prepared: it was planned against {}, but {} is live now; run `hooks plan` again and review the changes",
        show(expected),
        show(actual)
    )
}

impl StoreError {
    /// Whether trying again later may help (the service was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Service(f) if f.is_transient())
    }
}

/// Why the queue could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(
        "queue `{queue}` does not exist: create it with `hooks bootstrap` (local) or deploy the stack, or set {env} to the right name"
    )]
    Missing { queue: String, env: &'static str },
    /// A message could not be built (nothing was sent).
    #[error("cannot build the queue message: {0}")]
    Message(String),
    /// The queue service did not do it.
    #[error(transparent)]
    Service(#[from] Fault),
}

impl QueueError {
    /// Whether trying again later may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, QueueError::Service(f) if f.is_transient())
    }
}

/// Handler config revisions.
pub trait ConfigStore: Send + Sync {
    /// The live revision's pointer; `None` before the first sync.
    fn head(&self) -> impl Future<Output = Result<Option<Head>, StoreError>> + Send;

    /// The whole document `head` points at.
    fn load(&self, head: &Head) -> impl Future<Output = Result<Revision, StoreError>> + Send;

    /// The newest revisions first.
    fn history(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RevisionInfo>, StoreError>> + Send;

    /// One revision's whole document, live or not; `None` if there is no
    /// such revision.
    fn revision(
        &self,
        number: u64,
    ) -> impl Future<Output = Result<Option<Revision>, StoreError>> + Send;

    /// Stores `revision` and makes it live, atomically, if the live revision
    /// is still `expected`; otherwise [`StoreError::Conflict`] and nothing changes.
    fn publish(
        &self,
        revision: &Revision,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<Head, StoreError>> + Send;

    /// `HEAD` and every handler's runtime state ([`crate::pause`]), in one
    /// read: the state items sit beside `HEAD`.
    fn head_and_health(
        &self,
    ) -> impl Future<Output = Result<(Option<Head>, Health), StoreError>> + Send;

    /// One handler's runtime state, read consistently.
    fn health_of(
        &self,
        id: HandlerId,
    ) -> impl Future<Output = Result<Option<HandlerHealth>, StoreError>> + Send;

    /// Writes `state`'s document (pause, history; not the failure count)
    /// if the stored one still has version `expected` (`None`: there is
    /// none yet); `Ok(false)` if it changed meanwhile.
    fn put_health(
        &self,
        state: &HandlerHealth,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Adds one to the handler's retryable failures in a row, atomically
    /// (no read, no conflict: one write unit), and notes `now` as the
    /// streak's start if it is the first; returns the streak.
    fn add_failure(
        &self,
        id: HandlerId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<crate::pause::Streak, StoreError>> + Send;

    /// Sets the handler's failures in a row back to 0 (and forgets when the
    /// streak began), if they are not.
    fn reset_failures(&self, id: HandlerId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The live revision, if any.
    fn live(&self) -> impl Future<Output = Result<Option<Revision>, StoreError>> + Send {
        async {
            match self.head().await? {
                None => Ok(None),
                Some(h) => self.load(&h).await.map(Some),
            }
        }
    }
}

/// Largest chunk of a revision document in one item (DynamoDB items are at most 400 KB).
pub const CHUNK_BYTES: usize = 350 * 1024;

/// Splits a document into chunks of at most [`CHUNK_BYTES`].
pub fn chunks(doc: &[u8]) -> Vec<&[u8]> {
    if doc.is_empty() {
        return vec![doc];
    }
    doc.chunks(CHUNK_BYTES).collect()
}

impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "revision {} ({})",
            self.revision,
            short_hash(&self.content_hash)
        )
    }
}

/// The first 12 characters of a hash, for people.
pub fn short_hash(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

/// Where events stand: one record per event id. Implemented by DynamoDB
/// (hooks-core's `store::events::EventStore`) and in memory (its
/// `store::memory::MemoryEvents`).
pub trait EventLedger: Send + Sync {
    /// Records a new event (`accepted`), or finds the record of its id.
    fn accept(
        &self,
        event: &QueuedEvent,
    ) -> impl Future<Output = Result<crate::records::Accepted, StoreError>> + Send;

    /// The record of event `id`, if there is one.
    fn get(&self, id: &str)
    -> impl Future<Output = Result<Option<EventRecord>, StoreError>> + Send;

    /// The event's record; recorded first (`accepted`) if it has none.
    fn get_or_accept(
        &self,
        event: &QueuedEvent,
    ) -> impl Future<Output = Result<EventRecord, StoreError>> + Send;

    /// Writes the whole record, whatever is stored; its version moves on.
    fn save(&self, r: &mut EventRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Writes the whole record if the stored one is still the version read
    /// (`r.version`), and moves the version on; `false` (nothing written)
    /// if it changed meanwhile.
    fn save_if(&self, r: &mut EventRecord)
    -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The events queue, as dispatch uses it.
pub trait Redelivery: Send + Sync {
    /// Hides a received message for `delay` (zero: visible again at once).
    fn defer(
        &self,
        receipt: &str,
        delay: std::time::Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Puts `body` on the dead-letter queue with `reason`.
    fn dead_letter(
        &self,
        group: &str,
        dedup_id: &str,
        body: &str,
        reason: &str,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// A queue's messages by state, as SQS counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Ready to be received.
    pub visible: u64,
    /// Received and not deleted yet, or hidden until a retry.
    pub in_flight: u64,
    /// Sent with a delay that has not passed.
    pub delayed: u64,
}

/// What became of one event sent to the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Ok,
    Failed(String),
}

/// Where accepted events go to be run in their key's order (the SQS FIFO
/// queue).
pub trait Publisher: Send + Sync {
    /// Sends `events`, in order; what became of each. An error: the queue
    /// could not be asked (some of a long list may have gone: a retry is
    /// deduplicated by the queue and by the events' records).
    fn send(
        &self,
        events: &[QueuedEvent],
    ) -> impl Future<Output = Result<Vec<Sent>, QueueError>> + Send;
}

/// The execution log and the list of events, newest first, as operators
/// read them (the console, `hooks logs`, `hooks events`).
pub trait Listings: Send + Sync {
    /// The calls `q` asks for, newest first, at most `q.limit`.
    fn calls(&self, q: &LogQuery)
    -> impl Future<Output = Result<Vec<LogEntry>, StoreError>> + Send;

    /// The events `q` asks for, the latest changed first, at most `q.limit`.
    fn events(
        &self,
        q: &EventQuery,
    ) -> impl Future<Output = Result<Vec<EventRow>, StoreError>> + Send;
}

/// How many messages the queue and its dead-letter queue hold, in that order.
pub trait QueueDepth: Send + Sync {
    fn counts(&self) -> impl Future<Output = Result<[QueueCounts; 2], QueueError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::StoreError;

    #[test]
    fn a_conflict_says_what_moved_or_that_another_sync_was_in_flight() {
        let moved = StoreError::Conflict {
            expected: Some(1),
            actual: Some(2),
        };
        assert!(
            moved
                .to_string()
                .contains("planned against revision 1, but revision 2 is live now"),
            "{moved}"
        );
        let in_flight = StoreError::Conflict {
            expected: Some(1),
            actual: Some(1),
        };
        assert!(
            in_flight
                .to_string()
                .starts_with("another sync was being applied at the same moment"),
            "{in_flight}"
        );
        assert!(in_flight.to_string().contains("run `hooks plan` again"));
    }
}
