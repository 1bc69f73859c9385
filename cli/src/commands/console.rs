use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use crate::failure::{Failure, Outcome};
use crate::remote;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The port to serve on.
    #[arg(long, default_value = "8700")]
    port: u16,
    /// The address to bind. Anything but a loopback address requires a token.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
    /// The token a browser must present (required unless bound to loopback).
    #[arg(long, env = "HOOKS_CONSOLE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Serves the console until Ctrl-C.
pub(crate) fn run(args: Args) -> Outcome {
    if let Some(t) = &args.token
        && !crate::console::token_is_plain(t)
    {
        return Err(Failure::new(
            "the token may hold only A-Z a-z 0-9 - . _ ~ (it travels in a cookie)",
        ));
    }
    if !args.bind.is_loopback() && args.token.as_deref().is_none_or(|t| t.len() < 16) {
        return Err(Failure::new(format!(
            "{} is reachable from other machines: set a token of at least 16 characters (--token or HOOKS_CONSOLE_TOKEN)",
            args.bind
        )));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        let wiring = remote::wiring().await?;
        let addr = SocketAddr::new(args.bind, args.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Failure::new(format!("cannot listen on {addr}: {e}")))?;
        let label = format!(
            "{} · {}",
            wiring.dynamodb_endpoint(),
            wiring.settings.names.events_table
        );
        eprintln!("The console is at http://{addr}/ (Ctrl-C stops it)");
        tokio::select! {
            r = crate::console::serve(wiring, listener, args.token, label) => {
                r.map_err(|e| Failure::new(format!("the console stopped: {e}")))?;
            }
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}
