//! How a command ends when it cannot do its job: a [`Failure`] says what to
//! print and the exit code; `main` prints it. Commands return [`Outcome`]
//! and use `?`.

use std::process::ExitCode;

use hooks_core::fault::Fault;
use hooks_core::replay::ReplayError;
use hooks_core::secrets::SecretsError;
use hooks_core::store::{QueueError, StoreError};
use hooks_core::sync::SyncError;
use hooks_core::wiring::WiringError;
use hooks_local::BootstrapError;

/// Exit code for "could not run at all".
pub(crate) const EXIT_USAGE: u8 = 2;

/// What a command returns: its exit code, or why it stopped.
pub(crate) type Outcome = Result<ExitCode, Failure>;

#[derive(Debug)]
pub(crate) enum Failure {
    /// `error: <message>` (each line), and this exit code.
    Message { message: String, code: u8 },
    /// The command printed its own diagnostics (e.g. of handlers.toml).
    Printed(u8),
}

impl Failure {
    /// Exit code 1: the command ran and failed.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Failure::Message {
            message: message.into(),
            code: 1,
        }
    }

    /// Exit code 2: the command could not run (bad input).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Failure::Message {
            message: message.into(),
            code: EXIT_USAGE,
        }
    }

    /// The same failure with another exit code.
    pub(crate) fn with_code(self, code: u8) -> Self {
        match self {
            Failure::Message { message, .. } => Failure::Message { message, code },
            Failure::Printed(_) => Failure::Printed(code),
        }
    }

    /// Prints the message; the exit code.
    pub(crate) fn report(self) -> ExitCode {
        match self {
            Failure::Message { message, code } => {
                for line in message.lines() {
                    eprintln!("error: {line}");
                }
                ExitCode::from(code)
            }
            Failure::Printed(code) => ExitCode::from(code),
        }
    }
}

impl From<Fault> for Failure {
    /// One line that says what went wrong and what to do.
    fn from(e: Fault) -> Self {
        let hint = match e {
            Fault::Unreachable { .. } => {
                " — is the endpoint right (AWS_ENDPOINT_URL) and running? Locally, `make dev` or `make emulator` starts the emulator"
            }
            _ => "",
        };
        Failure::new(format!("{e}{hint}"))
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Service(f) => f.into(),
            e => Failure::new(e.to_string()),
        }
    }
}

impl From<QueueError> for Failure {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Service(f) => f.into(),
            e => Failure::new(e.to_string()),
        }
    }
}

impl From<SecretsError> for Failure {
    fn from(e: SecretsError) -> Self {
        match e {
            SecretsError::Service(f) => f.into(),
            e => Failure::new(e.to_string()),
        }
    }
}

impl From<WiringError> for Failure {
    fn from(e: WiringError) -> Self {
        match e {
            WiringError::Queue(e) => e.into(),
            WiringError::Secrets(e) => e.into(),
            e => Failure::new(e.to_string()),
        }
    }
}

impl From<BootstrapError> for Failure {
    fn from(e: BootstrapError) -> Self {
        match e {
            BootstrapError::Table(e) => e.into(),
            BootstrapError::Queue(e) => e.into(),
            BootstrapError::Secret(e) => e.into(),
        }
    }
}

impl From<ReplayError> for Failure {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Store(e) => e.into(),
            ReplayError::Queue(e) => e.into(),
            ReplayError::Refused(_) => Failure::new(e.to_string()),
        }
    }
}

impl From<SyncError> for Failure {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Store(s) => s.into(),
            SyncError::IdReused(_) => Failure::new(e.to_string()),
        }
    }
}
