//! `hooks dev`: the whole system on this machine. Starts the AWS API emulator,
//! creates the tables and queues, syncs handlers.toml, serves the example
//! handler endpoints, runs both functions under `cargo lambda watch`, and
//! feeds the queue to dispatch as AWS would. Ctrl-C stops everything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use hooks_core::settings::ResourceNames;
use hooks_core::store::dynamodb::DynamoConfigStore;
use hooks_core::sync::{apply, plan_against};
use hooks_local::run::{Options, wait_for_port};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::examples::{DEV_GATEWAY_TOKEN, DEV_SOFTSWITCH_SECRET};
use crate::failure::{Failure, Outcome};
use crate::{FileArgs, output, remote};

/// The bearer token ingest accepts locally.
pub(crate) const DEV_TOKEN: &str = "dev-token";
/// The signing secret ingest accepts locally (`HOOKS_SIGNING_SECRET` for `hooks send`).
pub(crate) const DEV_INGEST_SECRET: &str = "whsec_ZGV2ZWxvcG1lbnQtb25seS1pbmdlc3Qtc2VjcmV0";
/// The networks handlers may reach locally: the example endpoints are on loopback.
pub(crate) const DEV_ALLOW_NETWORKS: &str = "127.0.0.0/8,::1/128";

/// Where `handlers.toml`'s example handlers point (`127.0.0.1:9181`).
const EXAMPLES_PORT: u16 = 9181;

/// `handlers.toml`'s text with its example endpoints moved to `port`, as
/// `--examples-port` serves them (the file itself is left as it is).
fn with_examples_port(text: &str, port: u16) -> String {
    if port == EXAMPLES_PORT {
        return text.to_owned();
    }
    let to = format!("127.0.0.1:{port}");
    text.replace(&format!("127.0.0.1:{EXAMPLES_PORT}"), &to)
        .replace(&format!("localhost:{EXAMPLES_PORT}"), &to)
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: FileArgs,
    /// The AWS API emulator's port.
    #[arg(long, default_value_t = 4566)]
    emulator_port: u16,
    /// The local AWS endpoint's port: the IAM gateway in front of the
    /// emulator, which everything (functions, queue trigger, your `hooks`
    /// commands) goes through.
    #[arg(long, default_value_t = 4567)]
    aws_port: u16,
    /// Where `cargo lambda watch` serves the functions.
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Where the example handler endpoints listen.
    #[arg(long, default_value_t = EXAMPLES_PORT)]
    examples_port: u16,
    /// Where the operator console listens (on 127.0.0.1).
    #[arg(long, default_value_t = 8700)]
    console_port: u16,
}

fn venv_tool(root: &Path, name: &str) -> Result<PathBuf, String> {
    let p = root.join(".venv/bin").join(name);
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing: run `make dev` (it installs the tools into .venv)",
            p.display()
        ))
    }
}

/// The config to sync: the file's, with its example endpoints moved to
/// where `--examples-port` serves them (and `source` with them).
fn with_examples_at(
    config: hooks_core::config::Config,
    source: &mut hooks_core::sync::Source,
    file: &Path,
    args: &Args,
) -> Result<hooks_core::config::Config, String> {
    if args.examples_port == EXAMPLES_PORT {
        return Ok(config);
    }
    source.text = with_examples_port(&source.text, args.examples_port);
    let scripts = args
        .common
        .scripts_dir
        .clone()
        .unwrap_or_else(|| hooks_core::config::scripts_dir_of(file));
    println!(
        "  (its example endpoints moved to 127.0.0.1:{}, as --examples-port serves them)",
        args.examples_port
    );
    hooks_core::config::Config::parse(
        &file.display().to_string(),
        &source.text,
        &hooks_core::config::ParseOptions {
            scripts_dir: Some(&scripts),
        },
    )
    .map_err(|e| format!("handlers.toml with --examples-port: {e}"))
}

/// Stops a child and everything it started.
fn stop(child: &Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
    }
}

pub(crate) fn run(args: Args) -> Outcome {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(dev(args)).map_err(Failure::new)?;
    Ok(ExitCode::SUCCESS)
}

async fn dev(args: Args) -> Result<(), String> {
    let ready = prepare(&args).await?;
    let emulator = start_emulator(&ready, args.emulator_port).await?;
    let endpoint = format!("http://127.0.0.1:{}", args.emulator_port);
    let names = ResourceNames::from_env(remote::env());
    let sdk = emulator_sdk(&endpoint).await;

    println!(
        "▶ example handler endpoints on 127.0.0.1:{}",
        args.examples_port
    );
    let examples = tokio::spawn(crate::examples::serve(
        ([127, 0, 0, 1], args.examples_port).into(),
    ));

    println!(
        "▶ tables, queues and the secret; ingest and dispatch under `cargo lambda watch`, as infra/template.yaml deploys them"
    );
    let opts = local_options(&ready, &args, &endpoint, &names);
    let running = match hooks_local::run::start(&sdk, opts).await {
        Ok(r) => r,
        Err(e) => {
            stop(&emulator);
            return Err(e);
        }
    };
    sync_file(&sdk, &endpoint, &names, ready.config, &ready.file, &args).await?;

    // The operator's commands go through the gateway too: the emulator
    // alone is not safe under concurrent queue requests.
    let endpoint = running.gateway.endpoint();
    let console = start_console(&sdk, &endpoint, args.console_port).await?;
    print_ready(
        &ready.root,
        &running.ingest_url(),
        &endpoint,
        &running.secret_name,
        args.console_port,
    );
    stopped().await;
    println!("\n▶ stopping");
    console.abort();
    drop(running);
    stop(&emulator);
    examples.abort();
    Ok(())
}

/// What `hooks dev` needs before it starts anything, checked first so that
/// nothing is left half started when something is missing.
struct Ready {
    /// handlers.toml, as an absolute path.
    file: PathBuf,
    /// The repository: the file's folder.
    root: PathBuf,
    /// The file's config, valid.
    config: hooks_core::config::Config,
    /// The emulator's interpreter and script (moto, with SQS FIFO groups
    /// handed out in order: local/emulator.py).
    python: PathBuf,
    emulator_script: PathBuf,
    cargo_lambda: PathBuf,
}

/// Loads and checks the file, finds the tools `make dev` installs, and
/// makes sure no port to be listened on is taken.
async fn prepare(args: &Args) -> Result<Ready, String> {
    let file = std::path::absolute(&args.common.file).map_err(|e| e.to_string())?;
    let root = file
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."));
    let config = output::load(&file, args.common.scripts_dir.as_deref(), 1)
        .map_err(|_| "fix handlers.toml first".to_owned())?;
    let python = venv_tool(&root, "python3")?;
    let emulator_script = root.join("local/emulator.py");
    if !emulator_script.exists() {
        return Err(format!("{} is missing", emulator_script.display()));
    }
    let cargo_lambda = venv_tool(&root, "cargo-lambda")?;
    ports_free(args).await?;
    Ok(Ready {
        file,
        root,
        config,
        python,
        emulator_script,
        cargo_lambda,
    })
}

/// Refuses to start when a port is taken (most likely by another
/// `make dev`), naming the flag that moves it.
async fn ports_free(args: &Args) -> Result<(), String> {
    for (port, what) in [
        (args.emulator_port, "--emulator-port"),
        (args.port, "--port"),
        (args.examples_port, "--examples-port"),
        (args.console_port, "--console-port"),
    ] {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Err(format!(
                "port {port} is taken: is another `make dev` running? ({what} to choose another)"
            ));
        }
    }
    Ok(())
}

/// Starts the AWS API emulator on `port` and waits until it listens (it
/// is stopped again if it does not).
async fn start_emulator(ready: &Ready, port: u16) -> Result<Child, String> {
    println!("▶ starting the AWS API emulator on 127.0.0.1:{port}");
    let emulator = Command::new(&ready.python)
        .arg(&ready.emulator_script)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", ready.emulator_script.display()))?;
    if !wait_for_port(port, Duration::from_secs(30)).await {
        stop(&emulator);
        return Err("the emulator did not start".into());
    }
    Ok(emulator)
}

/// The AWS SDK's configuration for the emulator at `endpoint`: its test
/// credentials, in us-east-1.
async fn emulator_sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "dev",
        ))
        .load()
        .await
}

/// The Secrets Manager secret's values. Billing's credentials and the
/// handlers' secrets live there, as deployed: never in the functions'
/// environment.
fn dev_secrets() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("HOOKS_INGEST_TOKENS".to_owned(), DEV_TOKEN.to_owned()),
        (
            "HOOKS_INGEST_SECRETS".to_owned(),
            DEV_INGEST_SECRET.to_owned(),
        ),
        (
            "SOFTSWITCH_SECRET".to_owned(),
            DEV_SOFTSWITCH_SECRET.to_owned(),
        ),
        // A header secret holds the whole header value.
        (
            "GATEWAY_TOKEN".to_owned(),
            format!("Bearer {DEV_GATEWAY_TOKEN}"),
        ),
    ])
}

/// How the local stack runs: the functions under `cargo lambda watch`,
/// rebuilt as the code changes, against the emulator at `endpoint`.
fn local_options(ready: &Ready, args: &Args, endpoint: &str, names: &ResourceNames) -> Options {
    Options {
        root: ready.root.clone(),
        emulator: endpoint.to_owned(),
        names: names.clone(),
        secrets: dev_secrets(),
        allow_networks: DEV_ALLOW_NETWORKS.to_owned(),
        opt_dir: ready.root.clone(),
        ingest_port: args.port,
        aws_port: args.aws_port,
        reload: true,
        release: false,
        meter: false,
        log: None,
        cargo_lambda: ready.cargo_lambda.clone(),
        path_prefix: Some(ready.root.join(".venv/bin")),
    }
}

/// Syncs `config` (the file's, its examples moved to `--examples-port`)
/// into the emulator's config table, as `hooks sync` does, and says how
/// many handlers are live.
async fn sync_file(
    sdk: &aws_config::SdkConfig,
    endpoint: &str,
    names: &ResourceNames,
    config: hooks_core::config::Config,
    file: &Path,
    args: &Args,
) -> Result<(), String> {
    println!("▶ syncing {}", file.display());
    let store = DynamoConfigStore::new(
        aws_sdk_dynamodb::Client::new(sdk),
        &names.config_table,
        endpoint,
    );
    let mut source =
        remote::source(file, Some("make dev")).map_err(|_| "cannot read the file".to_owned())?;
    let config = with_examples_at(config, &mut source, file, args)?;
    let prepared = plan_against(&store, config, source)
        .await
        .map_err(|e| e.to_string())?;
    apply(&store, &prepared).await.map_err(|e| e.to_string())?;
    println!(
        "  {} handlers live ({})",
        prepared.next.as_ref().map_or(0, |n| n.info.handlers),
        prepared.plan.summary()
    );
    Ok(())
}

/// What to do next, in another terminal: the environment that reaches the
/// local stack (ingest at `url`, AWS through `endpoint`), and commands to
/// try.
fn print_ready(root: &Path, url: &str, endpoint: &str, secret: &str, console_port: u16) {
    println!(
        "\n✔ running. In another terminal:\n\n  export PATH=\"{bin}:$PATH\" HOOKS_URL={url} HOOKS_TOKEN={DEV_TOKEN} \\\n         AWS_ENDPOINT_URL={endpoint} AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \\\n         HOOKS_SECRETS_ARN={secret} HOOKS_ALLOW_NETWORKS={DEV_ALLOW_NETWORKS}\n  hooks send clients.create --data '{{\"client_id\": 42, \"credit_score\": 720}}' --id evt-1\n  hooks events show evt-1\n  hooks send clients.create --decision --data '{{\"client_id\": 43, \"credit_score\": 420}}'\n  hooks try clients.create --phase before --data '{{\"client_id\": 44, \"credit_score\": 300}}'\n  hooks logs --follow\n\n  the operator console: http://127.0.0.1:{console_port}/\n\n  # to sign requests as billing does instead of the token: export HOOKS_SIGNING_SECRET={DEV_INGEST_SECRET}\n\n(the first request to each function starts it; Ctrl-C stops everything)\n",
        bin = root.join("target/debug").display(),
    );
}

/// The operator console, reading AWS through the local endpoint as an
/// operator's `hooks console` does.
async fn start_console(
    sdk: &aws_config::SdkConfig,
    endpoint: &str,
    port: u16,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, String> {
    let settings =
        hooks_core::settings::Settings::from_env(remote::env()).map_err(|e| e.to_string())?;
    let wiring =
        hooks_core::wiring::Wiring::new(settings, sdk.to_builder().endpoint_url(endpoint).build());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    println!("▶ the operator console: http://127.0.0.1:{port}/");
    Ok(tokio::spawn(crate::console::serve(
        wiring,
        listener,
        None,
        "local (make dev)".into(),
    )))
}

/// Ctrl-C, or a polite kill (SIGTERM, SIGHUP).
async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_examples_follow_their_port() {
        let text = "url = \"http://127.0.0.1:9181/risk\"\nurl = \"http://localhost:9181/crm\"\nurl = \"https://other:9181/x\"";
        assert_eq!(with_examples_port(text, 9181), text);
        assert_eq!(
            with_examples_port(text, 9500),
            "url = \"http://127.0.0.1:9500/risk\"\nurl = \"http://127.0.0.1:9500/crm\"\nurl = \"https://other:9181/x\""
        );
        // The repository's file, moved, still validates.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = std::fs::read_to_string(root.join("handlers.toml")).unwrap();
        let moved = with_examples_port(&text, 9500);
        assert!(!moved.contains(":9181"), "every example endpoint moved");
        let scripts = root.clone();
        hooks_core::config::Config::parse(
            "handlers.toml",
            &moved,
            &hooks_core::config::ParseOptions {
                scripts_dir: Some(&scripts),
            },
        )
        .unwrap();
    }
}
