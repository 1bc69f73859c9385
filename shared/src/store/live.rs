//! The live config as the functions read it: cached, so that the steady-state
//! cost is one small read (the `HEAD` item) per `max_age`, and a new revision
//! is seen at most `max_age` after `hooks sync` returns.

use hooks_domain::fault::Fault;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{ConfigStore, Revision, StoreError};
use crate::config::{Handler, Phase};
use crate::events::Event;
use hooks_domain::pause::{HandlerHealth, Health};

/// How old a cached revision may get before `HEAD` is read again.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(2);

/// The clock the reader uses; injectable so that tests can move time.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Reads the live revision through a cache.
pub struct LiveConfig<S> {
    store: S,
    max_age: Duration,
    clock: Clock,
    cached: RwLock<Option<Cached>>,
    /// One refresh at a time; callers that find it taken use the cached copy.
    refresh: Mutex<()>,
}

#[derive(Clone)]
struct Cached {
    checked_at: Instant,
    revision: Arc<Revision>,
    /// The handlers' runtime state, read with `HEAD`.
    health: Arc<Health>,
}

impl<S> std::fmt::Debug for LiveConfig<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveConfig")
            .field("max_age", &self.max_age)
            .finish()
    }
}

/// Why there is no config to give.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("no handler config has been synced yet: run `hooks sync`")]
    NeverSynced,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<S: ConfigStore> LiveConfig<S> {
    pub fn new(store: S) -> Self {
        Self::with_clock(store, DEFAULT_MAX_AGE, Arc::new(Instant::now))
    }

    pub fn with_clock(store: S, max_age: Duration, clock: Clock) -> Self {
        LiveConfig {
            store,
            max_age,
            clock,
            cached: RwLock::new(None),
            refresh: Mutex::new(()),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    fn cached(&self) -> Option<Cached> {
        match self.cached.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set(&self, c: Cached) {
        match self.cached.write() {
            Ok(mut g) => *g = Some(c),
            Err(p) => *p.into_inner() = Some(c),
        }
    }

    fn fresh(&self, now: Instant) -> Option<Arc<Revision>> {
        self.cached()
            .filter(|c| now.saturating_duration_since(c.checked_at) < self.max_age)
            .map(|c| c.revision)
    }

    /// The live revision. Reads `HEAD` when the cached copy is older than
    /// `max_age`, and the whole document only when `HEAD` moved; one caller
    /// refreshes while the others keep using the cached copy. When the store
    /// fails (unreachable, throttled, damaged revision), the cached copy is
    /// served and the next check waits another `max_age`: a store outage does
    /// not stop handlers, and does not make every call wait for it.
    pub async fn current(&self) -> Result<Arc<Revision>, LiveError> {
        if let Some(r) = self.fresh((self.clock)()) {
            return Ok(r);
        }
        let _refreshing = match self.refresh.try_lock() {
            Ok(g) => g,
            Err(_) => match self.cached() {
                Some(c) => return Ok(c.revision),
                None => self.refresh.lock().await,
            },
        };
        // Someone may have refreshed while we waited for the lock.
        if let Some(r) = self.fresh((self.clock)()) {
            return Ok(r);
        }
        let previous = self.cached();
        let fetched = match &previous {
            // With a copy in hand, do not wait long for the store.
            Some(_) => match tokio::time::timeout(
                self.max_age.max(Duration::from_secs(1)),
                self.fetch(previous.as_ref()),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(LiveError::Store(StoreError::Service(Fault::Unreachable {
                    service: "DynamoDB",
                    endpoint: "the config table".into(),
                    reason: "no answer in time".into(),
                }))),
            },
            None => self.fetch(None).await,
        };
        let now = (self.clock)();
        match (fetched, previous) {
            (Ok((revision, health)), _) => {
                self.set(Cached {
                    checked_at: now,
                    revision: revision.clone(),
                    health: Arc::new(health),
                });
                Ok(revision)
            }
            (Err(LiveError::NeverSynced), _) => Err(LiveError::NeverSynced),
            (Err(e), Some(c)) => {
                tracing::warn!(error = %e, revision = c.revision.info.revision, "config store failed; serving the cached revision");
                self.set(Cached {
                    checked_at: now,
                    ..c.clone()
                });
                Ok(c.revision)
            }
            (Err(e), None) => Err(e),
        }
    }

    async fn fetch(&self, previous: Option<&Cached>) -> Result<(Arc<Revision>, Health), LiveError> {
        let (head, health) = self.store.head_and_health().await?;
        let Some(head) = head else {
            return Err(LiveError::NeverSynced);
        };
        if let Some(c) = previous
            && c.revision.info.revision == head.revision
        {
            return Ok((c.revision.clone(), health));
        }
        let revision = Arc::new(self.store.load(&head).await?);
        tracing::info!(revision = head.revision, "loaded handler config revision");
        Ok((revision, health))
    }

    /// The handlers' runtime state as last read (with the revision that
    /// [`Self::current`] returned; empty before the first read).
    pub fn health(&self) -> Arc<Health> {
        self.cached().map(|c| c.health).unwrap_or_default()
    }

    /// Takes a state this process just wrote, so that it acts on it before
    /// the next read.
    pub fn note(&self, state: HandlerHealth) {
        if let Some(mut c) = self.cached() {
            let mut health = (*c.health).clone();
            health.insert(state.handler_id, state);
            c.health = Arc::new(health);
            self.set(c);
        }
    }

    /// The live revision and the enabled handlers of (event, phase), in the order they run.
    pub async fn chain(
        &self,
        event: Event,
        phase: Phase,
    ) -> Result<(Arc<Revision>, Vec<Handler>), LiveError> {
        let rev = self.current().await?;
        let chain = rev
            .config
            .chain_for(event, phase)
            .into_iter()
            .cloned()
            .collect();
        Ok((rev, chain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ParseOptions};
    use crate::store::memory::MemoryConfigStore;
    use crate::sync::{Source, apply, plan_against};

    async fn sync(store: &MemoryConfigStore, priority: u32) {
        let src = format!(
            "version = 1\n[[handler]]\nid = 1\nname = \"a\"\nevent = \"clients.create\"\npriority = {priority}\nhttp = {{ url = \"https://a.example.com\" }}\n"
        );
        let config = Config::parse("t.toml", &src, &ParseOptions::default()).unwrap();
        let source = Source {
            file: "t.toml".into(),
            text: src,
            git_commit: None,
            synced_by: "t".into(),
        };
        let p = plan_against(store, config, source).await.unwrap();
        apply(store, &p).await.unwrap();
    }

    #[tokio::test]
    async fn a_failing_store_is_answered_from_the_cache_and_checked_again_later() {
        let store = MemoryConfigStore::new();
        sync(&store, 1).await;
        let t0 = Instant::now();
        let offset = Arc::new(std::sync::Mutex::new(Duration::ZERO));
        let o = offset.clone();
        let live = LiveConfig::with_clock(
            store,
            Duration::from_secs(2),
            Arc::new(move || t0 + *o.lock().unwrap()),
        );
        let at = |secs: u64| *offset.lock().unwrap() = Duration::from_secs(secs);
        assert_eq!(live.current().await.unwrap().info.revision, 1);

        live.store().set_failing(true);
        at(3);
        assert_eq!(
            live.current().await.unwrap().info.revision,
            1,
            "served from the cache"
        );
        let reads = live.store().head_reads();
        at(4);
        live.current().await.unwrap();
        assert_eq!(
            live.store().head_reads(),
            reads,
            "backed off: no new read within max_age"
        );

        live.store().set_failing(false);
        sync(live.store(), 2).await;
        at(6);
        assert_eq!(
            live.current().await.unwrap().info.revision,
            2,
            "recovered at the next check"
        );
    }

    #[tokio::test]
    async fn without_a_cached_copy_a_failure_is_an_error() {
        let store = MemoryConfigStore::new();
        assert!(matches!(
            LiveConfig::new(store).current().await,
            Err(LiveError::NeverSynced)
        ));
        let store = MemoryConfigStore::new();
        store.set_failing(true);
        assert!(matches!(
            LiveConfig::new(store).current().await,
            Err(LiveError::Store(_))
        ));
    }
}
