//! `handlers.toml`: the schema ([`model`]), reading it with spans and
//! validating it ([`parse`]), and the diagnostics that point at what is wrong.

pub mod condition;
mod diagnostics;
pub mod impact;
mod model;
mod parse;
pub mod pem;
pub mod plan;
pub mod schemas;
mod source;

use std::path::{Path, PathBuf};

pub use diagnostics::{ConfigDiagnostic, ConfigErrors};
pub use model::*;
pub use parse::{MAX_RETRY_TOTAL, MAX_TIMEOUT, ParseOptions, is_loopback_host};
pub use source::handler_source;

/// Why a configuration file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
}

impl Config {
    /// Parses and validates the text of a `handlers.toml`; `name` is the file
    /// name used in diagnostics.
    pub fn parse(
        name: &str,
        source: &str,
        opts: &ParseOptions<'_>,
    ) -> Result<Config, ConfigErrors> {
        parse::parse(source, opts).map_err(|diags| ConfigErrors::new(name, source, diags))
    }

    /// Reads and validates a file. Script paths are checked against `scripts_dir`,
    /// or the file's own folder when none is given.
    pub fn load(path: &Path, scripts_dir: Option<&Path>) -> Result<Config, LoadError> {
        let source = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = scripts_dir.map_or_else(|| scripts_dir_of(path), Path::to_owned);
        let opts = ParseOptions {
            scripts_dir: Some(&base),
        };
        Ok(Config::parse(&path.display().to_string(), &source, &opts)?)
    }
}

/// Where the scripts of a handlers file are when nothing else says: the
/// file's own folder.
pub fn scripts_dir_of(file: &Path) -> PathBuf {
    file.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
mod tests;
