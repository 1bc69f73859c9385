//! The ingest Lambda (function URL): see `handler.rs`.

mod handler;

use lambda_http::{Error, Request, RequestExt, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    hooks_core::telemetry::init_function_logs();
    let app = handler::App::from_env()
        .await
        .map_err(|e| format!("ingest cannot start: {e}"))?;
    let app = &app;
    lambda_http::run(service_fn(move |req: Request| async move {
        let remaining = req
            .lambda_context_ref()
            .map(|c| c.deadline())
            .and_then(|d| d.duration_since(std::time::SystemTime::now()).ok())
            .unwrap_or(std::time::Duration::from_secs(10));
        Ok::<_, Error>(handler::handle(app, req, remaining).await)
    }))
    .await
}
