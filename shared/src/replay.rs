//! Putting events back on the queue: one by id, or what the dead-letter queue holds.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::queue::{Queue, QueuedEvent};
use crate::store::StoreError;
use crate::store::events::EventStore;

/// Resets an event's record for another go (see
/// [`EventRecord::reset_for_replay`](crate::store::events::EventRecord::reset_for_replay))
/// and sends it again, with a deduplication id of its own.
pub async fn replay_event(
    events: &EventStore,
    queue: &Queue,
    event: &QueuedEvent,
    from_start: bool,
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
    record.reset_for_replay(from_start);
    events.save(&record).await?;
    queue
        .resend(
            &record.event,
            &format!(
                "{}-replay-{}",
                event.event.id,
                Utc::now().timestamp_millis()
            ),
        )
        .await
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
            replay_event(events, queue, &event, from_start).await?;
            out.replayed.push(event.event.id.clone());
            if let Some(r) = m.receipt_handle() {
                done.push(r.to_owned());
            }
        }
        queue.delete(true, &done).await?;
        if done.is_empty() {
            // Only messages to keep are left; they stay hidden for their visibility timeout.
            return Ok(out);
        }
    }
}
