//! Provisioning Hooks core: what happens to an event, walked in order —
//! [`events`] (the catalogue) → [`config`] (`handlers.toml`) → [`chain`]
//! (handlers in priority order) → [`targets`] (HTTP or script), speaking the
//! handler [`protocol`], signed per Standard Webhooks ([`signature`]).

pub mod chain;
pub mod config;
pub mod events;
pub mod ingest;
pub mod metrics;
pub mod pause;
pub mod protocol;
pub mod queue;
pub mod records;
pub mod replay;
pub mod secrets;
pub mod settings;
pub mod signature;
pub mod store;
pub mod sync;
pub mod targets;
pub mod telemetry;
pub mod trace;
pub mod wiring;

#[cfg(test)]
mod roundtrip_tests;
