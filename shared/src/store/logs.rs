//! The execution log, read from the events table: each event's record holds
//! its calls, and two KEYS_ONLY indexes list the records by the time of their
//! last change (`by_time`, every record with calls; `by_problem`, only those
//! with a failed, timed-out, interrupted or forbidding call), a day and a
//! shard per partition (see `schema::EVENTS_TABLE`).
//!
//! A query walks the days from today back to `since`, merging the day's
//! shards newest first, and reads the records in batches of 100 until it has
//! `limit` calls that no later record can beat: a record's calls all started
//! before its last change, so once the next record changed before the
//! `limit`-th newest call started, nothing older can enter the answer.
//! A query by handler, or by an outcome that is not a problem, reads every
//! record of the period until it has enough: it costs reads in proportion to
//! the traffic it looks through (1 read unit per 8 KB, eventually consistent).

use hooks_domain::fault::Fault;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemError;
use aws_sdk_dynamodb::operation::query::QueryError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use chrono::{DateTime, Utc};

use super::StoreError;
use super::dynamodb::classify;
use super::events::{EventStore, bucket_days, is_problem, record_from_item, time_key};
use super::schema::{EVENTS_TABLE, TIME_SHARDS};
use crate::records::{EventRecord, LogEntry, LogQuery};

use super::events::look_back_to;
pub use super::events::{DEFAULT_LOOK_BACK, MAX_LOOK_BACK};

/// Keys read per index query page.
const PAGE: i32 = 200;

#[derive(Debug, Clone)]
pub struct LogStore {
    pub(super) client: Client,
    pub(super) table: String,
    pub(super) endpoint: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// Every call of one event, oldest first.
pub fn calls_of(record: &EventRecord) -> Vec<LogEntry> {
    let mut calls = record.calls.clone();
    calls.sort_by_key(|e| (e.record.started_at, e.record.handler_id, e.record.attempt));
    calls
}

/// Whether a call matches the query's filters (the event id aside).
fn matches(q: &LogQuery, e: &LogEntry) -> bool {
    q.handler.is_none_or(|h| e.record.handler_id == h)
        && q.outcome.is_none_or(|o| e.record.outcome == o)
        && q.event.is_none_or(|t| e.record.event == t)
        && q.status_class
            .is_none_or(|c| e.record.status_code.map_or(0, |s| s / 100) == c)
        && q.since.is_none_or(|t| e.record.started_at >= t)
        && q.until.is_none_or(|t| e.record.started_at < t)
}

/// One shard of one day of an index, read page by page, newest first.
struct Shard {
    bucket: String,
    keys: VecDeque<(String, String)>,
    next: Option<HashMap<String, AttributeValue>>,
    done: bool,
}

impl LogStore {
    pub fn new(client: Client, table: impl Into<String>, endpoint: impl Into<String>) -> Self {
        LogStore {
            client,
            table: table.into(),
            endpoint: endpoint.into(),
        }
    }

    pub(super) fn err<E>(
        &self,
        e: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
        missing: impl Fn(&E) -> bool,
    ) -> StoreError
    where
        E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
    {
        classify(e, &self.endpoint, &self.table, EVENTS_TABLE.env, missing)
    }

    /// Calls matching `q`, newest first, at most `q.limit`.
    pub async fn query(&self, q: &LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        let limit = q.limit.clamp(1, 10_000);
        if let Some(id) = &q.event_id {
            let record = EventStore::new(self.client.clone(), &self.table, &self.endpoint)
                .get(id)
                .await?;
            let mut calls: Vec<LogEntry> = record.as_ref().map(calls_of).unwrap_or_default();
            calls.retain(|e| matches(q, e));
            calls.reverse();
            calls.truncate(limit);
            return Ok(calls);
        }
        let index = if q.outcome.is_some_and(is_problem) {
            "by_problem"
        } else {
            "by_time"
        };
        let now = Utc::now();
        let oldest = look_back_to(q.since, now);
        let mut found: Vec<LogEntry> = Vec::new();
        // From the next day when it is near: a writer's clock may be a
        // little ahead of this one's.
        for day in bucket_days(now + chrono::TimeDelta::minutes(5), oldest) {
            if self.day(index, q, limit, &day, oldest, &mut found).await? {
                break;
            }
        }
        found.sort_by_key(|e| std::cmp::Reverse(e.record.started_at));
        found.truncate(limit);
        Ok(found)
    }

    /// Reads one day of `index` into `found`; `true` when no older record
    /// can change the answer.
    async fn day(
        &self,
        index: &str,
        q: &LogQuery,
        limit: usize,
        prefix: &str,
        oldest: DateTime<Utc>,
        found: &mut Vec<LogEntry>,
    ) -> Result<bool, StoreError> {
        let mut shards: Vec<Shard> = (0..TIME_SHARDS)
            .map(|n| Shard {
                bucket: format!("{prefix}#{n}"),
                keys: VecDeque::new(),
                next: None,
                done: false,
            })
            .collect();
        let since = time_key(&oldest);
        let mut batch: Vec<String> = Vec::new();
        loop {
            // Every shard with keys left shows its newest.
            let fills = shards
                .iter_mut()
                .filter(|sh| sh.keys.is_empty() && !sh.done)
                .map(|sh| self.fill(index, sh, &since, q.event));
            for r in futures_util::future::join_all(fills).await {
                r?;
            }
            let newest = shards
                .iter()
                .enumerate()
                .filter_map(|(i, sh)| sh.keys.front().map(|k| (i, k.0.clone())))
                .max_by(|a, b| a.1.cmp(&b.1));
            let Some((i, at)) = newest else { break };
            if enough(found, limit, &at) {
                self.load(q, &mut batch, found).await?;
                if enough(found, limit, &at) {
                    return Ok(true);
                }
            }
            if let Some((_, id)) = shards[i].keys.pop_front() {
                batch.push(id);
            }
            if batch.len() >= 100 {
                self.load(q, &mut batch, found).await?;
            }
        }
        self.load(q, &mut batch, found).await?;
        Ok(false)
    }

    /// The next page of a shard's keys (of records of event type `event`).
    async fn fill(
        &self,
        index: &str,
        sh: &mut Shard,
        since: &str,
        event: Option<crate::events::Event>,
    ) -> Result<(), StoreError> {
        let key = if index == "by_problem" {
            "problem"
        } else {
            "bucket"
        };
        let mut names = HashMap::from([
            ("#b".to_owned(), key.to_owned()),
            ("#at".to_owned(), "at".to_owned()),
        ]);
        let mut values = HashMap::from([
            (":b".to_owned(), s(&sh.bucket)),
            (":since".to_owned(), s(since)),
        ]);
        if let Some(e) = event {
            names.insert("#et".to_owned(), "etype".to_owned());
            values.insert(":et".to_owned(), s(e.as_str()));
        }
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .scan_index_forward(false)
            // By event type the index filters: a page reads up to 1 MB of
            // entries rather than PAGE of them, most of which may not match.
            .set_limit(event.is_none().then_some(PAGE))
            .key_condition_expression("#b = :b AND #at >= :since")
            .set_filter_expression(event.map(|_| "#et = :et".to_owned()))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .set_exclusive_start_key(sh.next.take())
            .send()
            .await
            .map_err(|e| self.err(e, |e| matches!(e, QueryError::ResourceNotFoundException(_))))?;
        for item in out.items() {
            if let (Some(AttributeValue::S(at)), Some(AttributeValue::S(id))) =
                (item.get("at"), item.get("id"))
            {
                sh.keys.push_back((at.clone(), id.clone()));
            }
        }
        sh.next = out.last_evaluated_key;
        sh.done = sh.next.is_none();
        Ok(())
    }

    /// Reads the records of `ids` and adds their matching calls to `found`.
    async fn load(
        &self,
        q: &LogQuery,
        ids: &mut Vec<String>,
        found: &mut Vec<LogEntry>,
    ) -> Result<(), StoreError> {
        for record in self.records(std::mem::take(ids)).await? {
            found.extend(record.calls.into_iter().filter(|e| matches(q, e)));
        }
        Ok(())
    }

    /// The records of `ids` (100 at most), in no particular order; ids
    /// without a record (expired) are left out.
    pub async fn records(&self, ids: Vec<String>) -> Result<Vec<EventRecord>, StoreError> {
        let mut records = Vec::with_capacity(ids.len());
        if ids.is_empty() {
            return Ok(records);
        }
        let mut keys: Vec<HashMap<String, AttributeValue>> = ids
            .into_iter()
            .map(|id| HashMap::from([("id".to_owned(), s(id))]))
            .collect();
        keys.dedup();
        for round in 0..8u32 {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut keys)))
                .build()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| {
                    self.err(e, |e| {
                        matches!(e, BatchGetItemError::ResourceNotFoundException(_))
                    })
                })?;
            for item in out
                .responses
                .as_ref()
                .and_then(|r| r.get(&self.table))
                .into_iter()
                .flatten()
            {
                records.push(record_from_item(item)?);
            }
            keys = out
                .unprocessed_keys
                .and_then(|mut m| m.remove(&self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
            if keys.is_empty() {
                return Ok(records);
            }
            tokio::time::sleep(Duration::from_millis(50 << round)).await;
        }
        Err(StoreError::Service(Fault::Refused {
            service: "DynamoDB",
            message: format!("{} records left unread after retries", keys.len()),
            transient: true,
        }))
    }
}

/// Whether `found` holds `limit` calls that all started after `at` (the
/// last change of the next record, as its index key): then no record from
/// here on can add a newer one.
fn enough(found: &mut [LogEntry], limit: usize, at: &str) -> bool {
    if found.len() < limit {
        return false;
    }
    found.sort_by_key(|e| std::cmp::Reverse(e.record.started_at));
    time_key(&found[limit - 1].record.started_at).as_str() > at
}

impl super::Listings for LogStore {
    async fn calls(&self, q: &LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        self.query(q).await
    }

    async fn events(
        &self,
        q: &crate::records::EventQuery,
    ) -> Result<Vec<crate::records::EventRow>, StoreError> {
        LogStore::events(self, q).await
    }
}
