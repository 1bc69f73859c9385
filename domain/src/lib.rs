//! Provisioning Hooks' domain: what happens to an event, walked in order —
//! [`events`] (the catalogue) → [`config`] (`handlers.toml`) → [`chain`]
//! (handlers in priority order, paused ones waiting: [`pause`]) →
//! [`targets`] (what a call is), speaking the handler [`protocol`], signed
//! per Standard Webhooks ([`signature`]), kept as [`records`] in the
//! [`store`]s whose traits are here.
//!
//! Nothing here reaches AWS or the network: hooks-core holds the adapters
//! (DynamoDB, SQS, Secrets Manager, HTTP and script targets) behind these
//! traits, and the services on top.

pub mod chain;
pub mod config;
pub mod data;
pub mod events;
pub mod fault;
pub mod pause;
pub mod protocol;
pub mod records;
pub mod signature;
pub mod store;
pub mod targets;
pub mod text;
pub mod trace;
