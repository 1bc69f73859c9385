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
