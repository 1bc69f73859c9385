//! The SQS adapter: the FIFO queue from ingest to dispatch (one message group
//! per ordering key, deduplicated by event id) and its dead-letter queue.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::operation::get_queue_url::GetQueueUrlError;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};

use crate::aws::{classify, fault};
use crate::fault::Fault;
use crate::records::QueuedEvent;
pub use crate::store::QueueCounts;
use crate::store::QueueError;
use crate::store::schema::{DEAD_LETTER_QUEUE, EVENTS_QUEUE, QueueDef};

const SERVICE: &str = "SQS";

/// The longest SQS hides a message: 12 hours, counted from when it was
/// received.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// The longest `defer` asks for: 12 hours less a margin for the time since
/// the message was received (SQS rejects anything past 12 hours from the
/// receive). A longer wait is completed by hiding the message again when it
/// comes back early (dispatch checks the event's next attempt time).
pub const MAX_DEFER: Duration = Duration::from_secs(11 * 3600 + 30 * 60);

/// The visibility timeout that hides a message for `delay`: whole seconds,
/// rounded up (a retry never comes before its time), at most [`MAX_DEFER`].
pub fn visibility_secs(delay: Duration) -> i32 {
    let delay = delay.min(MAX_DEFER);
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

/// A deduplication id for `id` plus `suffix`, within SQS's 128 characters:
/// the id itself when it fits, else its SHA-256.
pub fn dedup_id(id: &str, suffix: &str) -> String {
    use sha2::{Digest, Sha256};
    let plain = format!("{id}-{suffix}");
    if plain.len() <= 128 {
        plain
    } else {
        format!("{}-{suffix}", hex::encode(Sha256::digest(id.as_bytes())))
            .chars()
            .take(128)
            .collect()
    }
}

/// The main queue and its dead-letter queue.
#[derive(Debug, Clone)]
pub struct Queue {
    client: Client,
    url: String,
    dlq_url: String,
    endpoint: String,
}

/// The message body of an event: its JSON, with the two characters JSON
/// allows raw but SQS refuses in a message (U+FFFE, U+FFFF) escaped.
/// They can only occur inside JSON strings, where the escape means the same.
pub fn message_body(event: &QueuedEvent) -> Result<String, QueueError> {
    let body = serde_json::to_string(event).map_err(|e| QueueError::Message(e.to_string()))?;
    Ok(if body.contains(['\u{FFFE}', '\u{FFFF}']) {
        body.replace('\u{FFFE}', "\\ufffe")
            .replace('\u{FFFF}', "\\uffff")
    } else {
        body
    })
}

/// The most messages of one SendMessageBatch request.
const BATCH_MESSAGES: usize = 10;
/// The most bytes of one request's message bodies: SQS allows 256 KiB per
/// request, attributes and encoding included.
const BATCH_BYTES: usize = 200 * 1024;

/// Sends `events` in requests of at most [`BATCH_MESSAGES`] and
/// [`BATCH_BYTES`], in order, through `send` (which answers per index of
/// `events`), and says for each event whether it was enqueued.
///
/// After a failure, the later events of that ordering key are not sent (and
/// are reported failed): sent, they would run before the one billing sends
/// again. Within one request SQS gives no such guarantee, but a request fails
/// or succeeds as a whole nearly always. A failed first request is an error
/// (nothing was sent); a later one fails its events only.
async fn send_in_batches<F, Fut>(
    events: &[QueuedEvent],
    mut send: F,
) -> Result<Vec<Sent>, QueueError>
where
    F: FnMut(Vec<(usize, String)>) -> Fut,
    Fut: Future<Output = Result<HashMap<usize, Sent>, QueueError>>,
{
    let mut results: Vec<Option<Sent>> = vec![None; events.len()];
    let mut stopped: HashSet<&str> = HashSet::new();
    let mut next = 0;
    let mut first = true;
    while next < events.len() {
        let mut batch: Vec<(usize, String)> = Vec::new();
        let mut bytes = 0;
        while next < events.len() && batch.len() < BATCH_MESSAGES {
            let e = &events[next];
            if stopped.contains(e.key.as_str()) {
                results[next] = Some(Sent::Failed(format!(
                    "not sent: an earlier event with key `{}` was not queued, and this one must not overtake it",
                    e.key
                )));
                next += 1;
                continue;
            }
            let body = message_body(e)?;
            if !batch.is_empty() && bytes + body.len() > BATCH_BYTES {
                break;
            }
            bytes += body.len();
            batch.push((next, body));
            next += 1;
        }
        if batch.is_empty() {
            continue;
        }
        let indexes: Vec<usize> = batch.iter().map(|(i, _)| *i).collect();
        let mut sent = match send(batch).await {
            Ok(sent) => sent,
            Err(e) if first => return Err(e),
            Err(e) => indexes
                .iter()
                .map(|&i| (i, Sent::Failed(e.to_string())))
                .collect(),
        };
        first = false;
        for i in indexes {
            let s = sent
                .remove(&i)
                .unwrap_or_else(|| Sent::Failed("no answer for this message".to_owned()));
            if matches!(s, Sent::Failed(_)) {
                stopped.insert(&events[i].key);
            }
            results[i] = Some(s);
        }
    }
    Ok(results
        .into_iter()
        .map(|s| s.unwrap_or_else(|| Sent::Failed("not sent".to_owned())))
        .collect())
}

pub use crate::store::Sent;

impl Queue {
    /// The queues at these URLs (no lookup).
    pub fn at(client: Client, url: &str, dlq_url: &str, endpoint: &str) -> Queue {
        Queue {
            client,
            url: url.to_owned(),
            dlq_url: dlq_url.to_owned(),
            endpoint: endpoint.to_owned(),
        }
    }

    /// Looks the queues up by name.
    pub async fn resolve(
        client: Client,
        endpoint: &str,
        name: &str,
        dlq_name: &str,
    ) -> Result<Queue, QueueError> {
        let url = queue_url(&client, endpoint, name, EVENTS_QUEUE.env).await?;
        let dlq_url = queue_url(&client, endpoint, dlq_name, DEAD_LETTER_QUEUE.env).await?;
        Ok(Queue {
            client,
            url,
            dlq_url,
            endpoint: endpoint.to_owned(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn dlq_url(&self) -> &str {
        &self.dlq_url
    }

    fn err<E>(
        &self,
        e: aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
    ) -> QueueError
    where
        E: std::error::Error + aws_sdk_sqs::error::ProvideErrorMetadata + 'static,
    {
        fault(e, SERVICE, &self.endpoint).into()
    }

    /// Sends events, ten per request; says for each whether it was enqueued.
    #[tracing::instrument(skip_all, fields(count = events.len()))]
    pub async fn send(&self, events: &[QueuedEvent]) -> Result<Vec<Sent>, QueueError> {
        send_in_batches(events, |batch: Vec<(usize, String)>| async move {
            let mut req = self.client.send_message_batch().queue_url(&self.url);
            for (i, body) in batch {
                let e = &events[i];
                req = req.entries(
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .message_group_id(&e.key)
                        .message_deduplication_id(&e.event.id)
                        .build()
                        .map_err(|e| QueueError::Message(e.to_string()))?,
                );
            }
            let out = req.send().await.map_err(|e| self.err(e))?;
            let mut sent = HashMap::new();
            for f in out.failed() {
                let why = format!("{}: {}", f.code(), f.message().unwrap_or(""));
                if let Ok(i) = f.id().parse() {
                    sent.insert(i, Sent::Failed(why));
                }
            }
            for s in out.successful() {
                if let Ok(i) = s.id().parse() {
                    sent.insert(i, Sent::Ok);
                }
            }
            Ok(sent)
        })
        .await
    }

    /// Sends one event again (a replay), with a deduplication id of its own
    /// so that SQS does not drop it as a repeat of the first send.
    pub async fn resend(&self, event: &QueuedEvent, dedup_id: &str) -> Result<(), QueueError> {
        let body = message_body(event)?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .message_group_id(&event.key)
            .message_deduplication_id(dedup_id)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Makes a hidden message visible now (a retry brought forward). `false`
    /// when the receipt no longer holds it: the message was received again
    /// (it is being handled) or is gone.
    pub async fn release(&self, receipt_handle: &str) -> Result<bool, QueueError> {
        use aws_sdk_sqs::operation::change_message_visibility::ChangeMessageVisibilityError as E;
        match self
            .client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(0)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            // AWS answers a receipt for a message that was deleted or moved
            // with InvalidParameterValue ("Message does not exist or is not
            // available for visibility timeout change").
            Err(aws_sdk_sqs::error::SdkError::ServiceError(se))
                if matches!(
                    se.err(),
                    E::MessageNotInflight(_) | E::ReceiptHandleIsInvalid(_)
                ) || se.err().meta().code() == Some("InvalidParameterValue") =>
            {
                Ok(false)
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// Hides a received message for `delay` (at most [`MAX_DEFER`]): its retry.
    pub async fn defer(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        let secs = visibility_secs(delay);
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Puts a message on the dead-letter queue, with the reason.
    pub async fn dead_letter(
        &self,
        group: &str,
        dedup_id: &str,
        body: &str,
        reason: &str,
    ) -> Result<(), QueueError> {
        let reason: String = reason.chars().take(1000).collect();
        self.client
            .send_message()
            .queue_url(&self.dlq_url)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(dedup_id)
            .message_attributes(
                "reason",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(if reason.is_empty() {
                        "unknown".to_owned()
                    } else {
                        reason
                    })
                    .build()
                    .map_err(|e| QueueError::Message(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Receives up to `max` messages of the main queue (or of the dead-letter queue).
    pub async fn receive(
        &self,
        dead: bool,
        max: i32,
        wait: Duration,
    ) -> Result<Vec<Message>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(if dead { &self.dlq_url } else { &self.url })
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(i32::try_from(wait.as_secs()).unwrap_or(20).min(20))
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| self.err(e))?;
        Ok(out.messages.unwrap_or_default())
    }

    /// Deletes received messages (by receipt handle).
    pub async fn delete(&self, dead: bool, receipts: &[String]) -> Result<(), QueueError> {
        for chunk in receipts.chunks(10) {
            let mut req = self.client.delete_message_batch().queue_url(if dead {
                &self.dlq_url
            } else {
                &self.url
            });
            for (i, r) in chunk.iter().enumerate() {
                req = req.entries(
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .build()
                        .map_err(|e| QueueError::Message(e.to_string()))?,
                );
            }
            req.send().await.map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// What each queue holds (approximately, as SQS counts): the events
    /// queue's first, the dead-letter queue's second.
    pub async fn counts(&self) -> Result<[QueueCounts; 2], QueueError> {
        let mut out = [QueueCounts::default(); 2];
        for (i, url) in [&self.url, &self.dlq_url].into_iter().enumerate() {
            let attrs = self
                .client
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
                .send()
                .await
                .map_err(|e| self.err(e))?;
            let get = |name: QueueAttributeName| {
                attrs
                    .attributes()
                    .and_then(|a| a.get(&name))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            out[i] = QueueCounts {
                visible: get(QueueAttributeName::ApproximateNumberOfMessages),
                in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
                delayed: get(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            };
        }
        Ok(out)
    }

    /// How many messages wait on each queue (approximately).
    pub async fn depth(&self) -> Result<(u64, u64), QueueError> {
        let [main, dead] = self.counts().await?;
        Ok((main.visible, dead.visible))
    }
}

async fn queue_url(
    client: &Client,
    endpoint: &str,
    name: &str,
    env: &'static str,
) -> Result<String, QueueError> {
    let out = client
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| {
            classify(e, SERVICE, endpoint, |e| {
                matches!(e, GetQueueUrlError::QueueDoesNotExist(_)).then(|| QueueError::Missing {
                    queue: name.to_owned(),
                    env,
                })
            })
        })?;
    out.queue_url.ok_or_else(|| {
        Fault::Unknown(format!("SQS answered without the URL of queue {name}")).into()
    })
}

/// Creates the queue and its dead-letter queue from their definitions (the
/// local bootstrap); existing queues are left as they are. Returns their URLs.
pub async fn create_queues(
    client: &Client,
    endpoint: &str,
    main: (&QueueDef, &str),
    dead: (&QueueDef, &str),
) -> Result<(String, String), QueueError> {
    let dlq_url = create_queue(client, endpoint, dead.0, dead.1, None).await?;
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| fault(e, SERVICE, endpoint))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| Fault::Unknown("SQS answered without the dead-letter queue's ARN".into()))?;
    let url = create_queue(client, endpoint, main.0, main.1, Some(&dlq_arn)).await?;
    Ok((url, dlq_url))
}

async fn create_queue(
    client: &Client,
    endpoint: &str,
    def: &QueueDef,
    name: &str,
    dlq_arn: Option<&str>,
) -> Result<String, QueueError> {
    let mut req = client
        .create_queue()
        .queue_name(name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            def.visibility_timeout_secs.to_string(),
        )
        .attributes(
            QueueAttributeName::MessageRetentionPeriod,
            def.retention_secs.to_string(),
        );
    if def.fifo {
        req = req
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::ContentBasedDeduplication, "false");
    }
    if def.high_throughput {
        req = req
            .attributes(QueueAttributeName::DeduplicationScope, "messageGroup")
            .attributes(QueueAttributeName::FifoThroughputLimit, "perMessageGroupId");
    }
    if let (Some(arn), Some(count)) = (dlq_arn, def.max_receive_count) {
        req = req.attributes(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": count}).to_string(),
        );
    }
    let out = req.send().await.map_err(|e| fault(e, SERVICE, endpoint))?;
    out.queue_url.ok_or_else(|| {
        Fault::Unknown(format!("SQS answered without the URL of queue {name}")).into()
    })
}

impl crate::store::Publisher for Queue {
    async fn send(&self, events: &[QueuedEvent]) -> Result<Vec<Sent>, QueueError> {
        Queue::send(self, events).await
    }
}

impl crate::store::QueueDepth for Queue {
    async fn counts(&self) -> Result<[QueueCounts; 2], QueueError> {
        Queue::counts(self).await
    }
}

impl crate::store::Redelivery for Queue {
    async fn defer(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        Queue::defer(self, receipt, delay).await
    }
    async fn dead_letter(
        &self,
        group: &str,
        dedup_id: &str,
        body: &str,
        reason: &str,
    ) -> Result<(), QueueError> {
        Queue::dead_letter(self, group, dedup_id, body, reason).await
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::events::Event;
    use crate::protocol::EventEnvelope;
    use chrono::Utc;

    fn event(id: &str, key: &str) -> QueuedEvent {
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

    fn failed(s: &Sent) -> bool {
        matches!(s, Sent::Failed(_))
    }

    #[tokio::test]
    async fn after_a_failure_the_later_events_of_its_key_are_not_sent() {
        // 25 events, keys A B C A B C…; the 4th (A) fails in the first request.
        let keys = ["A", "B", "C"];
        let events: Vec<QueuedEvent> = (0..25)
            .map(|i| event(&format!("e{i}"), keys[i % 3]))
            .collect();
        let requests: RefCell<Vec<Vec<usize>>> = RefCell::default();
        let sent = send_in_batches(&events, |batch: Vec<(usize, String)>| {
            let indexes: Vec<usize> = batch.iter().map(|(i, _)| *i).collect();
            requests.borrow_mut().push(indexes.clone());
            async move {
                Ok(indexes
                    .into_iter()
                    .map(|i| {
                        let s = if i == 3 {
                            Sent::Failed("InternalError: try again".into())
                        } else {
                            Sent::Ok
                        };
                        (i, s)
                    })
                    .collect())
            }
        })
        .await
        .unwrap();
        assert_eq!(sent.len(), 25);
        for (i, s) in sent.iter().enumerate() {
            // A failed at 3; A's in the same request after it were already sent.
            let expect_failed = i == 3 || (i % 3 == 0 && i >= 10);
            assert_eq!(failed(s), expect_failed, "event {i}: {s:?}");
        }
        let requests = requests.into_inner();
        assert!(requests.iter().all(|r| r.len() <= BATCH_MESSAGES));
        let sent_later: Vec<usize> = requests[1..].iter().flatten().copied().collect();
        assert!(
            sent_later.iter().all(|i| i % 3 != 0),
            "no A after the failure was sent: {sent_later:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_first_request_is_an_error_and_a_later_one_fails_its_events() {
        let events: Vec<QueuedEvent> = (0..15)
            .map(|i| event(&format!("e{i}"), &format!("k{i}")))
            .collect();
        let down = || QueueError::from(Fault::Unknown("the queue did not answer".into()));
        let first = send_in_batches(&events, |_| async { Err(down()) }).await;
        assert!(first.is_err());

        let calls = RefCell::new(0);
        let sent = send_in_batches(&events, |batch: Vec<(usize, String)>| {
            *calls.borrow_mut() += 1;
            let n = *calls.borrow();
            async move {
                if n == 1 {
                    Ok(batch.into_iter().map(|(i, _)| (i, Sent::Ok)).collect())
                } else {
                    Err(down())
                }
            }
        })
        .await
        .unwrap();
        assert!(sent[..10].iter().all(|s| *s == Sent::Ok));
        assert!(sent[10..].iter().all(failed));
    }

    #[test]
    fn a_message_is_hidden_at_least_as_long_as_asked() {
        assert_eq!(visibility_secs(Duration::from_millis(1)), 1);
        assert_eq!(visibility_secs(Duration::from_secs(1)), 1);
        assert_eq!(visibility_secs(Duration::from_millis(1_001)), 2);
        assert_eq!(visibility_secs(Duration::ZERO), 0);
        assert_eq!(
            visibility_secs(Duration::from_secs(13 * 3600)),
            MAX_DEFER.as_secs() as i32
        );
    }

    #[test]
    fn characters_sqs_refuses_are_escaped_in_the_body() {
        let mut e = event("e1", "k");
        e.event
            .data
            .insert("name".into(), "a\u{FFFF}b\u{FFFE}".into());
        let body = message_body(&e).unwrap();
        assert!(!body.contains(['\u{FFFE}', '\u{FFFF}']), "{body}");
        let back: QueuedEvent = serde_json::from_str(&body).unwrap();
        assert_eq!(back.event.data, e.event.data);
    }
}
