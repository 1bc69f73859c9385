//! Persistence: the domain's store traits ([`hooks_domain::store`],
//! re-exported here), their DynamoDB adapters ([`dynamodb`], [`events`],
//! [`logs`], [`recent`]), an in-memory one for tests ([`memory`], with the
//! `memory` feature), and the cached reader of the live config ([`live`]).

pub mod dynamodb;
pub mod events;
pub mod live;
pub mod logs;
#[cfg(any(test, feature = "memory"))]
pub mod memory;
pub mod recent;
pub mod schema;

pub use hooks_domain::store::*;

use crate::records::EventRecord;
use crate::records::QueuedEvent;

impl EventLedger for events::EventStore {
    async fn get_or_accept(&self, event: &QueuedEvent) -> Result<EventRecord, StoreError> {
        events::EventStore::get_or_accept(self, event).await
    }
    async fn save(&self, r: &mut EventRecord) -> Result<(), StoreError> {
        events::EventStore::save(self, r).await
    }
    async fn save_if(&self, r: &mut EventRecord) -> Result<bool, StoreError> {
        events::EventStore::save_if(self, r).await
    }
}

impl Redelivery for crate::queue::Queue {
    async fn defer(&self, receipt: &str, delay: std::time::Duration) -> Result<(), StoreError> {
        crate::queue::Queue::defer(self, receipt, delay).await
    }
    async fn dead_letter(
        &self,
        group: &str,
        dedup_id: &str,
        body: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        crate::queue::Queue::dead_letter(self, group, dedup_id, body, reason).await
    }
}
