use std::process::ExitCode;

use chrono::Utc;
use hooks_core::events::Event;
use hooks_core::signature::SigningKey;
use serde_json::{Value, json};

use crate::failure::{Failure, Outcome};
use crate::remote;

/// Where `make dev` serves ingest.
pub(crate) const LOCAL_INGEST: &str = "http://127.0.0.1:9000/lambda-url/ingest";

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The event, e.g. clients.create.
    event: Event,
    /// The entity's fields: a JSON object, `@path/to/file.json`, or `@-` for stdin.
    #[arg(long)]
    data: String,
    /// The ingest endpoint (the function URL).
    #[arg(long, env = "HOOKS_URL", default_value = LOCAL_INGEST)]
    url: String,
    /// Ask for a decision (the before handlers) instead of sending the event.
    #[arg(long)]
    decision: bool,
    /// The event id (billing's idempotency key) [default: a new one].
    #[arg(long)]
    id: Option<String>,
    /// The ordering key, e.g. client:42 [default: derived from the data].
    #[arg(long)]
    key: Option<String>,
    /// Sign with this Standard Webhooks secret (whsec_…).
    #[arg(long, env = "HOOKS_SIGNING_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Or authenticate with this bearer token.
    #[arg(long, env = "HOOKS_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// What billing does: builds the event, signs it, sends it, prints the answer.
/// Exit code: 0 for a 2xx answer (for a decision: 0 allow, 1 forbid), 1 otherwise.
pub(crate) fn run(args: Args) -> Outcome {
    let data = crate::commands::try_::read_data(&args.data).map_err(Failure::usage)?;
    let mut event = json!({"event": args.event, "data": data});
    if let Some(id) = &args.id {
        event["id"] = json!(id);
    }
    if let Some(key) = &args.key {
        event["key"] = json!(key);
    }
    let body = event.to_string();
    let path = if args.decision {
        "/decisions"
    } else {
        "/events"
    };
    let url = format!("{}{path}", args.url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| Failure::new(e.to_string()))?;
    let mut req = client.post(&url).header("content-type", "application/json");
    match (&args.secret, &args.token) {
        (Some(secret), _) => {
            let key = SigningKey::parse(secret)
                .map_err(|e| Failure::usage(format!("HOOKS_SIGNING_SECRET: {e}")))?;
            let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
            let ts = Utc::now().timestamp();
            req = req
                .header("webhook-id", &id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", key.sign(&id, ts, body.as_bytes()));
        }
        (None, Some(token)) => req = req.bearer_auth(token),
        (None, None) => {
            return Err(Failure::usage(
                "set HOOKS_TOKEN (bearer token) or HOOKS_SIGNING_SECRET (whsec_ secret), or pass --token / --secret",
            ));
        }
    }
    let rt = remote::runtime()?;
    let (status, text) = rt
        .block_on(async {
            let resp = req.body(body).send().await?;
            let status = resp.status();
            let text = resp.text().await?;
            Ok::<_, reqwest::Error>((status, text))
        })
        .map_err(|e| Failure::new(format!("cannot reach {url}: {e}")))?;
    let pretty = serde_json::from_str::<Value>(&text)
        .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
        .unwrap_or(text);
    outln!("HTTP {status}\n{pretty}");
    let forbidden = pretty.contains("\"decision\": \"forbid\"");
    Ok(if status.is_success() && !forbidden {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
