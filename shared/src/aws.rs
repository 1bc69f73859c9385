//! AWS as the adapters see it: where it is reached, and how an SDK error
//! becomes the domain's [`Fault`] (or an adapter's own case), in one place
//! for DynamoDB, SQS and Secrets Manager.

use aws_credential_types::provider::error::CredentialsError;
use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use hooks_domain::fault::Fault;

/// Where AWS is reached, for messages: the configured endpoint or the region.
pub fn describe_endpoint(config: &aws_config::SdkConfig) -> String {
    config
        .endpoint_url()
        .map(str::to_owned)
        .unwrap_or_else(|| match config.region() {
            Some(r) => format!("the AWS endpoint of {r}"),
            None => "the AWS endpoint (no region set: set AWS_REGION)".to_owned(),
        })
}

/// Sorts any AWS SDK error, by its type, into the adapter's error `X`: a
/// case of the adapter's own (`special`, e.g. a missing table), else a
/// [`Fault`]: unreachable, no credentials, an answer that could not be read,
/// or what the service said (transient for throttling and server errors).
pub(crate) fn classify<E, X: From<Fault>>(
    err: SdkError<E, HttpResponse>,
    service: &'static str,
    endpoint: &str,
    special: impl FnOnce(&E) -> Option<X>,
) -> X
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    if let SdkError::ServiceError(se) = &err
        && let Some(x) = special(se.err())
    {
        return x;
    }
    fault(err, service, endpoint).into()
}

/// The [`Fault`] an AWS SDK error stands for.
pub(crate) fn fault<E>(
    err: SdkError<E, HttpResponse>,
    service: &'static str,
    endpoint: &str,
) -> Fault
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    match err {
        SdkError::TimeoutError(_) => Fault::Unreachable {
            service,
            endpoint: endpoint.to_owned(),
            reason: "no answer in time".to_owned(),
        },
        SdkError::DispatchFailure(_) if caused_by::<CredentialsError>(&err) => Fault::NoCredentials,
        SdkError::ResponseError(_) => Fault::Unknown(format!(
            "{service} sent an answer that could not be read: {}",
            root_cause(&err)
        )),
        SdkError::DispatchFailure(_) => Fault::Unreachable {
            service,
            endpoint: endpoint.to_owned(),
            reason: root_cause(&err),
        },
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let e = se.into_err();
            Fault::Refused {
                service,
                message: format!(
                    "{}: {}",
                    e.code().unwrap_or("error"),
                    e.message().unwrap_or("no message")
                ),
                // Throttling and server errors pass; client errors do not.
                // The codes are the ones the SDK's own retry classifier
                // treats as throttling or transient.
                transient: status >= 500
                    || status == 429
                    || e.code().is_some_and(|c| {
                        THROTTLING_ERRORS.contains(&c) || TRANSIENT_ERRORS.contains(&c)
                    }),
            }
        }
        other => Fault::Refused {
            service,
            message: root_cause(&other),
            transient: false,
        },
    }
}

/// Whether an error of type `T` is somewhere in the chain.
fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.is::<T>() {
            return true;
        }
        cur = c.source();
    }
    false
}

/// The innermost cause of an error chain: what a person can act on
/// ("Connection refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}
