//! In-memory stores, for unit tests, with the DynamoDB and SQS adapters'
//! contracts: a [`ConfigStore`] (publishing is atomic and guarded by the
//! expected revision), an [`EventLedger`] (conditional saves), a
//! [`LogSink`] that can be made to fail, and a [`Redelivery`] that records
//! what was asked of the queue.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::{
    ConfigStore, EventLedger, Head, LogSink, Redelivery, Revision, RevisionInfo, StoreError,
    content_hash,
};
use crate::records::{EventRecord, EventStatus, LogEntry, QueuedEvent};

#[derive(Debug, Default)]
pub struct MemoryConfigStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    head: Option<Head>,
    blobs: HashMap<String, Vec<u8>>,
    history: BTreeMap<u64, RevisionInfo>,
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
    async fn head(&self) -> Result<Option<Head>, StoreError> {
        let mut s = self.lock();
        s.reads += 1;
        if s.failing {
            return Err(StoreError::Unreachable {
                service: "memory",
                endpoint: "memory".into(),
                reason: "failing on purpose".into(),
            });
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

/// Event records in memory.
#[derive(Debug, Default)]
pub struct MemoryEvents {
    records: Mutex<HashMap<String, EventRecord>>,
    /// Ids whose stored record cannot be read (until it is saved anew).
    unreadable: Mutex<std::collections::HashSet<String>>,
}

impl MemoryEvents {
    /// Makes the stored record of `id` unreadable, as a damaged item is.
    pub fn set_unreadable(&self, id: &str) {
        locked(&self.unreadable).insert(id.to_owned());
    }

    pub fn get(&self, id: &str) -> Option<EventRecord> {
        locked(&self.records).get(id).cloned()
    }

    pub fn put(&self, r: EventRecord) {
        locked(&self.records).insert(r.event.event.id.clone(), r);
    }
}

impl EventLedger for MemoryEvents {
    async fn get_or_accept(&self, event: &QueuedEvent) -> Result<EventRecord, StoreError> {
        if locked(&self.unreadable).contains(&event.event.id) {
            return Err(StoreError::Unreadable(
                "recursion limit exceeded at line 1 column 130".into(),
            ));
        }
        Ok(locked(&self.records)
            .entry(event.event.id.clone())
            .or_insert_with(|| EventRecord::accepted(event, chrono::Utc::now()))
            .clone())
    }

    async fn save(&self, r: &EventRecord) -> Result<(), StoreError> {
        locked(&self.unreadable).remove(&r.event.event.id);
        self.put(r.clone());
        Ok(())
    }

    async fn save_if(&self, r: &EventRecord, expected: EventStatus) -> Result<bool, StoreError> {
        let mut records = locked(&self.records);
        match records.get(&r.event.event.id) {
            Some(stored) if stored.status == expected => {
                records.insert(r.event.event.id.clone(), r.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// An execution log in memory; `set_failing` makes writes fail,
/// `set_dying` makes them store their entries and then never answer (a
/// process that dies right after the write).
#[derive(Debug, Default)]
pub struct MemoryLogs {
    entries: Mutex<Vec<LogEntry>>,
    failing: std::sync::atomic::AtomicBool,
    dying: std::sync::atomic::AtomicBool,
}

impl MemoryLogs {
    pub fn entries(&self) -> Vec<LogEntry> {
        locked(&self.entries).clone()
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::Relaxed);
    }

    /// Forgets every entry (a write that never happened).
    pub fn clear(&self) {
        locked(&self.entries).clear();
    }

    pub fn set_dying(&self, dying: bool) {
        self.dying
            .store(dying, std::sync::atomic::Ordering::Relaxed);
    }
}

impl LogSink for MemoryLogs {
    async fn write(&self, entries: &[LogEntry]) -> Result<(), StoreError> {
        if self.failing.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StoreError::Unreachable {
                service: "DynamoDB",
                endpoint: "memory".into(),
                reason: "set to fail".into(),
            });
        }
        {
            let mut all = locked(&self.entries);
            for e in entries {
                if !all.contains(e) {
                    all.push(e.clone());
                }
            }
        }
        if self.dying.load(std::sync::atomic::Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
        Ok(())
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

/// A queue that records what dispatch asks of it.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    actions: Mutex<Vec<QueueAction>>,
}

impl MemoryQueue {
    pub fn actions(&self) -> Vec<QueueAction> {
        locked(&self.actions).clone()
    }
}

impl Redelivery for MemoryQueue {
    async fn defer(&self, receipt: &str, delay: std::time::Duration) -> Result<(), StoreError> {
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
    ) -> Result<(), StoreError> {
        locked(&self.actions).push(QueueAction::DeadLetter {
            group: group.to_owned(),
            dedup_id: dedup_id.to_owned(),
            reason: reason.to_owned(),
        });
        Ok(())
    }
}
