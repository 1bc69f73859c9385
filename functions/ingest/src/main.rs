//! The ingest Lambda (function URL): see `handler.rs`.

mod handler;

use lambda_http::{Error, Request, RequestExt, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_current_span(false)
        .without_time()
        .init();
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
