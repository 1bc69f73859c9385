//! The dispatch Lambda (SQS trigger, partial batch responses): see `handler.rs`.

mod handler;

use std::time::{Duration, SystemTime};

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    hooks_core::telemetry::init_function_logs();
    let app = handler::App::from_env()
        .await
        .map_err(|e| format!("dispatch cannot start: {e}"))?;
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
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
