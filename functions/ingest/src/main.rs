//! The ingest Lambda (function URL): see `handler.rs`.

mod error;
mod handler;
#[cfg(test)]
mod memory_tests;

use hooks_core::settings::{Env, Settings};
use hooks_core::wiring::Wiring;
use lambda_http::{Error, Request, RequestExt, service_fn};
use tokio::sync::OnceCell;

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
    let app: &'static OnceCell<handler::App> = Box::leak(Box::new(OnceCell::new()));
    let wiring: &'static Wiring = Box::leak(Box::new(wiring));
    match handler::connect(wiring, limits).await {
        Ok(a) => {
            let _ = app.set(a);
        }
        Err(handler::StartError::Unavailable(e)) => {
            tracing::error!(error = %e, "not ready: the first request tries again")
        }
        Err(e) => return Err(cannot_start(&e).into()),
    }
    lambda_http::run_concurrent(service_fn(move |req: Request| async move {
        let app = match app
            .get_or_try_init(|| handler::connect(wiring, limits))
            .await
        {
            Ok(app) => app,
            Err(e) => return Ok::<_, Error>(handler::not_ready(&e)),
        };
        let remaining = req
            .lambda_context_ref()
            .map(|c| c.deadline())
            .and_then(|d| d.duration_since(std::time::SystemTime::now()).ok())
            .unwrap_or(std::time::Duration::from_secs(10));
        Ok(handler::handle(app, req, remaining).await)
    }))
    .await
}
