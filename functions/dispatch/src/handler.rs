//! The dispatch function: the SQS trigger of the events queue.
//!
//! A batch ([`handle`]) is grouped by message group, keeping each group's
//! order; groups run concurrently, and after a failure in a group the rest of
//! that group is reported failed too (and made visible again at once), so
//! FIFO order holds. Each record goes through the steps of `event.rs`; what
//! follows a run is decided in `decide.rs`.
//! The effects (event records, the queue, the config, the handler
//! targets) are the traits of [`Ports`]: AWS in production, memory in the
//! unit tests.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsMessage};
use hooks_core::metrics::Metrics;
use hooks_core::queue::{MAX_DEFER, Queue};
use hooks_core::store::dynamodb::DynamoConfigStore;
use hooks_core::store::events::EventStore;
use hooks_core::store::live::LiveConfig;
use hooks_core::store::{ConfigStore, EventLedger, Redelivery};
use hooks_core::targets::{Invoker, Targets};
use hooks_core::wiring::Resources;
use serde_json::Value;
use tokio::time::Instant;

use crate::decide::expiring;
use crate::message::sent_at;

/// Time kept in reserve before the invocation's deadline: saving progress and
/// answering the runtime must fit in it.
pub(crate) const RESERVE: Duration = Duration::from_secs(5);

/// The effects dispatch works through.
pub(crate) trait Ports {
    type Events: EventLedger;
    type Queue: Redelivery;
    type Config: ConfigStore;
    type Targets: Invoker;
}

/// On AWS: DynamoDB, SQS and the real HTTP and script targets.
pub(crate) struct Aws;

impl Ports for Aws {
    type Events = EventStore;
    type Queue = Queue;
    type Config = DynamoConfigStore;
    type Targets = Targets;
}

/// What dispatch works with, built once per process.
pub(crate) struct App<P: Ports> {
    pub(crate) events: P::Events,
    pub(crate) queue: P::Queue,
    pub(crate) live: LiveConfig<P::Config>,
    pub(crate) targets: P::Targets,
    /// Written as EMF lines at the end of each batch.
    pub(crate) metrics: Metrics,
}

impl App<Aws> {
    /// From what the wiring built.
    pub(crate) fn new(res: Resources) -> Self {
        App {
            events: res.events,
            queue: res.queue,
            live: res.live,
            targets: res.targets,
            metrics: res.metrics,
        }
    }
}

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Done {
    /// Delete it from the queue.
    Handled,
    /// Leave it (reported failed): it comes back when its visibility ends.
    Again,
}

/// A record of a batch: its message id, and the message if it parses.
pub(crate) type Received = (String, Result<SqsMessage, String>);

/// The batch's records by message group, each group in the order received.
/// A record without a message id cannot be reported, and is left out.
pub(crate) fn group(payload: &Value) -> BTreeMap<String, Vec<Received>> {
    let mut groups: BTreeMap<String, Vec<Received>> = BTreeMap::new();
    for raw in payload
        .get("Records")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = raw
            .get("messageId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let group = raw
            .get("attributes")
            .and_then(|a| a.get("MessageGroupId"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if id.is_empty() {
            tracing::error!("a record without messageId cannot be reported; skipped");
            continue;
        }
        let msg = serde_json::from_value::<SqsMessage>(raw.clone()).map_err(|e| e.to_string());
        groups.entry(group).or_default().push((id, msg));
    }
    groups
}

/// Handles one SQS batch; returns the ids of the records to retry.
#[tracing::instrument(skip_all)]
pub(crate) async fn handle<P: Ports>(
    app: &App<P>,
    payload: Value,
    deadline: Instant,
) -> SqsBatchResponse {
    let runs = group(&payload)
        .into_iter()
        .map(|(group, records)| app.run_group(group, records, deadline));
    let mut response = SqsBatchResponse::default();
    for failed in futures_util::future::join_all(runs).await {
        for id in failed {
            response.add_failure(id);
        }
    }
    // Only the handlers of the live revision that can wait on a pause.
    if let Ok(revision) = app.live.current().await {
        let paused = hooks_core::pause::paused_in(&app.live.health(), &revision.config).len();
        app.metrics.paused(paused as u64);
    }
    app.metrics.flush();
    response
}

impl<P: Ports> App<P> {
    /// One message group, in order; returns the ids to report failed.
    #[tracing::instrument(skip_all, fields(group = %group, records = records.len()))]
    async fn run_group(
        &self,
        group: String,
        records: Vec<Received>,
        deadline: Instant,
    ) -> Vec<String> {
        let mut failed: Vec<String> = Vec::new();
        let mut blocked = false;
        for (id, msg) in records {
            if blocked {
                if !self.hold_back(&group, &msg).await {
                    failed.push(id);
                }
                continue;
            }
            let done = match msg {
                Ok(m) => self.handle_record(&group, &m, deadline).await,
                Err(e) => {
                    self.dead_letter_raw(&group, &id, "", &format!("not an SQS record: {e}"))
                        .await
                }
            };
            if done == Done::Again {
                blocked = true;
                failed.push(id);
            }
        }
        failed
    }

    /// A record behind a failed event of its group: not run. `true` if it is
    /// done with (dead-lettered before the queue would drop it); else it is
    /// made visible again at once, so it follows that event as soon as that
    /// is done, instead of waiting out the queue's visibility timeout (FIFO
    /// holds it back while the failed one is hidden).
    #[tracing::instrument(skip_all, fields(group = %group))]
    async fn hold_back(&self, group: &str, msg: &Result<SqsMessage, String>) -> bool {
        let Ok(m) = msg else { return false };
        if expiring(sent_at(m), MAX_DEFER, chrono::Utc::now())
            && self.expire_held(group, m).await == Done::Handled
        {
            return true;
        }
        // This delivery does not run: said in the record, or the next one
        // would count it as a run that may have called handlers.
        self.mark_not_run(m).await;
        if let Some(receipt) = &m.receipt_handle
            && let Err(e) = self.queue.defer(receipt, Duration::ZERO).await
        {
            tracing::warn!(message.id = m.message_id.as_deref().unwrap_or(""), error = %e, "could not release a held-back message");
        }
        false
    }
}

#[cfg(test)]
mod tests {
    //! The batch contract, against the emulator and a real endpoint: a mixed
    //! batch reports exactly the records to retry.

    use std::collections::BTreeSet;

    use super::*;
    use chrono::Utc;
    use hooks_core::chain::CallRecord;
    use hooks_core::config::Phase;
    use hooks_core::config::{Config, ParseOptions};
    use hooks_core::events::Event;
    use hooks_core::protocol::EventEnvelope;
    use hooks_core::records::{EventStatus, LogEntry, QueuedEvent};
    use hooks_core::settings::{ResourceNames, Settings};
    use hooks_core::store::ConfigStore;
    use hooks_core::store::events::MAX_DOC_BYTES;
    use hooks_core::store::logs::LogStore;
    use hooks_core::sync::{Source, apply, plan_against};
    use hooks_core::targets::NetworkPolicy;
    use hooks_core::wiring::Wiring;
    use hooks_local::{bootstrap, sqs_event};
    use hooks_tests::{Answer, Emulator, Receiver, unique};

    fn queued(id: &str, event: Event, key: &str) -> QueuedEvent {
        QueuedEvent {
            event: EventEnvelope {
                id: id.into(),
                event,
                occurred_at: Utc::now(),
                data: serde_json::Map::new(),
                trace: None,
            },
            key: key.into(),
            received_at: Utc::now(),
        }
    }

    /// Tables and queues of their own, `toml` synced, and the app over them.
    async fn app_with(
        emu: &Emulator,
        toml: &str,
    ) -> (App<Aws>, aws_config::SdkConfig, ResourceNames) {
        let names = ResourceNames::prefixed(&unique("dispatch"));
        let sdk = emu.sdk_config().await;
        bootstrap(&sdk, &names).await.unwrap();
        let config = Config::parse("t.toml", toml, &ParseOptions::default()).unwrap();
        let store = DynamoConfigStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &names.config_table,
            emu.endpoint(),
        );
        let source = Source {
            file: "t.toml".into(),
            text: toml.to_owned(),
            git_commit: None,
            synced_by: "t".into(),
        };
        apply(&store, &plan_against(&store, config, source).await.unwrap())
            .await
            .unwrap();
        assert!(store.head().await.unwrap().is_some());
        let settings = Settings::local(
            names.clone(),
            NetworkPolicy::parse("127.0.0.0/8").unwrap(),
            ".".into(),
        );
        let app = App::new(
            Wiring::new(settings, sdk.clone())
                .resources()
                .await
                .unwrap(),
        );
        (app, sdk, names)
    }

    /// Receives `n` messages (FIFO may hand them out over several calls).
    async fn receive(queue: &Queue, n: usize) -> Vec<aws_sdk_sqs::types::Message> {
        let mut messages = Vec::new();
        while messages.len() < n {
            let got = queue
                .receive(false, 10, Duration::from_secs(1))
                .await
                .unwrap();
            assert!(
                !got.is_empty(),
                "only {} of {n} messages came back",
                messages.len()
            );
            messages.extend(got);
        }
        messages
    }

    fn handler(id: u32, event: &str, priority: u32, url: &str) -> String {
        format!(
            "[[handler]]\nid = {id}\nname = \"h{id}\"\nevent = \"{event}\"\npriority = {priority}\nhttp = {{ url = \"{url}\" }}\n"
        )
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_mixed_batch_reports_exactly_the_records_to_retry() {
        let emu = Emulator::start();
        let r = Receiver::start().await;
        r.always("/fail", Answer::status(500));
        let toml = format!(
            "version = 1\n{}{}",
            handler(1, "clients.create", 1, &r.url("/ok")),
            handler(2, "clients.update", 1, &r.url("/fail")),
        );
        let (app, sdk, names) = app_with(&emu, &toml).await;
        let queue = app.queue.clone();
        queue
            .send(&[
                queued("a1", Event::ClientsCreate, "A"),
                queued("a2", Event::ClientsUpdate, "A"),
                queued("a3", Event::ClientsCreate, "A"),
                queued("c1", Event::ClientsCreate, "C"),
            ])
            .await
            .unwrap();
        aws_sdk_sqs::Client::new(&sdk)
            .send_message()
            .queue_url(queue.url())
            .message_body("this is not an event")
            .message_group_id("B")
            .message_deduplication_id("junk-1")
            .send()
            .await
            .unwrap();
        let messages = receive(&queue, 5).await;
        let id_of = |event_id: &str| {
            messages
                .iter()
                .find(|m| {
                    m.body()
                        .is_some_and(|b| b.contains(&format!("\"id\":\"{event_id}\"")))
                })
                .and_then(|m| m.message_id().map(str::to_owned))
                .unwrap()
        };
        let response = handle(
            &app,
            sqs_event(&messages, "arn:aws:sqs:us-east-1:0:q"),
            Instant::now() + Duration::from_secs(60),
        )
        .await;
        let failed: BTreeSet<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(
            failed,
            BTreeSet::from([id_of("a2"), id_of("a3")]),
            "a2 failed; a3 is held back behind it"
        );
        let mut paths = r.paths();
        paths.sort();
        assert_eq!(
            paths,
            ["/fail", "/ok", "/ok"],
            "a1, a2 and c1 ran; a3 did not"
        );
        assert_eq!(
            queue.depth().await.unwrap().1,
            1,
            "the malformed message was dead-lettered"
        );
        let events = EventStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &names.events_table,
            emu.endpoint(),
        );
        assert_eq!(
            events.get("a1").await.unwrap().unwrap().status,
            EventStatus::Succeeded
        );
        assert_eq!(
            events.get("c1").await.unwrap().unwrap().status,
            EventStatus::Succeeded
        );
        let a2 = events.get("a2").await.unwrap().unwrap();
        assert_eq!(a2.status, EventStatus::Failed);
        assert!(
            a2.next_attempt_at.is_some_and(|t| t > Utc::now()),
            "retried later"
        );
        let a3 = events.get("a3").await.unwrap().unwrap();
        assert_eq!(
            (a3.status, a3.calls.len()),
            (EventStatus::Accepted, 0),
            "a3 was not run (its held-back delivery is noted)"
        );
    }

    /// A run that dies mid-chain (the future dropped, as when the process is
    /// killed) writes nothing. The next delivery (the queue's receive count
    /// one higher than expected) logs each handler the lost run may have
    /// called as interrupted, and calls them again with the same webhook-id.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_crash_mid_chain_is_logged_and_repeated() {
        let emu = Emulator::start();
        let r = Receiver::start().await;
        r.once("/slow", Answer::ok().after(Duration::from_secs(60)));
        let toml = format!(
            "version = 1\n{}{}",
            handler(1, "clients.create", 1, &r.url("/first")),
            handler(2, "clients.create", 2, &r.url("/slow")),
        );
        let (app, sdk, names) = app_with(&emu, &toml).await;
        let queue = app.queue.clone();
        queue
            .send(&[queued("e1", Event::ClientsCreate, "K")])
            .await
            .unwrap();
        let messages = queue
            .receive(false, 10, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(messages.len(), 1);
        let batch = sqs_event(&messages, "arn:aws:sqs:us-east-1:0:q");
        let deadline = Instant::now() + Duration::from_secs(120);

        let mut run = Box::pin(handle(&app, batch, deadline));
        let started = Instant::now();
        while !r.paths().iter().any(|p| p == "/slow") {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "/slow never called"
            );
            tokio::select! {
                _ = &mut run => panic!("the run ended before the crash"),
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        drop(run); // the crash, while the second handler is being called

        let events = EventStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &names.events_table,
            emu.endpoint(),
        );
        let saved = events.get("e1").await.unwrap().unwrap();
        assert_eq!(saved.status, EventStatus::Accepted, "nothing written");
        assert!(saved.calls.is_empty());

        // The message comes back (its visibility ended): the second delivery.
        queue
            .defer(messages[0].receipt_handle().unwrap(), Duration::ZERO)
            .await
            .unwrap();
        let again = queue
            .receive(false, 10, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        let response = handle(
            &app,
            sqs_event(&again, "arn:aws:sqs:us-east-1:0:q"),
            deadline,
        )
        .await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(
            r.paths(),
            ["/first", "/slow", "/first", "/slow"],
            "the lost run's calls made again"
        );
        let logs = LogStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &names.events_table,
            emu.endpoint(),
        );
        let query = hooks_core::records::LogQuery {
            event_id: Some("e1".into()),
            limit: 100,
            ..Default::default()
        };
        let mut logged: Vec<(u32, u32, &str)> = logs
            .query(&query)
            .await
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e.record.handler_id,
                    e.record.attempt,
                    e.record.outcome.as_str(),
                )
            })
            .collect();
        logged.sort_unstable();
        assert_eq!(
            logged,
            [
                (1, 1, "interrupted"),
                (1, 2, "processed"),
                (2, 1, "interrupted"),
                (2, 2, "processed")
            ],
            "the lost run's calls logged as interrupted, their repeats as the next attempts"
        );
        for path in ["/first", "/slow"] {
            let ids: Vec<String> = r
                .received()
                .iter()
                .filter(|q| q.path == path)
                .map(|q| q.header("webhook-id").unwrap_or("").to_owned())
                .collect();
            assert_eq!(ids.len(), 2);
            assert_eq!(
                ids[0], ids[1],
                "the same webhook-id, for the receiver to deduplicate"
            );
        }
        let done = events.get("e1").await.unwrap().unwrap();
        assert_eq!(done.status, EventStatus::Succeeded);
        assert_eq!(done.calls.len(), 4);
    }

    /// An event waiting an hour for its retry is retried at once by a replay:
    /// its own hidden message is made visible, no second message is sent.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_replay_brings_a_waiting_retry_forward() {
        let emu = Emulator::start();
        let r = Receiver::start().await;
        r.once("/flaky", Answer::status(503));
        let toml = format!(
            "version = 1\n[defaults]\nretry = {{ schedule = [\"1h\"] }}\n{}",
            handler(1, "clients.create", 1, &r.url("/flaky")),
        );
        let (app, sdk, names) = app_with(&emu, &toml).await;
        let queue = app.queue.clone();
        queue
            .send(&[queued("w1", Event::ClientsCreate, "K")])
            .await
            .unwrap();
        let messages = queue
            .receive(false, 10, Duration::from_secs(1))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let response = handle(
            &app,
            sqs_event(&messages, "arn:aws:sqs:us-east-1:0:q"),
            deadline,
        )
        .await;
        assert_eq!(response.batch_item_failures.len(), 1);
        let events = EventStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &names.events_table,
            emu.endpoint(),
        );
        let failed = events.get("w1").await.unwrap().unwrap();
        assert_eq!(failed.status, EventStatus::Failed);
        assert!(failed.next_attempt_at.unwrap() > Utc::now() + chrono::Duration::minutes(50));
        assert!(
            queue
                .receive(false, 10, Duration::from_secs(1))
                .await
                .unwrap()
                .is_empty(),
            "hidden for its retry"
        );

        let done = hooks_core::replay::replay_event(&events, &queue, &failed.event, false, false)
            .await
            .unwrap();
        assert_eq!(done, hooks_core::replay::Replay::RetryNow);
        let again = queue
            .receive(false, 10, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(again.len(), 1, "the same message, visible at once");
        assert_eq!(again[0].message_id(), messages[0].message_id());
        let response = handle(
            &app,
            sqs_event(&again, "arn:aws:sqs:us-east-1:0:q"),
            deadline,
        )
        .await;
        assert!(response.batch_item_failures.is_empty());
        let record = events.get("w1").await.unwrap().unwrap();
        assert_eq!(record.status, EventStatus::Succeeded);
        assert_eq!(r.paths(), ["/flaky", "/flaky"]);
        assert_eq!(
            record.progress.attempts.get(&1).copied(),
            Some(1),
            "a fresh schedule"
        );
        assert_eq!(queue.depth().await.unwrap(), (0, 0), "no second message");
    }

    /// Near the end of the queue's 14 days, an event is dead-lettered rather
    /// than hidden again or held back, so that the queue never drops it unseen.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_event_near_the_end_of_the_queues_retention_is_dead_lettered() {
        let emu = Emulator::start();
        let r = Receiver::start().await;
        r.always("/down", Answer::status(503));
        let toml = format!(
            "version = 1\n[defaults]\nretry = {{ schedule = [\"1h\"] }}\n{}",
            handler(1, "clients.create", 1, &r.url("/down")),
        );
        let (app, sdk, names) = app_with(&emu, &toml).await;
        let queue = app.queue.clone();
        queue
            .send(&[
                queued("a1", Event::ClientsCreate, "A"),
                queued("a2", Event::ClientsUpdate, "A"),
                queued("a3", Event::ClientsUpdate, "A"),
                queued("b1", Event::ClientsCreate, "B"),
            ])
            .await
            .unwrap();
        let messages = receive(&queue, 4).await;
        let mut batch = sqs_event(&messages, "arn:aws:sqs:us-east-1:0:q");
        // a2 and b1 were sent 13 days and 23 hours ago.
        let old = (Utc::now() - chrono::Duration::days(14) + chrono::Duration::hours(1))
            .timestamp_millis()
            .to_string();
        let mut id_of = std::collections::HashMap::new();
        for rec in batch["Records"].as_array_mut().unwrap() {
            let body: QueuedEvent = serde_json::from_str(rec["body"].as_str().unwrap()).unwrap();
            id_of.insert(
                body.event.id.clone(),
                rec["messageId"].as_str().unwrap().to_owned(),
            );
            if body.event.id == "a2" || body.event.id == "b1" {
                rec["attributes"]["SentTimestamp"] = old.clone().into();
            }
        }
        let response = handle(&app, batch, Instant::now() + Duration::from_secs(60)).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(
            failed,
            [id_of["a1"].as_str(), id_of["a3"].as_str()],
            "a1 waits for its retry, a3 (fresh) behind it"
        );
        assert_eq!(queue.depth().await.unwrap().1, 2, "a2 and b1 dead-lettered");
        let events = EventStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &names.events_table,
            emu.endpoint(),
        );
        assert_eq!(
            events.get("a1").await.unwrap().unwrap().status,
            EventStatus::Failed
        );
        let a2 = events.get("a2").await.unwrap().unwrap();
        assert_eq!(a2.status, EventStatus::Dead);
        assert!(
            a2.last_error
                .unwrap()
                .starts_with("held behind a failing event")
        );
        let b1 = events.get("b1").await.unwrap().unwrap();
        assert_eq!(b1.status, EventStatus::Dead);
        assert!(
            b1.last_error
                .as_deref()
                .unwrap_or("")
                .contains("the queue would drop it"),
            "{:?}",
            b1.last_error
        );
        let a3 = events.get("a3").await.unwrap().unwrap();
        assert_eq!(
            (a3.status, a3.calls.len()),
            (EventStatus::Accepted, 0),
            "a3 not run"
        );
        assert_eq!(
            r.paths(),
            ["/down", "/down"],
            "a1 and b1 ran once; a2 and a3 never"
        );
    }

    /// An event called so often that its calls would pass DynamoDB's item
    /// limit keeps the newest within [`MAX_DOC_BYTES`], counts the rest,
    /// and still saves.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_record_keeps_its_newest_calls_within_the_item_limit() {
        let emu = Emulator::start();
        let sdk = emu.sdk_config().await;
        let names = ResourceNames::prefixed(&unique("trim"));
        bootstrap(&sdk, &names).await.unwrap();
        let events = EventStore::new(emu.dynamodb(), &names.events_table, emu.endpoint());
        let q = queued("o1", Event::ClientsCreate, "K");
        events.accept(&q).await.unwrap();
        let mut record = events.get("o1").await.unwrap().unwrap();
        // Responses that do not compress (pseudo-random letters), 2 KiB each.
        let mut seed = 0x2545_f491_u32;
        let mut noise = || {
            (0..hooks_core::chain::RESPONSE_EXCERPT_BYTES)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    char::from(b'a' + (seed % 26) as u8)
                })
                .collect::<String>()
        };
        record.calls = (1..=400)
            .map(|i| LogEntry {
                record: CallRecord {
                    event_id: "o1".into(),
                    event: Event::ClientsCreate,
                    phase: Phase::After,
                    handler_id: i,
                    handler_name: format!("h{i}"),
                    attempt: 1,
                    started_at: Utc::now(),
                    duration_ms: 1,
                    status_code: Some(200),
                    outcome: hooks_core::chain::Outcome::Processed,
                    error: None,
                    retryable: None,
                    retry_after_secs: None,
                    resolution: None,
                    reason: None,
                    response: Some(noise()),
                    changes: Vec::new(),
                    shadow: false,
                    span_id: None,
                    probe: false,
                    not_called: false,
                },
                revision: 1,
            })
            .collect();
        assert!(
            events.save(&mut record.clone()).await.is_err(),
            "too large for one item, even deflated"
        );
        let dropped = record.trim_calls(MAX_DOC_BYTES);
        assert!(!dropped.is_empty() && !record.calls.is_empty());
        assert_eq!(dropped[0].record.handler_id, 1, "oldest dropped first");
        assert_eq!(record.calls.last().unwrap().record.handler_id, 400);
        assert_eq!(record.calls_trimmed as usize, dropped.len());
        assert!(serde_json::to_vec(&record).unwrap().len() <= MAX_DOC_BYTES);
        events.save(&mut record).await.unwrap();
        let stored = events.get("o1").await.unwrap().unwrap();
        assert_eq!(stored.calls.len(), record.calls.len());
        assert_eq!(stored.calls_trimmed, record.calls_trimmed);
    }
}
