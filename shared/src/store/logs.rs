//! The execution log in DynamoDB: one item per handler call, written in
//! batches, queryable by event, by handler, by outcome and by day, expiring
//! after a retention period.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemError;
use aws_sdk_dynamodb::operation::query::QueryError;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use chrono::{DateTime, SecondsFormat, Utc};

use super::StoreError;
use super::dynamodb::classify;
use super::schema::LOGS_TABLE;
use crate::records::{EventRecord, LogEntry, LogQuery};

/// Log entries are kept this long by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

#[derive(Debug, Clone)]
pub struct LogStore {
    client: Client,
    table: String,
    endpoint: String,
    retention: Duration,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl LogStore {
    pub fn new(client: Client, table: impl Into<String>, endpoint: impl Into<String>) -> Self {
        LogStore {
            client,
            table: table.into(),
            endpoint: endpoint.into(),
            retention: DEFAULT_RETENTION,
        }
    }

    fn item(&self, e: &LogEntry) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let r = &e.record;
        let doc = serde_json::to_string(e).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let started = ts(&r.started_at);
        let expires = (r.started_at
            + chrono::Duration::from_std(self.retention).unwrap_or_default())
        .timestamp();
        Ok(HashMap::from([
            ("event_id".to_owned(), s(&r.event_id)),
            (
                "seq".to_owned(),
                s(format!("{started}#{}#{}", r.handler_id, r.attempt)),
            ),
            ("handler".to_owned(), s(r.handler_id.to_string())),
            ("outcome".to_owned(), s(r.outcome.as_str())),
            (
                "day".to_owned(),
                s(r.started_at.format("%Y-%m-%d").to_string()),
            ),
            ("started_at".to_owned(), s(started)),
            ("doc".to_owned(), s(doc)),
            (
                "expires_at".to_owned(),
                AttributeValue::N(expires.to_string()),
            ),
        ]))
    }

    /// Writes entries, 25 per request, retrying what DynamoDB leaves unprocessed.
    #[tracing::instrument(skip_all, fields(count = entries.len()))]
    pub async fn write(&self, entries: &[LogEntry]) -> Result<(), StoreError> {
        for chunk in entries.chunks(25) {
            let mut pending: Vec<WriteRequest> = Vec::with_capacity(chunk.len());
            for e in chunk {
                let put = PutRequest::builder()
                    .set_item(Some(self.item(e)?))
                    .build()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                pending.push(WriteRequest::builder().put_request(put).build());
            }
            for round in 0..8u32 {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| {
                        classify(e, &self.endpoint, &self.table, LOGS_TABLE.env, |e| {
                            matches!(e, BatchWriteItemError::ResourceNotFoundException(_))
                        })
                    })?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50 << round)).await;
            }
            if !pending.is_empty() {
                return Err(StoreError::Aws {
                    service: "DynamoDB",
                    message: format!("{} log entries left unwritten after retries", pending.len()),
                    transient: true,
                });
            }
        }
        Ok(())
    }

    /// Every call of one event, oldest first: the execution log's entries and
    /// those still waiting in the event's record (a run under way, or one
    /// whose log write failed).
    pub async fn calls_of(&self, record: &EventRecord) -> Result<Vec<LogEntry>, StoreError> {
        let mut calls = self
            .query(&LogQuery {
                event_id: Some(record.event.event.id.clone()),
                limit: 1000,
                ..LogQuery::default()
            })
            .await?;
        let key = |e: &LogEntry| (e.record.started_at, e.record.handler_id, e.record.attempt);
        for waiting in &record.unlogged {
            if !calls.iter().any(|c| key(c) == key(waiting)) {
                calls.push(waiting.clone());
            }
        }
        calls.sort_by_key(key);
        Ok(calls)
    }

    /// Newest first.
    pub async fn query(&self, q: &LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        let limit = q.limit.clamp(1, 10_000);
        let since = q.since.as_ref().map(ts);
        let (index, key_name, key_value, sort) = if let Some(id) = &q.event_id {
            (None, "event_id", id.clone(), "seq")
        } else if let Some(h) = q.handler {
            (Some("by_handler"), "handler", h.to_string(), "started_at")
        } else if let Some(o) = q.outcome {
            (
                Some("by_outcome"),
                "outcome",
                o.as_str().to_owned(),
                "started_at",
            )
        } else {
            // By day, from today backwards, until enough or past `since`.
            return self.by_days(q, limit).await;
        };
        let mut req = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(index.map(str::to_owned))
            .scan_index_forward(false)
            .expression_attribute_names("#k", key_name)
            .expression_attribute_values(":k", s(key_value));
        req = match &since {
            Some(t) => req
                .key_condition_expression("#k = :k AND #s >= :since")
                .expression_attribute_names("#s", sort)
                .expression_attribute_values(":since", s(t)),
            None => req.key_condition_expression("#k = :k"),
        };
        let mut out = Vec::new();
        let mut pages = req.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                classify(e, &self.endpoint, &self.table, LOGS_TABLE.env, |e| {
                    matches!(e, QueryError::ResourceNotFoundException(_))
                })
            })?;
            for item in page.items() {
                let e = parse(item)?;
                if q.handler.is_some_and(|h| e.record.handler_id != h)
                    || q.outcome.is_some_and(|o| e.record.outcome != o)
                {
                    continue;
                }
                out.push(e);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    async fn by_days(&self, q: &LogQuery, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        let mut out = Vec::new();
        let oldest = q
            .since
            .unwrap_or_else(|| Utc::now() - chrono::Duration::days(7));
        let mut day = Utc::now().date_naive();
        while day >= oldest.date_naive() && out.len() < limit {
            let mut pages = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("by_day")
                .scan_index_forward(false)
                .key_condition_expression("#d = :d AND started_at >= :since")
                .expression_attribute_names("#d", "day")
                .expression_attribute_values(":d", s(day.format("%Y-%m-%d").to_string()))
                .expression_attribute_values(":since", s(ts(&oldest)))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    classify(e, &self.endpoint, &self.table, LOGS_TABLE.env, |e| {
                        matches!(e, QueryError::ResourceNotFoundException(_))
                    })
                })?;
                for item in page.items() {
                    out.push(parse(item)?);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            let Some(prev) = day.pred_opt() else { break };
            day = prev;
        }
        Ok(out)
    }
}

fn parse(item: &HashMap<String, AttributeValue>) -> Result<LogEntry, StoreError> {
    match item.get("doc") {
        Some(AttributeValue::S(d)) => {
            serde_json::from_str(d).map_err(|e| StoreError::Corrupt(e.to_string()))
        }
        _ => Err(StoreError::Corrupt("log item without `doc`".into())),
    }
}
