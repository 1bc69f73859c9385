//! When a service behind a port (a table, a queue, the secret store) could
//! not do what was asked, for a reason of its own rather than the request's.
//! Each adapter maps its client's errors to a [`Fault`] in one place; the
//! ports' errors ([`crate::store::StoreError`], [`crate::store::QueueError`])
//! carry it beside the cases that are theirs.

/// Why a service did not do what was asked. Each says what to do in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// No answer: the endpoint is down, unreachable, or too slow.
    #[error("cannot reach {service} at {endpoint}: {reason}")]
    Unreachable {
        service: &'static str,
        endpoint: String,
        reason: String,
    },
    /// The client found no credentials to sign the request with.
    #[error(
        "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (any value for the local emulator), AWS_PROFILE, or run with a role"
    )]
    NoCredentials,
    /// The service answered, and said no.
    #[error("{service} refused the request: {message}")]
    Refused {
        service: &'static str,
        message: String,
        /// Throttling or a server error: trying again later may work.
        transient: bool,
    },
    /// The request may or may not have taken effect (an answer that could
    /// not be read, or one without what it must hold).
    #[error("{0}")]
    Unknown(String),
}

impl Fault {
    /// Whether trying again later may help.
    pub fn is_transient(&self) -> bool {
        match self {
            Fault::Unreachable { .. } | Fault::Unknown(_) => true,
            Fault::Refused { transient, .. } => *transient,
            Fault::NoCredentials => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_may_pass_is_transient() {
        let down = Fault::Unreachable {
            service: "SQS",
            endpoint: "http://127.0.0.1:1".into(),
            reason: "Connection refused".into(),
        };
        let throttled = Fault::Refused {
            service: "DynamoDB",
            message: "ThrottlingException: slow down".into(),
            transient: true,
        };
        let denied = Fault::Refused {
            service: "DynamoDB",
            message: "AccessDeniedException: no".into(),
            transient: false,
        };
        assert!(down.is_transient());
        assert!(throttled.is_transient());
        assert!(Fault::Unknown("no answer".into()).is_transient());
        assert!(!denied.is_transient());
        assert!(!Fault::NoCredentials.is_transient());
        assert_eq!(
            down.to_string(),
            "cannot reach SQS at http://127.0.0.1:1: Connection refused"
        );
    }
}
