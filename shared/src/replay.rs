//! Putting events back on the queue: one by id, or what the dead-letter queue holds.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::queue::{Queue, QueuedEvent, dedup_id};
use crate::store::StoreError;
use crate::store::events::{EventStatus, EventStore};

/// Resets an event's record for another go (see
/// [`EventRecord::reset_for_replay`](crate::store::events::EventRecord::reset_for_replay))
/// and sends it again, with a deduplication id of its own. An event that is
/// still on its way (queued, running, waiting for a retry) is refused unless
/// `force`: replaying it would race its own delivery.
pub async fn replay_event(
    events: &EventStore,
    queue: &Queue,
    event: &QueuedEvent,
    from_start: bool,
    force: bool,
) -> Result<(), StoreError> {
    let mut record = match events.get(&event.event.id).await? {
        Some(r) => r,
        None => {
            events.accept(event).await?;
            events
                .get(&event.event.id)
                .await?
                .ok_or_else(|| StoreError::Corrupt("event vanished".into()))?
        }
    };
    if !force && !record.status.is_final() && record.status != EventStatus::Accepted {
        return Err(StoreError::Refused(format!(
            "event {} is {}: still on its way, and replaying it now would race its own delivery (--force to do it anyway)",
            event.event.id,
            record.status.as_str()
        )));
    }
    let before = record.clone();
    record.reset_for_replay(from_start);
    // The record first: dispatch may receive the message at once, and a
    // finished record would make it drop the message as a repeated delivery.
    // A failed send puts the record back as it was.
    events.save(&record).await?;
    let dedup = dedup_id(
        &event.event.id,
        &format!("replay-{}", Utc::now().timestamp_millis()),
    );
    if let Err(e) = queue.resend(&record.event, &dedup).await {
        if let Err(undo) = events.save(&before).await {
            tracing::error!(event.id = %event.event.id, error = %undo, "replay not sent, and its record could not be put back; it reads `queued`");
        }
        return Err(e);
    }
    Ok(())
}

/// What a drain of the dead-letter queue did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    pub replayed: Vec<String>,
    /// Older than `since`, or not events: left where they are.
    pub kept: usize,
}

/// Puts the dead-lettered events (dead-lettered since `since`, if given) back
/// on the queue and removes them from the dead-letter queue.
pub async fn replay_dead(
    events: &EventStore,
    queue: &Queue,
    since: Option<DateTime<Utc>>,
    from_start: bool,
) -> Result<Replayed, StoreError> {
    let mut out = Replayed::default();
    loop {
        let messages = queue.receive(true, 10, Duration::from_secs(1)).await?;
        if messages.is_empty() {
            return Ok(out);
        }
        let mut done = Vec::new();
        for m in &messages {
            let sent_at = m
                .attributes()
                .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp))
                .and_then(|t| t.parse::<i64>().ok())
                .and_then(DateTime::from_timestamp_millis);
            if since.is_some_and(|since| sent_at.is_some_and(|t| t < since)) {
                out.kept += 1;
                continue;
            }
            let Some(event) = m
                .body()
                .and_then(|b| serde_json::from_str::<QueuedEvent>(b).ok())
            else {
                tracing::warn!(
                    message.id = m.message_id().unwrap_or("?"),
                    "not an event; left on the dead-letter queue"
                );
                out.kept += 1;
                continue;
            };
            replay_event(events, queue, &event, from_start, true).await?;
            out.replayed.push(event.event.id.clone());
            // Removed at once: a failure later in the drain must not leave it
            // to be replayed twice.
            if let Some(r) = m.receipt_handle() {
                queue.delete(true, &[r.to_owned()]).await?;
                done.push(r.to_owned());
            }
        }
        if done.is_empty() {
            // Only messages to keep are left; they stay hidden for their visibility timeout.
            return Ok(out);
        }
    }
}
