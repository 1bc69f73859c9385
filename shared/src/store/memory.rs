//! An in-memory [`ConfigStore`], for unit tests. Same contract as DynamoDB:
//! publishing is atomic and guarded by the expected revision.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::{ConfigStore, Head, Revision, RevisionInfo, StoreError, content_hash};

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
