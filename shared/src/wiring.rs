//! The one place that turns [`Settings`] into what a function or a command
//! uses: the AWS SDK configuration, the secret's values, the config, event
//! and log stores, the queue and the handler targets. Both functions and the
//! `hooks` command are wired here, the same way whether the SDK reaches AWS
//! or the local emulator (the SDK's own `AWS_ENDPOINT_URL`).

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;

use crate::aws::describe_endpoint;
use crate::queue::Queue;
use crate::secrets::SecretsError;
use crate::settings::SettingsError;
use crate::settings::{SecretSource, Settings};
use crate::store::QueueError;
use crate::store::dynamodb::DynamoConfigStore;
use crate::store::events::EventStore;
use crate::store::live::LiveConfig;
use crate::store::logs::LogStore;
use crate::targets::{HttpCaller, HttpOptions, ScriptOptions, ScriptRunner, Secrets, Targets};

/// The SDK configuration from its own variables (region, credentials,
/// `AWS_ENDPOINT_URL…`), with timeouts that turn an unreachable endpoint into
/// an error within seconds.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
        .load()
        .await
}

/// Why the functions' resources could not be built.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("no AWS region: set AWS_REGION (e.g. AWS_REGION=us-east-1)")]
    NoRegion,
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
}

impl WiringError {
    /// Whether trying again later may help (a service was unreachable).
    pub fn is_transient(&self) -> bool {
        match self {
            WiringError::Queue(e) => e.is_transient(),
            WiringError::Secrets(e) => e.is_transient(),
            WiringError::NoRegion | WiringError::Settings(_) | WiringError::HttpClient(_) => false,
        }
    }
}

/// Settings and the SDK configuration: builds every adapter.
#[derive(Debug, Clone)]
pub struct Wiring {
    pub settings: Settings,
    pub sdk: aws_config::SdkConfig,
}

/// Everything a function needs, built once per process (in the Lambda
/// init phase when AWS can be reached then).
#[derive(Debug)]
pub struct Resources {
    pub events: EventStore,
    pub live: LiveConfig<DynamoConfigStore>,
    pub queue: Queue,
    pub targets: Targets,
    /// The secret's values (ingest reads its tokens here).
    pub secrets: Secrets,
    /// The function's metrics, named by the settings' stack.
    pub metrics: crate::metrics::Metrics,
}

impl Wiring {
    /// Loads the SDK configuration from its own variables.
    pub async fn load(settings: Settings) -> Result<Wiring, WiringError> {
        let sdk = sdk_config().await;
        if sdk.region().is_none() {
            return Err(WiringError::NoRegion);
        }
        Ok(Wiring { settings, sdk })
    }

    /// With a given SDK configuration (tests, the local stack).
    pub fn new(settings: Settings, sdk: aws_config::SdkConfig) -> Wiring {
        Wiring { settings, sdk }
    }

    /// Where DynamoDB is reached, for messages.
    pub fn dynamodb_endpoint(&self) -> String {
        self.settings
            .dynamodb_endpoint
            .clone()
            .unwrap_or_else(|| describe_endpoint(&self.sdk))
    }

    /// Where SQS is reached, for messages.
    pub fn sqs_endpoint(&self) -> String {
        self.settings
            .sqs_endpoint
            .clone()
            .unwrap_or_else(|| describe_endpoint(&self.sdk))
    }

    fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    pub fn config_store(&self) -> DynamoConfigStore {
        DynamoConfigStore::new(
            self.dynamodb(),
            &self.settings.names.config_table,
            self.dynamodb_endpoint(),
        )
    }

    pub fn event_store(&self) -> EventStore {
        EventStore::new(
            self.dynamodb(),
            &self.settings.names.events_table,
            self.dynamodb_endpoint(),
        )
    }

    pub fn log_store(&self) -> LogStore {
        LogStore::new(
            self.dynamodb(),
            &self.settings.names.events_table,
            self.dynamodb_endpoint(),
        )
    }

    /// The events queue and its dead-letter queue: at the URLs the settings
    /// give, else looked up by name.
    pub async fn queue(&self) -> Result<Queue, QueueError> {
        if let Some((url, dlq_url)) = &self.settings.queue_urls {
            return Ok(Queue::at(
                aws_sdk_sqs::Client::new(&self.sdk),
                url,
                dlq_url,
                &self.sqs_endpoint(),
            ));
        }
        Queue::resolve(
            aws_sdk_sqs::Client::new(&self.sdk),
            &self.sqs_endpoint(),
            &self.settings.names.queue,
            &self.settings.names.dead_letter_queue,
        )
        .await
    }

    /// The secret values: the Secrets Manager secret's, or the environment's.
    pub async fn secrets(&self) -> Result<Secrets, SecretsError> {
        match &self.settings.secrets {
            SecretSource::Manager { arn } => Ok(Secrets::new(
                crate::secrets::load(&self.sdk, arn).await?,
                "the Secrets Manager secret (HOOKS_SECRETS_ARN)",
            )),
            SecretSource::Environment(env) => Ok(Secrets::new(
                env.vars().map(|(k, v)| (k.to_owned(), v.to_owned())),
                "the environment",
            )),
        }
    }

    /// The HTTP and script targets, resolving secret references from
    /// `secrets` (less the reserved names: billing's tokens and AWS
    /// credentials never reach a handler).
    pub fn targets(&self, secrets: &Secrets) -> Result<Targets, WiringError> {
        let secrets = &secrets.for_handlers();
        let http = HttpCaller::new(HttpOptions {
            policy: self.settings.network.clone(),
            secrets: secrets.clone(),
            bundle_dir: Some(self.settings.scripts_dir.clone()),
            ..HttpOptions::default()
        })
        .map_err(|e| WiringError::HttpClient(e.to_string()))?;
        let script = ScriptRunner::new(
            ScriptOptions::new(&self.settings.scripts_dir).with_secrets(secrets.clone()),
        );
        Ok(Targets::new(http, script))
    }

    /// Everything a function needs: the secret loaded, the queue looked up,
    /// the clients built.
    pub async fn resources(&self) -> Result<Resources, WiringError> {
        let (secrets, queue) = tokio::try_join!(
            async { self.secrets().await.map_err(WiringError::from) },
            async { self.queue().await.map_err(WiringError::from) },
        )?;
        Ok(Resources {
            events: self.event_store(),
            live: LiveConfig::new(self.config_store()),
            queue,
            targets: self.targets(&secrets)?,
            secrets,
            metrics: crate::metrics::Metrics::new(self.settings.stack.clone()),
        })
    }
}
