//! The cold-start baseline for a function that uses AWS: a `lambda_runtime`
//! function that loads the AWS SDK configuration in its init as ours do
//! (`hooks_core::wiring::sdk_config`: region, credentials, endpoint,
//! timeouts) and makes one DynamoDB call (a GetItem on the events table) per
//! invocation. The benchmarks compare ingest's and dispatch's start with it.

use aws_sdk_dynamodb::types::AttributeValue;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let sdk = hooks_core::wiring::sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = std::env::var("HOOKS_EVENTS_TABLE")?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (ddb, table) = (ddb.clone(), table.clone());
        async move {
            ddb.get_item()
                .table_name(table)
                .key("id", AttributeValue::S("none".to_owned()))
                .send()
                .await?;
            Ok::<_, Error>(event.payload)
        }
    }))
    .await
}
