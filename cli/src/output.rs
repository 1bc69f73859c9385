//! Terminal output: colours only on a terminal, tables, loading the file.

use std::io::{IsTerminal, Write};
use std::path::Path;

use hooks_core::config::{Config, LoadError};

use crate::failure::Failure;

pub(crate) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        // The SDK's own warnings (IMDS look-ups when no region or
        // credentials are set) precede the one-line error that names what
        // to set; they are noise.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("warn,aws_config=error,aws_smithy_runtime=error")
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// Whether diagnostics on stderr are coloured: a terminal, and `NO_COLOR`
/// unset in the environment `main` captured (no-color.org).
pub(crate) fn color_stderr() -> bool {
    crate::remote::env().get("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

pub(crate) use crate::failure::EXIT_USAGE;

/// Loads and validates the file, printing the diagnostics on failure. An
/// invalid file exits with `invalid_code` (1 for `validate`, whose job is to
/// say so; 2 for commands that could not run because of it).
pub(crate) fn load(
    file: &Path,
    scripts_dir: Option<&Path>,
    invalid_code: u8,
) -> Result<Config, Failure> {
    match Config::load(file, scripts_dir) {
        Ok(c) => Ok(c),
        Err(LoadError::Invalid(e)) => {
            eprint!("{}", e.render(color_stderr()));
            Err(Failure::Printed(invalid_code))
        }
        Err(e @ LoadError::Read { .. }) => Err(Failure::usage(e.to_string())),
    }
}

/// A plain text table: a header row and left-aligned columns, each cut to its width.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>], max_widths: &[usize]) -> String {
    let cols = header.len();
    let cut = |s: &str, w: usize| -> String {
        if s.chars().count() <= w {
            s.to_owned()
        } else {
            let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
            t.push('…');
            t
        }
    };
    let cells: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect())
        .chain(rows.iter().cloned())
        .map(|r| {
            (0..cols)
                .map(|i| {
                    cut(
                        r.get(i).map(String::as_str).unwrap_or(""),
                        max_widths.get(i).copied().unwrap_or(usize::MAX),
                    )
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Writes to stdout; when the reader has closed the pipe, exits as a
/// SIGPIPE-killed program would, without a panic.
pub(crate) fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}
