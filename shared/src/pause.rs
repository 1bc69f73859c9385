//! Pausing in dispatch: the `after` chain's [`PauseGate`] over the live
//! config, and [`write`], the conditional update of a handler's state. The
//! policy itself (what pauses, when a probe is due) is the domain's
//! ([`hooks_domain::pause`], re-exported here).

pub use hooks_domain::pause::*;

use chrono::Utc;

use crate::chain::{CallRecord, Gatekeeper, Outcome};
use crate::config::{Config, Handler, HandlerId, Phase, Status};
use crate::store::live::LiveConfig;
use crate::store::{ConfigStore, StoreError};

/// The `after` chain's gatekeeper in dispatch: asks the handler's state
/// before each call (and claims a due probe), and counts each call's
/// success or retryable failure into it. A store that cannot be written
/// costs a count, never the event: the call's outcome stands.
pub struct PauseGate<'a, S> {
    live: &'a LiveConfig<S>,
    config: &'a Config,
}

impl<S> std::fmt::Debug for PauseGate<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PauseGate")
    }
}

impl<'a, S: ConfigStore> PauseGate<'a, S> {
    pub fn new(live: &'a LiveConfig<S>, config: &'a Config) -> Self {
        PauseGate { live, config }
    }

    /// Keeps the count this process just wrote, until the next read.
    fn note_failures(&self, id: HandlerId, cached: Option<HandlerHealth>, streak: Option<Streak>) {
        let mut state = cached.unwrap_or_else(|| HandlerHealth::new(id));
        state.failures = streak.map_or(0, |s| s.failures);
        state.failing_since = streak.map(|s| s.since);
        self.live.note(state);
    }

    /// [`write`] from the cached state; a failure is logged and costs the change.
    async fn update(
        &self,
        id: HandlerId,
        change: impl Fn(&HandlerHealth) -> Option<HandlerHealth>,
    ) -> Option<HandlerHealth> {
        let cached = self.live.health().get(&id).cloned();
        match write(self.live.store(), id, cached, change).await {
            Ok(Some(next)) => {
                self.live.note(next.clone());
                Some(next)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(handler = id, error = %e, "handler state not written");
                None
            }
        }
    }
}

/// Applies `change` to handler `id`'s state (starting from `current`, as
/// last seen) and writes it on condition that nobody wrote in between; on a
/// conflict reads it again and retries. Returns the state written, or
/// `None` when `change` found nothing to do (or lost [`WRITE_TRIES`] races
/// in a row: as many writers as that at once on one handler's state).
pub async fn write<S: ConfigStore>(
    store: &S,
    id: HandlerId,
    mut current: Option<HandlerHealth>,
    change: impl Fn(&HandlerHealth) -> Option<HandlerHealth>,
) -> Result<Option<HandlerHealth>, StoreError> {
    for _ in 0..WRITE_TRIES {
        let base = current.clone().unwrap_or_else(|| HandlerHealth::new(id));
        let Some(mut next) = change(&base) else {
            return Ok(None);
        };
        next.version = base.version + 1;
        // Version 0: a count without a document yet.
        let expected = Some(base.version).filter(|v| *v > 0);
        if store.put_health(&next, expected).await? {
            log_change(&base, &next);
            return Ok(Some(next));
        }
        current = store.health_of(id).await?;
    }
    Ok(None)
}

fn log_change(before: &HandlerHealth, after: &HandlerHealth) {
    match (&before.paused, &after.paused, after.history.last()) {
        (None, Some(p), _) => {
            tracing::warn!(handler = after.handler_id, by = %p.by, reason = %p.reason, "handler paused")
        }
        (Some(_), None, Some(c)) => {
            tracing::warn!(handler = after.handler_id, by = %c.by, reason = %c.reason, "handler resumed")
        }
        _ => {}
    }
}

impl<S: ConfigStore> Gatekeeper for PauseGate<'_, S> {
    async fn observe(&mut self, record: &CallRecord) {
        let counts = record.phase == Phase::After
            && !record.shadow
            && !record.not_called
            && record.outcome.was_called()
            && record.outcome != Outcome::Interrupted;
        let Some(handler) = self.config.handler(record.handler_id).filter(|_| counts) else {
            return;
        };
        let now = Utc::now();
        let threshold = self.config.pause_after_of(handler);
        let id = handler.id;
        let store = self.live.store();
        let cached = self.live.health().get(&id).cloned();
        // A success, or a permanent failure (a 4xx, an unusable answer):
        // either way the handler answered. The count goes back to 0 (one
        // write, only when it is not 0 as far as this process knows: a
        // success costs nothing in steady state).
        if record.outcome.is_success() || record.retryable == Some(false) {
            if record.probe || cached.as_ref().is_some_and(|h| h.failures > 0) {
                match store.reset_failures(id).await {
                    Ok(()) => self.note_failures(id, cached.clone(), None),
                    Err(e) => tracing::warn!(handler = id, error = %e, "failure count not reset"),
                }
            }
            if record.probe {
                self.update(id, |h| h.after_answer(true, now)).await;
            }
        } else if record.retryable == Some(true) && threshold > 0 {
            match store.add_failure(id, now).await {
                Ok(streak) => {
                    self.note_failures(id, cached, Some(streak));
                    if streak.failures >= threshold {
                        let error = record.error.as_deref().unwrap_or("failed");
                        let d = &self.config.defaults;
                        let (window, every) = (d.pause_window, d.probe_every);
                        self.update(id, |h| {
                            h.pause_at(streak, threshold, window, every, error, now)
                        })
                        .await;
                    }
                }
                Err(e) => tracing::warn!(handler = id, error = %e, "failure not counted"),
            }
        }
    }

    async fn gate(&mut self, handler: &Handler) -> Gate {
        if handler.status == Status::Shadow {
            return Gate::Call;
        }
        let Some(state) = self.live.health().get(&handler.id).cloned() else {
            return Gate::Call;
        };
        let now = Utc::now();
        match state.gate(now) {
            Gate::Probe { .. } => match self.update(handler.id, |h| h.take_probe(now)).await {
                Some(next) => {
                    tracing::info!(
                        handler = handler.id,
                        "probing the paused handler with this event's call"
                    );
                    Gate::Probe {
                        until: next
                            .paused
                            .as_ref()
                            .and_then(|p| p.probe_at)
                            .unwrap_or_else(|| after(now, secs(PROBE_FIRST))),
                        reason: next.describe(),
                    }
                }
                // Another invocation took it (or the store failed): wait for the next.
                None => Gate::Paused {
                    until: after(now, secs(PROBE_FIRST)),
                    reason: state.describe(),
                },
            },
            other => other,
        }
    }
}
