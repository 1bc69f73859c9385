//! Local development: what AWS does between the queue and the dispatch
//! function, done by hand. The poller receives up to ten messages, invokes
//! dispatch with an SQS event (through the Lambda invoke API that
//! `cargo lambda watch` serves), deletes the messages dispatch handled and
//! leaves the failed ones to their visibility timeout — as the SQS event
//! source mapping with `ReportBatchItemFailures` does.

use std::time::Duration;

use aws_sdk_sqs::types::Message;
use serde_json::{Value, json};

use crate::queue::Queue;
use crate::settings::ResourceNames;
use crate::store::StoreError;

/// What one round of polling did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Polled {
    pub received: usize,
    pub deleted: usize,
    pub failed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Queue(#[from] StoreError),
    #[error("invoking dispatch at {url} failed: {reason}")]
    Invoke { url: String, reason: String },
}

/// The SQS event Lambda would receive for these messages.
pub fn sqs_event(messages: &[Message], queue_arn: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone())))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "md5OfBody": m.md5_of_body(),
                "attributes": attributes,
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    json!({ "Records": records })
}

/// One round: receive, invoke, delete what succeeded.
pub async fn poll_once(
    queue: &Queue,
    http: &reqwest::Client,
    invoke_url: &str,
    wait: Duration,
) -> Result<Polled, PollError> {
    let messages = queue.receive(false, 10, wait).await?;
    if messages.is_empty() {
        return Ok(Polled::default());
    }
    let event = sqs_event(
        &messages,
        &format!(
            "arn:aws:sqs:us-east-1:000000000000:{}",
            queue.url().rsplit('/').next().unwrap_or("")
        ),
    );
    let invoke = |reason: String| PollError::Invoke {
        url: invoke_url.to_owned(),
        reason,
    };
    let response = http
        .post(invoke_url)
        .header("content-type", "application/json")
        .body(event.to_string())
        .send()
        .await
        .map_err(|e| invoke(e.to_string()))?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| invoke(e.to_string()))?;
    let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
        invoke(format!(
            "HTTP {status}, unreadable answer ({e}): {}",
            String::from_utf8_lossy(&bytes)
        ))
    })?;
    if !status.is_success() || body.get("errorType").is_some() || body.get("errorMessage").is_some()
    {
        // The whole invocation failed: every message comes back after its visibility timeout.
        return Err(invoke(format!("HTTP {status}: {body}")));
    }
    let failed: Vec<&str> = body
        .get("batchItemFailures")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.get("itemIdentifier").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let done: Vec<String> = messages
        .iter()
        .filter(|m| !failed.contains(&m.message_id().unwrap_or("")))
        .filter_map(|m| m.receipt_handle().map(str::to_owned))
        .collect();
    queue.delete(false, &done).await?;
    Ok(Polled {
        received: messages.len(),
        deleted: done.len(),
        failed: failed.len(),
    })
}

/// Polls until `stop` resolves; logs what goes wrong and carries on.
pub async fn run_poller(
    queue: Queue,
    invoke_url: String,
    stop: impl std::future::Future<Output = ()>,
) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(900))
        .no_proxy()
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the poller cannot build its HTTP client");
            return;
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            r = poll_once(&queue, &http, &invoke_url, Duration::from_secs(1)) => match r {
                Ok(p) if p.received > 0 => tracing::debug!(?p, "polled"),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "poll failed; retrying in a second");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
        }
    }
}

/// Creates every table and queue from their single definition; what exists
/// is left alone. Returns one line per resource.
pub async fn bootstrap(
    sdk: &aws_config::SdkConfig,
    names: &ResourceNames,
) -> Result<Vec<String>, StoreError> {
    use crate::store::dynamodb::{Created, create_tables, describe_endpoint};
    use crate::store::schema::*;
    let endpoint = describe_endpoint(sdk);
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let tables = [
        (CONFIG_TABLE, names.config_table.clone()),
        (EVENTS_TABLE, names.events_table.clone()),
        (LOGS_TABLE, names.logs_table.clone()),
    ];
    let mut lines: Vec<String> = create_tables(&ddb, &endpoint, &tables)
        .await?
        .into_iter()
        .map(|c| match c {
            Created::Created(n) => format!("created table {n}"),
            Created::Existed(n) => format!("table {n} exists"),
        })
        .collect();
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let (url, dlq) = crate::queue::create_queues(
        &sqs,
        &endpoint,
        (&EVENTS_QUEUE, &names.queue),
        (&DEAD_LETTER_QUEUE, &names.dead_letter_queue),
    )
    .await?;
    lines.push(format!("queue {url}"));
    lines.push(format!("dead-letter queue {dlq}"));
    Ok(lines)
}
