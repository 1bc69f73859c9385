//! Pausing a sick handler: its events wait, nothing is thrown away.
//!
//! An `after` handler whose retryable failures (a timeout, a 5xx, a refused
//! connection…) in a row, across events, number at least `pause_after` and
//! span at least `pause_window` (60 s unless `[defaults]` says otherwise) is
//! **paused**. Both must hold: a count alone is filled in a second by one
//! batch of concurrent invocations meeting a blip of the endpoint, and a
//! short outage must not stop every key for minutes. While paused:
//!
//! - an event that reaches it waits, if the handler is `block`: the chain
//!   stops there, the event's message is hidden until the next probe time,
//!   and its attempts are not used (so nothing is dead-lettered because of
//!   the pause). Events behind it in its key wait behind it, as always;
//!   events of other keys that do not reach the handler go on.
//! - an event passes it, if the handler is `skip`: the record says
//!   `paused`, and the handler is done with for that event.
//! - one real call at a time is let through as a **probe**, every
//!   `probe_every` ([`PROBE_FIRST`]). A probe that succeeds resumes the
//!   handler; waiting events flow again in their order as their messages
//!   come back (within one probe interval). A probe that fails leaves the
//!   handler paused, and its event waits again without using an attempt.
//!   One failed probe is not a verdict (an endpoint that is up still has
//!   its ordinary faults): the wait stays `probe_every` until
//!   [`PROBES_BEFORE_BACKOFF`] probes in a row have failed (each probe's
//!   next time is set when it is claimed, so the fourth probe still comes
//!   one interval after the third), and only then doubles, up to
//!   [`PROBE_MAX`]. The streak's start (`failing_since`) is cleared with
//!   its count by a success; a success this process does not see as ending
//!   a streak (its cached count is 0) leaves both to the next reset.
//!
//! `hooks pause ID` pauses by hand (no probes: it lasts until `hooks resume
//! ID`), `hooks resume ID` resumes either kind. Every change is logged in
//! the function logs and kept, with its reason, in the handler's state.
//!
//! The state is one small item per handler beside the config's `HEAD` item
//! (`pk = HEAD`, `sk = HEALTH#<id>`), so the functions read it with `HEAD`
//! in the same query, through the config's cache, at no extra cost. The
//! failure count and the time of the streak's first failure are attributes
//! of that item, written atomically with each failure (one write, no read);
//! the rest (pause, history) is a document written only when it changes,
//! with a condition on its version, so concurrent dispatch invocations
//! never lose a count or take two probes.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Config, HandlerId, Phase, Status};

pub use crate::config::{PAUSE_WINDOW, PROBE_FIRST};
/// Failed probes in a row before the wait between probes starts doubling.
pub const PROBES_BEFORE_BACKOFF: u32 = 3;
/// The longest wait between probes (and so the longest a waiting event
/// waits after a resume before it flows).
pub const PROBE_MAX: Duration = Duration::from_secs(5 * 60);
/// How long a waiting event of a handler paused by hand is hidden before it
/// looks again.
pub const MANUAL_RECHECK: Duration = Duration::from_secs(60);
/// Conditional writes tried before a change of a handler's state is given up.
pub const WRITE_TRIES: usize = 16;

/// State changes kept per handler.
pub const HISTORY: usize = 20;

/// One handler's runtime state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HandlerHealth {
    pub handler_id: HandlerId,
    /// Retryable failures in a row, across events (0 after a success).
    pub failures: u32,
    /// When the first of those failures was counted (`None` at 0). Kept,
    /// like the count, in an attribute of its own, not in the document.
    #[serde(skip)]
    pub failing_since: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Paused>,
    /// The newest state changes last, at most [`HISTORY`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<StateChange>,
    /// Bumped by each write; a write is made on condition that it is unchanged.
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paused {
    pub since: DateTime<Utc>,
    /// `auto`, or the operator who paused it.
    pub by: String,
    pub reason: String,
    /// When the next probe may be made; `None` for a pause by hand (never probed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_at: Option<DateTime<Utc>>,
    /// The wait before the probe after next.
    pub probe_every_secs: u64,
    /// Probes made since the pause.
    #[serde(default)]
    pub probes: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    pub at: DateTime<Utc>,
    /// `paused` or `resumed`.
    pub to: String,
    pub by: String,
    pub reason: String,
}

/// The state of every handler that has any, by id.
pub type Health = BTreeMap<HandlerId, HandlerHealth>;

/// A handler's retryable failures in a row, as the store counted them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streak {
    pub failures: u32,
    /// When the first of them was counted.
    pub since: DateTime<Utc>,
}

/// The paused handlers that matter to `config`: in it, enabled, `after`
/// (a deleted, disabled or shadow handler's old state is not a pause).
pub fn paused_in<'a>(health: &'a Health, config: &Config) -> Vec<&'a HandlerHealth> {
    health
        .values()
        .filter(|h| h.paused.is_some())
        .filter(|h| {
            config
                .handler(h.handler_id)
                .is_some_and(|c| c.status == Status::Enabled && c.phase == Phase::After)
        })
        .collect()
}

/// What an event that reaches a handler does.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// Call it.
    Call,
    /// Call it as the paused handler's probe; if the probe fails (retryably),
    /// the event waits until `until`.
    Probe {
        until: DateTime<Utc>,
        reason: String,
    },
    /// It is paused: wait until `until` (a `block` handler), or pass it (`skip`).
    Paused {
        until: DateTime<Utc>,
        reason: String,
    },
}

/// Whole seconds.
pub fn secs(d: Duration) -> u64 {
    d.as_secs()
}

/// `secs` seconds after `now`.
pub fn after(now: DateTime<Utc>, secs: u64) -> DateTime<Utc> {
    now + chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
}

impl HandlerHealth {
    pub fn new(handler_id: HandlerId) -> Self {
        HandlerHealth {
            handler_id,
            ..Default::default()
        }
    }

    fn log(&mut self, at: DateTime<Utc>, to: &str, by: &str, reason: &str) {
        self.history.push(StateChange {
            at,
            to: to.to_owned(),
            by: by.to_owned(),
            reason: reason.to_owned(),
        });
        let extra = self.history.len().saturating_sub(HISTORY);
        self.history.drain(..extra);
    }

    /// What an event reaching the handler at `now` does; `Probe` only says
    /// a probe is due: [`Self::take_probe`] claims it.
    pub fn gate(&self, now: DateTime<Utc>) -> Gate {
        let Some(p) = &self.paused else {
            return Gate::Call;
        };
        match p.probe_at {
            Some(at) if at <= now => Gate::Probe {
                until: now,
                reason: self.describe(),
            },
            Some(at) => Gate::Paused {
                until: at,
                reason: self.describe(),
            },
            None => Gate::Paused {
                until: after(now, secs(MANUAL_RECHECK)),
                reason: self.describe(),
            },
        }
    }

    /// "handler 10 is paused since … by auto: 10 retryable failures in a row (last: …)".
    pub fn describe(&self) -> String {
        match &self.paused {
            None => format!("handler {} is running", self.handler_id),
            Some(p) => format!(
                "handler {} is paused since {} by {}: {}",
                self.handler_id,
                p.since.format("%Y-%m-%d %H:%M:%S UTC"),
                p.by,
                p.reason
            ),
        }
    }

    /// The state after claiming the due probe at `now`: the next probe
    /// comes one interval later, and the interval doubles (up to
    /// [`PROBE_MAX`]) once [`PROBES_BEFORE_BACKOFF`] probes have been
    /// claimed (a claimed probe that did not resume the handler failed, or
    /// never answered); `None` if none is due.
    pub fn take_probe(&self, now: DateTime<Utc>) -> Option<HandlerHealth> {
        let p = self.paused.as_ref()?;
        if p.probe_at.is_none_or(|at| at > now) {
            return None;
        }
        let mut next = self.clone();
        let np = next.paused.as_mut()?;
        np.probe_at = Some(after(now, np.probe_every_secs));
        np.probes += 1;
        if np.probes >= PROBES_BEFORE_BACKOFF {
            np.probe_every_secs =
                (np.probe_every_secs * 2).min(secs(PROBE_MAX).max(np.probe_every_secs));
        }
        Some(next)
    }

    /// The state once the handler has the retryable failures in a row of
    /// `streak` (the store counts them, [`ConfigStore::add_failure`]):
    /// paused when they number at least `threshold` (0: never) and span at
    /// least `window`; `None` if nothing changes (already paused: a probe
    /// that fails changes nothing, its probe time already moved out).
    pub fn pause_at(
        &self,
        streak: Streak,
        threshold: u32,
        window: Duration,
        probe_every: Duration,
        error: &str,
        now: DateTime<Utc>,
    ) -> Option<HandlerHealth> {
        let spans = (now - streak.since).to_std().unwrap_or_default();
        if self.paused.is_some() || threshold == 0 || streak.failures < threshold || spans < window
        {
            return None;
        }
        let mut next = self.clone();
        next.failures = streak.failures;
        next.failing_since = Some(streak.since);
        let reason = format!(
            "{} retryable failures in a row over {} s (the last: {})",
            streak.failures,
            spans.as_secs(),
            crate::text::cut(error.to_owned(), 200)
        );
        let every = secs(probe_every).max(1);
        next.paused = Some(Paused {
            since: now,
            by: "auto".into(),
            reason: reason.clone(),
            probe_at: Some(after(now, every)),
            probe_every_secs: every,
            probes: 0,
        });
        next.log(now, "paused", "auto", &reason);
        Some(next)
    }

    /// The state after the handler answered at `now` (a success, or a
    /// permanent failure: it is up): a paused handler is resumed only by its
    /// own probe, and only if it paused itself (a pause by hand lasts until
    /// `hooks resume`; a call that started before the pause proves nothing).
    /// `None` if nothing changes. (The failure count is reset apart:
    /// [`ConfigStore::reset_failures`].)
    pub fn after_answer(&self, probe: bool, now: DateTime<Utc>) -> Option<HandlerHealth> {
        match &self.paused {
            Some(p) if probe && p.probe_at.is_some() => {
                let mut next = self.clone();
                next.failures = 0;
                next.failing_since = None;
                next.paused = None;
                let reason = format!("its probe was answered (after {} probes)", p.probes);
                next.log(now, "resumed", "auto", &reason);
                Some(next)
            }
            _ => None,
        }
    }

    /// Paused by an operator: no probes until resumed by hand.
    pub fn pause_by(&self, by: &str, reason: &str, now: DateTime<Utc>) -> HandlerHealth {
        let mut next = self.clone();
        next.paused = Some(Paused {
            since: now,
            by: by.to_owned(),
            reason: reason.to_owned(),
            probe_at: None,
            probe_every_secs: secs(PROBE_FIRST),
            probes: 0,
        });
        next.log(now, "paused", by, reason);
        next
    }

    /// Resumed by an operator.
    pub fn resume_by(&self, by: &str, reason: &str, now: DateTime<Utc>) -> HandlerHealth {
        let mut next = self.clone();
        next.paused = None;
        next.failures = 0;
        next.failing_since = None;
        next.log(now, "resumed", by, reason);
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `failures` in a row, the first `ago` seconds before `now`.
    fn streak(failures: u32, ago: i64, now: DateTime<Utc>) -> Streak {
        Streak {
            failures,
            since: now - chrono::Duration::seconds(ago),
        }
    }
    const W: Duration = PAUSE_WINDOW;

    #[test]
    fn a_handler_pauses_when_its_count_reaches_the_threshold() {
        let now = Utc::now();
        let h = HandlerHealth::new(7);
        assert_eq!(
            h.pause_at(streak(2, 90, now), 3, W, PROBE_FIRST, "HTTP 503", now),
            None
        );
        assert_eq!(
            h.pause_at(streak(500, 5, now), 3, W, PROBE_FIRST, "HTTP 503", now),
            None,
            "a burst within a few seconds does not pause, however many"
        );
        assert_eq!(h.after_answer(false, now), None, "nothing to write");
        let h = h
            .pause_at(streak(3, 60, now), 3, W, PROBE_FIRST, "HTTP 503", now)
            .expect("paused at 3 over 60 s");
        let p = h.paused.as_ref().expect("paused");
        assert_eq!(p.by, "auto");
        assert!(
            p.reason.contains("3 retryable failures in a row over 60 s")
                && p.reason.contains("HTTP 503"),
            "{}",
            p.reason
        );
        assert_eq!(h.history.last().map(|c| c.to.as_str()), Some("paused"));
        assert_eq!(
            h.pause_at(streak(4, 90, now), 3, W, PROBE_FIRST, "x", now),
            None,
            "a paused handler is not paused again"
        );
        assert!(matches!(h.gate(now), Gate::Paused { .. }));
        assert_eq!(
            HandlerHealth::new(8).pause_at(streak(1000, 3600, now), 0, W, PROBE_FIRST, "x", now),
            None,
            "0: never"
        );
    }

    #[test]
    fn probes_come_one_at_a_time_at_a_growing_interval_and_a_success_resumes() {
        let t0 = Utc::now();
        let mut h = HandlerHealth::new(7)
            .pause_at(
                streak(1, 0, t0),
                1,
                Duration::ZERO,
                PROBE_FIRST,
                "timeout",
                t0,
            )
            .expect("paused: window 0, the count alone decides");
        let first = t0 + chrono::Duration::seconds(30);
        assert!(matches!(h.gate(t0), Gate::Paused { until, .. } if until == first));
        assert_eq!(h.take_probe(t0), None, "not due yet");
        let mut at = first;
        let mut waits = Vec::new();
        for _ in 0..6 {
            assert!(matches!(h.gate(at), Gate::Probe { .. }));
            h = h.take_probe(at).expect("due");
            assert_eq!(h.take_probe(at), None, "one probe per due time");
            let next = h
                .paused
                .as_ref()
                .and_then(|p| p.probe_at)
                .expect("next probe");
            waits.push((next - at).num_seconds());
            at = next;
        }
        // Three failed probes before the wait grows: one failure is luck.
        assert_eq!(waits, [30, 30, 30, 60, 120, 240]);
        assert_eq!(
            h.after_answer(false, at),
            None,
            "a call that is not the probe resumes nothing"
        );
        let resumed = h.after_answer(true, at).expect("resumed");
        assert!(resumed.paused.is_none());
        assert_eq!(
            resumed.history.last().map(|c| c.to.as_str()),
            Some("resumed")
        );
    }

    #[test]
    fn a_pause_by_hand_is_never_probed_and_threshold_zero_never_pauses() {
        let now = Utc::now();
        let h = HandlerHealth::new(7).pause_by("ops@example", "maintenance", now);
        let later = now + chrono::Duration::days(1);
        assert!(matches!(h.gate(later), Gate::Paused { .. }));
        assert_eq!(h.take_probe(later), None);
        assert_eq!(
            h.after_answer(true, later),
            None,
            "only `hooks resume` ends a pause by hand"
        );
        let r = h.resume_by("ops@example", "done", later);
        assert_eq!(r.gate(later), Gate::Call);
        assert_eq!(r.history.len(), 2);
    }

    #[test]
    fn the_history_keeps_the_newest_changes() {
        let now = Utc::now();
        let mut h = HandlerHealth::new(7);
        for i in 0..(HISTORY + 5) {
            h = h
                .pause_by("a", &format!("{i}"), now)
                .resume_by("a", "r", now);
        }
        assert_eq!(h.history.len(), HISTORY);
        assert_eq!(h.history.last().map(|c| c.reason.as_str()), Some("r"));
    }
}
