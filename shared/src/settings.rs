//! Settings: what a function or the `hooks` command is configured with.
//!
//! The environment is read once, in `main` ([`Env::capture`]), and turned into
//! [`Settings`] there, every problem reported in one message. No constructor
//! and no `Default` reads the environment. Besides, only the AWS SDK reads its
//! own variables (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL…`) when
//! [`crate::wiring`] loads it, the log set-up reads `RUST_LOG`, and the local
//! runner (`local/`) hands its own environment on to the tools it starts.
//!
//! | variable | meaning | on AWS (infra/template.yaml) |
//! |---|---|---|
//! | `HOOKS_CONFIG_TABLE`, `HOOKS_EVENTS_TABLE` | the tables | the stack's tables |
//! | `HOOKS_QUEUE_NAME`, `HOOKS_DLQ_NAME` | the queues | the stack's queues |
//! | `HOOKS_QUEUE_URL`, `HOOKS_DLQ_URL` | the queues' URLs (both or neither): no lookup at start | the stack's queues |
//! | `HOOKS_SECRETS_ARN` | the Secrets Manager secret: ingest tokens and handler secrets | the `SecretsArn` parameter |
//! | `HOOKS_ALLOW_NETWORKS` | internal networks handlers may reach | the `AllowNetworks` parameter |
//! | `HOOKS_SCRIPTS_DIR` | where scripts are found | `/opt`, where the scripts layer is mounted |
//!
//! Secrets: with `HOOKS_SECRETS_ARN` set, every secret value (ingest tokens,
//! `{ env = "NAME" }` references of handlers.toml) comes from that secret and
//! only from it, as deployed. Without it (the `hooks` command on a laptop)
//! they come from the process environment.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::store::schema::{CONFIG_TABLE, DEAD_LETTER_QUEUE, EVENTS_QUEUE};
use crate::store::schema::{EVENTS_TABLE, QueueDef, TableDef};
use crate::targets::network::{ALLOW_NETWORKS_ENV, NetworkPolicy};

/// The variable that names the Secrets Manager secret.
pub const SECRETS_ARN_ENV: &str = "HOOKS_SECRETS_ARN";
/// Where scripts are found.
pub const SCRIPTS_DIR_ENV: &str = "HOOKS_SCRIPTS_DIR";

/// A snapshot of the process environment, taken once. Its `Debug` shows the
/// names only: values may be secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.vars.keys()).finish()
    }
}

impl Env {
    /// The process environment now (variables that are not UTF-8 are left out).
    pub fn capture() -> Env {
        Env {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// Given variables (tests, tools).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// A variable's value; `None` when unset or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// Every variable, for a secret source that is the environment itself.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// The names of every table and queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceNames {
    pub config_table: String,
    pub events_table: String,
    pub queue: String,
    pub dead_letter_queue: String,
}

impl ResourceNames {
    /// From the variables the template sets, or the defaults of
    /// `store::schema` (local development).
    pub fn from_env(env: &Env) -> Self {
        let table = |t: &TableDef| env.get(t.env).unwrap_or(t.default_name).to_owned();
        let queue = |q: &QueueDef| env.get(q.env).unwrap_or(q.default_name).to_owned();
        ResourceNames {
            config_table: table(&CONFIG_TABLE),
            events_table: table(&EVENTS_TABLE),
            queue: queue(&EVENTS_QUEUE),
            dead_letter_queue: queue(&DEAD_LETTER_QUEUE),
        }
    }

    /// Names no one else uses, starting with `prefix`.
    pub fn prefixed(prefix: &str) -> Self {
        ResourceNames {
            config_table: format!("{prefix}-config"),
            events_table: format!("{prefix}-events"),
            queue: format!("{prefix}-events.fifo"),
            dead_letter_queue: format!("{prefix}-dead-letters.fifo"),
        }
    }

    /// The environment that points a process (a function, the CLI) at these names.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (CONFIG_TABLE.env, self.config_table.clone()),
            (EVENTS_TABLE.env, self.events_table.clone()),
            (EVENTS_QUEUE.env, self.queue.clone()),
            (DEAD_LETTER_QUEUE.env, self.dead_letter_queue.clone()),
        ]
    }
}

/// Where secret values come from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// One Secrets Manager secret, a JSON object of strings: as deployed.
    Manager { arn: String },
    /// The process environment (the `hooks` command on a laptop).
    Environment(Env),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Manager { arn } => write!(f, "Manager({arn})"),
            SecretSource::Environment(_) => f.write_str("Environment"),
        }
    }
}

/// Everything but the AWS SDK's own settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub names: ResourceNames,
    pub secrets: SecretSource,
    pub network: NetworkPolicy,
    /// Relative script paths resolve here.
    pub scripts_dir: PathBuf,
    /// The per-service endpoints, when set (`AWS_ENDPOINT_URL_DYNAMODB`,
    /// `AWS_ENDPOINT_URL_SQS`), for messages that say where AWS was reached.
    pub dynamodb_endpoint: Option<String>,
    pub sqs_endpoint: Option<String>,
    /// The events queue's and the dead-letter queue's URLs, when given
    /// (the template gives them, which saves two `GetQueueUrl` calls at
    /// every cold start); else the queues are looked up by name.
    pub queue_urls: Option<(String, String)>,
    /// The stack the metrics are named by (`HOOKS_STACK`; `local` without
    /// it).
    pub stack: String,
}

/// The variables that carry the queues' URLs.
pub const QUEUE_URL_ENV: &str = "HOOKS_QUEUE_URL";
pub const DLQ_URL_ENV: &str = "HOOKS_DLQ_URL";

/// Every problem of the settings, in one message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid settings: {}", .0.join("; "))]
pub struct SettingsError(pub Vec<String>);

impl Settings {
    /// Reads and checks the settings.
    pub fn from_env(env: &Env) -> Result<Settings, SettingsError> {
        let mut problems = Vec::new();
        let network = match env.get(ALLOW_NETWORKS_ENV) {
            None => NetworkPolicy::public_only(),
            Some(list) => NetworkPolicy::parse(list).unwrap_or_else(|e| {
                problems.push(e);
                NetworkPolicy::public_only()
            }),
        };
        let secrets = match env.get(SECRETS_ARN_ENV) {
            Some(arn) if arn.trim() != arn || arn.contains(char::is_whitespace) => {
                problems.push(format!("{SECRETS_ARN_ENV} `{arn}` contains spaces"));
                SecretSource::Environment(env.clone())
            }
            Some(arn) => SecretSource::Manager {
                arn: arn.to_owned(),
            },
            None => SecretSource::Environment(env.clone()),
        };
        for (var, value) in ResourceNames::from_env(env).env() {
            if value.len() > 255 || value.contains(char::is_whitespace) {
                problems.push(format!("{var} `{value}` is not a table or queue name"));
            }
        }
        let mut url = |var: &str| {
            env.get(var).map(|u| {
                if !(u.starts_with("https://") || u.starts_with("http://"))
                    || u.contains(char::is_whitespace)
                {
                    problems.push(format!("{var} `{u}` is not a queue URL"));
                }
                u.to_owned()
            })
        };
        let queue_urls = match (url(QUEUE_URL_ENV), url(DLQ_URL_ENV)) {
            (Some(q), Some(d)) => Some((q, d)),
            (None, None) => None,
            _ => {
                problems.push(format!(
                    "{QUEUE_URL_ENV} and {DLQ_URL_ENV} go together: set both or neither"
                ));
                None
            }
        };
        if !problems.is_empty() {
            return Err(SettingsError(problems));
        }
        Ok(Settings {
            names: ResourceNames::from_env(env),
            secrets,
            network,
            // Lambda unpacks the bundle (scripts included) in the task root.
            scripts_dir: env
                .get(SCRIPTS_DIR_ENV)
                .or_else(|| env.get("LAMBDA_TASK_ROOT"))
                .unwrap_or(".")
                .into(),
            dynamodb_endpoint: env.get("AWS_ENDPOINT_URL_DYNAMODB").map(str::to_owned),
            sqs_endpoint: env.get("AWS_ENDPOINT_URL_SQS").map(str::to_owned),
            queue_urls,
            stack: env
                .get(crate::metrics::STACK_ENV)
                .unwrap_or("local")
                .to_owned(),
        })
    }

    /// The functions take their secrets from the Secrets Manager secret only,
    /// as the template deploys them: without `HOOKS_SECRETS_ARN` they would
    /// fall back to their own environment, credentials and all.
    pub fn require_secret_manager(&self) -> Result<(), SettingsError> {
        match self.secrets {
            SecretSource::Manager { .. } => Ok(()),
            SecretSource::Environment(_) => Err(SettingsError(vec![format!(
                "set {SECRETS_ARN_ENV} to the Secrets Manager secret that holds the ingest tokens and the handlers' secrets (a JSON object of strings)"
            )])),
        }
    }

    /// Settings for tests and tools: these names, secrets from `secrets`,
    /// networks allowed, scripts in `scripts_dir`.
    pub fn local(names: ResourceNames, network: NetworkPolicy, scripts_dir: PathBuf) -> Settings {
        Settings {
            names,
            secrets: SecretSource::Environment(Env::default()),
            network,
            scripts_dir,
            dynamodb_endpoint: None,
            sqs_endpoint: None,
            queue_urls: None,
            stack: "local".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_variables_name_the_resources_and_the_secret() {
        let env = Env::from_pairs([
            ("HOOKS_EVENTS_TABLE", "stack-events"),
            ("HOOKS_QUEUE_NAME", "stack-q.fifo"),
            (
                "HOOKS_SECRETS_ARN",
                "arn:aws:secretsmanager:us-east-1:1:secret:s",
            ),
            ("HOOKS_ALLOW_NETWORKS", "10.0.0.0/8"),
            ("LAMBDA_TASK_ROOT", "/var/task"),
            ("RISK_TOKEN", "not used: the secret holds it"),
        ]);
        let s = Settings::from_env(&env).unwrap();
        assert_eq!(s.names.events_table, "stack-events");
        assert_eq!(s.names.queue, "stack-q.fifo");
        assert_eq!(s.names.config_table, CONFIG_TABLE.default_name);
        assert_eq!(
            s.secrets,
            SecretSource::Manager {
                arn: "arn:aws:secretsmanager:us-east-1:1:secret:s".into()
            }
        );
        assert_eq!(s.scripts_dir, PathBuf::from("/var/task"));
        assert!(s.network.check("10.1.2.3".parse().unwrap()).is_ok());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let env = Env::from_pairs([
            ("HOOKS_ALLOW_NETWORKS", "10.0.0.0/99"),
            ("HOOKS_EVENTS_TABLE", "two words"),
        ]);
        let e = Settings::from_env(&env).unwrap_err();
        assert_eq!(e.0.len(), 2, "{e}");
        assert!(e.to_string().contains("HOOKS_ALLOW_NETWORKS"), "{e}");
        assert!(e.to_string().contains("HOOKS_EVENTS_TABLE"), "{e}");
    }

    #[test]
    fn debug_output_never_shows_a_value() {
        let env = Env::from_pairs([("SOFTSWITCH_SECRET", "whsec_hidden")]);
        let shown = format!("{env:?} {:?}", Settings::from_env(&env).unwrap());
        assert!(!shown.contains("whsec_hidden"), "{shown}");
        assert!(shown.contains("SOFTSWITCH_SECRET"), "{shown}");
    }

    #[test]
    fn queue_urls_come_as_a_pair() {
        let env = |pairs: &[(&str, &str)]| {
            Env::from_pairs(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            )
        };
        let both = Settings::from_env(&env(&[
            (
                QUEUE_URL_ENV,
                "https://sqs.us-east-1.amazonaws.com/1/q.fifo",
            ),
            (DLQ_URL_ENV, "https://sqs.us-east-1.amazonaws.com/1/d.fifo"),
        ]))
        .unwrap();
        assert_eq!(
            both.queue_urls,
            Some((
                "https://sqs.us-east-1.amazonaws.com/1/q.fifo".to_owned(),
                "https://sqs.us-east-1.amazonaws.com/1/d.fifo".to_owned()
            ))
        );
        assert_eq!(Settings::from_env(&env(&[])).unwrap().queue_urls, None);
        let one = Settings::from_env(&env(&[(QUEUE_URL_ENV, "https://x/1/q.fifo")])).unwrap_err();
        assert!(one.to_string().contains("set both or neither"), "{one}");
        let bad = Settings::from_env(&env(&[
            (QUEUE_URL_ENV, "q.fifo"),
            (DLQ_URL_ENV, "https://x/1/d.fifo"),
        ]))
        .unwrap_err();
        assert!(bad.to_string().contains("is not a queue URL"), "{bad}");
    }
}
