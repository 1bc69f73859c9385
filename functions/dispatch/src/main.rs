//! The dispatch Lambda (SQS trigger, partial batch responses): see `handler.rs`.

mod decide;
mod event;
mod handler;
#[cfg(test)]
mod memory_tests;
mod message;

use std::time::{Duration, SystemTime};

use hooks_core::settings::{Env, Settings};
use hooks_core::wiring::Wiring;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use tokio::sync::OnceCell;

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
    let app: &'static OnceCell<handler::App<handler::Aws>> = Box::leak(Box::new(OnceCell::new()));
    let wiring: &'static Wiring = Box::leak(Box::new(wiring));
    match wiring.resources().await {
        Ok(res) => {
            let _ = app.set(handler::App::new(res));
        }
        Err(e) if e.is_transient() => {
            tracing::error!(error = %e, "not ready: the first batch tries again")
        }
        Err(e) => return Err(format!("dispatch cannot start: {e}").into()),
    }
    lambda_runtime::run_concurrent(service_fn(move |event: LambdaEvent<Value>| async move {
        let app = app
            .get_or_try_init(|| async { wiring.resources().await.map(handler::App::new) })
            .await?;
        let left = event
            .context
            .deadline()
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::from_secs(30));
        Ok::<_, Error>(
            handler::handle(app, event.payload, tokio::time::Instant::now() + left).await,
        )
    }))
    .await
}
