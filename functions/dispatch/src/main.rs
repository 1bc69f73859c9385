//! The dispatch Lambda (SQS trigger, partial batch responses): see `handler.rs`.

mod decide;
mod event;
mod handler;
#[cfg(test)]
mod memory_tests;
mod message;

use std::time::Duration;

use hooks_core::settings::{Env, Settings};
use hooks_core::startup::{Ready, time_left};
use hooks_core::wiring::Wiring;
use hooks_core::wiring::WiringError;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    hooks_core::telemetry::init_function_logs();
    let settings = Settings::from_env(&Env::capture())
        .and_then(|s| s.require_secret_manager().map(|()| s))
        .map_err(|e| format!("dispatch cannot start: {e}"))?;
    let wiring = Wiring::load(settings)
        .await
        .map_err(|e| format!("dispatch cannot start: {e}"))?;
    // The init phase: the secret, the queue and the clients, before the
    // first batch. If AWS cannot be reached now, the first batch tries again.
    // Built once and kept for the life of the process (each invocation borrows them).
    let wiring: &'static Wiring = Box::leak(Box::new(wiring));
    let app = Ready::start(
        move || async move { wiring.resources().await.map(handler::App::new) },
        WiringError::is_transient,
        "the first batch",
    )
    .await
    .map_err(|e| format!("dispatch cannot start: {e}"))?;
    lambda_runtime::run_concurrent(service_fn(move |event: LambdaEvent<Value>| async move {
        let app = app.get().await?;
        let left = time_left(event.context.deadline(), Duration::from_secs(30));
        Ok::<_, Error>(
            handler::handle(app, event.payload, tokio::time::Instant::now() + left).await,
        )
    }))
    .await
}
