//! Test support: a real HTTP receiver whose answers each test scripts, the
//! local AWS emulator, and the whole stack under `cargo lambda watch`.
#![allow(clippy::expect_used)]

pub mod browser;
mod emulator;
pub mod fuzz;
mod runtime;
mod stack;
pub mod tls;

pub use emulator::{Emulator, moto_server, unique};
pub use runtime::FakeRuntime;
pub use stack::{Stack, TOKEN, root};

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Response, StatusCode, Uri};
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: AnswerBody,
    delay: Option<Duration>,
}

#[derive(Debug, Clone)]
enum AnswerBody {
    Fixed(Bytes),
    /// Sent in chunks, without a Content-Length.
    Streamed(Vec<Bytes>),
    /// The request body, sent back.
    Echo,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Answer {
            status,
            headers: Vec::new(),
            body: AnswerBody::Fixed(Bytes::new()),
            delay: None,
        }
    }

    pub fn ok() -> Self {
        Self::status(200)
    }

    pub fn json(value: serde_json::Value) -> Self {
        Self::ok()
            .header("content-type", "application/json")
            .body(value.to_string())
    }

    /// 200 with the request body sent back unchanged.
    pub fn echo() -> Self {
        Answer {
            body: AnswerBody::Echo,
            ..Self::ok()
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = AnswerBody::Fixed(body.into());
        self
    }

    /// The body in `chunks` pieces of `size` bytes, with no Content-Length.
    pub fn streamed(mut self, chunks: usize, size: usize) -> Self {
        self.body = AnswerBody::Streamed(vec![Bytes::from(vec![b'x'; size]); chunks]);
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

/// A request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct State {
    once: HashMap<String, VecDeque<Answer>>,
    always: HashMap<String, Answer>,
    received: Vec<Received>,
}

/// An HTTP server on 127.0.0.1 with a random port. Unscripted paths answer
/// 204. Stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state: Arc<Mutex<State>> = Arc::default();
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("cannot bind the test receiver: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("no local address: {e}"),
        };
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = shared.clone();
            async move { answer(state, uri, headers, body).await }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, state, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answer every request to `path` this way (until changed).
    pub fn always(&self, path: &str, answer: Answer) {
        self.lock().always.insert(path.to_owned(), answer);
    }

    /// Answer the next request to `path` this way, then fall back.
    pub fn once(&self, path: &str, answer: Answer) {
        self.lock()
            .once
            .entry(path.to_owned())
            .or_default()
            .push_back(answer);
    }

    /// Every request received, in order.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// The paths requested, in order.
    pub fn paths(&self) -> Vec<String> {
        self.lock()
            .received
            .iter()
            .map(|r| r.path.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    state: Arc<Mutex<State>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let path = uri.path().to_owned();
    let planned = {
        let mut s = match state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        s.received.push(Received {
            path: path.clone(),
            headers,
            body: body.clone(),
            at: std::time::Instant::now(),
        });
        s.once
            .get_mut(&path)
            .and_then(VecDeque::pop_front)
            .or_else(|| s.always.get(&path).cloned())
    };
    let answer = planned.unwrap_or_else(|| Answer::status(204));
    if let Some(d) = answer.delay {
        tokio::time::sleep(d).await;
    }
    let mut builder =
        Response::builder().status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK));
    for (k, v) in &answer.headers {
        builder = builder.header(k, v);
    }
    let body = match answer.body {
        AnswerBody::Fixed(b) => Body::from(b),
        AnswerBody::Echo => Body::from(body),
        AnswerBody::Streamed(chunks) => Body::from_stream(futures_util::stream::iter(
            chunks.into_iter().map(Ok::<_, std::convert::Infallible>),
        )),
    };
    builder
        .body(body)
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// A port on 127.0.0.1 where nothing listens.
pub async fn closed_port() -> u16 {
    let listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("cannot bind: {e}"),
    };
    match listener.local_addr() {
        Ok(a) => a.port(),
        Err(e) => panic!("no local address: {e}"),
    }
}
