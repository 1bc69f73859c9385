//! The live config as the functions read it: cached, so that the steady-state
//! cost is one small read (the `HEAD` item) per `max_age`, and a new revision
//! is seen at most `max_age` after `hooks sync` returns.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{ConfigStore, Revision, StoreError};
use crate::config::{Handler, Phase};
use crate::events::Event;

/// How old a cached revision may get before `HEAD` is read again.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(2);

/// The clock the reader uses; injectable so that tests can move time.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Reads the live revision through a cache.
pub struct LiveConfig<S> {
    store: S,
    max_age: Duration,
    clock: Clock,
    cached: Mutex<Option<Cached>>,
}

struct Cached {
    checked_at: Instant,
    revision: Arc<Revision>,
}

impl<S> std::fmt::Debug for LiveConfig<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveConfig")
            .field("max_age", &self.max_age)
            .finish()
    }
}

/// There is no live revision yet.
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
            cached: Mutex::new(None),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The live revision. Reads `HEAD` when the cached copy is older than
    /// `max_age`, and the whole document only when `HEAD` moved. Concurrent
    /// callers share one read. When the store cannot be reached, a cached
    /// revision is still served (and logged), so a blip of the store does not
    /// stop handlers; the next call tries again.
    pub async fn current(&self) -> Result<Arc<Revision>, LiveError> {
        let mut cached = self.cached.lock().await;
        let now = (self.clock)();
        if let Some(c) = cached.as_ref()
            && now.saturating_duration_since(c.checked_at) < self.max_age
        {
            return Ok(c.revision.clone());
        }
        let head = match self.store.head().await {
            Ok(h) => h,
            Err(e) => {
                if let Some(c) = cached.as_ref()
                    && e.is_transient()
                {
                    tracing::warn!(error = %e, revision = c.revision.info.revision, "config store unreachable; using the cached revision");
                    return Ok(c.revision.clone());
                }
                return Err(e.into());
            }
        };
        let Some(head) = head else {
            return Err(LiveError::NeverSynced);
        };
        if let Some(c) = cached.as_mut()
            && c.revision.info.revision == head.revision
        {
            c.checked_at = now;
            return Ok(c.revision.clone());
        }
        let revision = Arc::new(self.store.load(&head).await?);
        tracing::info!(revision = head.revision, "loaded handler config revision");
        *cached = Some(Cached {
            checked_at: now,
            revision: revision.clone(),
        });
        Ok(revision)
    }

    /// The revision number and the enabled handlers of (event, phase), in the order they run.
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
