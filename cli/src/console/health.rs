//! A handler's health from its recent calls: counts, failure rate, duration
//! percentiles, last error, and calls per hour (for the sparkline and the
//! chart of calls by outcome).

use std::collections::BTreeMap;

use chrono::{DateTime, Timelike, Utc};
use hooks_core::chain::Outcome;
use hooks_core::config::HandlerId;
use hooks_core::records::LogEntry;

/// Hours shown by the charts.
pub(crate) const HOURS: usize = 24;

/// One handler's figures over the calls looked at.
#[derive(Debug, Clone, Default)]
pub(crate) struct Health {
    pub calls: u64,
    pub failures: u64,
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub last_error: Option<(DateTime<Utc>, String)>,
    /// Calls per hour, oldest first, the last being the current hour.
    pub per_hour: [u64; HOURS],
}

impl Health {
    /// Failed, timed out or interrupted, in percent of the calls.
    pub(crate) fn failure_rate(&self) -> Option<f64> {
        (self.calls > 0).then(|| self.failures as f64 * 100.0 / self.calls as f64)
    }
}

/// Whether a call counts as a failure of its handler (a forbid is an answer).
pub(crate) fn is_failure(o: Outcome) -> bool {
    matches!(
        o,
        Outcome::Failed | Outcome::TimedOut | Outcome::Interrupted
    )
}

/// The index of the hour `t` falls in among the [`HOURS`] ending with `now`'s.
pub(crate) fn hour_slot(now: DateTime<Utc>, t: DateTime<Utc>) -> Option<usize> {
    let floor = |x: DateTime<Utc>| {
        x.with_minute(0)
            .and_then(|x| x.with_second(0))
            .and_then(|x| x.with_nanosecond(0))
            .unwrap_or(x)
    };
    let ago = (floor(now) - floor(t)).num_hours();
    usize::try_from(ago)
        .ok()
        .filter(|a| *a < HOURS)
        .map(|a| HOURS - 1 - a)
}

/// The `q`-th percentile (0–100) of sorted values, nearest rank.
pub(crate) fn percentile(sorted: &[u64], q: u64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q as usize * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// Each handler's health over `calls` (any order).
pub(crate) fn per_handler(calls: &[LogEntry], now: DateTime<Utc>) -> BTreeMap<HandlerId, Health> {
    let mut out: BTreeMap<HandlerId, Health> = BTreeMap::new();
    let mut durations: BTreeMap<HandlerId, Vec<u64>> = BTreeMap::new();
    for e in calls.iter().filter(|e| e.record.outcome.was_called()) {
        let r = &e.record;
        let h = out.entry(r.handler_id).or_default();
        h.calls += 1;
        if is_failure(r.outcome) {
            h.failures += 1;
            let message = r
                .error
                .clone()
                .unwrap_or_else(|| r.outcome.as_str().to_owned());
            if h.last_error.as_ref().is_none_or(|(t, _)| *t < r.started_at) {
                h.last_error = Some((r.started_at, message));
            }
        }
        if let Some(slot) = hour_slot(now, r.started_at) {
            h.per_hour[slot] += 1;
        }
        if r.outcome != Outcome::Interrupted {
            durations
                .entry(r.handler_id)
                .or_default()
                .push(r.duration_ms);
        }
    }
    for (id, mut d) in durations {
        d.sort_unstable();
        if let Some(h) = out.get_mut(&id) {
            h.p50_ms = percentile(&d, 50);
            h.p95_ms = percentile(&d, 95);
        }
    }
    out
}

/// Calls per hour and outcome, oldest hour first.
pub(crate) fn per_hour_by_outcome(
    calls: &[LogEntry],
    now: DateTime<Utc>,
) -> BTreeMap<&'static str, [u64; HOURS]> {
    let mut out: BTreeMap<&'static str, [u64; HOURS]> = BTreeMap::new();
    for e in calls {
        if let Some(slot) = hour_slot(now, e.record.started_at) {
            out.entry(e.record.outcome.as_str()).or_insert([0; HOURS])[slot] += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 95), Some(95));
        assert_eq!(percentile(&[7], 95), Some(7));
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[1, 2, 3], 50), Some(2));
    }

    #[test]
    fn hours_slot_from_the_current_one_back() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T13:20:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(hour_slot(now, at("2026-12-01T13:00:00Z")), Some(HOURS - 1));
        assert_eq!(hour_slot(now, at("2026-12-01T12:59:59Z")), Some(HOURS - 2));
        assert_eq!(hour_slot(now, at("2026-11-30T14:00:00Z")), Some(0));
        assert_eq!(hour_slot(now, at("2026-11-30T13:59:00Z")), None);
        assert_eq!(hour_slot(now, at("2026-12-01T14:00:00Z")), None);
    }
}
