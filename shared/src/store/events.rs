//! Event state in DynamoDB: the idempotency record of each event id, where the
//! event stands, and the progress of its `after` chain (what a retry resumes from).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::get_item::GetItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;

use super::StoreError;
use super::dynamodb::classify;
use super::schema::EVENTS_TABLE;
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

/// The DynamoDB item of a record, kept `keep` after its last change.
pub(crate) fn record_item(
    r: &EventRecord,
    keep: Duration,
) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let doc = serde_json::to_string(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let expires = (r.updated_at.max(r.event.received_at)
        + chrono::Duration::from_std(keep).unwrap_or_default())
    .timestamp();
    Ok(HashMap::from([
        ("id".to_owned(), s(&r.event.event.id)),
        ("status".to_owned(), s(r.status.as_str())),
        ("doc".to_owned(), s(doc)),
        (
            "expires_at".to_owned(),
            AttributeValue::N(expires.to_string()),
        ),
    ]))
}

/// A record from its DynamoDB item.
pub(crate) fn record_from_item(
    item: &HashMap<String, AttributeValue>,
) -> Result<EventRecord, StoreError> {
    let doc = match item.get("doc") {
        Some(AttributeValue::S(d)) => d,
        _ => return Err(StoreError::Unreadable("event item without `doc`".into())),
    };
    let mut r: EventRecord =
        serde_json::from_str(doc).map_err(|e| StoreError::Unreadable(e.to_string()))?;
    if let Some(AttributeValue::S(st)) = item.get("status") {
        r.status = parse_status(st)?;
    }
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

    /// Writes the whole record (status, progress, next attempt…).
    pub async fn save(&self, r: &EventRecord) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item(r)?))
            .send()
            .await
            .map_err(|e| self.err(e, |e: &PutItemError| e.is_resource_not_found_exception()))?;
        Ok(())
    }

    /// Writes the whole record if its stored status is still `expected`;
    /// `false` (nothing written) if it moved on meanwhile.
    pub async fn save_if(
        &self,
        r: &EventRecord,
        expected: EventStatus,
    ) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item(r)?))
            .condition_expression("#s = :expected")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":expected", s(expected.as_str()));
        self.put_if(put).await
    }

    /// Moves an `accepted` event to `queued` once it is on the queue.
    pub async fn mark_queued(&self, id: &str) -> Result<(), StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(id))
            .update_expression("SET #s = :queued")
            .condition_expression("#s = :accepted")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":queued", s("queued"))
            .expression_attribute_values(":accepted", s("accepted"))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            // Dispatch got to it first: fine.
            Err(SdkError::ServiceError(se))
                if matches!(
                    se.err(),
                    UpdateItemError::ConditionalCheckFailedException(_)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(self.err(e, |e| e.is_resource_not_found_exception())),
        }
    }
}
