//! CloudWatch metrics in the Embedded Metric Format (EMF): JSON lines on the
//! function's standard output, from which CloudWatch Logs extracts the
//! metrics. No API call, no extra permission; locally the same lines are in
//! the function logs.
//!
//! The functions tally as they go and write at the end of each invocation
//! ([`Metrics::flush`]): one line for the service's figures, and one per
//! handler called (EMF takes one value per dimension per line). A line per
//! call would cost log ingestion in proportion to the calls; a line per
//! handler per invocation costs about a tenth of that with batches of 10.
//!
//! Namespace `ProvisioningHooks`, every metric with the dimension `Stack`
//! (the CloudFormation stack; `HOOKS_STACK`):
//!
//! | metric | unit | by | from |
//! |---|---|---|---|
//! | `EventsAccepted` | Count | Stack | ingest: new events recorded (a repeated id counts as a duplicate) |
//! | `EventsDuplicate` | Count | Stack | ingest: ids seen before |
//! | `Decisions` | Count | Stack | ingest: decisions made |
//! | `EventsCompleted` | Count | Stack | dispatch: every after handler done |
//! | `EventsForbidden` | Count | Stack | dispatch: stopped by a forbid |
//! | `EventsDeadLettered` | Count | Stack | dispatch: moved to the dead-letter queue |
//! | `EndToEndLatency` | Milliseconds | Stack | dispatch: ingest's queueing to the last handler |
//! | `PausedHandlers` | Count | Stack | dispatch: handlers paused at the end of the invocation |
//! | `Calls` | Count | Stack, HandlerId | both: calls made (not conditions false) |
//! | `Failures` | Count | Stack, HandlerId | both: failed, timed out, interrupted |
//! | `Duration` | Milliseconds | Stack, HandlerId | both: each call's duration |
//!
//! The lines are kept short, since log ingestion is billed by the byte: a
//! count of 0 is left out (no data point; an alarm treats it as missing),
//! the unit of counts is left out (CloudWatch's default, `None`), values
//! are whole milliseconds.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::chain::{CallRecord, Outcome};
use crate::config::HandlerId;

pub const NAMESPACE: &str = "ProvisioningHooks";

/// The variable that names the stack (the template sets it).
pub const STACK_ENV: &str = "HOOKS_STACK";

/// The metrics with the `Stack` dimension alone (the rest are per handler).
pub const SERVICE_METRICS: &[&str] = &[
    "EventsAccepted",
    "EventsDuplicate",
    "Decisions",
    "EventsCompleted",
    "EventsForbidden",
    "EventsDeadLettered",
    "EndToEndLatency",
    "PausedHandlers",
];

/// Counts are written without a unit (CloudWatch's `None`): shorter lines.
const COUNT: &str = "";

/// EMF takes at most 100 values of one metric in one line.
const MAX_VALUES: usize = 100;

/// The service's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counter {
    EventsAccepted,
    EventsDuplicate,
    Decisions,
    EventsCompleted,
    EventsForbidden,
    EventsDeadLettered,
}

impl Counter {
    fn name(self) -> &'static str {
        match self {
            Counter::EventsAccepted => "EventsAccepted",
            Counter::EventsDuplicate => "EventsDuplicate",
            Counter::Decisions => "Decisions",
            Counter::EventsCompleted => "EventsCompleted",
            Counter::EventsForbidden => "EventsForbidden",
            Counter::EventsDeadLettered => "EventsDeadLettered",
        }
    }
}

#[derive(Debug, Default)]
struct HandlerTally {
    calls: u64,
    failures: u64,
    durations: Vec<u64>,
}

#[derive(Debug, Default)]
struct Tally {
    counters: BTreeMap<Counter, u64>,
    latencies: Vec<u64>,
    paused: Option<u64>,
    handlers: BTreeMap<HandlerId, HandlerTally>,
}

impl Tally {
    fn is_empty(&self) -> bool {
        self.counters.is_empty()
            && self.latencies.is_empty()
            && self.paused.is_none()
            && self.handlers.is_empty()
    }
}

/// A function's tally since its last flush. Shared by the invocations a
/// process runs at once: a flush writes what they tallied together.
#[derive(Debug)]
pub struct Metrics {
    stack: String,
    tally: Mutex<Tally>,
}

impl Metrics {
    pub fn new(stack: impl Into<String>) -> Metrics {
        Metrics {
            stack: stack.into(),
            tally: Mutex::new(Tally::default()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Tally) -> R) -> R {
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut tally)
    }

    pub fn count(&self, counter: Counter, n: u64) {
        if n > 0 {
            self.with(|t| *t.counters.entry(counter).or_default() += n);
        }
    }

    /// An event finished (completed, forbidden or dead-lettered) this long
    /// after ingest queued it.
    pub fn latency(&self, queued_at: DateTime<Utc>, now: DateTime<Utc>) {
        let ms = u64::try_from((now - queued_at).num_milliseconds()).unwrap_or(0);
        self.with(|t| t.latencies.push(ms));
    }

    /// How many handlers are paused now (the last value of a flush wins).
    pub fn paused(&self, n: u64) {
        self.with(|t| t.paused = Some(n));
    }

    /// The calls of a run: those made (a condition that was false or over
    /// its budget, or a deadline that had passed, is not a call).
    pub fn calls(&self, records: &[CallRecord]) {
        self.with(|t| {
            for r in records
                .iter()
                .filter(|r| r.outcome.was_called() && !r.not_called)
            {
                let h = t.handlers.entry(r.handler_id).or_default();
                h.calls += 1;
                if matches!(
                    r.outcome,
                    Outcome::Failed | Outcome::TimedOut | Outcome::Interrupted
                ) {
                    h.failures += 1;
                }
                if r.outcome != Outcome::Interrupted {
                    h.durations.push(r.duration_ms);
                }
            }
        });
    }

    /// The EMF lines of the tally so far, which is emptied.
    pub fn drain(&self, now: DateTime<Utc>) -> Vec<String> {
        let tally = self.with(std::mem::take);
        if tally.is_empty() {
            return Vec::new();
        }
        let mut lines = Vec::new();
        let mut service: Vec<(&str, &str, Value)> = tally
            .counters
            .iter()
            .map(|(c, n)| (c.name(), COUNT, json!(n)))
            .collect();
        if let Some(p) = tally.paused {
            service.push(("PausedHandlers", COUNT, json!(p)));
        }
        let mut latencies = tally.latencies.chunks(MAX_VALUES);
        if let Some(first) = latencies.next() {
            service.push(("EndToEndLatency", "Milliseconds", json!(first)));
        }
        if !service.is_empty() {
            lines.push(self.line(now, None, service));
        }
        for rest in latencies {
            lines.push(self.line(
                now,
                None,
                vec![("EndToEndLatency", "Milliseconds", json!(rest))],
            ));
        }
        for (id, h) in tally.handlers {
            let mut durations = h.durations.chunks(MAX_VALUES);
            let mut first = vec![("Calls", COUNT, json!(h.calls))];
            if h.failures > 0 {
                first.push(("Failures", COUNT, json!(h.failures)));
            }
            if let Some(d) = durations.next() {
                first.push(("Duration", "Milliseconds", json!(d)));
            }
            lines.push(self.line(now, Some(id), first));
            for d in durations {
                lines.push(self.line(now, Some(id), vec![("Duration", "Milliseconds", json!(d))]));
            }
        }
        lines
    }

    fn line(
        &self,
        now: DateTime<Utc>,
        handler: Option<HandlerId>,
        metrics: Vec<(&str, &str, Value)>,
    ) -> String {
        let mut dims = vec!["Stack"];
        let mut doc = Map::new();
        doc.insert("Stack".into(), json!(self.stack));
        if let Some(id) = handler {
            dims.push("HandlerId");
            doc.insert("HandlerId".into(), json!(id.to_string()));
        }
        let declared: Vec<Value> = metrics
            .iter()
            .map(|(name, unit, _)| match *unit {
                "" => json!({ "Name": name }),
                unit => json!({"Name": name, "Unit": unit}),
            })
            .collect();
        for (name, _, value) in metrics {
            doc.insert(name.into(), value);
        }
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": now.timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [dims],
                    "Metrics": declared,
                }],
            }),
        );
        Value::Object(doc).to_string()
    }

    /// Writes the tally to standard output, one EMF document a line.
    pub fn flush(&self) {
        let lines = self.drain(Utc::now());
        if lines.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        for line in lines {
            // Nothing to do if stdout is gone: the metrics are lost, the work is not.
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Phase;
    use crate::events::Event;

    fn record(handler: HandlerId, outcome: Outcome, ms: u64) -> CallRecord {
        let name = format!("h{handler}");
        let mut r = CallRecord::without_call(
            "e",
            Event::ClientsCreate,
            Phase::After,
            handler,
            &name,
            outcome,
            None,
        );
        r.duration_ms = ms;
        r
    }

    fn parse(lines: &[String]) -> Vec<Value> {
        lines
            .iter()
            .map(|l| serde_json::from_str(l).expect("each line is one JSON document"))
            .collect()
    }

    /// Every metric a line declares is in it, under the namespace, with the
    /// declared dimensions present: what CloudWatch needs to extract it.
    fn assert_valid_emf(doc: &Value) {
        let aws = &doc["_aws"];
        assert!(aws["Timestamp"].is_i64(), "{doc}");
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        for dim in directive["Dimensions"][0].as_array().expect("dimensions") {
            assert!(doc[dim.as_str().expect("name")].is_string(), "{doc}");
        }
        for m in directive["Metrics"].as_array().expect("metrics") {
            let v = &doc[m["Name"].as_str().expect("name")];
            let n = v.as_array().map_or(1, Vec::len);
            assert!(v.is_number() || v.is_array(), "{doc}");
            assert!((1..=MAX_VALUES).contains(&n), "{doc}");
        }
    }

    #[test]
    fn a_tally_becomes_one_service_line_and_one_line_per_handler() {
        let m = Metrics::new("prod");
        m.count(Counter::EventsCompleted, 2);
        m.count(Counter::EventsDeadLettered, 1);
        m.count(Counter::EventsAccepted, 0);
        let now = Utc::now();
        m.latency(now - chrono::TimeDelta::milliseconds(1500), now);
        m.calls(&[
            record(10, Outcome::Processed, 12),
            record(10, Outcome::Failed, 30),
            record(20, Outcome::ConditionFalse, 0),
            record(30, Outcome::Interrupted, 0),
        ]);
        let docs = parse(&m.drain(now));
        docs.iter().for_each(assert_valid_emf);
        assert_eq!(docs.len(), 3, "service, handler 10, handler 30: {docs:?}");
        assert_eq!(docs[0]["EventsCompleted"], 2);
        assert_eq!(docs[0]["EventsDeadLettered"], 1);
        assert!(
            docs[0].get("EventsAccepted").is_none(),
            "zero counts are left out"
        );
        assert_eq!(docs[0]["EndToEndLatency"], json!([1500]));
        assert_eq!(docs[0]["Stack"], "prod");
        assert_eq!(docs[1]["HandlerId"], "10");
        assert_eq!(
            (&docs[1]["Calls"], &docs[1]["Failures"]),
            (&json!(2), &json!(1))
        );
        assert_eq!(docs[1]["Duration"], json!([12, 30]));
        assert_eq!(docs[2]["HandlerId"], "30");
        assert_eq!(docs[2]["Failures"], 1);
        assert!(
            docs[2].get("Duration").is_none(),
            "an interrupted call has no duration"
        );
        assert!(m.drain(now).is_empty(), "a drain empties the tally");
        for d in &docs[..1] {
            for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .expect("metrics")
            {
                let name = m["Name"].as_str().expect("name");
                assert!(SERVICE_METRICS.contains(&name), "{name} is listed");
            }
        }
    }

    #[test]
    fn more_than_a_hundred_values_are_split_across_lines() {
        let m = Metrics::new("prod");
        let calls: Vec<CallRecord> = (0..250).map(|i| record(1, Outcome::Processed, i)).collect();
        m.calls(&calls);
        let docs = parse(&m.drain(Utc::now()));
        docs.iter().for_each(assert_valid_emf);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0]["Calls"], 250);
        assert!(
            docs[0].get("Failures").is_none(),
            "a zero count is left out"
        );
        let values: usize = docs
            .iter()
            .map(|d| d["Duration"].as_array().map_or(0, Vec::len))
            .sum();
        assert_eq!(values, 250);
        assert!(docs[1].get("Calls").is_none(), "counted once");
    }

    #[test]
    fn the_paused_gauge_is_written_even_at_zero() {
        let m = Metrics::new("prod");
        m.paused(0);
        let docs = parse(&m.drain(Utc::now()));
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["PausedHandlers"], 0);
    }
}
