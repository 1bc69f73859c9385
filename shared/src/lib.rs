//! Provisioning Hooks core: the adapters and services over the domain.
//!
//! The domain ([`hooks_domain`]: the catalogue, `handlers.toml`, the chain,
//! the protocol, pausing, the stores' traits) is re-exported under the same
//! names, so `hooks_core::chain` is the domain's chain. On top of it:
//! - adapters, behind the domain's traits, each mapping its client's errors
//!   once ([`aws`]): the DynamoDB stores ([`store`]),
//!   the SQS queue ([`queue`]), the Secrets Manager secret ([`secrets`]),
//!   the HTTP and script targets ([`targets`]);
//! - services, the use cases: ingest's requests ([`ingest`]), `hooks sync`
//!   ([`sync`]), replay ([`replay`]), pausing in dispatch ([`pause`]);
//! - the functions' wiring ([`settings`], [`wiring`], [`startup`],
//!   [`telemetry`], [`metrics`]).

pub use hooks_domain::{chain, config, events, fault, protocol, records, signature, trace};

pub mod aws;
pub mod ingest;
pub mod metrics;
pub mod pause;
pub mod queue;
pub mod replay;
pub mod secrets;
pub mod settings;
pub mod startup;
pub mod store;
pub mod sync;
pub mod targets;
pub mod telemetry;
pub mod wiring;

#[cfg(test)]
mod roundtrip_tests;
