//! What AWS does between the queue and the dispatch function, done by hand. The poller receives up to ten messages, invokes
//! dispatch with an SQS event (through the Lambda invoke API that
//! `cargo lambda watch` serves), deletes the messages dispatch handled and
//! leaves the failed ones to their visibility timeout — as the SQS event
//! source mapping with `ReportBatchItemFailures` does.

use std::time::Duration;

use aws_sdk_sqs::types::Message;
use serde_json::{Value, json};

use hooks_core::queue::Queue;
use hooks_core::store::QueueError;

use crate::template::{QueueTrigger, queue_arn};

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
    Queue(#[from] QueueError),
    #[error("invoking dispatch at {url} failed: {reason}")]
    Invoke { url: String, reason: String },
}

/// The invocations a poller made, and their billed duration: the time from
/// sending each invocation to its answer, rounded up to the millisecond as
/// Lambda rounds (an upper bound: it includes the local runtime's hop).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Invocations {
    pub count: u64,
    pub billed_ms: u64,
}

/// Shared between the poller and whoever reads its figures.
pub type InvocationLog = std::sync::Arc<std::sync::Mutex<Invocations>>;

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
    batch_size: usize,
    wait: Duration,
    invocations: &InvocationLog,
) -> Result<Polled, PollError> {
    // Through the IAM gateway, which applies each request to the queue
    // alone, as SQS does (the emulator alone is not safe under concurrent
    // requests).
    let messages = queue
        .receive(false, batch_size.clamp(1, 10) as i32, wait)
        .await?;
    if messages.is_empty() {
        return Ok(Polled::default());
    }
    let event = sqs_event(
        &messages,
        &queue_arn(queue.url().rsplit('/').next().unwrap_or("")),
    );
    let body = invoke(queue, http, invoke_url, &event, &messages, invocations).await?;
    let failed = failed_items(&body);
    let done = handled_receipts(&messages, &failed);
    queue.delete(false, &done).await?;
    Ok(Polled {
        received: messages.len(),
        deleted: done.len(),
        failed: failed.len(),
    })
}

/// The error of an invocation of dispatch at `url`.
fn invoke_error(url: &str, reason: String) -> PollError {
    PollError::Invoke {
        url: url.to_owned(),
        reason,
    }
}

/// Invokes dispatch with the SQS event of `messages` and returns its
/// answer, counting the invocation and its billed duration in
/// `invocations`. When the invocation reached no function, `messages` are
/// handed out again at once.
async fn invoke(
    queue: &Queue,
    http: &reqwest::Client,
    invoke_url: &str,
    event: &Value,
    messages: &[Message],
    invocations: &InvocationLog,
) -> Result<Value, PollError> {
    let sent = std::time::Instant::now();
    let response = match http
        .post(invoke_url)
        .header("content-type", "application/json")
        .body(event.to_string())
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) if e.is_connect() => {
            release(queue, messages).await;
            return Err(invoke_error(invoke_url, format!("not reached: {e}")));
        }
        Err(e) => return Err(invoke_error(invoke_url, e.to_string())),
    };
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| invoke_error(invoke_url, e.to_string()))?;
    if let Ok(mut i) = invocations.lock() {
        i.count += 1;
        i.billed_ms += sent.elapsed().as_micros().div_ceil(1000) as u64;
    }
    answer(invoke_url, status, &bytes)
}

/// Makes `messages` visible again at once. Nothing reached a function (its
/// instance is being replaced): the batch is handed out again, as Lambda
/// would retry it, rather than hidden for the visibility timeout.
async fn release(queue: &Queue, messages: &[Message]) {
    for m in messages {
        if let Some(receipt) = m.receipt_handle()
            && let Err(e) = queue.defer(receipt, Duration::ZERO).await
        {
            tracing::warn!(error = %e, "a message stays hidden until its visibility timeout");
        }
    }
}

/// Dispatch's answer to a batch, read; an error when it is unreadable or
/// says the whole invocation failed (then every message comes back after
/// its visibility timeout).
fn answer(invoke_url: &str, status: reqwest::StatusCode, bytes: &[u8]) -> Result<Value, PollError> {
    let body: Value = serde_json::from_slice(bytes).map_err(|e| {
        invoke_error(
            invoke_url,
            format!(
                "HTTP {status}, unreadable answer ({e}): {}",
                String::from_utf8_lossy(bytes)
            ),
        )
    })?;
    if !status.is_success() || body.get("errorType").is_some() || body.get("errorMessage").is_some()
    {
        // The whole invocation failed: every message comes back after its visibility timeout.
        return Err(invoke_error(invoke_url, format!("HTTP {status}: {body}")));
    }
    Ok(body)
}

/// The message ids dispatch reports as failed (`batchItemFailures`).
fn failed_items(body: &Value) -> Vec<&str> {
    body.get("batchItemFailures")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.get("itemIdentifier").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

/// The receipts of the messages dispatch handled: all but the failed ones.
fn handled_receipts(messages: &[Message], failed: &[&str]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| !failed.contains(&m.message_id().unwrap_or("")))
        .filter_map(|m| m.receipt_handle().map(str::to_owned))
        .collect()
}

/// Feeds the queue to the function as the SQS event source mapping does:
/// up to `trigger.max_concurrency` invocations at once, each with up to
/// `trigger.batch_size` messages. FIFO queues hand out no message of a group
/// while another of that group is in flight, so at most one batch per
/// message group runs at a time and a slow group holds up no other. An
/// invocation that does not answer within the function's `timeout` counts as
/// failed (as Lambda ends it then): its messages come back after their
/// visibility timeout. Runs until `stop` resolves; logs what goes wrong.
pub async fn run_poller(
    queue: Queue,
    invoke_url: String,
    trigger: QueueTrigger,
    timeout: Duration,
    invocations: InvocationLog,
    stop: impl std::future::Future<Output = ()>,
) {
    let http = match reqwest::Client::builder()
        // Lambda's own answer after the timeout takes a moment.
        .timeout(timeout + Duration::from_secs(5))
        .no_proxy()
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the poller cannot build its HTTP client");
            return;
        }
    };
    let worker = |_| {
        let (queue, http, invoke_url, invocations) = (&queue, &http, &invoke_url, &invocations);
        async move {
            loop {
                match poll_once(
                    queue,
                    http,
                    invoke_url,
                    trigger.batch_size,
                    Duration::from_secs(1),
                    invocations,
                )
                .await
                {
                    Ok(p) if p.received > 0 => tracing::debug!(?p, "polled"),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "poll failed; retrying in a second");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    };
    let workers = futures_util::future::join_all((0..trigger.max_concurrency.max(1)).map(worker));
    tokio::select! {
        () = stop => {}
        _ = workers => {}
    }
}
