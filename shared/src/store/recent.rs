//! The list of recent events, read from the time indexes alone: each entry
//! holds the record's status, key and event type (schema: `INDEXED`), so a
//! filter by those costs index reads only (about 40 entries per read unit),
//! never the records themselves.
//!
//! Only events with calls are listed (an event still waiting for its first
//! run has no index entry: it is on the queue). An event is listed at the
//! time of its record's last change.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::query::QueryError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeDelta, Utc};

use super::StoreError;
use super::events::look_back_to;
use super::events::{bucket_days, time_key};
use super::logs::LogStore;
use super::schema::TIME_SHARDS;
use crate::records::{EventRecord, EventStatus};

pub use hooks_domain::records::{EventQuery, EventRow};

/// The status filters of a list of events, as operators name them.
pub const STATUS_FILTERS: &[&str] = &[
    "dead",
    "waiting",
    "queued",
    "running",
    "succeeded",
    "forbidden",
];

/// The statuses a filter name stands for: `waiting` (or `failed`) is an
/// event whose handler failed and that waits for its next attempt; `queued`
/// one back on the queue (replayed, or out of time in its last run);
/// `running` one being moved to the dead-letter queue.
pub fn statuses_named(name: &str) -> Option<Vec<EventStatus>> {
    Some(match name {
        "dead" => vec![EventStatus::Dead],
        "waiting" | "failed" => vec![EventStatus::Failed],
        "queued" => vec![EventStatus::Queued],
        "running" => vec![EventStatus::Running],
        "succeeded" => vec![EventStatus::Succeeded],
        "forbidden" => vec![EventStatus::Forbidden],
        _ => return None,
    })
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(v)) => v.clone(),
        _ => String::new(),
    }
}

/// Whether every status asked for is one only records with a problem call
/// have (then the sparse `by_problem` index is enough).
fn problems_only(statuses: &[EventStatus]) -> bool {
    !statuses.is_empty()
        && statuses.iter().all(|s| {
            matches!(
                s,
                EventStatus::Dead | EventStatus::Failed | EventStatus::Forbidden
            )
        })
}

/// The expression of a query of one shard of one day of a time index.
struct ShardQuery {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    /// On the entries' status, event type and key; `None` when `q` asks
    /// for none of them.
    filter: Option<String>,
}

/// The query of `bucket` (one shard of one day of `index`) for `q`'s
/// entries, from `oldest` up to the cursor `after` (or the newest).
fn shard_query(
    index: &str,
    bucket: String,
    q: &EventQuery,
    oldest: &DateTime<Utc>,
    after: Option<&(String, String)>,
) -> ShardQuery {
    let mut names = HashMap::from([
        (
            "#b".to_owned(),
            if index == "by_problem" {
                "problem"
            } else {
                "bucket"
            }
            .to_owned(),
        ),
        ("#at".to_owned(), "at".to_owned()),
    ]);
    let until = after.map_or("~".to_owned(), |(at, _)| at.clone());
    let mut values = HashMap::from([
        (":b".to_owned(), s(bucket)),
        (":since".to_owned(), s(time_key(oldest))),
        (":until".to_owned(), s(until)),
    ]);
    let mut filters = Vec::new();
    if !q.statuses.is_empty() {
        names.insert("#st".to_owned(), "status".to_owned());
        let mut alts = Vec::new();
        for (i, st) in q.statuses.iter().enumerate() {
            values.insert(format!(":st{i}"), s(st.as_str()));
            alts.push(format!(":st{i}"));
        }
        filters.push(format!("#st IN ({})", alts.join(", ")));
    }
    if let Some(e) = q.event {
        names.insert("#et".to_owned(), "etype".to_owned());
        values.insert(":et".to_owned(), s(e.as_str()));
        filters.push("#et = :et".to_owned());
    }
    if let Some(k) = &q.key {
        names.insert("#k".to_owned(), "ekey".to_owned());
        values.insert(":k".to_owned(), s(k));
        filters.push("#k = :k".to_owned());
    }
    let filter = (!filters.is_empty()).then(|| filters.join(" AND "));
    ShardQuery {
        names,
        values,
        filter,
    }
}

/// One entry of a time index, as a listed event.
fn row(item: &HashMap<String, AttributeValue>) -> EventRow {
    EventRow {
        id: text(item, "id"),
        at: text(item, "at"),
        status: text(item, "status"),
        key: text(item, "ekey"),
        event: text(item, "etype"),
    }
}

impl LogStore {
    /// Events matching `q`, the most recently changed first, at most
    /// `q.limit` (1–1,000).
    pub async fn events(&self, q: &EventQuery) -> Result<Vec<EventRow>, StoreError> {
        let limit = q.limit.clamp(1, 1000);
        let index = if problems_only(&q.statuses) {
            "by_problem"
        } else {
            "by_time"
        };
        let now = Utc::now();
        let oldest = look_back_to(q.since, now);
        // The cursor, as the index writes times (so that text order is time
        // order); a page after one older than `since` is empty.
        let after = match &q.after {
            None => None,
            Some((at, id)) => match DateTime::parse_from_rfc3339(at) {
                Ok(t) if t.with_timezone(&Utc) >= oldest => Some((
                    t.with_timezone(&Utc),
                    time_key(&t.with_timezone(&Utc)),
                    id.clone(),
                )),
                _ => return Ok(Vec::new()),
            },
        };
        // No record changes in the future: a cursor past now (a hand-made
        // URL, `9999-12-31…`) starts from now, never walks the days between.
        let newest = now + TimeDelta::minutes(5);
        let start = after.as_ref().map_or(newest, |(t, _, _)| (*t).min(newest));
        let after = after.map(|(_, at, id)| (at, id));
        let mut found: Vec<EventRow> = Vec::new();
        for prefix in bucket_days(start, oldest) {
            if found.len() >= limit {
                break;
            }
            let shards = (0..TIME_SHARDS).map(|n| {
                self.shard_rows(
                    index,
                    format!("{prefix}#{n}"),
                    q,
                    &oldest,
                    after.as_ref(),
                    limit,
                )
            });
            for rows in futures_util::future::join_all(shards).await {
                found.extend(rows?);
            }
            found.sort_by(|a, b| (&b.at, &b.id).cmp(&(&a.at, &a.id)));
            found.dedup_by(|a, b| a.id == b.id);
        }
        found.truncate(limit);
        Ok(found)
    }

    /// Up to `limit` matching entries of one shard of one day, newest first.
    async fn shard_rows(
        &self,
        index: &str,
        bucket: String,
        q: &EventQuery,
        oldest: &DateTime<Utc>,
        after: Option<&(String, String)>,
        limit: usize,
    ) -> Result<Vec<EventRow>, StoreError> {
        let ShardQuery {
            names,
            values,
            filter,
        } = shard_query(index, bucket, q, oldest, after);
        let mut rows = Vec::new();
        let mut next = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .scan_index_forward(false)
                // Filtered, a query reads up to 1 MB of entries (some 6,000)
                // and returns the matches; unfiltered, just the rows wanted.
                .set_limit(
                    filter
                        .is_none()
                        .then(|| i32::try_from(limit).unwrap_or(1000)),
                )
                .key_condition_expression("#b = :b AND #at BETWEEN :since AND :until")
                .set_filter_expression(filter.clone())
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .set_exclusive_start_key(next)
                .send()
                .await
                .map_err(|e| {
                    self.err(e, |e| matches!(e, QueryError::ResourceNotFoundException(_)))
                })?;
            rows.extend(
                out.items()
                    .iter()
                    .map(row)
                    // The cursor's own row (the key condition includes it)
                    // and those beside it that the last page showed.
                    .filter(|r| after.is_none_or(|(at, id)| (&r.at, &r.id) < (at, id))),
            );
            next = out.last_evaluated_key;
            if next.is_none() || rows.len() >= limit {
                return Ok(rows);
            }
        }
    }

    /// The records of the events received from `since` to `until` (of
    /// type `event`, if given), oldest received first, at most `max`; the
    /// flag says whether more were there. Walks the time index (every
    /// record that ran, or finished, is in it) back to `since`.
    pub async fn received(
        &self,
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
        event: Option<crate::events::Event>,
        max: usize,
    ) -> Result<(Vec<EventRecord>, bool), StoreError> {
        let mut q = EventQuery {
            statuses: Vec::new(),
            event,
            key: None,
            since: Some(since),
            after: None,
            limit: 1000,
        };
        let mut found: Vec<EventRecord> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            let rows = self.events(&q).await?;
            let Some(last) = rows.last() else { break };
            q.after = Some((last.at.clone(), last.id.clone()));
            let ids: Vec<String> = rows
                .iter()
                .filter(|r| seen.insert(r.id.clone()))
                .map(|r| r.id.clone())
                .collect();
            for chunk in ids.chunks(100) {
                found.extend(self.records(chunk.to_vec()).await?.into_iter().filter(|r| {
                    r.event.received_at >= since && until.is_none_or(|u| r.event.received_at <= u)
                }));
            }
            if found.len() > max {
                break;
            }
        }
        found.sort_by(|a, b| {
            (a.event.received_at, &a.event.event.id).cmp(&(b.event.received_at, &b.event.event.id))
        });
        let more = found.len() > max;
        if more {
            // The newest `max`: what a look at "the period" most wants.
            found.drain(..found.len() - max);
        }
        Ok((found, more))
    }
}
