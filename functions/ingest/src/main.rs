//! The ingest Lambda (function URL): see `handler.rs`.

mod error;
mod handler;
#[cfg(test)]
mod memory_tests;

use std::time::Duration;

use hooks_core::settings::{Env, Settings};
use hooks_core::startup::{Ready, time_left};
use hooks_core::wiring::Wiring;
use lambda_http::{Error, Request, RequestExt, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    hooks_core::telemetry::init_function_logs();
    let env = Env::capture();
    let cannot_start = |e: &dyn std::fmt::Display| format!("ingest cannot start: {e}");
    let settings = Settings::from_env(&env).map_err(|e| cannot_start(&e))?;
    let limits = handler::Limits::from_env(&env).map_err(|e| cannot_start(&e))?;
    let wiring = Wiring::load(settings).await.map_err(|e| cannot_start(&e))?;
    // The init phase: the secret, the queue and the clients, before the first
    // request. If AWS cannot be reached now, requests are answered 503 and
    // try again; a secret without credentials stops the function here.
    // Built once and kept for the life of the process (each request borrows them).
    let wiring: &'static Wiring = Box::leak(Box::new(wiring));
    let app = Ready::start(
        move || handler::connect(wiring, limits),
        |e| matches!(e, handler::StartError::Unavailable(_)),
        "the first request",
    )
    .await
    .map_err(|e| cannot_start(&e))?;
    lambda_http::run_concurrent(service_fn(move |req: Request| async move {
        let app = match app.get().await {
            Ok(app) => app,
            Err(e) => return Ok::<_, Error>(handler::not_ready(&e)),
        };
        let remaining = req
            .lambda_context_ref()
            .map_or(Duration::from_secs(10), |c| {
                time_left(c.deadline(), Duration::from_secs(10))
            });
        Ok(handler::handle(app, req, remaining).await)
    }))
    .await
}
