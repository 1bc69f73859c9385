//! Putting events back on the queue: one by id, or what the dead-letter queue holds.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_sqs::types::Message;
use chrono::{DateTime, Utc};

use crate::chain::Progress;
use crate::config::{Config, HandlerId, Phase};
use crate::events::Event;
use crate::queue::{Queue, dedup_id};
use crate::records::QueuedEvent;
use crate::records::{EventRecord, EventStatus};
use crate::store::events::EventStore;
use crate::store::logs::LogStore;
use crate::store::{QueueError, StoreError};

/// Why a replay was not done, or not completely.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Not done, on purpose; the message says why and what to do.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl ReplayError {
    /// Whether trying again later may help.
    pub fn is_transient(&self) -> bool {
        match self {
            ReplayError::Refused(_) => false,
            ReplayError::Store(e) => e.is_transient(),
            ReplayError::Queue(e) => e.is_transient(),
        }
    }
}

/// What [`replay_event`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// A new message was sent.
    Sent,
    /// The event was waiting for a retry: its own message was made visible,
    /// so the retry happens now instead of at `next_attempt_at`.
    RetryNow,
}

/// Resets an event's record for another go (see
/// [`EventRecord::reset_for_replay`](crate::records::EventRecord::reset_for_replay))
/// and sends it again, with a deduplication id of its own.
///
/// An event waiting for a retry (`failed`) is not sent again: its message is
/// still on the queue, hidden, and holds its ordering group; a second message
/// would only wait behind it. Its retry is brought forward instead. Any other
/// event still on its way (accepted, queued, running) is refused unless
/// `force`: replaying it would race its own delivery.
pub async fn replay_event(
    events: &EventStore,
    queue: &Queue,
    event: &QueuedEvent,
    from_start: bool,
    force: bool,
) -> Result<Replay, ReplayError> {
    let mut record = events.get_or_accept(event).await?;
    if record.status == EventStatus::Failed
        && let Some(receipt) = record.receipt.clone()
    {
        let before = record.clone();
        record.reset_for_replay(from_start);
        // Only if dispatch has not written the event meanwhile.
        if !events.save_if(&mut record).await? {
            return Err(ReplayError::Refused(format!(
                "event {} is being retried right now",
                event.event.id
            )));
        }
        return match queue.release(&receipt).await {
            Ok(true) => Ok(Replay::RetryNow),
            // The receipt no longer holds the message (received again, or
            // gone): a new message is safe, as a delivery of a finished event
            // does nothing and FIFO never delivers two of a group at once.
            Ok(false) => send_again(events, queue, &record, before).await,
            Err(e) => {
                undo(events, before, record.version).await;
                Err(e.into())
            }
        };
    }
    if !from_start
        && matches!(
            record.status,
            EventStatus::Succeeded | EventStatus::Forbidden
        )
    {
        return Err(ReplayError::Refused(format!(
            "event {} {}: no handler is left to call (--from-start calls them all again)",
            event.event.id,
            if record.status == EventStatus::Succeeded {
                "succeeded"
            } else {
                "was forbidden"
            }
        )));
    }
    if !force && !record.status.is_final() && record.status != EventStatus::Accepted {
        return Err(ReplayError::Refused(format!(
            "event {} is {}: still on its way, and replaying it now would race its own delivery (--force to do it anyway)",
            event.event.id,
            record.status.as_str()
        )));
    }
    let before = record.clone();
    record.reset_for_replay(from_start);
    // The record first: dispatch may receive the message at once, and a
    // finished record would make it drop the message as a repeated delivery.
    events.save(&mut record).await?;
    send_again(events, queue, &record, before).await
}

/// Sends the event's message again; if that fails, puts `before` back.
async fn send_again(
    events: &EventStore,
    queue: &Queue,
    record: &EventRecord,
    before: EventRecord,
) -> Result<Replay, ReplayError> {
    let dedup = dedup_id(
        &record.event.event.id,
        &format!("replay-{}", Utc::now().timestamp_millis()),
    );
    match queue.resend(&record.event, &dedup).await {
        Ok(()) => Ok(Replay::Sent),
        Err(e) => {
            undo(events, before, record.version).await;
            Err(e.into())
        }
    }
}

/// Puts `before` back, as a newer version than `current` (the replay's).
async fn undo(events: &EventStore, mut before: EventRecord, current: u64) {
    before.version = current;
    if let Err(e) = events.save(&mut before).await {
        tracing::error!(event.id = %before.event.event.id, error = %e, "replay failed, and the event's record could not be put back");
    }
}

/// What a drain of the dead-letter queue did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    pub replayed: Vec<String>,
    /// Messages of events that are no longer dead (replayed or run since):
    /// stale copies, removed from the dead-letter queue, with why.
    pub skipped: Vec<(String, String)>,
    /// Older than `since`, not events, being dead-lettered at this moment,
    /// or dead-lettered again during this drain: left where they are.
    pub kept: usize,
}

/// Puts the dead-lettered events (dead-lettered since `since`, if given) back
/// on the queue and removes them from the dead-letter queue.
pub async fn replay_dead(
    events: &EventStore,
    queue: &Queue,
    since: Option<DateTime<Utc>>,
    from_start: bool,
) -> Result<Replayed, ReplayError> {
    let mut drain = Drain {
        events,
        queue,
        since,
        from_start,
        touched: HashSet::new(),
        out: Replayed::default(),
    };
    loop {
        let messages = queue.receive(true, 10, Duration::from_secs(1)).await?;
        if messages.is_empty() {
            return Ok(drain.out);
        }
        let mut removed = false;
        for m in &messages {
            removed |= drain.message(m).await?;
        }
        if !removed {
            // Only messages to keep are left; they stay hidden for their visibility timeout.
            return Ok(drain.out);
        }
    }
}

/// One drain of the dead-letter queue, message by message.
struct Drain<'a> {
    events: &'a EventStore,
    queue: &'a Queue,
    since: Option<DateTime<Utc>>,
    from_start: bool,
    /// Each event at most once per drain: a replayed event that fails again
    /// comes back to this queue while the drain goes on.
    touched: HashSet<String>,
    out: Replayed,
}

impl Drain<'_> {
    /// Replays one message's event, or removes it as a stale copy, or keeps
    /// it. Whether it was removed from the dead-letter queue.
    async fn message(&mut self, m: &Message) -> Result<bool, ReplayError> {
        let Some(event) = self.event_of(m) else {
            return Ok(false);
        };
        let record = self.events.get(&event.event.id).await?;
        // Dispatch may be moving it here right now (the message is on this
        // queue a moment before its record says `dead`): left for a later drain.
        if let Some(r) = &record
            && r.status == EventStatus::Running
            && Utc::now() - r.updated_at < chrono::Duration::minutes(15)
        {
            self.out.kept += 1;
            return Ok(false);
        }
        self.touched.insert(event.event.id.clone());
        match &record {
            // Dead (or its record expired): put back.
            None => {}
            Some(r) if r.status == EventStatus::Dead => {}
            // No longer dead: this copy is stale.
            Some(r) => {
                self.out.skipped.push((
                    event.event.id.clone(),
                    format!("no longer dead: {}", r.status.as_str()),
                ));
                return self.remove(m).await;
            }
        }
        replay_event(self.events, self.queue, &event, self.from_start, true).await?;
        self.out.replayed.push(event.event.id.clone());
        // Removed at once: a failure later in the drain must not leave it
        // to be replayed twice.
        self.remove(m).await
    }

    /// The event a message carries, unless the message is kept where it is
    /// (and counted): dead-lettered before `since`, not an event, or an
    /// event this drain has already handled.
    fn event_of(&mut self, m: &Message) -> Option<QueuedEvent> {
        let sent_at = m
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp))
            .and_then(|t| t.parse::<i64>().ok())
            .and_then(DateTime::from_timestamp_millis);
        if self
            .since
            .is_some_and(|since| sent_at.is_some_and(|t| t < since))
        {
            self.out.kept += 1;
            return None;
        }
        let Some(event) = m
            .body()
            .and_then(|b| serde_json::from_str::<QueuedEvent>(b).ok())
        else {
            tracing::warn!(
                message.id = m.message_id().unwrap_or("?"),
                "not an event; left on the dead-letter queue"
            );
            self.out.kept += 1;
            return None;
        };
        if self.touched.contains(&event.event.id) {
            self.out.kept += 1;
            return None;
        }
        Some(event)
    }

    /// Deletes `m` from the dead-letter queue; whether it had a receipt to
    /// delete it by.
    async fn remove(&self, m: &Message) -> Result<bool, ReplayError> {
        let Some(receipt) = m.receipt_handle() else {
            return Ok(false);
        };
        self.queue.delete(true, &[receipt.to_owned()]).await?;
        Ok(true)
    }
}

/// Replays `record` to handler `only`: every other handler of `chain` is
/// marked done, with the data as the whole chain last left it; the record
/// is written only if nobody wrote it since it was read.
async fn replay_to(
    events: &EventStore,
    queue: &Queue,
    record: EventRecord,
    chain: &[HandlerId],
    only: HandlerId,
) -> Result<(), ReplayError> {
    let before = record.clone();
    let mut next = record;
    next.reset_for_replay(false);
    next.progress = Progress {
        completed: chain.iter().copied().filter(|h| *h != only).collect(),
        attempts: Default::default(),
        data: before.progress.data.clone(),
    };
    if !events.save_if(&mut next).await? {
        return Err(ReplayError::Refused(
            "the event changed since it was listed".into(),
        ));
    }
    send_again(events, queue, &next, before).await.map(|_| ())
}

/// Which recorded events [`replay_range`] puts back through the current config.
#[derive(Debug, Clone)]
pub struct Range {
    /// Received from then…
    pub since: DateTime<Utc>,
    /// …until then (now, without it).
    pub until: Option<DateTime<Utc>>,
    /// Of this type only.
    pub event: Option<Event>,
    /// To this handler only (every other handler of the current chain is
    /// marked done); only events it would be called for.
    pub handler: Option<HandlerId>,
    /// Refused beyond this many events: narrow the range, or raise it.
    pub max: usize,
}

/// What [`replay_range`] did, or would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeReplay {
    /// In the order sent (each key's in the order received).
    pub replayed: Vec<String>,
    pub skipped: Vec<(String, String)>,
}

/// Puts the events received in a range back through the **current**
/// config, oldest first, so that each key's events keep their order (a key
/// is one FIFO group); each handler call keeps its `webhook-id` (event id +
/// handler id), so an idempotent handler recognises what it has seen.
/// Without `apply`, only says what it would do.
///
/// Left out, with the reason: decisions (billing waited for their answer;
/// they are not replayable), and events still on their way (accepted,
/// queued, running or waiting for a retry: a second message would race the
/// first). With `handler`, an event is replayed to that handler alone, with
/// the data as the chain left it, and only if the handler is in the current
/// chain of its type; without it, the whole current chain runs again with
/// the data as billing sent it.
pub async fn replay_range(
    log: &LogStore,
    events: &EventStore,
    queue: &Queue,
    config: &Config,
    range: &Range,
    apply: bool,
) -> Result<RangeReplay, ReplayError> {
    let (records, more) = log
        .received(range.since, range.until, range.event, range.max)
        .await?;
    if more {
        return Err(ReplayError::Refused(format!(
            "more than {} events were received in that range: narrow it (--until, --event, --handler) or raise --limit",
            range.max
        )));
    }
    let mut out = RangeReplay::default();
    for record in records {
        let id = record.event.event.id.clone();
        let chain: Vec<HandlerId> = config
            .chain_for(record.event.event.event, Phase::After)
            .iter()
            .map(|h| h.id)
            .collect();
        if range.handler.is_some_and(|h| !chain.contains(&h)) {
            continue;
        }
        let why = if record.phase() == Phase::Before {
            Some("a decision: billing had its answer; decisions are not replayed".to_owned())
        } else if !record.status.is_final() {
            Some(format!(
                "still on its way ({}): `hooks replay --event {id}` once it is done",
                record.status.as_str()
            ))
        } else {
            None
        };
        if let Some(why) = why {
            out.skipped.push((id, why));
            continue;
        }
        if let Some(only) = range.handler.and_then(|h| config.handler(h))
            && let Some(when) = &only.when
            && !when
                .eval(record.event.event.event, &record.progress.data)
                .unwrap_or(false)
        {
            continue; // its condition does not hold: it would not be called
        }
        if apply {
            // One event that cannot be replayed (it changed since it was
            // listed, the queue refused…) is reported, and the rest go on:
            // a second run of the same range would send the done ones again.
            let sent = match range.handler {
                None => replay_event(events, queue, &record.event, true, false)
                    .await
                    .map(|_| ()),
                Some(only) => replay_to(events, queue, record, &chain, only).await,
            };
            if let Err(e) = sent {
                out.skipped.push((id, format!("not replayed: {e}")));
                continue;
            }
        }
        out.replayed.push(id);
    }
    Ok(out)
}
