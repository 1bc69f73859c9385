//! The dispatch function: the SQS trigger of the events queue.
//!
//! Each record is parsed on its own (a malformed one is dead-lettered alone).
//! Records of one message group run in order; after a failure in a group the
//! rest of that group is reported failed too, so FIFO order holds. Groups run
//! concurrently. For each event the remaining `after` handlers run through the
//! core chain, with the progress saved after every handler, so a retry — or a
//! crash mid-chain — never calls a completed handler again. A failure is
//! retried on the handler's schedule by hiding the message (visibility
//! timeout); after the last attempt the event is marked dead and moved to the
//! dead-letter queue.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsMessage};
use chrono::{DateTime, Utc};
use hooks_core::chain::{AfterOutcome, CallRecord, Checkpoint, Progress, run_after};
use hooks_core::config::Phase;
use hooks_core::queue::{MAX_DEFER, MAX_VISIBILITY, Queue, dedup_id};
use hooks_core::records::LogEntry;
use hooks_core::records::QueuedEvent;
use hooks_core::records::{EventRecord, EventStatus};
use hooks_core::store::StoreError;
use hooks_core::store::dynamodb::DynamoConfigStore;
use hooks_core::store::events::EventStore;
use hooks_core::store::live::LiveConfig;
use hooks_core::store::logs::LogStore;
use hooks_core::store::schema::EVENTS_QUEUE;
use hooks_core::targets::Targets;
use hooks_core::wiring::Resources;
use serde_json::Value;
use tokio::time::Instant;

/// Time kept in reserve before the invocation's deadline: saving progress and
/// answering the runtime must fit in it.
const RESERVE: Duration = Duration::from_secs(5);

/// What dispatch works with, built once per process by the wiring.
#[derive(Debug)]
pub(crate) struct App {
    events: EventStore,
    logs: LogStore,
    live: LiveConfig<DynamoConfigStore>,
    queue: Queue,
    targets: Targets,
}

impl App {
    pub(crate) fn new(res: Resources) -> App {
        App {
            events: res.events,
            logs: res.logs,
            live: res.live,
            queue: res.queue,
            targets: res.targets,
        }
    }
}

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    /// Delete it from the queue.
    Handled,
    /// Leave it (reported failed): it comes back when its visibility ends.
    Again,
}

/// A record of a batch: its message id, and the message if it parses.
type Received = (String, Result<SqsMessage, String>);

/// Handles one SQS batch; returns the ids of the records to retry.
pub(crate) async fn handle(app: &App, payload: Value, deadline: Instant) -> SqsBatchResponse {
    let records = match payload.get("Records") {
        Some(Value::Array(r)) => r.clone(),
        _ => Vec::new(),
    };
    // Group, keeping the order of each group.
    let mut groups: BTreeMap<String, Vec<Received>> = BTreeMap::new();
    let mut response = SqsBatchResponse::default();
    for raw in records {
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
        let msg = serde_json::from_value::<SqsMessage>(raw).map_err(|e| e.to_string());
        groups.entry(group).or_default().push((id, msg));
    }
    let runs = groups.into_iter().map(|(group, records)| async move {
        let mut failed: Vec<String> = Vec::new();
        let mut blocked = false;
        for (id, msg) in records {
            if blocked {
                if let Ok(m) = &msg
                    && expiring(sent_at(m), MAX_DEFER)
                    && expire_held(app, &group, m).await == Done::Handled
                {
                    continue;
                }
                // Behind a failed event of its group: not run. Visible again at
                // once, so it follows that event as soon as it is done, instead of
                // waiting out the queue's visibility timeout (FIFO holds it back
                // while the failed one is hidden).
                if let Ok(m) = &msg
                    && let Some(receipt) = &m.receipt_handle
                    && let Err(e) = app.queue.defer(receipt, Duration::ZERO).await
                {
                    tracing::warn!(message.id = %id, error = %e, "could not release a held-back message");
                }
                failed.push(id);
                continue;
            }
            let done = match msg {
                Ok(m) => handle_record(app, &group, &m, deadline).await,
                Err(e) => {
                    dead_letter_raw(app, &group, &id, "", &format!("not an SQS record: {e}")).await
                }
            };
            if done == Done::Again {
                blocked = true;
                failed.push(id);
            }
        }
        failed
    });
    for failed in futures_util::future::join_all(runs).await {
        for id in failed {
            response.add_failure(id);
        }
    }
    response
}

async fn dead_letter_raw(app: &App, group: &str, id: &str, body: &str, reason: &str) -> Done {
    tracing::error!(
        message.id = id,
        reason,
        "dead-lettering a malformed message"
    );
    let queue = &app.queue;
    let group = if group.is_empty() { "malformed" } else { group };
    match queue
        .dead_letter(group, &dedup_id(id, "malformed"), body, reason)
        .await
    {
        Ok(()) => Done::Handled,
        Err(e) => {
            tracing::error!(error = %e, "could not dead-letter");
            Done::Again
        }
    }
}

/// Log entries wait in the event's record until a run ends, or until this
/// many (one `BatchWriteItem`) or [`LOG_FLUSH_BYTES`] have gathered: the
/// record is rewritten after every handler, and what it carries costs write
/// capacity each time.
const LOG_BATCH: usize = 25;
const LOG_FLUSH_BYTES: usize = 4 * 1024;

/// If the execution log cannot be written, at most this much waits in the
/// event's record: with the event's data twice (64 KiB each at most) it stays
/// well under DynamoDB's 400 KB item. Older entries go to the function's own
/// log instead.
const MAX_UNLOGGED_BYTES: usize = 96 * 1024;

/// The size of the waiting entries, as stored in the record.
fn unlogged_bytes(record: &EventRecord) -> usize {
    record
        .unlogged
        .iter()
        .map(|e| serde_json::to_vec(e).map_or(0, |v| v.len()))
        .sum()
}

/// The longest a log write may take (throttling retries included): it must
/// fit in the time kept in reserve before the invocation's deadline. What is
/// not written in time stays in the event's record.
const LOG_WRITE_BUDGET: Duration = Duration::from_secs(2);

/// Writes the record's waiting log entries to the execution log and clears
/// them (in memory: the record's next save stores that); on failure keeps them
/// for a later run (within [`MAX_UNLOGGED_BYTES`]). Entries are keyed by event,
/// start time, handler and attempt, so writing one twice (after a crash)
/// leaves one item.
async fn flush_logs(logs: &LogStore, record: &mut EventRecord) -> bool {
    if record.unlogged.is_empty() {
        return true;
    }
    let written = tokio::time::timeout(LOG_WRITE_BUDGET, logs.write(&record.unlogged))
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unknown(format!(
                "log write not done within {LOG_WRITE_BUDGET:?}"
            )))
        });
    match written {
        Ok(()) => {
            record.unlogged.clear();
            true
        }
        Err(e) => {
            tracing::error!(error = %e, waiting = record.unlogged.len(), "log entries not written yet");
            trim_unlogged(record);
            false
        }
    }
}

/// Moves the oldest waiting entries to the function's own log until the rest
/// fit [`MAX_UNLOGGED_BYTES`]; returns the size of the rest.
fn trim_unlogged(record: &mut EventRecord) -> usize {
    let mut total = unlogged_bytes(record);
    let mut over = 0;
    for entry in &record.unlogged {
        if total <= MAX_UNLOGGED_BYTES {
            break;
        }
        total -= serde_json::to_vec(entry).map_or(0, |v| v.len());
        spill(entry);
        over += 1;
    }
    record.unlogged.drain(..over);
    total
}

/// Writes an entry the execution log did not take to the function's own log.
fn spill(entry: &LogEntry) {
    let entry = serde_json::to_string(entry).unwrap_or_default();
    tracing::error!(%entry, "execution log unreachable: entry kept in the function log");
}

/// Saves the progress after every handler, with the call's log entry.
struct Saver<'a> {
    events: &'a EventStore,
    logs: &'a LogStore,
    record: &'a mut EventRecord,
    revision: u64,
    /// A log write failed in this run: no more are tried (each may take
    /// [`LOG_WRITE_BUDGET`], and the run's reserve is short).
    log_down: bool,
}

impl Checkpoint for Saver<'_> {
    type Error = StoreError;
    async fn save(&mut self, progress: &Progress, call: &CallRecord) -> Result<(), StoreError> {
        self.record.unlogged.push(LogEntry {
            record: call.clone(),
            revision: self.revision,
        });
        self.record.progress = progress.clone();
        self.record.updated_at = Utc::now();
        // The record must fit its item, whatever the log table does.
        let waiting = trim_unlogged(self.record);
        // The progress first: nothing may delay it past the deadline.
        self.events.save(self.record).await?;
        if !self.log_down && (self.record.unlogged.len() >= LOG_BATCH || waiting > LOG_FLUSH_BYTES)
        {
            self.log_down = !flush_logs(self.logs, self.record).await;
        }
        Ok(())
    }
}

/// A message must be visible again at least this long before the queue would
/// drop it, so that it is received (and dead-lettered, if need be) in time.
const RETENTION_MARGIN: Duration = Duration::from_secs(3600);

/// When SQS received the message (its `SentTimestamp`).
fn sent_at(msg: &SqsMessage) -> Option<DateTime<Utc>> {
    msg.attributes
        .get("SentTimestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_millis)
}

/// Whether a message sent at `sent_at` and hidden for `delay` from now
/// would come back too close to the end of the queue's retention.
fn expiring(sent_at: Option<DateTime<Utc>>, delay: Duration) -> bool {
    let keep = Duration::from_secs(u64::from(EVENTS_QUEUE.retention_secs)) - RETENTION_MARGIN;
    let (Some(sent_at), Ok(delay), Ok(keep)) = (
        sent_at,
        chrono::Duration::from_std(delay),
        chrono::Duration::from_std(keep),
    ) else {
        return false;
    };
    Utc::now() + delay > sent_at + keep
}

/// A message held back behind a failing event of its group that may expire
/// before that event is done: dead-lettered now, where `hooks replay --dead`
/// finds it, rather than dropped by the queue unseen.
async fn expire_held(app: &App, group: &str, msg: &SqsMessage) -> Done {
    let id = msg.message_id.clone().unwrap_or_default();
    let body = msg.body.clone().unwrap_or_default();
    let reason = "held behind a failing event of its key until the queue would drop it (it keeps a message 14 days from when it was sent)";
    let Ok(queued) = serde_json::from_str::<QueuedEvent>(&body) else {
        return dead_letter_raw(app, group, &id, &body, reason).await;
    };
    let gave_up = async {
        let record = app.events.get_or_accept(&queued).await?;
        let read = record.status;
        if !read.is_final() {
            // `running` while it moves, so that a dead-letter drain leaves
            // it alone until its record says `dead`.
            let mut record = record;
            record.status = EventStatus::Running;
            record.updated_at = Utc::now();
            if !app.events.save_if(&record, read).await? {
                return Err(StoreError::Refused("the event changed meanwhile".into()));
            }
            app.queue
                .dead_letter(group, &dedup_id(&queued.event.id, "expired"), &body, reason)
                .await?;
            record.status = EventStatus::Dead;
            record.last_error = Some(reason.to_owned());
            record.updated_at = Utc::now();
            app.events.save(&record).await?;
        }
        Ok::<_, StoreError>(())
    };
    match gave_up.await {
        Ok(()) => {
            tracing::error!(event.id = %queued.event.id, reason, "event dead-lettered");
            Done::Handled
        }
        Err(e) => {
            tracing::error!(event.id = %queued.event.id, error = %e, "could not dead-letter an expiring event");
            Done::Again
        }
    }
}

#[tracing::instrument(skip_all, fields(message.id = msg.message_id.as_deref().unwrap_or(""), event.id))]
async fn handle_record(app: &App, group: &str, msg: &SqsMessage, deadline: Instant) -> Done {
    let id = msg.message_id.clone().unwrap_or_default();
    let body = msg.body.clone().unwrap_or_default();
    let Some(receipt) = msg.receipt_handle.clone() else {
        return dead_letter_raw(app, group, &id, &body, "record without a receipt handle").await;
    };
    let queued: QueuedEvent = match serde_json::from_str(&body) {
        Ok(q) => q,
        Err(e) => {
            return dead_letter_raw(app, group, &id, &body, &format!("not an event: {e}")).await;
        }
    };
    tracing::Span::current().record("event.id", queued.event.id.as_str());
    match run_event(app, group, &receipt, &body, sent_at(msg), queued, deadline).await {
        Ok(done) => done,
        Err(e) => {
            tracing::error!(error = %e, "event not handled; it comes back after the visibility timeout");
            Done::Again
        }
    }
}

async fn run_event(
    app: &App,
    group: &str,
    receipt: &str,
    body: &str,
    sent_at: Option<DateTime<Utc>>,
    queued: QueuedEvent,
    deadline: Instant,
) -> Result<Done, StoreError> {
    // A replay may reset the record between our read and our write: every
    // write here is conditional on the status read, and a lost race reads again.
    let mut tries = 0;
    let (mut record, revision) = loop {
        tries += 1;
        let mut record = app.events.get_or_accept(&queued).await?;
        let read = record.status;
        if read.is_final() {
            tracing::info!(
                status = read.as_str(),
                "already handled: a repeated delivery"
            );
            return Ok(Done::Handled);
        }
        let now = Utc::now();
        if let Some(at) = record.next_attempt_at
            && at > now + chrono::Duration::seconds(1)
        {
            // Delivered before its time (a delay longer than SQS can hide a
            // message): hide it again, and keep its new receipt for replay.
            let wait = (at - now).to_std().unwrap_or_default();
            app.queue.defer(receipt, wait).await?;
            if record.receipt.as_deref() != Some(receipt) {
                record.receipt = Some(receipt.to_owned());
                if !app.events.save_if(&record, read).await? && tries < 3 {
                    // Replayed meanwhile: run it now instead.
                    continue;
                }
            }
            return Ok(Done::Again);
        }
        let revision = match app.live.current().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "no handler config");
                return Ok(Done::Again);
            }
        };
        // Entries a crashed run left behind.
        flush_logs(&app.logs, &mut record).await;
        record.status = EventStatus::Running;
        record.runs += 1;
        record.revision = Some(revision.info.revision);
        record.next_attempt_at = None;
        record.receipt = None;
        record.updated_at = now;
        if app.events.save_if(&record, read).await? {
            break (record, revision);
        }
        if tries >= 3 {
            return Ok(Done::Again);
        }
    };
    let chain: Vec<&hooks_core::config::Handler> =
        revision.config.chain_for(queued.event.event, Phase::After);
    let queue = &app.queue;

    let progress = record.progress.clone();
    let mut saver = Saver {
        events: &app.events,
        logs: &app.logs,
        record: &mut record,
        revision: revision.info.revision,
        log_down: false,
    };
    let run = run_after(
        &app.targets,
        &chain,
        &revision.config.defaults,
        &queued.event,
        progress,
        Some(deadline.checked_sub(RESERVE).unwrap_or(deadline)),
        &mut saver,
    )
    .await;
    let log_down = saver.log_down;
    let logged = !log_down && flush_logs(&app.logs, &mut record).await;
    let run = match run {
        Ok(run) => run,
        Err(e) => {
            // The record could not be saved: these entries exist nowhere else.
            if !logged {
                record.unlogged.iter().for_each(spill);
            }
            return Err(e);
        }
    };
    record.progress = run.progress;
    record.updated_at = Utc::now();
    let done = match run.outcome {
        AfterOutcome::Completed => {
            record.status = EventStatus::Succeeded;
            record.last_error = None;
            Done::Handled
        }
        AfterOutcome::Forbidden { handler, reason } => {
            record.status = EventStatus::Forbidden;
            record.last_error = Some(format!("handler {handler} forbade: {reason}"));
            Done::Handled
        }
        AfterOutcome::Paused { next } => {
            tracing::info!(
                next,
                "out of time; the event continues in the next invocation"
            );
            record.status = EventStatus::Queued;
            app.events.save(&record).await?;
            queue.defer(receipt, Duration::ZERO).await?;
            return Ok(Done::Again);
        }
        AfterOutcome::Blocked {
            handler,
            attempt,
            retryable,
            retry_after_secs,
        } => {
            let error = run
                .handlers
                .last()
                .and_then(|c| c.error.clone())
                .unwrap_or_else(|| "failed".into());
            record.last_error = Some(format!("handler {handler}, attempt {attempt}: {error}"));
            let policy = revision
                .config
                .handler(handler)
                .map(|h| revision.config.retry_of(h).clone())
                .unwrap_or_else(|| revision.config.defaults.retry.clone());
            let next = retryable
                .then(|| policy.jittered_delay_before(attempt + 1, rand::random::<f64>()))
                .flatten()
                // Honour Retry-After, within what SQS can hide a message for.
                .map(|delay| {
                    retry_after_secs
                        .map(Duration::from_secs)
                        .map_or(delay, |ra| delay.max(ra.min(MAX_VISIBILITY)))
                });
            let (next, why) = match next {
                Some(delay) if expiring(sent_at, delay) => (
                    None,
                    "the queue would drop it before its next attempt (it keeps a message 14 days from when it was sent)",
                ),
                Some(delay) => (Some(delay), ""),
                None if retryable => (None, "out of attempts"),
                None => (None, "a permanent failure"),
            };
            match next {
                Some(delay) => {
                    record.status = EventStatus::Failed;
                    record.next_attempt_at = chrono::Duration::from_std(delay)
                        .ok()
                        .map(|d| Utc::now() + d);
                    // Hidden first: a replay, which needs the record's
                    // receipt, must come after, or this would undo it.
                    queue.defer(receipt, delay).await?;
                    // Lets `hooks replay` bring the retry forward.
                    record.receipt = Some(receipt.to_owned());
                    app.events.save(&record).await?;
                    tracing::warn!(
                        handler,
                        attempt,
                        delay_secs = delay.as_secs(),
                        "handler failed; retrying later"
                    );
                    return Ok(Done::Again);
                }
                None => {
                    let reason = format!("{why}: {}", record.last_error.as_deref().unwrap_or(""));
                    queue
                        .dead_letter(
                            group,
                            &dedup_id(&queued.event.id, &format!("dead-{}", record.runs)),
                            body,
                            &reason,
                        )
                        .await?;
                    record.status = EventStatus::Dead;
                    tracing::error!(handler, attempt, %reason, "event dead-lettered");
                    record.last_error = Some(reason);
                    Done::Handled
                }
            }
        }
    };
    if !record.unlogged.is_empty() {
        // Finished, and no later run will write them: they stay in the
        // record (shown with the event) and go to the function's log.
        record.unlogged.iter().for_each(spill);
    }
    app.events.save(&record).await?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    //! The batch contract, against the emulator and a real endpoint: a mixed
    //! batch reports exactly the records to retry.

    use std::collections::BTreeSet;

    use super::*;
    use chrono::Utc;
    use hooks_core::config::{Config, ParseOptions};
    use hooks_core::events::Event;
    use hooks_core::protocol::EventEnvelope;
    use hooks_core::settings::{ResourceNames, Settings};
    use hooks_core::store::ConfigStore;
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
            },
            key: key.into(),
            received_at: Utc::now(),
        }
    }

    /// Tables and queues of their own, `toml` synced, and the app over them.
    async fn app_with(emu: &Emulator, toml: &str) -> (App, aws_config::SdkConfig, ResourceNames) {
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
        assert_eq!(events.get("a3").await.unwrap(), None, "a3 was not touched");
    }

    /// A run that dies mid-chain (the future dropped, as when the process is
    /// killed) leaves its finished calls in the event's record; the next run
    /// writes them to the execution log and does not call those handlers again.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_crash_mid_chain_loses_no_log_entry() {
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

        let mut run = Box::pin(handle(&app, batch.clone(), deadline));
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
        let logs = LogStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &names.logs_table,
            emu.endpoint(),
        );
        let query = hooks_core::records::LogQuery {
            event_id: Some("e1".into()),
            limit: 100,
            ..Default::default()
        };
        let saved = events.get("e1").await.unwrap().unwrap();
        assert_eq!(saved.status, EventStatus::Running);
        let waiting: Vec<u32> = saved.unlogged.iter().map(|e| e.record.handler_id).collect();
        assert_eq!(waiting, [1], "the first call waits in the record");
        assert!(logs.query(&query).await.unwrap().is_empty());
        let shown: Vec<u32> = logs
            .calls_of(&saved)
            .await
            .unwrap()
            .iter()
            .map(|e| e.record.handler_id)
            .collect();
        assert_eq!(shown, [1], "an event's calls include those not yet logged");

        let response = handle(&app, batch, deadline).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(
            r.paths(),
            ["/first", "/slow", "/slow"],
            "handler 1 not called again"
        );
        let mut logged: Vec<(u32, u32)> = logs
            .query(&query)
            .await
            .unwrap()
            .iter()
            .map(|e| (e.record.handler_id, e.record.attempt))
            .collect();
        logged.sort_unstable();
        assert_eq!(logged, [(1, 1), (2, 1)], "one entry per finished call");
        let done = events.get("e1").await.unwrap().unwrap();
        assert_eq!(done.status, EventStatus::Succeeded);
        assert!(done.unlogged.is_empty());
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
        assert_eq!(events.get("a3").await.unwrap(), None, "a3 untouched");
        assert_eq!(
            r.paths(),
            ["/down", "/down"],
            "a1 and b1 ran once; a2 and a3 never"
        );
    }

    /// With the execution log unreachable, the entries that wait in the
    /// event's record stay within their budget, newest kept.
    #[tokio::test(flavor = "multi_thread")]
    async fn waiting_log_entries_stay_within_the_records_budget() {
        let emu = Emulator::start();
        let sdk = emu.sdk_config().await;
        let names = ResourceNames::prefixed(&unique("outbox"));
        bootstrap(&sdk, &names).await.unwrap();
        let missing = LogStore::new(emu.dynamodb(), "no-such-log-table", emu.endpoint());
        let events = EventStore::new(emu.dynamodb(), &names.events_table, emu.endpoint());
        let q = queued("o1", Event::ClientsCreate, "K");
        events.accept(&q).await.unwrap();
        let mut record = events.get("o1").await.unwrap().unwrap();
        // Responses full of control characters: each byte is stored as \u00XX.
        let excerpt = "\u{1}".repeat(hooks_core::chain::RESPONSE_EXCERPT_BYTES);
        record.unlogged = (1..=60)
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
                    response: Some(excerpt.clone()),
                },
                revision: 1,
            })
            .collect();
        assert!(unlogged_bytes(&record) > 4 * MAX_UNLOGGED_BYTES);
        assert!(
            !flush_logs(&missing, &mut record).await,
            "the log table is missing"
        );
        assert!(unlogged_bytes(&record) <= MAX_UNLOGGED_BYTES);
        assert!(!record.unlogged.is_empty());
        assert_eq!(
            record.unlogged.last().unwrap().record.handler_id,
            60,
            "newest kept"
        );
        // The record still fits its item.
        events.save(&record).await.unwrap();
        assert_eq!(
            events.get("o1").await.unwrap().unwrap().unlogged.len(),
            record.unlogged.len()
        );
    }
}
