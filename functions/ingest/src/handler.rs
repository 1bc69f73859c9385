//! The ingest function: what billing calls over HTTPS.
//!
//! - `POST /events` — one event or a batch: authenticated, validated, recorded
//!   (a repeated id is a duplicate, also long after SQS's five-minute
//!   deduplication window) and enqueued; `202` only for events on the queue.
//! - `POST /decisions` — runs the `before` handlers now and answers allow or forbid.
//! - `GET /events/{id}` — where an event stands and what each handler did.
//!
//! Errors are JSON with a stable `code`; nothing is enqueued on any error.

use std::time::Duration;

use chrono::Utc;
use futures_util::future::join_all;
use hooks_core::chain::{Decision, run_before};
use hooks_core::config::Phase;
use hooks_core::ingest::{
    AuthError, Authenticated, Authenticator, SchemaCache, parse_events, schema_problems,
};
use hooks_core::metrics::{Counter, Metrics};
use hooks_core::queue::{Queue, Sent};
use hooks_core::records::{Accepted, EventRecord, EventStatus, LogEntry, QueuedEvent};
use hooks_core::settings::Env;
use hooks_core::store::dynamodb::DynamoConfigStore;
use hooks_core::store::events::EventStore;
use hooks_core::store::live::{LiveConfig, LiveError};
use hooks_core::store::{ConfigStore, EventLedger, Publisher};
use hooks_core::targets::{Invoker, Targets};
use hooks_core::trace::TraceParent;
use hooks_core::wiring::{Resources, Wiring, WiringError};
use lambda_http::http::{Method, StatusCode};

use crate::error::{ApiError, json_response};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Value, json};

/// Ingest's own settings, beside the shared ones ([`hooks_core::settings`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_body_bytes: usize,
}

impl Limits {
    pub(crate) fn from_env(env: &Env) -> Result<Limits, String> {
        let max_body_bytes = match env.get("HOOKS_MAX_BODY_BYTES") {
            None => 256 * 1024,
            Some(v) => v.trim().parse().map_err(|_| {
                format!("HOOKS_MAX_BODY_BYTES must be a number of bytes, got `{v}`")
            })?,
        };
        Ok(Limits { max_body_bytes })
    }
}

/// The variables of the secret that hold billing's credentials.
pub(crate) const TOKENS: &str = "HOOKS_INGEST_TOKENS";
pub(crate) const SIGNING_SECRETS: &str = "HOOKS_INGEST_SECRETS";

/// What ingest reaches, as traits: the events' records, the queue, the
/// config and the handlers' targets. AWS in the function ([`Aws`]); in
/// memory in the unit tests.
pub(crate) trait Ports {
    type Events: EventLedger;
    type Queue: Publisher;
    type Config: ConfigStore;
    type Targets: Invoker;
}

/// The deployed ports: DynamoDB, SQS, the HTTP and script targets.
#[derive(Debug)]
pub(crate) struct Aws;

impl Ports for Aws {
    type Events = EventStore;
    type Queue = Queue;
    type Config = DynamoConfigStore;
    type Targets = Targets;
}

/// Everything a request may need, built once per process by the wiring.
pub(crate) struct App<P: Ports = Aws> {
    pub(crate) auth: Authenticator,
    pub(crate) limits: Limits,
    pub(crate) events: P::Events,
    pub(crate) live: LiveConfig<P::Config>,
    pub(crate) queue: P::Queue,
    pub(crate) targets: P::Targets,
    /// Written as EMF lines at the end of each request.
    pub(crate) metrics: Metrics,
    /// The live revision's event schemas, compiled.
    pub(crate) schemas: SchemaCache,
}

impl<P: Ports> std::fmt::Debug for App<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl App<Aws> {
    /// Billing's credentials come from the secret, like the handlers' secrets.
    pub(crate) fn new(limits: Limits, res: Resources) -> Result<App, String> {
        let list = |name: &str| res.secrets.get(name).unwrap_or("").to_owned();
        let auth = Authenticator::from_lists(&list(TOKENS), &list(SIGNING_SECRETS))?;
        if auth.is_empty() {
            return Err(format!(
                "no ingest credentials: the secret holds neither {TOKENS} (bearer tokens) nor {SIGNING_SECRETS} (whsec_ signing secrets), comma-separated"
            ));
        }
        Ok(App {
            auth,
            limits,
            events: res.events,
            live: res.live,
            queue: res.queue,
            targets: res.targets,
            metrics: res.metrics,
            schemas: SchemaCache::default(),
        })
    }
}

/// Why the function could not get ready.
#[derive(Debug)]
pub(crate) enum StartError {
    /// AWS could not be reached (or throttled): requests try again.
    Unavailable(WiringError),
    /// What waiting will not fix: a missing secret, queue or table, no credentials.
    Broken(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Unavailable(e) => e.fmt(f),
            StartError::Broken(e) => f.write_str(e),
        }
    }
}

/// The wiring's resources and billing's credentials.
pub(crate) async fn connect(wiring: &Wiring, limits: Limits) -> Result<App, StartError> {
    let res = wiring.resources().await.map_err(|e| {
        if e.is_transient() {
            StartError::Unavailable(e)
        } else {
            StartError::Broken(e.to_string())
        }
    })?;
    App::new(limits, res).map_err(StartError::Broken)
}

/// The answer while the function cannot get ready: 503, billing retries.
pub(crate) fn not_ready(e: &StartError) -> Response<Body> {
    ApiError::Unavailable(e.to_string()).into_response()
}

/// The request path (the raw path of a function URL request, or the URI's).
fn route_path(req: &Request) -> String {
    let raw = req.raw_http_path();
    if raw.is_empty() {
        req.uri().path().to_owned()
    } else {
        raw.to_owned()
    }
}

fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

/// Routes a request.
#[tracing::instrument(skip_all, fields(method = %req.method(), path = %route_path(&req)))]
pub(crate) async fn handle<P: Ports>(
    app: &App<P>,
    req: Request,
    remaining: Duration,
) -> Response<Body> {
    let response = route(app, &req, remaining)
        .await
        .unwrap_or_else(ApiError::into_response);
    app.metrics.flush();
    response
}

async fn route<P: Ports>(
    app: &App<P>,
    req: &Request,
    remaining: Duration,
) -> Result<Response<Body>, ApiError> {
    let path = route_path(req);
    let body = body_bytes(req);
    if body.len() > app.limits.max_body_bytes {
        return Err(ApiError::TooLarge {
            size: body.len(),
            limit: app.limits.max_body_bytes,
        });
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let authenticated = match app.auth.check(header, body, Utc::now()) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(reason = %e, "request not authenticated");
            return Err(ApiError::Unauthorized(match e {
                AuthError::Missing => e.to_string(),
                _ => "the credentials are not valid".to_owned(),
            }));
        }
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Billing's trace, when it sent a valid one; else each event starts its own.
    let trace = header("traceparent").and_then(TraceParent::parse);
    match (req.method(), segments.as_slice()) {
        (&Method::POST, ["events"]) => {
            json_body(req)?;
            // A signed request's webhook-id is the default event id, so that a
            // request sent twice (a retry, or a replay within the signature's
            // 5 minutes) is one event. A bearer request's is just a header.
            let webhook_id =
                header("webhook-id").filter(|_| authenticated == Authenticated::Signed);
            post_events(app, body, webhook_id, trace).await
        }
        (&Method::POST, ["decisions"]) => {
            json_body(req)?;
            post_decision(app, body, remaining, trace).await
        }
        (&Method::GET, ["events", id]) => match percent_decoded(id) {
            Some(id) => get_event(app, &id).await,
            None => Err(ApiError::NotFound(format!("no event `{id}`"))),
        },
        (_, ["events"] | ["decisions"] | ["events", _]) => Err(ApiError::MethodNotAllowed),
        _ => Err(ApiError::not_found_route()),
    }
}

/// A path segment with its `%XX` escapes decoded (a client may escape the
/// `:` `@` `=` that event ids allow); `None` if an escape is broken.
fn percent_decoded(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The body must be declared JSON.
fn json_body(req: &Request) -> Result<(), ApiError> {
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// Gives each event its trace: a span of billing's, or a new trace.
fn traced(events: &mut [QueuedEvent], trace: Option<TraceParent>) {
    for e in events {
        e.event.trace = Some(trace.map_or_else(TraceParent::new_root, |t| t.child()));
    }
}

async fn post_events<P: Ports>(
    app: &App<P>,
    body: &[u8],
    webhook_id: Option<&str>,
    trace: Option<TraceParent>,
) -> Result<Response<Body>, ApiError> {
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let new_id = || match webhook_id {
        Some(w) => hooks_core::ingest::id_from_webhook_id(
            w,
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        ),
        None => uuid::Uuid::now_v7().to_string(),
    };
    let mut events = parse_events(body, Utc::now(), new_id)?;
    check_schemas(app, &events).await?;
    traced(&mut events, trace);
    let queue = &app.queue;
    // Record each id (the records of a batch concurrently); an id seen before
    // is a duplicate, unless dispatch has not run it yet (`accepted`): it may
    // never have made it onto the queue, so it is sent again. SQS drops a
    // second message of an id within 5 minutes; later, dispatch finds the
    // event done and drops it (the queue hands out a key's messages in order).
    let accepted = join_all(events.iter().map(|e| app.events.accept(e))).await;
    let mut status: Vec<&str> = vec!["duplicate"; events.len()];
    let (mut to_send, mut send_index) = (Vec::new(), Vec::new());
    for (i, (e, r)) in events.iter().zip(accepted).enumerate() {
        match r {
            Ok(Accepted::New) => {
                app.metrics.count(Counter::EventsAccepted, 1);
                to_send.push(e.clone())
            }
            Ok(Accepted::Seen(r)) if r.status == EventStatus::Accepted => {
                to_send.push(r.event.clone())
            }
            Ok(Accepted::Seen(_)) => {
                app.metrics.count(Counter::EventsDuplicate, 1);
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        send_index.push(i);
    }
    let sent = queue.send(&to_send).await?;
    let mut failed = false;
    for ((e, s), &i) in to_send.iter().zip(sent).zip(&send_index) {
        match s {
            Sent::Ok => {
                let trace_id = e.event.trace.map(|t| t.trace_id_hex()).unwrap_or_default();
                tracing::info!(event.id = %e.event.id, event = %e.event.event, key = %e.key, %trace_id, "queued");
                status[i] = "queued";
            }
            Sent::Failed(reason) => {
                tracing::error!(event.id = %e.event.id, %reason, "not queued");
                failed = true;
                status[i] = "failed";
            }
        }
    }
    let list: Vec<Value> = events
        .iter()
        .zip(&status)
        .map(|(e, status)| json!({"id": e.event.id, "status": status}))
        .collect();
    if failed {
        return Err(ApiError::NotQueued(list));
    }
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({"events": list}),
    ))
}

/// The events' data against the live revision's schemas: a 422 naming
/// each problem's path and rule, before anything is recorded or queued.
/// Before the first sync there are none. Without the live revision (the
/// store unreachable and nothing cached), or with schemas that do not
/// compile, the request is refused with 503: what cannot be checked is not
/// accepted.
async fn check_schemas<P: Ports>(app: &App<P>, events: &[QueuedEvent]) -> Result<(), ApiError> {
    let revision = match app.live.current().await {
        Ok(r) => r,
        Err(LiveError::NeverSynced) => return Ok(()),
        Err(e) => return Err(ApiError::Unavailable(e.to_string())),
    };
    // Refused as unavailable, not accepted unchecked: the cure is a sync
    // of schemas this function can use, and billing's retry then passes.
    let compiled = app.schemas.of(&revision).map_err(|e| {
        ApiError::Unavailable(format!(
            "the event schemas of revision {} cannot be used: {e}",
            revision.info.revision
        ))
    })?;
    let Some(compiled) = compiled else {
        return Ok(());
    };
    let problems = schema_problems(&compiled, events);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(problems))
    }
}

async fn post_decision<P: Ports>(
    app: &App<P>,
    body: &[u8],
    remaining: Duration,
    trace: Option<TraceParent>,
) -> Result<Response<Body>, ApiError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::Malformed(
            "a decision is asked for one event, not a batch".into(),
        ));
    }
    let mut events = parse_events(body, Utc::now(), || {
        format!("decision-{}", uuid::Uuid::now_v7())
    })?;
    traced(&mut events, trace);
    check_schemas(app, &events).await?;
    let event = events
        .pop()
        .ok_or_else(|| ApiError::Malformed("no event".into()))?;
    let (revision, chain) = match app.live.chain(event.event.event, Phase::Before).await {
        Ok(x) => x,
        Err(LiveError::NeverSynced) => {
            return Err(ApiError::Unavailable(
                "no handler config has been synced yet".into(),
            ));
        }
        Err(e) => return Err(ApiError::Unavailable(e.to_string())),
    };
    let targets = &app.targets;
    let refs: Vec<&hooks_core::config::Handler> = chain.iter().collect();
    let deadline = revision
        .config
        .defaults
        .decision_timeout
        .min(remaining.saturating_sub(Duration::from_millis(500)));
    let decision = run_before(
        targets,
        &refs,
        &revision.config.defaults,
        &event.event,
        deadline,
    )
    .await;
    app.metrics.count(Counter::Decisions, 1);
    app.metrics.calls(&decision.handlers);
    record_decision(app, &event, &decision, revision.info.revision).await;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "id": event.event.id,
            "event": event.event.event,
            "decision": decision.verdict,
            "reason": decision.reason,
            "forbidden_by": decision.forbidden_by,
            "data": decision.data,
            "handlers": decision.handlers,
            "revision": revision.info.revision,
        }),
    ))
}

/// The decision's record, with its calls: the execution log shows them and
/// `GET /events/{id}` answers for it. One write, bounded: billing is waiting
/// for the decision, already made. Not written, the calls go to the
/// function's log.
async fn record_decision<P: Ports>(
    app: &App<P>,
    event: &QueuedEvent,
    decision: &Decision,
    revision: u64,
) {
    let now = Utc::now();
    let mut record = EventRecord::accepted(event, now);
    record.decision = true;
    record.runs = 1;
    record.revision = Some(revision);
    record.progress.data = decision.data.clone();
    record.calls = decision
        .handlers
        .iter()
        .map(|r| LogEntry {
            record: r.clone(),
            revision,
        })
        .collect();
    match decision.forbidden_by {
        Some(h) => record.forbid(h, decision.reason.as_deref().unwrap_or(""), now),
        None => record.succeed(now),
    }
    let error = match tokio::time::timeout(LOG_WRITE_BUDGET, app.events.save(&mut record)).await {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("not done within {LOG_WRITE_BUDGET:?}"),
    };
    for entry in &record.calls {
        let entry = serde_json::to_string(entry).unwrap_or_default();
        tracing::error!(%error, %entry, "execution log not written: entry kept only here");
    }
}

/// The longest the execution log write of a decision may take.
const LOG_WRITE_BUDGET: Duration = Duration::from_secs(2);

async fn get_event<P: Ports>(app: &App<P>, id: &str) -> Result<Response<Body>, ApiError> {
    if !hooks_core::ingest::valid_stored_id(id) {
        // No event can have it (and DynamoDB would refuse the key).
        return Err(ApiError::NotFound(format!(
            "no event `{id}`: event ids are 1 to 128 of A-Z a-z 0-9 -_.:@= (and ~ in ids made from a webhook-id)"
        )));
    }
    let record = app
        .events
        .get(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no event `{id}`")))?;
    let calls = hooks_core::store::logs::calls_of(&record);
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "id": record.event.event.id,
            "event": record.event.event.event,
            "key": record.event.key,
            "trace": record.event.event.trace.map(|t| t.trace_id_hex()),
            "status": record.status,
            "received_at": record.event.received_at,
            "updated_at": record.updated_at,
            "runs": record.runs,
            "next_attempt_at": record.next_attempt_at,
            "last_error": record.last_error,
            "revision": record.revision,
            "completed": record.progress.completed,
            "attempts": record.progress.attempts,
            "calls": calls,
        }),
    ))
}

#[cfg(test)]
mod tests {
    //! The answers that come before any AWS call. The full paths (queueing,
    //! duplicates, decisions, GET) are tested end to end in `tests/it/pipeline.rs`.

    use super::*;
    use hooks_core::settings::{ResourceNames, Settings};
    use hooks_core::targets::{NetworkPolicy, Secrets};

    /// What the wiring gives ingest, pointing nowhere: these requests must
    /// be answered without AWS. The secret holds `secrets`.
    fn resources(secrets: &[(&str, &str)]) -> Resources {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let wiring = Wiring::new(
            Settings::local(
                ResourceNames::prefixed("unit"),
                NetworkPolicy::public_only(),
                ".".into(),
            ),
            sdk.clone(),
        );
        let secrets = Secrets::new(
            secrets
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            "test",
        );
        Resources {
            events: wiring.event_store(),
            live: LiveConfig::new(wiring.config_store()),
            queue: Queue::at(
                aws_sdk_sqs::Client::new(&sdk),
                "http://127.0.0.1:9/q.fifo",
                "http://127.0.0.1:9/dlq.fifo",
                "nowhere",
            ),
            targets: wiring.targets(&secrets).unwrap(),
            secrets,
            metrics: hooks_core::metrics::Metrics::new("test"),
        }
    }

    async fn app() -> App {
        App::new(
            Limits { max_body_bytes: 64 },
            resources(&[(TOKENS, "t0k3n")]),
        )
        .unwrap()
    }

    #[test]
    fn ingest_refuses_to_start_without_credentials_in_the_secret() {
        let res = resources(&[("RISK_TOKEN", "x")]);
        let e = App::new(Limits { max_body_bytes: 64 }, res).unwrap_err();
        assert!(e.contains(TOKENS) && e.contains(SIGNING_SECRETS), "{e}");
    }

    fn req(method: &str, path: &str, ct: Option<&str>, auth: Option<&str>, body: &str) -> Request {
        let mut b = lambda_http::http::Request::builder()
            .method(method)
            .uri(path);
        if let Some(ct) = ct {
            b = b.header("content-type", ct);
        }
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(Body::from(body.to_owned())).unwrap()
    }

    async fn answer(r: Request) -> (u16, Value) {
        let resp = handle(&app().await, r, Duration::from_secs(5)).await;
        let status = resp.status().as_u16();
        let body = match resp.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            other => panic!("unexpected body {other:?}"),
        };
        (status, body)
    }

    #[tokio::test]
    async fn errors_are_json_with_a_stable_code() {
        let json = Some("application/json; charset=utf-8");
        let ok = Some("Bearer t0k3n");
        let cases = [
            (
                req("POST", "/events", json, None, "{}"),
                401,
                "unauthorized",
            ),
            (
                req("POST", "/events", json, Some("Bearer nope"), "{}"),
                401,
                "unauthorized",
            ),
            (
                req("POST", "/events", json, ok, &"x".repeat(65)),
                413,
                "too_large",
            ),
            (
                req("POST", "/events", Some("text/plain"), ok, "{}"),
                415,
                "unsupported_media_type",
            ),
            (
                req("POST", "/events", json, ok, "{\"event\":"),
                400,
                "malformed",
            ),
            (
                req(
                    "POST",
                    "/events",
                    json,
                    ok,
                    "{\"event\":\"x.y\",\"data\":{}}",
                ),
                422,
                "invalid_event",
            ),
            (req("POST", "/decisions", json, ok, "[]"), 400, "malformed"),
            (
                req("DELETE", "/events", json, ok, ""),
                405,
                "method_not_allowed",
            ),
            (req("GET", "/nothing", None, ok, ""), 404, "not_found"),
            // Answered without a lookup: no event can have such an id.
            (
                req("GET", &format!("/events/{}", "e".repeat(129)), None, ok, ""),
                404,
                "not_found",
            ),
            (req("GET", "/events/a+b", None, ok, ""), 404, "not_found"),
        ];
        for (r, status, code) in cases {
            let what = format!("{} {}", r.method(), r.uri());
            let (s, body) = answer(r).await;
            assert_eq!(
                (s, body["error"]["code"].as_str()),
                (status, Some(code)),
                "{what}: {body}"
            );
        }
    }

    #[tokio::test]
    async fn data_nested_past_the_limit_is_refused_before_anything_is_stored() {
        let app = App::new(
            Limits {
                max_body_bytes: 64 * 1024,
            },
            resources(&[(TOKENS, "t0k3n")]),
        )
        .unwrap();
        let deep = format!(
            "{{\"id\":\"depth-125\",\"event\":\"clients.update\",\"data\":{{\"client_id\":903,\"x\":{}{}}}}}",
            "[".repeat(125),
            "]".repeat(125)
        );
        let r = req(
            "POST",
            "/events",
            Some("application/json"),
            Some("Bearer t0k3n"),
            &deep,
        );
        let resp = handle(&app, r, Duration::from_secs(5)).await;
        let Body::Text(t) = resp.body() else {
            panic!("not text")
        };
        let body: Value = serde_json::from_str(t).unwrap();
        assert_eq!(resp.status().as_u16(), 422, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("may nest at most 32"),
            "{body}"
        );
    }

    #[test]
    fn an_escaped_event_id_in_the_path_is_decoded() {
        assert_eq!(
            percent_decoded("inv%3A42%40billing%3D1").as_deref(),
            Some("inv:42@billing=1")
        );
        assert_eq!(percent_decoded("plain-1").as_deref(), Some("plain-1"));
        assert_eq!(percent_decoded("bad%4"), None);
        assert_eq!(percent_decoded("bad%zz"), None);
    }

    #[test]
    fn the_route_is_the_uri_path_when_no_raw_path_is_given() {
        let r = req("GET", "/events/e-1?x=1", None, None, "");
        assert_eq!(route_path(&r), "/events/e-1");
    }
}
