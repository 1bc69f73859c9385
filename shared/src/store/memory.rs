//! In-memory stores, for unit tests, with the DynamoDB and SQS adapters'
//! contracts: a [`ConfigStore`] (publishing is atomic and guarded by the
//! expected revision), an [`EventLedger`] (saves conditional on the version,
//! which can be made to fail or to die), and a queue ([`Publisher`],
//! [`Redelivery`]) that records what was sent and asked of it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use std::sync::atomic::{AtomicBool, Ordering};

use super::{
    ConfigStore, EventLedger, Head, Listings, Publisher, QueueCounts, QueueDepth, QueueError,
    Redelivery, Revision, RevisionInfo, Sent, StoreError, content_hash,
};
use crate::config::HandlerId;
use crate::records::{
    Accepted, EventQuery, EventRecord, EventRow, EventStatus, LogEntry, LogQuery, QueuedEvent,
    time_key,
};
use hooks_domain::fault::Fault;
use hooks_domain::pause::{HandlerHealth, Health};

#[derive(Debug, Default)]
pub struct MemoryConfigStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    head: Option<Head>,
    blobs: HashMap<String, Vec<u8>>,
    history: BTreeMap<u64, RevisionInfo>,
    health: Health,
    reads: u64,
    failing: bool,
}

impl MemoryConfigStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every read fail as if the store were unreachable (or not).
    pub fn set_failing(&self, failing: bool) {
        self.lock().failing = failing;
    }

    /// How many times `head` was read.
    pub fn head_reads(&self) -> u64 {
        self.lock().reads
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

impl ConfigStore for MemoryConfigStore {
    async fn head_and_health(&self) -> Result<(Option<Head>, Health), StoreError> {
        let head = self.head().await?;
        Ok((head, self.lock().health.clone()))
    }

    async fn health_of(&self, id: HandlerId) -> Result<Option<HandlerHealth>, StoreError> {
        Ok(self.lock().health.get(&id).cloned())
    }

    async fn put_health(
        &self,
        state: &HandlerHealth,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut s = self.lock();
        let stored = s.health.get(&state.handler_id);
        if stored.map(|h| h.version).filter(|v| *v > 0) != expected {
            return Ok(false);
        }
        let failures = stored.map_or(0, |h| h.failures);
        let failing_since = stored.and_then(|h| h.failing_since);
        s.health.insert(
            state.handler_id,
            HandlerHealth {
                failures,
                failing_since,
                ..state.clone()
            },
        );
        Ok(true)
    }

    async fn add_failure(
        &self,
        id: HandlerId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<hooks_domain::pause::Streak, StoreError> {
        let mut s = self.lock();
        let h = s.health.entry(id).or_insert_with(|| HandlerHealth::new(id));
        h.failures += 1;
        let since = *h.failing_since.get_or_insert(now);
        Ok(hooks_domain::pause::Streak {
            failures: h.failures,
            since,
        })
    }

    async fn reset_failures(&self, id: HandlerId) -> Result<(), StoreError> {
        if let Some(h) = self.lock().health.get_mut(&id) {
            h.failures = 0;
            h.failing_since = None;
        }
        Ok(())
    }

    async fn head(&self) -> Result<Option<Head>, StoreError> {
        let mut s = self.lock();
        s.reads += 1;
        if s.failing {
            return Err(StoreError::Service(Fault::Unreachable {
                service: "memory",
                endpoint: "memory".into(),
                reason: "failing on purpose".into(),
            }));
        }
        Ok(s.head.clone())
    }

    async fn load(&self, head: &Head) -> Result<Revision, StoreError> {
        let s = self.lock();
        let doc = s
            .blobs
            .get(&head.blob)
            .ok_or_else(|| StoreError::Corrupt(format!("no blob {}", head.blob)))?;
        serde_json::from_slice(doc).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    async fn history(&self, limit: usize) -> Result<Vec<RevisionInfo>, StoreError> {
        Ok(self
            .lock()
            .history
            .values()
            .rev()
            .take(limit)
            .cloned()
            .collect())
    }

    async fn revision(&self, number: u64) -> Result<Option<Revision>, StoreError> {
        let s = self.lock();
        s.blobs
            .get(&format!("mem-{number}"))
            .map(|doc| serde_json::from_slice(doc).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    async fn publish(
        &self,
        revision: &Revision,
        expected: Option<u64>,
    ) -> Result<Head, StoreError> {
        let doc = serde_json::to_vec(revision).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut s = self.lock();
        let actual = s.head.as_ref().map(|h| h.revision);
        if actual != expected {
            return Err(StoreError::Conflict { expected, actual });
        }
        let blob = format!("mem-{}", revision.info.revision);
        let head = Head {
            revision: revision.info.revision,
            blob: blob.clone(),
            chunks: 1,
            content_hash: content_hash(&revision.config),
        };
        s.blobs.insert(blob, doc);
        s.history
            .insert(revision.info.revision, revision.info.clone());
        s.head = Some(head.clone());
        Ok(head)
    }
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Event records in memory. `set_failing` makes saves fail; `set_dying`
/// makes them store the record and then never answer (a process that dies
/// right after the write).
#[derive(Debug, Default)]
pub struct MemoryEvents {
    records: Mutex<HashMap<String, EventRecord>>,
    /// Ids whose stored record cannot be read (until it is saved anew).
    unreadable: Mutex<std::collections::HashSet<String>>,
    failing: AtomicBool,
    dying: AtomicBool,
    saves: std::sync::atomic::AtomicU64,
}

impl MemoryEvents {
    /// Makes the stored record of `id` unreadable, as a damaged item is.
    pub fn set_unreadable(&self, id: &str) {
        locked(&self.unreadable).insert(id.to_owned());
    }

    pub fn get(&self, id: &str) -> Option<EventRecord> {
        locked(&self.records).get(id).cloned()
    }

    /// Stores `r` as it is (its version included).
    pub fn put(&self, r: EventRecord) {
        locked(&self.records).insert(r.event.event.id.clone(), r);
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }

    pub fn set_dying(&self, dying: bool) {
        self.dying.store(dying, Ordering::Relaxed);
    }

    /// How many writes were made.
    pub fn saves(&self) -> u64 {
        self.saves.load(Ordering::Relaxed)
    }

    async fn write(&self, r: &mut EventRecord, expected: Option<u64>) -> Result<bool, StoreError> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(Self::unreachable());
        }
        {
            let mut records = locked(&self.records);
            let stored = records.get(&r.event.event.id).map(|s| s.version);
            if expected.is_some_and(|v| stored.unwrap_or(0) != v) {
                return Ok(false);
            }
            r.version += 1;
            records.insert(r.event.event.id.clone(), r.clone());
            locked(&self.unreadable).remove(&r.event.event.id);
            self.saves.fetch_add(1, Ordering::Relaxed);
        }
        if self.dying.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
        Ok(true)
    }
}

impl MemoryEvents {
    fn unreachable() -> StoreError {
        StoreError::Service(Fault::Unreachable {
            service: "DynamoDB",
            endpoint: "memory".into(),
            reason: "set to fail".into(),
        })
    }
}

/// Whether `c` is one of the calls `q` asks for.
fn asked_for(q: &LogQuery, c: &LogEntry) -> bool {
    let r = &c.record;
    q.event_id.as_ref().is_none_or(|id| *id == r.event_id)
        && q.handler.is_none_or(|h| h == r.handler_id)
        && q.outcome.is_none_or(|o| o == r.outcome)
        && q.event.is_none_or(|e| e == r.event)
        && q.status_class
            .is_none_or(|class| r.status_code.map_or(0, |code| code / 100) == class)
        && q.since.is_none_or(|t| r.started_at >= t)
        && q.until.is_none_or(|t| r.started_at < t)
}

/// Whether `r` is listed (as the time indexes list it: with calls, a
/// problem or a final status) and one of the events `q` asks for.
fn listed(q: &EventQuery, r: &EventRecord) -> bool {
    let indexed = !r.calls.is_empty() || r.status.is_final() || r.status == EventStatus::Failed;
    let at = time_key(&r.updated_at);
    indexed
        && (q.statuses.is_empty() || q.statuses.contains(&r.status))
        && q.event.is_none_or(|e| e == r.event.event.event)
        && q.key.as_ref().is_none_or(|k| *k == r.event.key)
        && q.since.is_none_or(|t| r.updated_at >= t)
        && q.after.as_ref().is_none_or(|(after_at, after_id)| {
            (at.as_str(), r.event.event.id.as_str()) < (after_at.as_str(), after_id.as_str())
        })
}

/// The calls of the records' logs and the records, filtered and ordered as
/// the DynamoDB indexes give them.
impl Listings for MemoryEvents {
    async fn calls(&self, q: &LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(Self::unreachable());
        }
        let mut calls: Vec<LogEntry> = locked(&self.records)
            .values()
            .flat_map(|r| r.calls.iter().filter(|c| asked_for(q, c)).cloned())
            .collect();
        calls.sort_by_key(|c| std::cmp::Reverse(c.record.started_at));
        calls.truncate(q.limit);
        Ok(calls)
    }

    async fn events(&self, q: &EventQuery) -> Result<Vec<EventRow>, StoreError> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(Self::unreachable());
        }
        let mut rows: Vec<EventRow> = locked(&self.records)
            .values()
            .filter(|r| listed(q, r))
            .map(|r| EventRow {
                id: r.event.event.id.clone(),
                at: time_key(&r.updated_at),
                status: r.status.as_str().to_owned(),
                key: r.event.key.clone(),
                event: r.event.event.event.as_str().to_owned(),
            })
            .collect();
        rows.sort_by(|a, b| (&b.at, &b.id).cmp(&(&a.at, &a.id)));
        rows.truncate(q.limit);
        Ok(rows)
    }
}

impl EventLedger for MemoryEvents {
    async fn accept(&self, event: &QueuedEvent) -> Result<Accepted, StoreError> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(Self::unreachable());
        }
        let mut records = locked(&self.records);
        if let Some(r) = records.get(&event.event.id) {
            return Ok(Accepted::Seen(Box::new(r.clone())));
        }
        let mut r = EventRecord::accepted(event, chrono::Utc::now());
        r.version = 1;
        records.insert(event.event.id.clone(), r);
        Ok(Accepted::New)
    }

    async fn get(&self, id: &str) -> Result<Option<EventRecord>, StoreError> {
        if locked(&self.unreadable).contains(id) {
            return Err(StoreError::Unreadable(
                "recursion limit exceeded at line 1 column 130".into(),
            ));
        }
        Ok(locked(&self.records).get(id).cloned())
    }

    async fn get_or_accept(&self, event: &QueuedEvent) -> Result<EventRecord, StoreError> {
        if locked(&self.unreadable).contains(&event.event.id) {
            return Err(StoreError::Unreadable(
                "recursion limit exceeded at line 1 column 130".into(),
            ));
        }
        Ok(locked(&self.records)
            .entry(event.event.id.clone())
            .or_insert_with(|| {
                let mut r = EventRecord::accepted(event, chrono::Utc::now());
                r.version = 1;
                r
            })
            .clone())
    }

    async fn save(&self, r: &mut EventRecord) -> Result<(), StoreError> {
        self.write(r, None).await.map(|_| ())
    }

    async fn save_if(&self, r: &mut EventRecord) -> Result<bool, StoreError> {
        let expected = r.version;
        self.write(r, Some(expected)).await
    }
}

/// What was asked of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueAction {
    Defer {
        receipt: String,
        delay: std::time::Duration,
    },
    DeadLetter {
        group: String,
        dedup_id: String,
        reason: String,
    },
}

/// A queue that records what is sent to it and what dispatch asks of it;
/// `refuse` makes it refuse the events of one id.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    actions: Mutex<Vec<QueueAction>>,
    sent: Mutex<Vec<QueuedEvent>>,
    refused: Mutex<std::collections::HashSet<String>>,
    counts: Mutex<[QueueCounts; 2]>,
}

impl MemoryQueue {
    pub fn actions(&self) -> Vec<QueueAction> {
        locked(&self.actions).clone()
    }

    /// The events sent, in order.
    pub fn sent(&self) -> Vec<QueuedEvent> {
        locked(&self.sent).clone()
    }

    /// What `counts` answers: the queue's and the dead-letter queue's.
    pub fn set_counts(&self, counts: [QueueCounts; 2]) {
        *locked(&self.counts) = counts;
    }

    /// The queue refuses event `id` (as SQS refuses one entry of a batch).
    pub fn refuse(&self, id: &str) {
        locked(&self.refused).insert(id.to_owned());
    }
}

impl Publisher for MemoryQueue {
    async fn send(&self, events: &[QueuedEvent]) -> Result<Vec<Sent>, QueueError> {
        let refused = locked(&self.refused).clone();
        let mut sent = locked(&self.sent);
        Ok(events
            .iter()
            .map(|e| {
                if refused.contains(&e.event.id) {
                    Sent::Failed("refused by the queue".into())
                } else {
                    sent.push(e.clone());
                    Sent::Ok
                }
            })
            .collect())
    }
}

impl QueueDepth for MemoryQueue {
    async fn counts(&self) -> Result<[QueueCounts; 2], QueueError> {
        Ok(*locked(&self.counts))
    }
}

impl Redelivery for MemoryQueue {
    async fn defer(&self, receipt: &str, delay: std::time::Duration) -> Result<(), QueueError> {
        locked(&self.actions).push(QueueAction::Defer {
            receipt: receipt.to_owned(),
            delay,
        });
        Ok(())
    }

    async fn dead_letter(
        &self,
        group: &str,
        dedup_id: &str,
        _body: &str,
        reason: &str,
    ) -> Result<(), QueueError> {
        locked(&self.actions).push(QueueAction::DeadLetter {
            group: group.to_owned(),
            dedup_id: dedup_id.to_owned(),
            reason: reason.to_owned(),
        });
        Ok(())
    }
}
