//! The execution log's queries (`hooks logs`, the operator's view) against the
//! emulator: records holding their calls, found through the `by_time` and
//! `by_problem` indexes across shards and days, newest first, filtered by
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
            shadow: false,
            span_id: None,
            probe: false,
            not_called: false,
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
            trace: None,
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

    // 40 events over 5 days, 8 a day, 3 calls each (handlers 1, 2, 3);
    // every 5th had handler 2 fail once before its success. The newest at
    // half past eleven yesterday, so that each day holds a known set.
    let now = Utc::now().duration_trunc(Duration::days(1)).unwrap() - Duration::minutes(30);
    let mut all: Vec<LogEntry> = Vec::new();
    let mut shards = BTreeSet::new();
    for i in 0..40 {
        let id = format!("ev-{i:02}");
        let end = now - Duration::minutes(6 * i64::from(i)) - Duration::days(i64::from(i / 8));
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
        "several shards of several days: {shards:?}"
    );
    let newest = |filter: &dyn Fn(&LogEntry) -> bool, n: usize| {
        let mut want: Vec<LogEntry> = all.iter().filter(|e| filter(e)).cloned().collect();
        want.sort_by_key(|e| std::cmp::Reverse(e.record.started_at));
        want.truncate(n);
        keys(&want)
    };

    // The newest calls, whatever the handler. The last day holds ev-00 to
    // ev-07 (26 calls) and `late` (2): the 29 newest need ev-08, from the
    // day before, though 28 calls were read by then.
    let q = LogQuery {
        limit: 29,
        ..LogQuery::default()
    };
    assert_eq!(keys(&logs.query(&q).await.unwrap()), newest(&|_| true, 29));

    // One handler's, further back than one day holds.
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

/// A listed event: its change time, id, status, key and type.
type Row = (String, String, String, String, String);

#[tokio::test(flavor = "multi_thread")]
async fn the_events_list_and_the_log_filter_by_type_status_key_and_page_back() {
    use hooks_core::records::EventStatus;
    use hooks_core::store::events::time_key;
    use hooks_core::store::recent::{EventQuery, statuses_named};

    let emu = Emulator::start();
    let sdk = emu.sdk_config().await;
    let names = ResourceNames::prefixed(&unique("evq"));
    bootstrap(&sdk, &names).await.unwrap();
    let events = EventStore::new(emu.dynamodb(), &names.events_table, emu.endpoint());
    let logs = LogStore::new(emu.dynamodb(), &names.events_table, emu.endpoint());

    // 30 events over 3 days: every 3rd a clients.create, keys of 4 clients,
    // every 4th dead after a 503, every 7th waiting after a timeout.
    let now = Utc::now().duration_trunc(Duration::days(1)).unwrap() - Duration::minutes(20);
    let mut all: Vec<LogEntry> = Vec::new();
    // (at, id, status, key, event) as the list must show them.
    let mut rows: Vec<Row> = Vec::new();
    for i in 0..30 {
        let id = format!("ev-{i:02}");
        let end = now - Duration::minutes(6 * i64::from(i)) - Duration::days(i64::from(i / 10));
        let kind = if i % 3 == 0 {
            Event::ClientsCreate
        } else {
            Event::ClientsUpdate
        };
        let mut calls = vec![call(
            &id,
            1,
            1,
            Outcome::Processed,
            end - Duration::seconds(5),
        )];
        let second = if i % 4 == 0 {
            Outcome::Failed
        } else if i % 7 == 0 {
            Outcome::TimedOut
        } else {
            Outcome::Processed
        };
        calls.push(call(&id, 2, 1, second, end - Duration::seconds(4)));
        if second == Outcome::TimedOut {
            calls[1].record.status_code = None;
        }
        for c in &mut calls {
            c.record.event = kind;
        }
        let mut r = record(&id, end, calls.clone());
        r.event.event.event = kind;
        r.event.key = format!("client:{}", i % 4);
        r.status = match second {
            Outcome::Failed => EventStatus::Dead,
            Outcome::TimedOut => EventStatus::Failed,
            _ => EventStatus::Succeeded,
        };
        events.save(&mut r).await.unwrap();
        rows.push((
            time_key(&end),
            id,
            r.status.as_str().to_owned(),
            r.event.key.clone(),
            kind.as_str().to_owned(),
        ));
        all.extend(calls);
    }
    rows.sort_by(|a, b| (&b.0, &b.1).cmp(&(&a.0, &a.1)));
    let newest = |filter: &dyn Fn(&LogEntry) -> bool| {
        let mut want: Vec<LogEntry> = all.iter().filter(|e| filter(e)).cloned().collect();
        want.sort_by_key(|e| std::cmp::Reverse(e.record.started_at));
        keys(&want)
    };

    // The log, by event type and by status class, in the index and after.
    let q = LogQuery {
        event: Some(Event::ClientsCreate),
        limit: 1000,
        ..LogQuery::default()
    };
    let got = logs.query(&q).await.unwrap();
    assert_eq!(got.len(), 20);
    assert_eq!(
        keys(&got),
        newest(&|e| e.record.event == Event::ClientsCreate)
    );
    for (class, want) in [(5, 8), (0, 3), (2, 49)] {
        let q = LogQuery {
            status_class: Some(class),
            limit: 1000,
            ..LogQuery::default()
        };
        let got = logs.query(&q).await.unwrap();
        assert_eq!(got.len(), want, "class {class}");
        assert_eq!(
            keys(&got),
            newest(&|e| e.record.status_code.map_or(0, |s| s / 100) == class)
        );
    }
    // Paging back with `until`: every call once, in order.
    let mut paged = Vec::new();
    let mut until = None;
    loop {
        let q = LogQuery {
            until,
            limit: 7,
            ..LogQuery::default()
        };
        let page = logs.query(&q).await.unwrap();
        let Some(last) = page.last() else { break };
        until = Some(last.record.started_at);
        paged.extend(page);
    }
    assert_eq!(keys(&paged), newest(&|_| true));

    // The list of events, newest change first, as the index holds them.
    let list = |q: EventQuery| {
        let logs = logs.clone();
        async move {
            logs.events(&q)
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.at, r.id, r.status, r.key, r.event))
                .collect::<Vec<_>>()
        }
    };
    let every = list(EventQuery {
        limit: 100,
        ..EventQuery::default()
    })
    .await;
    assert_eq!(every, rows);
    let want = |f: &dyn Fn(&Row) -> bool| rows.iter().filter(|r| f(r)).cloned().collect::<Vec<_>>();
    let dead = list(EventQuery {
        statuses: statuses_named("dead").unwrap(),
        limit: 100,
        ..EventQuery::default()
    })
    .await;
    assert_eq!(dead.len(), 8);
    assert_eq!(dead, want(&|r| r.2 == "dead"));
    let waiting = list(EventQuery {
        statuses: statuses_named("waiting").unwrap(),
        limit: 100,
        ..EventQuery::default()
    })
    .await;
    assert_eq!(waiting, want(&|r| r.2 == "failed"));
    let key = list(EventQuery {
        key: Some("client:2".into()),
        event: Some(Event::ClientsCreate),
        limit: 100,
        ..EventQuery::default()
    })
    .await;
    assert_eq!(key, want(&|r| r.3 == "client:2" && r.4 == "clients.create"));
    assert!(!key.is_empty());
    // Pages of 4, each after the last row of the one before.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = list(EventQuery {
            after: after.clone(),
            limit: 4,
            ..EventQuery::default()
        })
        .await;
        let Some(last) = page.last() else { break };
        after = Some((last.0.clone(), last.1.clone()));
        paged.extend(page);
    }
    assert_eq!(paged, rows);
    // A cursor past now (a hand-made URL) starts from now: the newest page,
    // not a walk through every day until year 9999.
    let far = list(EventQuery {
        after: Some(("9999-12-31T00:00:00Z".into(), "x".into())),
        limit: 100,
        ..EventQuery::default()
    })
    .await;
    assert_eq!(far, rows);
    // Since a time: only the events changed since.
    let since = now - Duration::minutes(61);
    let recent = list(EventQuery {
        since: Some(since),
        limit: 100,
        ..EventQuery::default()
    })
    .await;
    assert_eq!(recent, want(&|r| r.0 >= time_key(&since)));
}
