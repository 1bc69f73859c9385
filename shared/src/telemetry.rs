//! Logs as the functions write them: JSON lines (CloudWatch parses them),
//! level from `RUST_LOG` (default `info`), no timestamp (Lambda adds one).

/// Installs the JSON log subscriber; call once at start.
pub fn init_function_logs() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_current_span(false)
        .without_time()
        .init();
}
