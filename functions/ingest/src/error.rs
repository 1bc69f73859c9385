//! Every way an ingest request can fail, and its one answer: JSON
//! `{"error": {"code", "message", "details"?}}` with a stable `code`, and
//! `Retry-After` on what may pass.

use hooks_core::ingest::{BodyError, FieldError};
use hooks_core::store::{QueueError, StoreError};
use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde_json::{Value, json};

/// The routes, for the 404 and 405 answers.
const ROUTES: &str = "use POST /events, POST /decisions or GET /events/{id}";

#[derive(Debug)]
pub(crate) enum ApiError {
    TooLarge {
        size: usize,
        limit: usize,
    },
    Unauthorized(String),
    UnsupportedMediaType,
    Malformed(String),
    Invalid(Vec<FieldError>),
    MethodNotAllowed,
    NotFound(String),
    /// A dependency cannot be reached now: 503, try again.
    Unavailable(String),
    /// What trying again will not fix.
    Internal(String),
    /// Some events of a batch were not queued: 503 with each event's status.
    NotQueued(Vec<Value>),
}

impl ApiError {
    pub(crate) fn not_found_route() -> ApiError {
        ApiError::NotFound(ROUTES.to_owned())
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Malformed(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) | ApiError::NotQueued(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::TooLarge { .. } => "too_large",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Malformed(_) => "malformed",
            ApiError::Invalid(_) => "invalid_event",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::NotFound(_) => "not_found",
            ApiError::Unavailable(_) | ApiError::NotQueued(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::TooLarge { size, limit } => {
                format!("the body is {size} bytes; the limit is {limit}")
            }
            ApiError::UnsupportedMediaType => "send `Content-Type: application/json`".to_owned(),
            ApiError::Invalid(errors) => match errors.as_slice() {
                [one] => one.message.clone(),
                many => format!("{} problems; nothing was queued (see details)", many.len()),
            },
            ApiError::MethodNotAllowed => ROUTES.to_owned(),
            ApiError::Unavailable(m) => format!("try again shortly: {m}"),
            ApiError::NotQueued(_) => {
                "some events were not queued; send the request again (ids make it safe)".to_owned()
            }
            ApiError::Unauthorized(m)
            | ApiError::Malformed(m)
            | ApiError::NotFound(m)
            | ApiError::Internal(m) => m.clone(),
        }
    }

    /// The answer.
    pub(crate) fn into_response(self) -> Response<Body> {
        let status = self.status();
        match &self {
            ApiError::Unavailable(m) => tracing::error!(error = %m, "a dependency is unavailable"),
            ApiError::Internal(m) => tracing::error!(error = %m, "request failed"),
            _ => {}
        }
        let mut body = json!({"error": {"code": self.code(), "message": self.message()}});
        match self {
            ApiError::Invalid(errors) => {
                body["error"]["details"] = serde_json::to_value(&errors).unwrap_or(Value::Null);
            }
            ApiError::NotQueued(events) => body["events"] = Value::Array(events),
            _ => {}
        }
        let mut r = json_response(status, &body);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("5"));
        }
        r
    }
}

impl From<StoreError> for ApiError {
    /// 503 for what may pass; 500 for what will not.
    fn from(e: StoreError) -> Self {
        ApiError::failed(e.is_transient(), e.to_string())
    }
}

impl From<QueueError> for ApiError {
    /// 503 for what may pass; 500 for what will not.
    fn from(e: QueueError) -> Self {
        ApiError::failed(e.is_transient(), e.to_string())
    }
}

impl ApiError {
    fn failed(transient: bool, message: String) -> ApiError {
        if transient {
            ApiError::Unavailable(message)
        } else {
            ApiError::Internal(message)
        }
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::Malformed(m) => ApiError::Malformed(m),
            BodyError::Invalid(errors) => ApiError::Invalid(errors),
        }
    }
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| Response::new(Body::Empty))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hooks_core::fault::Fault;

    fn answer(e: ApiError) -> (u16, Option<String>, Value) {
        let r = e.into_response();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let Body::Text(t) = r.body() else {
            panic!("not JSON text")
        };
        (r.status().as_u16(), retry, serde_json::from_str(t).unwrap())
    }

    #[test]
    fn what_may_pass_is_503_with_retry_after_and_what_will_not_is_500() {
        let down = StoreError::Service(Fault::Unreachable {
            service: "DynamoDB",
            endpoint: "x".into(),
            reason: "refused".into(),
        });
        let (status, retry, body) = answer(down.into());
        assert_eq!((status, retry.as_deref()), (503, Some("5")));
        assert_eq!(body["error"]["code"], "unavailable");
        let (status, retry, body) = answer(StoreError::Corrupt("bad".into()).into());
        assert_eq!((status, retry), (500, None));
        assert_eq!(body["error"]["code"], "internal");
    }

    #[test]
    fn a_partly_queued_batch_lists_each_event() {
        let events = vec![
            json!({"id": "a", "status": "queued"}),
            json!({"id": "b", "status": "failed"}),
        ];
        let (status, retry, body) = answer(ApiError::NotQueued(events));
        assert_eq!((status, retry.as_deref()), (503, Some("5")));
        assert_eq!(body["events"][1]["status"], "failed");
        assert_eq!(body["error"]["code"], "unavailable");
    }
}
