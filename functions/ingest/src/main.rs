//! The ingest Lambda (function URL): see `handler.rs`.

mod handler;

use lambda_http::{Error, Request, RequestExt, service_fn};
use tokio::sync::OnceCell;

#[tokio::main]
async fn main() -> Result<(), Error> {
    hooks_core::telemetry::init_function_logs();
    // Settings are checked now, so a misconfigured function fails at start;
    // the SDK and HTTP clients are built on the first request (start-up stays short).
    let settings =
        handler::Settings::from_env().map_err(|e| format!("ingest cannot start: {e}"))?;
    let app: OnceCell<handler::App> = OnceCell::new();
    let (app, settings) = (&app, &settings);
    lambda_http::run(service_fn(move |req: Request| async move {
        let app = app
            .get_or_try_init(|| handler::App::from_settings(settings.clone()))
            .await?;
        let remaining = req
            .lambda_context_ref()
            .map(|c| c.deadline())
            .and_then(|d| d.duration_since(std::time::SystemTime::now()).ok())
            .unwrap_or(std::time::Duration::from_secs(10));
        Ok::<_, Error>(handler::handle(app, req, remaining).await)
    }))
    .await
}
