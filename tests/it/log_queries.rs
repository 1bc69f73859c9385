//! The execution log's queries (`hooks logs`, the operator's view) against the
//! emulator: records holding their calls, found through the `by_time` and
//! `by_problem` indexes across shards and hours, newest first, filtered by
//! handler, outcome, time and event.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, DurationRound, Utc};
use hooks_core::chain::{CallRecord, Outcome};
use hooks_core::config::Phase;
use hooks_core::events::Event;
use hooks_core::protocol::EventEnvelope;
use hooks_core::records::{EventRecord, LogEntry, LogQuery, QueuedEvent};
use hooks_core::settings::ResourceNames;
use hooks_core::store::events::{EventStore, time_bucket};
use hooks_core::store::logs::LogStore;
use hooks_local::bootstrap;
use hooks_tests::{Emulator, unique};

fn call(id: &str, handler: u32, attempt: u32, outcome: Outcome, at: DateTime<Utc>) -> LogEntry {
    LogEntry {
        record: CallRecord {
            event_id: id.into(),
            event: Event::ClientsUpdate,
            phase: Phase::After,
            handler_id: handler,
            handler_name: format!("h{handler}"),
            attempt,
            started_at: at,
            duration_ms: 5,
            status_code: Some(if outcome == Outcome::Failed { 503 } else { 204 }),
            outcome,
            error: None,
            retryable: None,
            retry_after_secs: None,
            resolution: None,
            reason: None,
            response: None,
            changes: Vec::new(),
        },
        revision: 1,
    }
}

/// A finished record of `id`, last changed at `at`, with `calls`.
fn record(id: &str, at: DateTime<Utc>, calls: Vec<LogEntry>) -> EventRecord {
    let q = QueuedEvent {
        event: EventEnvelope {
            id: id.into(),
            event: Event::ClientsUpdate,
            occurred_at: at,
            data: serde_json::Map::new(),
        },
        key: format!("client:{id}"),
        received_at: at - Duration::seconds(1),
    };
    let mut r = EventRecord::accepted(&q, at);
    r.calls = calls;
    r.succeed(at);
    r
}

fn keys(found: &[LogEntry]) -> Vec<(String, u32, u32)> {
    found
        .iter()
        .map(|e| {
            (
                e.record.event_id.clone(),
                e.record.handler_id,
                e.record.attempt,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_is_found_by_time_handler_outcome_and_event_newest_first() {
    let emu = Emulator::start();
    let sdk = emu.sdk_config().await;
    let names = ResourceNames::prefixed(&unique("logq"));
    bootstrap(&sdk, &names).await.unwrap();
    let events = EventStore::new(emu.dynamodb(), &names.events_table, emu.endpoint());
    let logs = LogStore::new(emu.dynamodb(), &names.events_table, emu.endpoint());

    // 40 events over 4 hours, 3 calls each (handlers 1, 2, 3); every 5th
    // had handler 2 fail once before its success. The newest at half past
    // the last hour, so that each hour holds a known set.
    let now = Utc::now().duration_trunc(Duration::hours(1)).unwrap() - Duration::minutes(30);
    let mut all: Vec<LogEntry> = Vec::new();
    let mut shards = BTreeSet::new();
    for i in 0..40 {
        let id = format!("ev-{i:02}");
        let end = now - Duration::minutes(6 * i64::from(i));
        let mut calls = Vec::new();
        let mut t = end - Duration::seconds(10);
        for h in 1..=3 {
            if h == 2 && i % 5 == 0 {
                calls.push(call(&id, 2, 1, Outcome::Failed, t));
                t += Duration::seconds(1);
                calls.push(call(&id, 2, 2, Outcome::Processed, t));
            } else {
                calls.push(call(&id, h, 1, Outcome::Processed, t));
            }
            t += Duration::seconds(1);
        }
        all.extend(calls.iter().cloned());
        shards.insert(time_bucket(&id, &end));
        events.save(&mut record(&id, end, calls)).await.unwrap();
    }
    // A record changed last a minute from now, without a new call (a
    // replay, a delivery hidden again): its calls are five hours old. It is
    // read first, and must not crowd newer calls out of the answer.
    let late_at = now + Duration::minutes(1);
    let late = vec![
        call("late", 9, 1, Outcome::Failed, now - Duration::hours(5)),
        call(
            "late",
            9,
            2,
            Outcome::Failed,
            now - Duration::hours(5) + Duration::seconds(1),
        ),
    ];
    all.extend(late.iter().cloned());
    events
        .save(&mut record("late", late_at, late))
        .await
        .unwrap();
    // One event with no calls yet (accepted only): in no index.
    events
        .save(&mut record("quiet", now, vec![]))
        .await
        .unwrap();
    assert!(
        shards.len() > 8,
        "several shards of several hours: {shards:?}"
    );
    let newest = |filter: &dyn Fn(&LogEntry) -> bool, n: usize| {
        let mut want: Vec<LogEntry> = all.iter().filter(|e| filter(e)).cloned().collect();
        want.sort_by_key(|e| std::cmp::Reverse(e.record.started_at));
        want.truncate(n);
        keys(&want)
    };

    // The newest calls, whatever the handler. The last hour holds ev-00 to
    // ev-05 (20 calls) and `late` (2): the 21 newest need ev-06, from the
    // hour before, though 22 calls were read by then.
    let q = LogQuery {
        limit: 21,
        ..LogQuery::default()
    };
    assert_eq!(keys(&logs.query(&q).await.unwrap()), newest(&|_| true, 21));

    // One handler's, further back than one hour holds.
    let q = LogQuery {
        handler: Some(3),
        limit: 30,
        ..LogQuery::default()
    };
    assert_eq!(
        keys(&logs.query(&q).await.unwrap()),
        newest(&|e| e.record.handler_id == 3, 30)
    );

    // The failures, through the sparse index.
    let q = LogQuery {
        outcome: Some(Outcome::Failed),
        limit: 100,
        ..LogQuery::default()
    };
    let failed = logs.query(&q).await.unwrap();
    assert_eq!(failed.len(), 10);
    assert_eq!(
        keys(&failed),
        newest(&|e| e.record.outcome == Outcome::Failed, 100)
    );

    // Since a time: nothing older, everything newer.
    let since = now - Duration::minutes(90);
    let q = LogQuery {
        since: Some(since),
        limit: 1000,
        ..LogQuery::default()
    };
    assert_eq!(
        keys(&logs.query(&q).await.unwrap()),
        newest(&|e| e.record.started_at >= since, 1000)
    );

    // One event's calls.
    let q = LogQuery {
        event_id: Some("ev-05".into()),
        limit: 10,
        ..LogQuery::default()
    };
    assert_eq!(
        keys(&logs.query(&q).await.unwrap()),
        newest(&|e| e.record.event_id == "ev-05", 10)
    );
    let q = LogQuery {
        event_id: Some("no-such-event".into()),
        limit: 10,
        ..LogQuery::default()
    };
    assert!(logs.query(&q).await.unwrap().is_empty());
}
