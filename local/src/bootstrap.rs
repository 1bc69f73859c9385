//! The tables, queues and secret of a local deployment, created in the
//! emulator from their single definitions.

use hooks_core::aws::describe_endpoint;
use hooks_core::fault::Fault;
use hooks_core::settings::ResourceNames;
use hooks_core::store::{QueueError, StoreError};

/// Why the local resources could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Table(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Secret(#[from] Fault),
}

/// Creates every table and queue from their single definition; what exists
/// is left alone. Returns one line per resource.
pub async fn bootstrap(
    sdk: &aws_config::SdkConfig,
    names: &ResourceNames,
) -> Result<Vec<String>, BootstrapError> {
    use hooks_core::store::dynamodb::{Created, create_tables};
    use hooks_core::store::schema::*;
    let endpoint = describe_endpoint(sdk);
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let tables = [
        (CONFIG_TABLE, names.config_table.clone()),
        (EVENTS_TABLE, names.events_table.clone()),
    ];
    let mut lines: Vec<String> = create_tables(&ddb, &endpoint, &tables)
        .await?
        .into_iter()
        .map(|c| match c {
            Created::Created(n) => format!("created table {n}"),
            Created::Existed(n) => format!("table {n} exists"),
        })
        .collect();
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let (url, dlq) = hooks_core::queue::create_queues(
        &sqs,
        &endpoint,
        (&EVENTS_QUEUE, &names.queue),
        (&DEAD_LETTER_QUEUE, &names.dead_letter_queue),
    )
    .await?;
    lines.push(format!("queue {url}"));
    lines.push(format!("dead-letter queue {dlq}"));
    Ok(lines)
}

/// Creates the Secrets Manager secret `name` holding `values` (a JSON object
/// of strings, as the deployment's `SecretsArn` secret), or gives the
/// existing one these values; returns its ARN.
pub async fn put_secret(
    sdk: &aws_config::SdkConfig,
    name: &str,
    values: &std::collections::BTreeMap<String, String>,
) -> Result<String, BootstrapError> {
    use aws_sdk_secretsmanager::operation::create_secret::CreateSecretError;
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let text = serde_json::Value::Object(
        values
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
    .to_string();
    let endpoint = describe_endpoint(sdk);
    let err = |e: String| Fault::Refused {
        service: "Secrets Manager",
        message: format!("{e} (at {endpoint})"),
        transient: false,
    };
    match client
        .create_secret()
        .name(name)
        .secret_string(&text)
        .send()
        .await
    {
        Ok(out) => out
            .arn()
            .map(str::to_owned)
            .ok_or_else(|| err("no ARN".into()).into()),
        Err(e) => match e.into_service_error() {
            CreateSecretError::ResourceExistsException(_) => {
                let out = client
                    .put_secret_value()
                    .secret_id(name)
                    .secret_string(&text)
                    .send()
                    .await
                    .map_err(|e| err(e.into_service_error().to_string()))?;
                out.arn()
                    .map(str::to_owned)
                    .ok_or_else(|| err("no ARN".into()).into())
            }
            other => Err(err(other.to_string()).into()),
        },
    }
}
