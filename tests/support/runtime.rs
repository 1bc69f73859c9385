//! A stand-in for the Lambda Runtime API, for benchmarks that run a function
//! binary directly: it hands out queued invocations, records the answers, and
//! notes when the function first asked for work (its start-up time).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::task::JoinHandle;

#[derive(Default)]
struct Inner {
    first_next: Option<Instant>,
    pending: VecDeque<Value>,
    answers: Vec<(String, Value)>,
    counter: u64,
}

type Shared = Arc<Mutex<Inner>>;

/// The fake Runtime API on 127.0.0.1.
pub struct FakeRuntime {
    addr: SocketAddr,
    inner: Shared,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FakeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRuntime")
            .field("addr", &self.addr)
            .finish()
    }
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    match s.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

async fn next(State(s): State<Shared>) -> Response {
    {
        let mut g = lock(&s);
        g.first_next.get_or_insert_with(Instant::now);
    }
    loop {
        let job = {
            let mut g = lock(&s);
            g.pending.pop_front().map(|e| {
                g.counter += 1;
                (format!("req-{}", g.counter), e)
            })
        };
        if let Some((id, event)) = job {
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() + 60_000)
                .unwrap_or(0);
            let mut headers = HeaderMap::new();
            let mut set = |k: &'static str, v: String| {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    headers.insert(k, v);
                }
            };
            set("lambda-runtime-aws-request-id", id);
            set("lambda-runtime-deadline-ms", deadline.to_string());
            set(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:000000000000:function:bench".into(),
            );
            set("content-type", "application/json".into());
            return (StatusCode::OK, headers, event.to_string()).into_response();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn answer(
    State(s): State<Shared>,
    Path((id, kind)): Path<(String, String)>,
    body: Bytes,
) -> StatusCode {
    let v = serde_json::from_slice(&body)
        .unwrap_or(Value::String(String::from_utf8_lossy(&body).into_owned()));
    lock(&s).answers.push((format!("{id}/{kind}"), v));
    StatusCode::ACCEPTED
}

async fn init_error(State(s): State<Shared>, body: Bytes) -> StatusCode {
    lock(&s).answers.push((
        "init/error".into(),
        Value::String(String::from_utf8_lossy(&body).into_owned()),
    ));
    StatusCode::ACCEPTED
}

impl FakeRuntime {
    pub async fn start() -> FakeRuntime {
        let inner: Shared = Arc::default();
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(answer))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(inner.clone());
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("addr: {e}"),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeRuntime { addr, inner, task }
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn api(&self) -> String {
        self.addr.to_string()
    }

    pub fn invoke(&self, event: Value) {
        lock(&self.inner).pending.push_back(event);
    }

    /// When the function first asked for an invocation.
    pub fn first_request(&self) -> Option<Instant> {
        lock(&self.inner).first_next
    }

    /// The answers so far: (`<request id>/response|error`, body).
    pub fn answers(&self) -> Vec<(String, Value)> {
        lock(&self.inner).answers.clone()
    }
}

impl Drop for FakeRuntime {
    fn drop(&mut self) {
        self.task.abort();
    }
}
