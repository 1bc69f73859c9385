//! Provisioning Hooks on one machine, as it is deployed.
//!
//! `infra/template.yaml` is the one definition of the deployment; this crate
//! reads it ([`template`]) and runs it against the AWS API emulator: the
//! tables, queues and secret ([`bootstrap`]), each function's IAM policy
//! enforced in front of the emulator ([`iam`]), and the queue fed to
//! dispatch as the SQS event source mapping does ([`poller`]). `hooks dev`
//! and the end-to-end tests both use it. Nothing here is deployed.

pub mod bootstrap;
pub mod iam;
pub mod meter;
pub mod poller;
pub mod run;
pub mod sandbox;
pub mod template;

pub use bootstrap::{BootstrapError, bootstrap, put_secret};
pub use poller::{poll_once, run_poller, sqs_event};
