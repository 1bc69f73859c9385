//! Dispatch's lifecycle with every effect in memory: the batch contract, the
//! retry and dead-letter decisions as they reach the record and the queue,
//! repeated and early deliveries, runs lost to a crash. The same paths against
//! the emulator and real endpoints are tested in `handler.rs` and `tests/it`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use hooks_core::config::{Config, HandlerId, ParseOptions};
use hooks_core::events::Event;
use hooks_core::protocol::EventEnvelope;
use hooks_core::records::{EventStatus, QueuedEvent};
use hooks_core::store::ConfigStore;
use hooks_core::store::live::LiveConfig;
use hooks_core::store::memory::{MemoryConfigStore, MemoryEvents, MemoryQueue, QueueAction};
use hooks_core::sync::{Source, apply, plan_against};
use hooks_core::targets::{Call, CallError, FailureKind, Invoker, Reply};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::handler::{App, Ports, handle};

/// Answers each handler from a script of replies (204 when none is left).
#[derive(Default)]
struct Scripted {
    replies: Mutex<HashMap<HandlerId, Vec<Reply>>>,
    calls: Mutex<Vec<(HandlerId, u64)>>,
}

impl Scripted {
    fn calls(&self) -> Vec<(HandlerId, u64)> {
        self.calls.lock().unwrap().clone()
    }
}

impl Invoker for Scripted {
    async fn invoke(&self, call: &Call<'_>) -> Reply {
        let body: Value = serde_json::from_slice(&call.body).unwrap();
        self.calls
            .lock()
            .unwrap()
            .push((call.handler.id, body["attempt"].as_u64().unwrap()));
        match self.replies.lock().unwrap().get_mut(&call.handler.id) {
            Some(list) if !list.is_empty() => list.remove(0),
            _ => Reply::ok(Some(204), ""),
        }
    }
}

/// An event's calls as (handler, attempt, outcome), in the order made.
fn logged(events: &MemoryEvents, id: &str) -> Vec<(u32, u32, &'static str)> {
    events
        .get(id)
        .unwrap()
        .calls
        .iter()
        .map(|e| {
            (
                e.record.handler_id,
                e.record.attempt,
                e.record.outcome.as_str(),
            )
        })
        .collect()
}

/// Every effect in memory; the handlers answer through `T`.
struct Memory<T = Scripted>(std::marker::PhantomData<T>);

impl<T: Invoker> Ports for Memory<T> {
    type Events = MemoryEvents;
    type Queue = MemoryQueue;
    type Config = MemoryConfigStore;
    type Targets = T;
}

async fn app(handlers: &[u32], retry: &str, replies: Vec<(HandlerId, Reply)>) -> App<Memory> {
    app_with_defaults(
        handlers,
        &format!("retry = {{ schedule = {retry} }}"),
        replies,
    )
    .await
}

async fn app_with_defaults(
    handlers: &[u32],
    defaults: &str,
    replies: Vec<(HandlerId, Reply)>,
) -> App<Memory> {
    let mut toml = format!("version = 1\n[defaults]\n{defaults}\n");
    for id in handlers {
        toml.push_str(&format!(
            "[[handler]]\nid = {id}\nname = \"h{id}\"\nevent = \"clients.*\"\npriority = {id}\nhttp = {{ url = \"https://h{id}.example.com\" }}\n"
        ));
    }
    app_from_toml(toml, replies).await
}

async fn app_from_toml(toml: String, replies: Vec<(HandlerId, Reply)>) -> App<Memory> {
    let config = Config::parse("t.toml", &toml, &ParseOptions::default()).unwrap();
    let store = MemoryConfigStore::new();
    let source = Source {
        file: "t.toml".into(),
        text: toml,
        git_commit: None,
        synced_by: "t".into(),
    };
    apply(&store, &plan_against(&store, config, source).await.unwrap())
        .await
        .unwrap();
    let targets = Scripted::default();
    for (id, reply) in replies {
        targets
            .replies
            .lock()
            .unwrap()
            .entry(id)
            .or_default()
            .push(reply);
    }
    App {
        events: MemoryEvents::default(),
        queue: MemoryQueue::default(),
        live: LiveConfig::new(store),
        targets,
        metrics: hooks_core::metrics::Metrics::new("test"),
    }
}

fn queued(id: &str, key: &str) -> QueuedEvent {
    QueuedEvent {
        event: EventEnvelope {
            id: id.into(),
            event: Event::ClientsUpdate,
            occurred_at: Utc::now(),
            data: serde_json::Map::new(),
            trace: None,
        },
        key: key.into(),
        received_at: Utc::now(),
    }
}

/// An SQS batch: (message id, event) in the order received, each message
/// handed out for the first time.
fn batch(events: &[(&str, &QueuedEvent)]) -> Value {
    batch_at(events, 1)
}

/// An SQS batch whose messages were handed out `receives` times.
fn batch_at(events: &[(&str, &QueuedEvent)], receives: u32) -> Value {
    let records: Vec<Value> = events
        .iter()
        .map(|(mid, q)| {
            json!({
                "messageId": mid,
                "receiptHandle": format!("receipt-{mid}"),
                "body": serde_json::to_string(q).unwrap(),
                "attributes": {
                    "MessageGroupId": q.key,
                    "SentTimestamp": Utc::now().timestamp_millis().to_string(),
                    "ApproximateReceiveCount": receives.to_string(),
                },
                "eventSource": "aws:sqs",
            })
        })
        .collect();
    json!({ "Records": records })
}

async fn deliver(app: &App<Memory>, events: &[(&str, &QueuedEvent)]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    handle(app, batch(events), deadline)
        .await
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

fn failing(status: u16) -> Reply {
    Reply {
        status: Some(status),
        body: Default::default(),
        error: Some(CallError::new(
            FailureKind::Status,
            format!("HTTP {status}"),
        )),
        declared_json: false,
    }
}

#[tokio::test]
async fn a_run_calls_every_handler_in_order_and_logs_each_call() {
    let app = app(&[1, 2, 3], "[\"1m\"]", vec![]).await;
    let e = queued("e1", "client:1");
    assert!(deliver(&app, &[("m1", &e)]).await.is_empty());
    assert_eq!(app.targets.calls(), [(1, 1), (2, 1), (3, 1)]);
    let r = app.events.get("e1").unwrap();
    assert_eq!(r.status, EventStatus::Succeeded);
    assert_eq!(
        logged(&app.events, "e1"),
        [
            (1, 1, "processed"),
            (2, 1, "processed"),
            (3, 1, "processed")
        ]
    );
    assert_eq!(app.events.saves(), 1, "the run is written once, at its end");
    assert!(app.queue.actions().is_empty());
    // A repeated delivery of a finished event calls nothing.
    assert!(deliver(&app, &[("m1", &e)]).await.is_empty());
    assert_eq!(app.targets.calls().len(), 3);
}

#[tokio::test]
async fn a_failure_hides_the_message_for_its_delay_and_the_retry_resumes_there() {
    let app = app(&[1, 2], "[\"1m\", \"1h\"]", vec![(2, failing(503))]).await;
    let e = queued("e1", "client:1");
    assert_eq!(deliver(&app, &[("m1", &e)]).await, ["m1"]);
    let r = app.events.get("e1").unwrap();
    assert_eq!(r.status, EventStatus::Failed);
    assert_eq!(r.receipt.as_deref(), Some("receipt-m1"), "kept for replay");
    assert_eq!(
        r.last_error.as_deref(),
        Some("handler 2, attempt 1: HTTP 503")
    );
    let actions = app.queue.actions();
    let [QueueAction::Defer { receipt, delay }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(receipt, "receipt-m1");
    assert!(*delay >= Duration::from_secs(54) && *delay <= Duration::from_secs(66));
    let due = r.next_attempt_at.unwrap() - Utc::now();
    assert!(due > chrono::Duration::seconds(50), "{due}");

    // Delivered before its time: hidden again, nothing called.
    assert_eq!(deliver(&app, &[("m1", &e)]).await, ["m1"]);
    assert_eq!(app.targets.calls().len(), 2);
    assert!(
        matches!(app.queue.actions()[1], QueueAction::Defer { delay, .. } if delay > Duration::from_secs(50))
    );

    // At its time: handler 1 (done) is not called again; handler 2 is, as attempt 2.
    let mut r = app.events.get("e1").unwrap();
    r.next_attempt_at = Some(Utc::now());
    app.events.put(r);
    assert!(deliver(&app, &[("m1", &e)]).await.is_empty());
    assert_eq!(app.targets.calls(), [(1, 1), (2, 1), (2, 2)]);
    assert_eq!(app.events.get("e1").unwrap().status, EventStatus::Succeeded);
    assert_eq!(
        logged(&app.events, "e1"),
        [(1, 1, "processed"), (2, 1, "failed"), (2, 2, "processed")],
        "every call logged once"
    );
}

#[tokio::test]
async fn the_last_attempt_dead_letters_the_event() {
    let app = app(&[1], "[\"1s\"]", vec![(1, failing(503)), (1, failing(503))]).await;
    let e = queued("e1", "client:1");
    assert_eq!(
        deliver(&app, &[("m1", &e)]).await,
        ["m1"],
        "attempt 1: retried"
    );
    let mut r = app.events.get("e1").unwrap();
    r.next_attempt_at = Some(Utc::now());
    app.events.put(r);
    assert!(
        deliver(&app, &[("m1", &e)]).await.is_empty(),
        "attempt 2: done with"
    );
    let r = app.events.get("e1").unwrap();
    assert_eq!(r.status, EventStatus::Dead);
    assert_eq!(
        r.last_error.as_deref(),
        Some("out of attempts: handler 1, attempt 2: HTTP 503")
    );
    assert!(matches!(
        app.queue.actions().as_slice(),
        [QueueAction::Defer { .. }, QueueAction::DeadLetter { group, .. }] if group == "client:1"
    ));
}

#[tokio::test]
async fn after_a_failure_the_rest_of_its_group_waits_and_other_groups_run() {
    let app = app(&[1], "[\"1m\"]", vec![(1, failing(500))]).await;
    let (a1, a2, b1) = (
        queued("a1", "client:1"),
        queued("a2", "client:1"),
        queued("b1", "client:2"),
    );
    let mut failed = deliver(&app, &[("m1", &a1), ("m2", &a2), ("m3", &b1)]).await;
    failed.sort();
    assert_eq!(failed, ["m1", "m2"]);
    assert_eq!(
        app.events.get("a2").map(|r| (r.status, r.calls.len())),
        Some((EventStatus::Accepted, 0)),
        "a2 not run (its held-back delivery noted)"
    );
    assert_eq!(app.events.get("b1").unwrap().status, EventStatus::Succeeded);
    assert!(
        app.queue.actions().contains(&QueueAction::Defer {
            receipt: "receipt-m2".into(),
            delay: Duration::ZERO
        }),
        "the held-back message is visible again at once"
    );
}

/// A message held back behind a failing event of its key runs nothing; its
/// next delivery (receive count 2) is not taken for one after a lost run.
#[tokio::test]
async fn a_held_back_delivery_is_not_taken_for_a_lost_run() {
    let app = app(&[1, 2], "[\"1m\"]", vec![(1, failing(500))]).await;
    let (a1, a2) = (queued("a1", "client:1"), queued("a2", "client:1"));
    let failed = deliver(&app, &[("m1", &a1), ("m2", &a2)]).await;
    assert_eq!(failed, ["m1", "m2"]);
    // a1's retry, then a2 handed out a second time.
    let mut r = app.events.get("a1").unwrap();
    r.next_attempt_at = Some(Utc::now());
    app.events.put(r);
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = handle(&app, batch_at(&[("m1", &a1), ("m2", &a2)], 2), deadline).await;
    assert!(done.batch_item_failures.is_empty());
    assert_eq!(
        logged(&app.events, "a2"),
        [(1, 1, "processed"), (2, 1, "processed")],
        "no call of a2 logged interrupted, none counted twice"
    );
    assert_eq!(
        logged(&app.events, "a1"),
        [(1, 1, "failed"), (1, 2, "processed"), (2, 1, "processed")]
    );
}

#[tokio::test]
async fn a_message_that_is_not_an_event_is_dead_lettered_alone() {
    let app = app(&[1], "[\"1m\"]", vec![]).await;
    let e = queued("e1", "client:1");
    let mut payload = batch(&[("m1", &e)]);
    payload["Records"]
        .as_array_mut()
        .unwrap()
        .push(json!({"messageId": "junk", "receiptHandle": "r", "body": "{not json", "attributes": {"MessageGroupId": "x"}}));
    let failed = handle(&app, payload, Instant::now() + Duration::from_secs(60)).await;
    assert!(failed.batch_item_failures.is_empty());
    assert_eq!(app.events.get("e1").unwrap().status, EventStatus::Succeeded);
    assert!(matches!(
        app.queue.actions().as_slice(),
        [QueueAction::DeadLetter { reason, .. }] if reason.starts_with("not an event")
    ));
}

/// A run whose write fails: its calls go to the function's log, the message
/// comes back, and that delivery (receive count 2) logs the lost run's
/// handlers as interrupted and calls them again.
#[tokio::test]
async fn with_the_store_down_the_run_is_lost_logged_and_made_again() {
    let app = app(&[1, 2], "[\"1m\"]", vec![(2, failing(503))]).await;
    let e = queued("e1", "client:1");
    app.events.set_failing(true);
    assert_eq!(deliver(&app, &[("m1", &e)]).await, ["m1"]);
    assert_eq!(app.events.get("e1").unwrap().status, EventStatus::Accepted);
    assert!(
        matches!(app.queue.actions().as_slice(), [QueueAction::Defer { .. }]),
        "hidden for its retry before the write failed"
    );

    app.events.set_failing(false);
    let deadline = Instant::now() + Duration::from_secs(60);
    let again = handle(&app, batch_at(&[("m1", &e)], 2), deadline).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(app.targets.calls(), [(1, 1), (2, 1), (1, 2), (2, 2)]);
    assert_eq!(
        logged(&app.events, "e1"),
        [
            (1, 1, "interrupted"),
            (2, 1, "interrupted"),
            (1, 2, "processed"),
            (2, 2, "processed")
        ]
    );
    assert_eq!(app.events.get("e1").unwrap().status, EventStatus::Succeeded);
}

#[tokio::test]
async fn out_of_time_the_event_goes_on_in_the_next_invocation() {
    let app = app(&[1, 2], "[\"1m\"]", vec![]).await;
    let e = queued("e1", "client:1");
    // Two seconds past the reserve: the first call of a run is always made
    // (its timeout cut to what is left), the second's (the default 10 s)
    // does not fit, and waits. (Two seconds, not one millisecond: a loaded
    // machine may spend that before the first call, which is then not made.)
    let deadline = Instant::now() + crate::handler::RESERVE + Duration::from_secs(2);
    let failed = handle(&app, batch(&[("m1", &e)]), deadline).await;
    assert_eq!(failed.batch_item_failures.len(), 1);
    assert_eq!(app.targets.calls(), [(1, 1)]);
    let r = app.events.get("e1").unwrap();
    assert_eq!(r.status, EventStatus::Queued);
    assert_eq!(r.progress.completed.len(), 1);
    assert_eq!(
        app.queue.actions(),
        [QueueAction::Defer {
            receipt: "receipt-m1".into(),
            delay: Duration::ZERO
        }],
        "visible again at once"
    );
    // The next invocation goes on from handler 2.
    assert!(deliver(&app, &[("m1", &e)]).await.is_empty());
    assert_eq!(app.targets.calls(), [(1, 1), (2, 1)]);
    assert_eq!(app.events.get("e1").unwrap().status, EventStatus::Succeeded);
}

#[tokio::test]
async fn an_unreadable_record_is_parked_and_its_key_moves_on() {
    let app = app(&[1], "[\"1m\"]", vec![]).await;
    let (bad, next) = (queued("bad", "client:9"), queued("next", "client:9"));
    app.events.set_unreadable("bad");
    let failed = deliver(&app, &[("m1", &bad), ("m2", &next)]).await;
    assert!(failed.is_empty(), "nothing waits behind it: {failed:?}");
    let parked = app.events.get("bad").unwrap();
    assert_eq!(parked.status, EventStatus::Dead);
    assert!(
        parked
            .last_error
            .as_deref()
            .unwrap_or("")
            .starts_with("the event's record cannot be read"),
        "{:?}",
        parked.last_error
    );
    assert!(matches!(
        app.queue.actions().as_slice(),
        [QueueAction::DeadLetter { reason, .. }] if reason.contains("cannot be read")
    ));
    assert_eq!(
        app.events.get("next").unwrap().status,
        EventStatus::Succeeded
    );
    assert_eq!(app.targets.calls(), [(1, 1)], "only `next` ran");
}

/// Answers handler `hang` never (its first call), others at once.
struct Hanging {
    inner: Scripted,
    hang: Mutex<Option<HandlerId>>,
}

impl Invoker for Hanging {
    async fn invoke(&self, call: &Call<'_>) -> Reply {
        let hang = self.hang.lock().unwrap().take_if(|h| *h == call.handler.id);
        let reply = self.inner.invoke(call).await;
        if hang.is_some() {
            std::future::pending::<()>().await;
        }
        reply
    }
}

/// A run that ends during a call (the process killed, the invocation over)
/// writes nothing. The next delivery logs every handler the lost run may
/// have called as interrupted and calls them again, as their next attempts
/// (same webhook-id): a success that was not written may be repeated.
#[tokio::test]
async fn a_run_cut_off_by_a_crash_is_logged_as_interrupted_and_made_again() {
    let base = app(&[1, 2, 3], "[\"1m\"]", vec![]).await;
    let app: App<Memory<Hanging>> = App {
        events: base.events,
        queue: base.queue,
        live: base.live,
        targets: Hanging {
            inner: base.targets,
            hang: Mutex::new(Some(2)),
        },
        metrics: base.metrics,
    };
    let e = queued("e1", "client:1");
    let deadline = Instant::now() + Duration::from_secs(60);
    let crashed = tokio::time::timeout(
        Duration::from_millis(200),
        handle(&app, batch(&[("m1", &e)]), deadline),
    )
    .await;
    assert!(crashed.is_err(), "the run hangs in handler 2's call");
    let r = app.events.get("e1").unwrap();
    assert_eq!(r.status, EventStatus::Accepted, "nothing written");
    assert!(r.calls.is_empty());

    // The same delivery again (a retry of the invocation by the runtime, the
    // receive count unchanged) cannot tell: only a higher count can.
    let again = handle(&app, batch_at(&[("m1", &e)], 2), deadline).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(
        app.targets.inner.calls(),
        [(1, 1), (2, 1), (1, 2), (2, 2), (3, 2)],
        "the lost run's handlers called again, as their next attempts"
    );
    assert_eq!(
        logged(&app.events, "e1"),
        [
            (1, 1, "interrupted"),
            (2, 1, "interrupted"),
            (3, 1, "interrupted"),
            (1, 2, "processed"),
            (2, 2, "processed"),
            (3, 2, "processed")
        ]
    );
    let done = app.events.get("e1").unwrap();
    assert_eq!(done.status, EventStatus::Succeeded);
    assert!(
        done.calls[0]
            .record
            .error
            .as_deref()
            .unwrap_or("")
            .contains("may have received"),
        "{:?}",
        done.calls[0].record.error
    );
}

/// A run that dies right after its write: the next delivery finds the event
/// done and calls nothing.
#[tokio::test]
async fn a_crash_after_the_write_repeats_no_call() {
    let app = app(&[1, 2, 3], "[\"1m\"]", vec![]).await;
    app.events.set_dying(true);
    let e = queued("e1", "client:1");
    let deadline = Instant::now() + Duration::from_secs(60);
    let crashed = tokio::time::timeout(
        Duration::from_millis(200),
        handle(&app, batch(&[("m1", &e)]), deadline),
    )
    .await;
    assert!(crashed.is_err(), "the run dies in its write");
    app.events.set_dying(false);
    let again = handle(&app, batch_at(&[("m1", &e)], 2), deadline).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(
        app.targets.calls(),
        [(1, 1), (2, 1), (3, 1)],
        "no handler called twice"
    );
    assert_eq!(
        logged(&app.events, "e1"),
        [
            (1, 1, "processed"),
            (2, 1, "processed"),
            (3, 1, "processed")
        ],
        "every call logged once, none interrupted"
    );
    assert_eq!(app.events.get("e1").unwrap().status, EventStatus::Succeeded);
}

/// The record's calls of one handler as (attempt, outcome, probe).
fn calls_of(app: &App<Memory>, id: &str, handler: HandlerId) -> Vec<(u32, &'static str, bool)> {
    app.events
        .get(id)
        .unwrap()
        .calls
        .iter()
        .filter(|c| c.record.handler_id == handler)
        .map(|c| (c.record.attempt, c.record.outcome.as_str(), c.record.probe))
        .collect()
}

#[tokio::test]
async fn a_burst_of_failures_does_not_pause_a_handler_failures_spanning_the_window_do() {
    let app = app_with_defaults(
        &[1],
        "retry = { schedule = [\"1s\"] }\npause_after = 3\npause_window = \"1s\"",
        (0..5).map(|_| (1, failing(503))).collect(),
    )
    .await;
    // Four failures within a moment (one batch, four keys): counted, not paused.
    let events: Vec<_> = (0..4)
        .map(|i| queued(&format!("e{i}"), &format!("k{i}")))
        .collect();
    for (i, e) in events.iter().enumerate() {
        deliver(&app, &[(&format!("m{i}"), e)]).await;
    }
    let state = app.live.store().health_of(1).await.unwrap().unwrap();
    assert_eq!(state.failures, 4);
    assert!(
        state.paused.is_none(),
        "four failures in a moment: {state:?}"
    );
    // The streak goes on past the window: paused.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    deliver(&app, &[("m9", &queued("e9", "k9"))]).await;
    let state = app.live.store().health_of(1).await.unwrap().unwrap();
    let p = state.paused.as_ref().expect("paused: 5 failures over 1 s");
    assert!(
        p.reason.contains("5 retryable failures in a row over 1 s"),
        "{p:?}"
    );
}

#[tokio::test]
async fn a_sick_handler_is_paused_its_events_wait_and_a_probe_resumes_it() {
    // Handler 2 fails three times, then answers.
    let app = app_with_defaults(
        &[1, 2],
        "retry = { schedule = [\"1s\"] }\npause_after = 2\npause_window = \"0s\"\nprobe_every = \"1s\"",
        vec![(2, failing(503)), (2, failing(503)), (2, failing(502))],
    )
    .await;
    let (e1, e2, e3) = (queued("e1", "a"), queued("e2", "b"), queued("e3", "c"));
    let h2 = |app: &App<Memory>| app.targets.calls().iter().filter(|c| c.0 == 2).count();

    // Two retryable failures in a row, across events: paused.
    deliver(&app, &[("m1", &e1)]).await;
    deliver(&app, &[("m2", &e2)]).await;
    let state = app.live.store().health_of(2).await.unwrap().unwrap();
    let paused = state.paused.as_ref().expect("paused after 2 failures");
    assert_eq!(paused.by, "auto");
    assert!(paused.reason.contains("2 retryable failures"), "{paused:?}");

    // A third event passes handler 1 and waits at handler 2, which is not called.
    assert_eq!(deliver(&app, &[("m3", &e3)]).await, ["m3"]);
    assert_eq!(h2(&app), 2);
    let r3 = app.events.get("e3").unwrap();
    assert_eq!(r3.status, EventStatus::Failed);
    assert!(
        r3.last_error
            .as_deref()
            .unwrap()
            .contains("attempts not used"),
        "{r3:?}"
    );
    assert!(r3.progress.completed.contains(&1));
    assert_eq!(r3.progress.attempts.get(&2), None);
    assert!(matches!(
        app.queue.actions().last(),
        Some(QueueAction::Defer { delay, .. }) if *delay <= Duration::from_secs(1)
    ));

    // The probe is due: one event's real call. It fails: still paused, the
    // event waits again without using an attempt.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(deliver(&app, &[("m3", &e3)]).await, ["m3"]);
    assert_eq!(calls_of(&app, "e3", 2), [(1, "failed", true)]);
    assert_eq!(
        app.events.get("e3").unwrap().progress.attempts.get(&2),
        None
    );
    // Meanwhile the first event's retry is due, but the handler is paused
    // and no probe is due: it waits, its attempts untouched.
    assert_eq!(deliver(&app, &[("m1", &e1)]).await, ["m1"]);
    assert_eq!(calls_of(&app, "e1", 2), [(1, "failed", false)]);
    assert_eq!(h2(&app), 3, "one probe, no other call");

    // The next probe (2 s later) succeeds: resumed, the events flow.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(deliver(&app, &[("m3", &e3)]).await.is_empty());
    assert_eq!(app.events.get("e3").unwrap().status, EventStatus::Succeeded);
    assert_eq!(
        calls_of(&app, "e3", 2),
        [(1, "failed", true), (1, "processed", true)]
    );
    let state = app.live.store().health_of(2).await.unwrap().unwrap();
    assert!(state.paused.is_none());
    let changes: Vec<&str> = state.history.iter().map(|c| c.to.as_str()).collect();
    assert_eq!(changes, ["paused", "resumed"]);
    assert!(deliver(&app, &[("m1", &e1), ("m2", &e2)]).await.is_empty());
    for id in ["e1", "e2"] {
        assert_eq!(app.events.get(id).unwrap().status, EventStatus::Succeeded);
        assert_eq!(
            calls_of(&app, id, 2),
            [(1, "failed", false), (2, "processed", false)]
        );
    }
    assert!(
        !app.queue
            .actions()
            .iter()
            .any(|a| matches!(a, QueueAction::DeadLetter { .. })),
        "nothing dead-lettered because of the pause"
    );
}

#[tokio::test]
async fn a_paused_skip_handler_is_passed_and_the_record_says_so() {
    let toml = "version = 1\n[[handler]]\nid = 1\nname = \"crm\"\nevent = \"clients.*\"\npriority = 1\non_failure = \"skip\"\nhttp = { url = \"https://h1.example.com\" }\n[[handler]]\nid = 2\nname = \"audit\"\nevent = \"clients.*\"\npriority = 2\nhttp = { url = \"https://h2.example.com\" }\n";
    let app = app_from_toml(toml.to_owned(), vec![]).await;
    let mut state =
        hooks_core::pause::HandlerHealth::new(1).pause_by("ops", "maintenance", Utc::now());
    state.version = 1;
    assert!(app.live.store().put_health(&state, None).await.unwrap());
    let e = queued("e1", "a");
    assert!(deliver(&app, &[("m1", &e)]).await.is_empty());
    assert_eq!(
        app.targets.calls(),
        [(2, 1)],
        "only the other handler is called"
    );
    assert_eq!(
        logged(&app.events, "e1"),
        [(1, 1, "paused"), (2, 1, "processed")]
    );
    let r = app.events.get("e1").unwrap();
    assert_eq!(r.status, EventStatus::Succeeded);
    let why = r.calls[0].record.error.as_deref().unwrap_or("");
    assert!(
        why.contains("paused") && why.contains("maintenance"),
        "{why}"
    );
}

#[tokio::test]
async fn a_probe_answered_with_a_permanent_failure_resumes_the_handler_and_fails_the_event() {
    let app = app_with_defaults(
        &[1],
        "pause_after = 3\npause_window = \"0s\"",
        vec![(1, failing(400))],
    )
    .await;
    let now = Utc::now();
    // Paused by itself, its probe due now.
    let mut state = hooks_core::pause::HandlerHealth::new(1)
        .pause_at(
            hooks_core::pause::Streak {
                failures: 1,
                since: now,
            },
            1,
            Duration::ZERO,
            Duration::from_secs(30),
            "HTTP 503",
            now,
        )
        .unwrap();
    state.paused.as_mut().unwrap().probe_at = Some(now);
    state.version = 1;
    assert!(app.live.store().put_health(&state, None).await.unwrap());
    let e = queued("e1", "a");
    assert!(deliver(&app, &[("m1", &e)]).await.is_empty());
    assert_eq!(calls_of(&app, "e1", 1), [(1, "failed", true)]);
    let state = app.live.store().health_of(1).await.unwrap().unwrap();
    assert!(state.paused.is_none(), "the handler answered: it is up");
    assert_eq!(
        app.events.get("e1").unwrap().status,
        EventStatus::Dead,
        "a permanent failure dead-letters the event as it would have"
    );
}

#[tokio::test]
async fn a_call_that_succeeds_does_not_end_a_pause_by_hand() {
    let app = app(&[1], "[\"1m\"]", vec![]).await;
    let e = queued("e1", "a");
    // The call passes the gate (nothing paused yet)…
    let mut state = hooks_core::pause::HandlerHealth::new(1);
    state.failures = 2;
    state.version = 1;
    assert!(app.live.store().put_health(&state, None).await.unwrap());
    app.live.current().await.unwrap();
    // …and the operator pauses it while it is in flight.
    let paused = state.pause_by("ops", "maintenance", Utc::now());
    let mut paused = paused;
    paused.version = 2;
    assert!(app.live.store().put_health(&paused, Some(1)).await.unwrap());
    assert!(deliver(&app, &[("m1", &e)]).await.is_empty());
    assert_eq!(
        app.targets.calls(),
        [(1, 1)],
        "called: the cache still said running"
    );
    let after = app.live.store().health_of(1).await.unwrap().unwrap();
    assert_eq!(after.paused.map(|p| p.by), Some("ops".to_owned()));
}

/// Answers after a pause: a run long enough for another writer to come in.
struct Slow(Scripted);

impl Invoker for Slow {
    async fn invoke(&self, call: &Call<'_>) -> Reply {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.0.invoke(call).await
    }
}

/// A held-back delivery of the same message marks the record while a run
/// is under way (an emulator that hands out a FIFO group's message twice
/// does this): the run's outcome is kept, so its delete of the message
/// never leaves the record waiting for nothing.
#[tokio::test]
async fn a_record_written_during_a_run_keeps_the_runs_outcome() {
    let base = app(&[1], "[\"1m\"]", vec![]).await;
    let app: App<Memory<Slow>> = App {
        events: base.events,
        queue: base.queue,
        live: base.live,
        targets: Slow(base.targets),
        metrics: base.metrics,
    };
    let e = queued("e1", "a");
    let batch = batch(&[("m1", &e)]);
    let msg: aws_lambda_events::event::sqs::SqsMessage =
        serde_json::from_value(batch["Records"][0].clone()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (response, ()) = tokio::join!(handle(&app, batch, deadline), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.mark_not_run(&msg).await;
    });
    assert!(response.batch_item_failures.is_empty());
    let r = app.events.get("e1").unwrap();
    assert_eq!(r.status, EventStatus::Succeeded, "{r:?}");
    assert_eq!(
        app.events.saves(),
        2,
        "the mark, then the run's write after its conflict"
    );
}
