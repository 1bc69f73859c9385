//! Event state in DynamoDB: the idempotency record of each event id, where the
//! event stands, and the progress of its `after` chain (what a retry resumes from).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::get_item::GetItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::StoreError;
use super::dynamodb::classify;
use super::schema::{EVENTS_TABLE, TIME_SHARDS};
use crate::chain::Outcome;
use crate::records::{Accepted, EventRecord, EventStatus, QueuedEvent};

#[derive(Debug, Clone)]
pub struct EventStore {
    client: Client,
    table: String,
    endpoint: String,
    /// How long an event's record is kept (and its id recognised as a duplicate).
    keep: Duration,
}

/// Event records (and so duplicate detection) are kept this long by default.
pub const DEFAULT_KEEP: Duration = Duration::from_secs(30 * 24 * 3600);

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// The largest record document kept: DynamoDB takes items of up to 400 KB.
/// Beyond it, the oldest calls leave the record (see [`EventRecord::trim_calls`]).
pub const MAX_DOC_BYTES: usize = 300 * 1024;

/// The period of a time index partition (with its shard): a day (UTC).
/// Only the current day's partitions take writes, so the period does not
/// change how many writes a second the index takes (the shards decide
/// that); a longer one means fewer queries for a reader that looks back.
pub const BUCKET_FORMAT: &str = "%Y-%m-%d";

/// The furthest back any query looks, whatever its `since`: records expire
/// 30 days after their last change (a day more for TTL's lag), so nothing
/// older is there to find.
pub const MAX_LOOK_BACK: chrono::TimeDelta = chrono::TimeDelta::days(31);

/// The days a reader walks, newest first, from the one of `start` back to
/// the one of `oldest`.
pub fn bucket_days(start: DateTime<Utc>, oldest: DateTime<Utc>) -> Vec<String> {
    let (first, last) = (start.date_naive(), oldest.date_naive());
    // Records live 31 days at most: a walk never needs more days than
    // that (and a day past it), whatever its ends say.
    let most = MAX_LOOK_BACK.num_days() as usize + 2;
    first
        .iter_days()
        .rev()
        .take_while(|d| *d >= last)
        .take(most)
        .map(|d| d.format(BUCKET_FORMAT).to_string())
        .collect()
}

/// The partition key of the time indexes for a record changed at `at`: the
/// day and a shard that depends on the id alone (FNV-1a), so that one
/// event's record stays in one shard.
pub fn time_bucket(id: &str, at: &DateTime<Utc>) -> String {
    let hash = id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{}#{}", at.format(BUCKET_FORMAT), hash % TIME_SHARDS)
}

pub use hooks_domain::records::time_key;

/// Whether a call is one `by_problem` finds.
pub fn is_problem(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Failed | Outcome::TimedOut | Outcome::Interrupted | Outcome::Forbidden
    )
}

/// The largest record document read back (inflated): a damaged item cannot
/// make a reader allocate without bound.
const MAX_INFLATED_BYTES: usize = 4 * 1024 * 1024;

/// The deflate level of stored documents: records are 1–3 KB of JSON with
/// repeated keys, which level 6 roughly halves in a few tens of microseconds.
const DEFLATE_LEVEL: u8 = 6;

/// The DynamoDB item of a record at version `r.version + 1`, kept `keep`
/// after its last change. The document is JSON, deflated (`docz`, binary):
/// DynamoDB bills a write per started KB, and a record with 3 calls is about
/// 1.3 KB as JSON and 0.6 KB deflated. The progress's data is left out when
/// it is still the event's (the usual case: it would double the item).
pub fn record_item(
    r: &EventRecord,
    keep: Duration,
) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let mut doc = serde_json::to_value(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if r.progress.data == r.event.event.data
        && let Some(p) = doc.get_mut("progress").and_then(|p| p.as_object_mut())
    {
        p.remove("data");
    }
    let doc = miniz_oxide::deflate::compress_to_vec(doc.to_string().as_bytes(), DEFLATE_LEVEL);
    let expires = (r.updated_at.max(r.event.received_at)
        + chrono::Duration::from_std(keep).unwrap_or_default())
    .timestamp();
    let mut item = HashMap::from([
        ("id".to_owned(), s(&r.event.event.id)),
        ("status".to_owned(), s(r.status.as_str())),
        (
            "v".to_owned(),
            AttributeValue::N((r.version + 1).to_string()),
        ),
        ("docz".to_owned(), AttributeValue::B(doc.into())),
        (
            "expires_at".to_owned(),
            AttributeValue::N(expires.to_string()),
        ),
    ]);
    // A record is listed once it has calls, a problem status without one
    // (dead-lettered before any run, for one), or once it is done: an event
    // no handler ran for is still one `hooks plan --impact` and `hooks
    // replay --since` must find.
    let problem_status = matches!(
        r.status,
        EventStatus::Dead | EventStatus::Failed | EventStatus::Forbidden
    );
    if !r.calls.is_empty() || problem_status || r.status.is_final() {
        let bucket = time_bucket(&r.event.event.id, &r.updated_at);
        if problem_status || r.calls.iter().any(|c| is_problem(c.record.outcome)) {
            item.insert("problem".to_owned(), s(&bucket));
        }
        item.insert("bucket".to_owned(), s(bucket));
        item.insert("ekey".to_owned(), s(&r.event.key));
        item.insert("etype".to_owned(), s(r.event.event.event.as_str()));
        item.insert("at".to_owned(), s(time_key(&r.updated_at)));
    }
    Ok(item)
}

/// A record from its DynamoDB item.
pub fn record_from_item(item: &HashMap<String, AttributeValue>) -> Result<EventRecord, StoreError> {
    let mut doc: serde_json::Value = match (item.get("docz"), item.get("doc")) {
        (Some(AttributeValue::B(z)), _) => {
            let json =
                miniz_oxide::inflate::decompress_to_vec_with_limit(z.as_ref(), MAX_INFLATED_BYTES)
                    .map_err(|e| {
                        StoreError::Unreadable(format!("the record does not inflate: {e}"))
                    })?;
            serde_json::from_slice(&json)
        }
        // Written before records were deflated.
        (_, Some(AttributeValue::S(d))) => serde_json::from_str(d),
        _ => return Err(StoreError::Unreadable("event item without `docz`".into())),
    }
    .map_err(|e| StoreError::Unreadable(e.to_string()))?;
    if let Some(p) = doc.get_mut("progress").and_then(|p| p.as_object_mut())
        && !p.contains_key("data")
    {
        let data = doc
            .get("event")
            .and_then(|e| e.get("data"))
            .cloned()
            .unwrap_or_default();
        if let Some(p) = doc.get_mut("progress").and_then(|p| p.as_object_mut()) {
            p.insert("data".to_owned(), data);
        }
    }
    let mut r: EventRecord =
        serde_json::from_value(doc).map_err(|e| StoreError::Unreadable(e.to_string()))?;
    if let Some(AttributeValue::S(st)) = item.get("status") {
        r.status = parse_status(st)?;
    }
    r.version = match item.get("v") {
        Some(AttributeValue::N(n)) => n
            .parse()
            .map_err(|_| StoreError::Unreadable(format!("event item version `{n}`")))?,
        _ => 0,
    };
    Ok(r)
}

fn parse_status(s: &str) -> Result<EventStatus, StoreError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| StoreError::Unreadable(format!("unknown event status `{s}`")))
}

impl EventStore {
    pub fn new(client: Client, table: impl Into<String>, endpoint: impl Into<String>) -> Self {
        EventStore {
            client,
            table: table.into(),
            endpoint: endpoint.into(),
            keep: DEFAULT_KEEP,
        }
    }

    fn err<E>(
        &self,
        e: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
        missing: impl Fn(&E) -> bool,
    ) -> StoreError
    where
        E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
    {
        classify(e, &self.endpoint, &self.table, EVENTS_TABLE.env, missing)
    }

    fn item(&self, r: &EventRecord) -> Result<HashMap<String, AttributeValue>, StoreError> {
        record_item(r, self.keep)
    }

    fn parse(item: &HashMap<String, AttributeValue>) -> Result<EventRecord, StoreError> {
        record_from_item(item)
    }

    /// Records a new event id (status `accepted`), or returns the record of
    /// an id seen before.
    pub async fn accept(&self, event: &QueuedEvent) -> Result<Accepted, StoreError> {
        let record = EventRecord::accepted(event, Utc::now());
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item(&record)?))
            .condition_expression("attribute_not_exists(id)");
        if self.put_if(put).await? {
            return Ok(Accepted::New);
        }
        match self.get(&event.event.id).await? {
            Some(r) => Ok(Accepted::Seen(Box::new(r))),
            None => Err(StoreError::Corrupt(
                "event vanished after a duplicate check".into(),
            )),
        }
    }

    /// The event's record; recorded first if it has none (a message whose
    /// record expired, or one put back from the dead-letter queue).
    pub async fn get_or_accept(&self, event: &QueuedEvent) -> Result<EventRecord, StoreError> {
        if let Some(r) = self.get(&event.event.id).await? {
            return Ok(r);
        }
        match self.accept(event).await? {
            Accepted::Seen(r) => Ok(*r),
            Accepted::New => self
                .get(&event.event.id)
                .await?
                .ok_or_else(|| StoreError::Corrupt("event record vanished".into())),
        }
    }

    /// Sends a conditional put: `false` (nothing written) when its condition
    /// does not hold.
    async fn put_if(&self, put: PutItemFluentBuilder) -> Result<bool, StoreError> {
        match put.send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(se))
                if matches!(se.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.err(e, |e: &PutItemError| e.is_resource_not_found_exception())),
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<EventRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| {
                self.err(e, |e| {
                    matches!(e, GetItemError::ResourceNotFoundException(_))
                })
            })?;
        out.item.as_ref().map(Self::parse).transpose()
    }

    /// Writes the whole record (status, progress, calls, next attempt…),
    /// whatever is stored; the record's version moves on.
    pub async fn save(&self, r: &mut EventRecord) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item(r)?))
            .send()
            .await
            .map_err(|e| self.err(e, |e: &PutItemError| e.is_resource_not_found_exception()))?;
        r.version += 1;
        Ok(())
    }

    /// Writes the whole record if the stored one is still the version read
    /// (`r.version`); `false` (nothing written) if it changed meanwhile.
    pub async fn save_if(&self, r: &mut EventRecord) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item(r)?))
            .expression_attribute_values(":v", AttributeValue::N(r.version.to_string()));
        // Records written before versions were: version 0.
        let put = if r.version == 0 {
            put.condition_expression("attribute_not_exists(v) OR v = :v")
        } else {
            put.condition_expression("v = :v")
        };
        let saved = self.put_if(put).await?;
        if saved {
            r.version += 1;
        }
        Ok(saved)
    }
}

/// How far back a query without `since` looks.
pub const DEFAULT_LOOK_BACK: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// The oldest time a query walks back to.
pub(super) fn look_back_to(since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    since
        .unwrap_or(now - DEFAULT_LOOK_BACK)
        .max(now - MAX_LOOK_BACK)
}

impl crate::store::EventLedger for EventStore {
    async fn accept(&self, event: &QueuedEvent) -> Result<Accepted, StoreError> {
        EventStore::accept(self, event).await
    }
    async fn get(&self, id: &str) -> Result<Option<EventRecord>, StoreError> {
        EventStore::get(self, id).await
    }
    async fn get_or_accept(&self, event: &QueuedEvent) -> Result<EventRecord, StoreError> {
        EventStore::get_or_accept(self, event).await
    }
    async fn save(&self, r: &mut EventRecord) -> Result<(), StoreError> {
        EventStore::save(self, r).await
    }
    async fn save_if(&self, r: &mut EventRecord) -> Result<bool, StoreError> {
        EventStore::save_if(self, r).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_over_the_days_never_outlasts_the_records() {
        let now = Utc::now();
        let far = DateTime::parse_from_rfc3339("9999-12-31T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(bucket_days(far, now - chrono::TimeDelta::days(7)).len(), 33);
        assert_eq!(bucket_days(now, now - chrono::TimeDelta::days(7)).len(), 8);
        assert!(bucket_days(now - chrono::TimeDelta::days(8), now).is_empty());
    }
}
