//! The DynamoDB adapter. The item layout is described in [`super::schema`].
//! Local runs reach the emulator through the SDK's own `AWS_ENDPOINT_URL`
//! (or `AWS_ENDPOINT_URL_DYNAMODB`); nothing here knows whether it is local.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::operation::get_item::GetItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::query::QueryError;
use aws_sdk_dynamodb::operation::transact_write_items::{
    TransactWriteItemsError, TransactWriteItemsOutput,
};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType as DdbKeyType, PointInTimeRecoverySpecification, Projection, ProjectionType, Put,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification, TransactWriteItem,
};
use chrono::Utc;

use super::schema::{CONFIG_TABLE, IndexDef, KeyAttr, KeyType, TableDef};
use super::{ConfigStore, Head, Revision, RevisionInfo, StoreError, chunks, content_hash};
use crate::config::HandlerId;
use hooks_domain::fault::Fault;
use hooks_domain::pause::{HandlerHealth, Health};

const SERVICE: &str = "DynamoDB";

/// Sorts a DynamoDB error into a [`StoreError`]: a missing table, else the
/// service's [`Fault`](hooks_domain::fault::Fault).
pub(crate) fn classify<E>(
    err: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    endpoint: &str,
    table: &str,
    table_env: &'static str,
    missing_table: impl Fn(&E) -> bool,
) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    crate::aws::classify(err, SERVICE, endpoint, |e| {
        missing_table(e).then(|| StoreError::MissingTable {
            table: table.to_owned(),
            env: table_env,
        })
    })
}

/// The config table in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoConfigStore {
    client: Client,
    table: String,
    endpoint: String,
}

impl DynamoConfigStore {
    pub fn new(client: Client, table: impl Into<String>, endpoint: impl Into<String>) -> Self {
        DynamoConfigStore {
            client,
            table: table.into(),
            endpoint: endpoint.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn err<E>(
        &self,
        err: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
        missing: impl Fn(&E) -> bool,
    ) -> StoreError
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
    {
        classify(err, &self.endpoint, &self.table, CONFIG_TABLE.env, missing)
    }

    async fn delete_blob(&self, blob: &str, chunks: usize) {
        for i in 0..chunks {
            let r = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(format!("BLOB#{blob}")))
                .key("sk", s(chunk_key(i)))
                .send()
                .await;
            if let Err(e) = r {
                let e = self.err(e, |e: &DeleteItemError| e.is_resource_not_found_exception());
                tracing::warn!(blob, error = %e, "could not remove an unused revision chunk");
            }
        }
    }

    /// Writes a revision's document, in `parts`, under the blob id `blob`;
    /// on a failure, the chunks already written are removed.
    async fn put_blob(&self, blob: &str, parts: &[&[u8]]) -> Result<(), StoreError> {
        for (i, part) in parts.iter().enumerate() {
            let r = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(format!("BLOB#{blob}")))
                .item("sk", s(chunk_key(i)))
                .item("data", AttributeValue::B(Blob::new(part.to_vec())))
                .send()
                .await;
            if let Err(e) = r {
                let e = self.err(e, |e: &PutItemError| e.is_resource_not_found_exception());
                self.delete_blob(blob, i).await;
                return Err(e);
            }
        }
        Ok(())
    }

    /// The history entry of `revision`, published as `head`: written once,
    /// never over an entry of the same number.
    fn history_entry(&self, revision: &Revision, head: &Head) -> Result<Put, StoreError> {
        let info = serde_json::to_string(&revision.info)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Put::builder()
            .table_name(&self.table)
            .item("pk", s("REVISIONS"))
            .item("sk", s(revision_key(head.revision)))
            .item("revision", n(head.revision))
            .item("info", s(info))
            .item("blob", s(&head.blob))
            .item("chunks", n(head.chunks))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// HEAD moved to `head`, only if it is still at revision `expected`
    /// (or absent, when `None`): where the sync was planned.
    fn head_move(&self, head: &Head, expected: Option<u64>) -> Result<Put, StoreError> {
        let mut move_head = Put::builder()
            .table_name(&self.table)
            .item("pk", s("HEAD"))
            .item("sk", s("HEAD"))
            .item("revision", n(head.revision))
            .item("blob", s(&head.blob))
            .item("chunks", n(head.chunks))
            .item("content_hash", s(&head.content_hash))
            .item("updated_at", s(Utc::now().to_rfc3339()));
        move_head = match expected {
            None => move_head.condition_expression("attribute_not_exists(pk)"),
            Some(r) => move_head
                .condition_expression("revision = :expected")
                .expression_attribute_values(":expected", n(r)),
        };
        move_head
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// What a publish's transaction came to: `head` when it went through; a
    /// conflict when another sync got there first; when no answer came,
    /// HEAD is read to tell. The `chunks` of the blob are removed whenever
    /// the revision is certainly not live.
    async fn settle(
        &self,
        result: Result<
            TransactWriteItemsOutput,
            SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>,
        >,
        head: Head,
        expected: Option<u64>,
        chunks: usize,
    ) -> Result<Head, StoreError> {
        match result {
            Ok(_) => Ok(head),
            // Refused for certain: nothing changed, and the chunks are ours to remove.
            Err(SdkError::ServiceError(se)) => {
                let canceled = matches!(
                    se.err(),
                    TransactWriteItemsError::TransactionCanceledException(_)
                );
                self.delete_blob(&head.blob, chunks).await;
                if canceled {
                    // A condition failed, or another transaction on the same
                    // items was in flight: either way another sync got there.
                    let actual = self.head().await?.map(|h| h.revision);
                    return Err(StoreError::Conflict { expected, actual });
                }
                Err(self.err(SdkError::ServiceError(se), |e| {
                    matches!(e, TransactWriteItemsError::ResourceNotFoundException(_))
                }))
            }
            // No answer: the transaction may have happened. Look before touching anything.
            Err(e) => match self.head().await {
                Ok(Some(h)) if h.blob == head.blob => Ok(h),
                Ok(_) => {
                    self.delete_blob(&head.blob, chunks).await;
                    Err(self.err(e, |e| {
                        matches!(e, TransactWriteItemsError::ResourceNotFoundException(_))
                    }))
                }
                Err(_) => Err(StoreError::Service(Fault::Unknown(format!(
                    "the sync of revision {} got no answer ({}); check `hooks history` to see whether it is live",
                    head.revision,
                    self.err(e, |_| false)
                )))),
            },
        }
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn chunk_key(i: usize) -> String {
    format!("CHUNK#{i:05}")
}

fn revision_key(r: u64) -> String {
    format!("{r:010}")
}

type Item = HashMap<String, AttributeValue>;

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(StoreError::Corrupt(format!(
            "attribute `{name}` missing or not a string"
        ))),
    }
}

fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("attribute `{name}` is not a valid number"))),
        _ => Err(StoreError::Corrupt(format!(
            "attribute `{name}` missing or not a number"
        ))),
    }
}

/// The sort key of a handler's runtime state, beside `HEAD`.
fn health_key(id: HandlerId) -> String {
    format!("HEALTH#{id:010}")
}

/// A state item: the document (pause and history, versioned) and the
/// failure count beside it, an attribute of its own that `ADD` moves
/// without a read or a conflict. An item with a count and no document yet
/// is a handler that has failed and never been paused (version 0).
fn health_from_item(item: &Item) -> Result<HandlerHealth, StoreError> {
    let mut h: HandlerHealth = match item.get("doc") {
        Some(_) => serde_json::from_str(get_s(item, "doc")?)
            .map_err(|e| StoreError::Corrupt(format!("handler state: {e}")))?,
        None => {
            let sk = get_s(item, "sk")?;
            let id = sk
                .strip_prefix("HEALTH#")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| StoreError::Corrupt(format!("handler state key `{sk}`")))?;
            HandlerHealth::new(id)
        }
    };
    h.failures = match item.get("failures") {
        Some(_) => get_n(item, "failures")?,
        None => 0,
    };
    h.failing_since = match item.get("failing_since") {
        Some(_) if h.failures > 0 => {
            let ms: i64 = get_n(item, "failing_since")?;
            chrono::DateTime::from_timestamp_millis(ms)
        }
        _ => None,
    };
    Ok(h)
}

fn head_from_item(item: &Item) -> Result<Head, StoreError> {
    Ok(Head {
        revision: get_n(item, "revision")?,
        blob: get_s(item, "blob")?.to_owned(),
        chunks: get_n(item, "chunks")?,
        content_hash: get_s(item, "content_hash")?.to_owned(),
    })
}

impl ConfigStore for DynamoConfigStore {
    /// One strongly consistent query of the `HEAD` partition: `HEAD` and the
    /// handlers' state items (a few hundred bytes each: one read unit for
    /// the lot until they pass 4 KB).
    #[tracing::instrument(skip_all, fields(table = %self.table))]
    async fn head_and_health(&self) -> Result<(Option<Head>, Health), StoreError> {
        let mut head = None;
        let mut health = Health::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :h")
            .expression_attribute_values(":h", s("HEAD"))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| {
                self.err(e, |e| matches!(e, QueryError::ResourceNotFoundException(_)))
            })?;
            match item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
            {
                Some("HEAD") => head = Some(head_from_item(&item)?),
                // A damaged state item costs that handler's pause, never the
                // config: it is left out (and rewritten by its next change).
                Some(k) if k.starts_with("HEALTH#") => match health_from_item(&item) {
                    Ok(h) => {
                        health.insert(h.handler_id, h);
                    }
                    Err(e) => {
                        tracing::warn!(item = k, error = %e, "handler state unreadable; left out")
                    }
                },
                _ => {}
            }
        }
        Ok((head, health))
    }

    async fn health_of(&self, id: HandlerId) -> Result<Option<HandlerHealth>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s("HEAD"))
            .key("sk", s(health_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| {
                self.err(e, |e| {
                    matches!(e, GetItemError::ResourceNotFoundException(_))
                })
            })?;
        out.item.as_ref().map(health_from_item).transpose()
    }

    async fn put_health(
        &self,
        state: &HandlerHealth,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        let doc = serde_json::to_string(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // The document only: the failure count is the `failures` attribute's.
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s("HEAD"))
            .key("sk", s(health_key(state.handler_id)))
            .update_expression("SET doc = :d, version = :n")
            .expression_attribute_values(":d", s(doc))
            .expression_attribute_values(":n", n(state.version));
        let update = match expected {
            None => update.condition_expression("attribute_not_exists(version)"),
            Some(v) => update
                .condition_expression("version = :v")
                .expression_attribute_values(":v", n(v)),
        };
        match update.send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(se))
                if matches!(
                    se.err(),
                    UpdateItemError::ConditionalCheckFailedException(_)
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.err(e, |e: &UpdateItemError| e.is_resource_not_found_exception())),
        }
    }

    async fn add_failure(
        &self,
        id: HandlerId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<hooks_domain::pause::Streak, StoreError> {
        // One write: the count and, for the first failure of a streak, its
        // time. ALL_NEW (no extra cost) rather than UPDATED_NEW: the start
        // of the streak is read back whether or not this write set it. (The
        // emulator builds UPDATED_NEW by comparing the item after the write
        // with a copy taken before it, not atomically with it: a concurrent
        // reset made the count look unchanged, the answer came back without
        // `failures`, and dispatch logged "failure not counted" for a count
        // that was stored. DynamoDB returns every attribute the expression
        // names; ALL_NEW is right on both.)
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s("HEAD"))
            .key("sk", s(health_key(id)))
            .update_expression(
                "SET failing_since = if_not_exists(failing_since, :now) ADD failures :one",
            )
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| self.err(e, |e: &UpdateItemError| e.is_resource_not_found_exception()))?;
        let attrs = out.attributes.unwrap_or_default();
        let failures = get_n(&attrs, "failures")?;
        let since: i64 = get_n(&attrs, "failing_since")?;
        Ok(hooks_domain::pause::Streak {
            failures,
            since: chrono::DateTime::from_timestamp_millis(since).unwrap_or(now),
        })
    }

    async fn reset_failures(&self, id: HandlerId) -> Result<(), StoreError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s("HEAD"))
            .key("sk", s(health_key(id)))
            .update_expression("SET failures = :zero REMOVE failing_since")
            .condition_expression("failures > :zero")
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            // Already 0 (or no item): nothing to do.
            Err(SdkError::ServiceError(se))
                if matches!(
                    se.err(),
                    UpdateItemError::ConditionalCheckFailedException(_)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(self.err(e, |e: &UpdateItemError| e.is_resource_not_found_exception())),
        }
    }

    #[tracing::instrument(skip_all, fields(table = %self.table))]
    async fn head(&self) -> Result<Option<Head>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s("HEAD"))
            .key("sk", s("HEAD"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| {
                self.err(e, |e| {
                    matches!(e, GetItemError::ResourceNotFoundException(_))
                })
            })?;
        out.item.as_ref().map(head_from_item).transpose()
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, revision = head.revision))]
    async fn load(&self, head: &Head) -> Result<Revision, StoreError> {
        let mut doc = Vec::new();
        let mut found = 0u32;
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(format!("BLOB#{}", head.blob)))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                self.err(e, |e| matches!(e, QueryError::ResourceNotFoundException(_)))
            })?;
            for item in page.items() {
                match item.get("data") {
                    Some(AttributeValue::B(b)) => doc.extend_from_slice(b.as_ref()),
                    _ => {
                        return Err(StoreError::Corrupt(format!(
                            "chunk {found} of revision {} has no data",
                            head.revision
                        )));
                    }
                }
                found += 1;
            }
        }
        if head.chunks != 0 && found != head.chunks {
            return Err(StoreError::Corrupt(format!(
                "revision {} has {found} of its {} chunks",
                head.revision, head.chunks
            )));
        }
        let revision: Revision = serde_json::from_slice(&doc)
            .map_err(|e| StoreError::Corrupt(format!("revision {}: {e}", head.revision)))?;
        if content_hash(&revision.config) != head.content_hash {
            return Err(StoreError::Corrupt(format!(
                "revision {} does not match its content hash",
                head.revision
            )));
        }
        Ok(revision)
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, revision = number))]
    async fn revision(&self, number: u64) -> Result<Option<Revision>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s("REVISIONS"))
            .key("sk", s(revision_key(number)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| {
                self.err(e, |e| {
                    matches!(e, GetItemError::ResourceNotFoundException(_))
                })
            })?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let info: RevisionInfo = serde_json::from_str(get_s(&item, "info")?)
            .map_err(|e| StoreError::Corrupt(format!("revision info: {e}")))?;
        let head = Head {
            revision: number,
            blob: get_s(&item, "blob")?.to_owned(),
            // Entries written before the count was kept: every chunk found.
            chunks: get_n(&item, "chunks").unwrap_or(0),
            content_hash: info.content_hash,
        };
        self.load(&head).await.map(Some)
    }

    #[tracing::instrument(skip_all, fields(table = %self.table))]
    async fn history(&self, limit: usize) -> Result<Vec<RevisionInfo>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s("REVISIONS"))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                self.err(e, |e| matches!(e, QueryError::ResourceNotFoundException(_)))
            })?;
            for item in page.items() {
                let info: RevisionInfo = serde_json::from_str(get_s(item, "info")?)
                    .map_err(|e| StoreError::Corrupt(format!("revision info: {e}")))?;
                out.push(info);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, revision = revision.info.revision, expected))]
    async fn publish(
        &self,
        revision: &Revision,
        expected: Option<u64>,
    ) -> Result<Head, StoreError> {
        let doc = serde_json::to_vec(revision).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let parts = chunks(&doc);
        let blob = uuid::Uuid::now_v7().to_string();
        // 1. The document, under a blob id nobody points at yet.
        self.put_blob(&blob, &parts).await?;
        let head = Head {
            revision: revision.info.revision,
            blob,
            chunks: u32::try_from(parts.len()).unwrap_or(u32::MAX),
            content_hash: content_hash(&revision.config),
        };
        // 2. One transaction of two items: the history entry, and HEAD moved
        //    only if it is still where the sync was planned.
        let record = self.history_entry(revision, &head)?;
        let move_head = self.head_move(&head, expected)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(record).build())
            .transact_items(TransactWriteItem::builder().put(move_head).build())
            .send()
            .await;
        self.settle(result, head, expected, parts.len()).await
    }
}

/// What [`create_tables`] did with one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Created(String),
    Existed(String),
}

fn scalar(k: KeyType) -> ScalarAttributeType {
    match k {
        KeyType::S => ScalarAttributeType::S,
        KeyType::N => ScalarAttributeType::N,
        KeyType::B => ScalarAttributeType::B,
    }
}

fn key_schema(pk: KeyAttr, sk: Option<KeyAttr>) -> Result<Vec<KeySchemaElement>, StoreError> {
    let mut out = vec![
        KeySchemaElement::builder()
            .attribute_name(pk.name)
            .key_type(DdbKeyType::Hash)
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
    ];
    if let Some(sk) = sk {
        out.push(
            KeySchemaElement::builder()
                .attribute_name(sk.name)
                .key_type(DdbKeyType::Range)
                .build()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        );
    }
    Ok(out)
}

/// Creates the tables from their definitions (the local bootstrap); a table
/// that exists is left as it is. `names` pairs each definition with the
/// table name to use.
pub async fn create_tables(
    client: &Client,
    endpoint: &str,
    tables: &[(TableDef, String)],
) -> Result<Vec<Created>, StoreError> {
    let mut done = Vec::new();
    for (def, name) in tables {
        done.push(create_table(client, endpoint, def, name).await?);
    }
    Ok(done)
}

/// Creates one table, with its indexes, and once it is active turns on
/// what its definition asks for (expiry, point-in-time recovery).
async fn create_table(
    client: &Client,
    endpoint: &str,
    def: &TableDef,
    name: &str,
) -> Result<Created, StoreError> {
    let mut req = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(def.partition_key, def.sort_key)?));
    for a in key_attributes(def) {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(a.name)
                .attribute_type(scalar(a.kind))
                .build()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        );
    }
    for ix in def.indexes {
        req = req.global_secondary_indexes(index(ix)?);
    }
    match req.send().await {
        Ok(_) => {}
        Err(SdkError::ServiceError(se))
            if matches!(se.err(), CreateTableError::ResourceInUseException(_)) =>
        {
            return Ok(Created::Existed(name.to_owned()));
        }
        Err(e) => {
            return Err(classify(
                e,
                endpoint,
                name,
                def.env,
                |_: &CreateTableError| false,
            ));
        }
    }
    wait_active(client, endpoint, def, name).await?;
    enable_options(client, endpoint, def, name).await?;
    Ok(Created::Created(name.to_owned()))
}

/// Every attribute a key of the table or of its indexes is made of, once
/// each: what a table's creation must define.
fn key_attributes(def: &TableDef) -> Vec<KeyAttr> {
    let mut attrs: Vec<KeyAttr> = vec![def.partition_key];
    attrs.extend(def.sort_key);
    for ix in def.indexes {
        attrs.push(ix.partition_key);
        attrs.extend(ix.sort_key);
    }
    attrs.sort_by_key(|a| a.name);
    attrs.dedup_by_key(|a| a.name);
    attrs
}

/// A global secondary index as its definition describes it: its keys, and
/// the attributes it copies (the listed ones, or all).
fn index(ix: &IndexDef) -> Result<GlobalSecondaryIndex, StoreError> {
    GlobalSecondaryIndex::builder()
        .index_name(ix.name)
        .set_key_schema(Some(key_schema(ix.partition_key, ix.sort_key)?))
        .projection(match ix.include {
            Some(attrs) => Projection::builder()
                .projection_type(ProjectionType::Include)
                .set_non_key_attributes(Some(attrs.iter().map(|a| (*a).to_owned()).collect()))
                .build(),
            None => Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        })
        .build()
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Turns on what a new, active table's definition asks for: expiry by its
/// TTL attribute, and point-in-time recovery.
async fn enable_options(
    client: &Client,
    endpoint: &str,
    def: &TableDef,
    name: &str,
) -> Result<(), StoreError> {
    if let Some(attr) = def.ttl_attribute {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(attr)
                    .enabled(true)
                    .build()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| {
                classify(e, endpoint, name, def.env, |e| {
                    e.is_resource_not_found_exception()
                })
            })?;
    }
    if def.point_in_time_recovery {
        client
            .update_continuous_backups()
            .table_name(name)
            .point_in_time_recovery_specification(
                PointInTimeRecoverySpecification::builder()
                    .point_in_time_recovery_enabled(true)
                    .build()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| {
                classify(e, endpoint, name, def.env, |e| {
                    e.is_table_not_found_exception()
                })
            })?;
    }
    Ok(())
}

async fn wait_active(
    client: &Client,
    endpoint: &str,
    def: &TableDef,
    name: &str,
) -> Result<(), StoreError> {
    for _ in 0..60 {
        let out = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| {
                classify(e, endpoint, name, def.env, |e| {
                    matches!(e, DescribeTableError::ResourceNotFoundException(_))
                })
            })?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(StoreError::Service(Fault::Refused {
        service: SERVICE,
        message: format!("table `{name}` did not become active within 30 s"),
        transient: true,
    }))
}
