//! The dispatch Lambda (SQS trigger, partial batch responses): see `handler.rs`.

mod handler;

use std::time::{Duration, SystemTime};

use hooks_core::local::ResourceNames;
use hooks_core::targets::NetworkPolicy;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use tokio::sync::OnceCell;

#[tokio::main]
async fn main() -> Result<(), Error> {
    hooks_core::telemetry::init_function_logs();
    // Settings are checked now, so a misconfigured function fails at start;
    // the SDK and HTTP clients are built on the first batch (start-up stays short).
    let policy = NetworkPolicy::from_env().map_err(|e| format!("dispatch cannot start: {e}"))?;
    let scripts = hooks_core::targets::script::scripts_dir_from_env();
    let app: OnceCell<handler::App> = OnceCell::new();
    let (app, policy, scripts) = (&app, &policy, &scripts);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let app = app
            .get_or_try_init(|| async {
                let sdk = hooks_core::store::dynamodb::sdk_config().await;
                let secrets = hooks_core::secrets::load(&sdk)
                    .await
                    .map_err(|e| e.to_string())?;
                handler::App::new(
                    sdk,
                    ResourceNames::from_env(),
                    policy.clone(),
                    scripts,
                    secrets,
                )
            })
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
