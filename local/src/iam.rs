//! The template's IAM policies, enforced on this machine.
//!
//! The AWS API emulator does not check permissions, so an action missing
//! from a function's policy would first show as an `AccessDenied` on the
//! first deploy. The gateway sits between the functions and the emulator:
//! each function signs its requests with an access key of its own, the
//! gateway reads the action (`X-Amz-Target`) and the resources (table, index,
//! queue, secret) of every request, checks them against that function's
//! policy in `infra/template.yaml`, answers what IAM would answer
//! (`AccessDeniedException`) when no statement allows it, and forwards the
//! rest. Every call is recorded, so a test can show which statements were
//! used. Requests signed with any other key (the `hooks` command, test
//! set-up: an administrator's) pass unchecked.
//!
//! It also applies the requests to each SQS queue one at a time, as SQS
//! applies each request atomically. The emulator does not: it rebuilds a
//! queue's message list on every delete without a lock, so a send or delete
//! running at the same moment can drop a message from the list for a while
//! and bring it back later (a later event of a key then overtakes it), and
//! it computes which FIFO groups are in flight while other requests change
//! them. A long poll (`WaitTimeSeconds`) is served as short polls, each one
//! applied alone, so that waiting for messages never holds up the sends and
//! deletes it waits for.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::meter::{self, Shapes, TableShape, Units};
use crate::template::{ACCOUNT, Function, REGION, queue_arn, table_arn};

/// The access key id a function signs with on this machine.
pub fn access_key_of(binary: &str) -> String {
    format!("LOCAL{}", binary.to_uppercase())
}

/// One request a function made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The function's binary (`ingest`).
    pub function: String,
    /// The IAM action (`dynamodb:GetItem`).
    pub action: String,
    pub resource: String,
    pub allowed: bool,
}

#[derive(Debug)]
struct State {
    upstream: String,
    http: reqwest::Client,
    /// By access key id.
    functions: BTreeMap<String, Function>,
    calls: Mutex<Vec<Call>>,
    /// One lock per SQS queue (by name): its requests go one at a time.
    queues: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// When metering: the units used, by caller (a function's binary, or
    /// `operator` for any other key), and the tables' shapes.
    meter: Option<Metering>,
}

#[derive(Debug, Default)]
struct Metering {
    /// Counting now (it can be paused: it slows every write down).
    on: std::sync::atomic::AtomicBool,
    units: Mutex<BTreeMap<String, Units>>,
    shapes: tokio::sync::Mutex<Shapes>,
    /// Writes are measured one at a time (the item before, the write, the
    /// item after), so that no other write slips in between.
    writing: tokio::sync::Mutex<()>,
}

/// How often a long poll looks for messages.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// A running gateway; stops when dropped.
#[derive(Debug)]
pub struct Gateway {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gateway {
    /// Listens on `listen` (port 0: any free port) in front of `upstream`.
    pub async fn start(
        listen: SocketAddr,
        upstream: &str,
        functions: &[Function],
    ) -> std::io::Result<Gateway> {
        Self::start_with(listen, upstream, functions, false).await
    }

    /// As [`Gateway::start`]; with `meter`, it also counts what every call
    /// would be billed ([`Gateway::units`]). Metering reads each written
    /// item before and after the write, so it is for benchmarks.
    pub async fn start_with(
        listen: SocketAddr,
        upstream: &str,
        functions: &[Function],
        meter: bool,
    ) -> std::io::Result<Gateway> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(std::io::Error::other)?;
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http,
            functions: functions
                .iter()
                .map(|f| (access_key_of(&f.binary), f.clone()))
                .collect(),
            calls: Mutex::new(Vec::new()),
            queues: Mutex::new(BTreeMap::new()),
            meter: meter.then(|| Metering {
                on: std::sync::atomic::AtomicBool::new(true),
                ..Metering::default()
            }),
        });
        let app = axum::Router::new().fallback({
            let state = state.clone();
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { handle(&state, method, uri, headers, body).await }
            }
        });
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the IAM gateway stopped");
            }
        });
        Ok(Gateway { addr, state, task })
    }

    /// Where the functions reach AWS (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every call the functions made so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state
            .calls
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// The units used so far, by caller (when metering).
    pub fn units(&self) -> BTreeMap<String, Units> {
        self.state
            .meter
            .as_ref()
            .and_then(|m| m.units.lock().ok().map(|u| u.clone()))
            .unwrap_or_default()
    }

    /// Pauses or resumes counting (metering reads every written item twice,
    /// which slows the functions down: time them with it paused).
    pub fn set_metering(&self, on: bool) {
        if let Some(m) = &self.state.meter {
            m.on.store(on, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Starts counting again from zero.
    pub fn reset_units(&self) {
        if let Some(m) = &self.state.meter
            && let Ok(mut u) = m.units.lock()
        {
            u.clear();
        }
    }

    /// The calls no statement allowed.
    pub fn denied(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|c| !c.allowed).collect()
    }
}

async fn handle(
    state: &State,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    if let Some(function) = caller(&headers).and_then(|k| state.functions.get(&k)) {
        let requested = match requested(&headers, &body) {
            Ok(r) => r,
            Err(e) => vec![(format!("unknown:{e}"), "*".to_owned())],
        };
        for (action, resource) in requested {
            let allowed = function.allows(&action, &resource);
            if let Ok(mut calls) = state.calls.lock() {
                calls.push(Call {
                    function: function.binary.clone(),
                    action: action.clone(),
                    resource: resource.clone(),
                    allowed,
                });
            }
            if !allowed {
                tracing::error!(function = %function.binary, %action, %resource, "denied: the template's policy does not allow it");
                return denied(function, &action, &resource, &headers);
            }
        }
    }
    if let Some(m) = &state.meter
        && m.on.load(std::sync::atomic::Ordering::SeqCst)
    {
        return metered(state, m, method, uri, headers, body).await;
    }
    match sqs_request(&headers, &body) {
        Some(sqs) => forward_sqs(state, sqs, method, uri, headers, body).await,
        None => forward(state, method, uri, headers, body).await,
    }
}

/// Forwards a request and counts its billable units for its caller.
async fn metered(
    state: &State,
    m: &Metering,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let who = caller(&headers)
        .and_then(|k| state.functions.get(&k).map(|f| f.binary.clone()))
        .unwrap_or_else(|| "operator".to_owned());
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let (answered, used) = if let Some(op) = target.strip_prefix("DynamoDB_20120810.") {
        metered_dynamodb(state, m, op, method, uri, headers, body).await
    } else if let Some(op) = target.strip_prefix("AmazonSQS.") {
        metered_sqs(state, op, method, uri, headers, body).await
    } else {
        let mut used = Units::default();
        if let Some(op) = target.strip_prefix("secretsmanager.") {
            used.secrets_calls += 1;
            *used
                .calls
                .entry(format!("secretsmanager:{op}"))
                .or_default() += 1;
        }
        (forward(state, method, uri, headers, body).await, used)
    };
    if let Ok(mut units) = m.units.lock() {
        units.entry(who).or_default().add(&used);
    }
    answered
}

/// Forwards a DynamoDB request and the units it used. A write is measured
/// alone (no other write between the items' looks before and after it) and
/// billed for the items it touched; a read that succeeded, for what it read.
async fn metered_dynamodb(
    state: &State,
    m: &Metering,
    op: &str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (Response<Body>, Units) {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let writes = matches!(
        op,
        "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems"
    );
    let _one = if writes {
        Some(m.writing.lock().await)
    } else {
        None
    };
    let items = if writes {
        written_items(state, m, op, &request).await
    } else {
        Vec::new()
    };
    let before = items_now(state, &items).await;
    let forwarded = forward(state, method, uri, headers, body).await;
    let (status, out_headers, bytes) = take(forwarded).await;
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let ok = status.is_success();
    let mut used = Units::default();
    // A transaction is billed twice.
    let factor = if op.starts_with("Transact") { 2.0 } else { 1.0 };
    for (item, old) in items.iter().zip(&before) {
        for (name, units) in item_write_cost(state, op, ok, item, old.as_ref()).await {
            used.write_units += units * factor;
            if name.contains('/') {
                used.index_write_units += units * factor;
            }
            *used.writes_by_table.entry(name).or_default() += units * factor;
        }
    }
    if ok {
        used.read_units += read_cost(op, &request, &answer);
    }
    *used.calls.entry(format!("dynamodb:{op}")).or_default() += 1;
    (response(status, &out_headers, bytes), used)
}

/// Forwards an SQS request (one at a time on its queue) and the units it
/// used: a receive that returned nothing is counted apart (on AWS, the
/// trigger's idle long polls: a cost per hour rather than per event).
async fn metered_sqs(
    state: &State,
    op: &str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (Response<Body>, Units) {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let forwarded = match sqs_request(&headers, &body) {
        Some(sqs) => forward_sqs(state, sqs, method, uri, headers, body).await,
        None => forward(state, method, uri, headers, body).await,
    };
    let (status, out_headers, bytes) = take(forwarded).await;
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut used = Units::default();
    let nothing =
        op == "ReceiveMessage" && answer["Messages"].as_array().is_none_or(|m| m.is_empty());
    if nothing {
        used.empty_receives += 1;
    } else {
        used.sqs_requests += meter::sqs_requests(&request, &answer);
    }
    *used.calls.entry(format!("sqs:{op}")).or_default() += 1;
    (response(status, &out_headers, bytes), used)
}

/// An item a write touches: its table, the table's shape, its key, and the
/// item a put writes.
type Written = (String, TableShape, Value, Option<Value>);

/// The items a write touches as they are now, before it (none where the
/// look fails).
async fn items_now(state: &State, items: &[Written]) -> Vec<Option<Value>> {
    let mut now = Vec::new();
    for (table, _, key, _) in items {
        now.push(read_item(state, table, key).await.ok().flatten());
    }
    now
}

/// The write units of one item, by table and index. A write that succeeded
/// is billed for the item before or after it, whichever is larger (and
/// each index for its entries); a failed condition is billed for the item
/// as it is (or as it would have been written).
async fn item_write_cost(
    state: &State,
    op: &str,
    ok: bool,
    (table, shape, key, put): &Written,
    old: Option<&Value>,
) -> Vec<(String, f64)> {
    if !ok {
        let size = old
            .map_or(0, meter::item_size)
            .max(put.as_ref().map_or(0, meter::item_size));
        return vec![(table.clone(), meter::write_units(size))];
    }
    let new = if put.is_some() {
        put.clone()
    } else if op == "DeleteItem" || (op == "BatchWriteItem" && put.is_none()) {
        None
    } else {
        read_item(state, table, key).await.ok().flatten()
    };
    meter::write_cost(table, shape, old, new.as_ref())
}

/// The items a write touches: (table, its shape, key, the item a put writes).
async fn written_items(state: &State, m: &Metering, op: &str, request: &Value) -> Vec<Written> {
    let mut out = Vec::new();
    let mut add = |table: &str, key: Option<&Value>, item: Option<&Value>| {
        out.push((table.to_owned(), key.cloned(), item.cloned()));
    };
    match op {
        "PutItem" => add(
            request["TableName"].as_str().unwrap_or(""),
            None,
            Some(&request["Item"]),
        ),
        "UpdateItem" | "DeleteItem" => add(
            request["TableName"].as_str().unwrap_or(""),
            Some(&request["Key"]),
            None,
        ),
        "BatchWriteItem" => {
            for (table, reqs) in request["RequestItems"].as_object().into_iter().flatten() {
                for r in reqs.as_array().into_iter().flatten() {
                    if r.get("PutRequest").is_some() {
                        add(table, None, Some(&r["PutRequest"]["Item"]));
                    } else {
                        add(table, Some(&r["DeleteRequest"]["Key"]), None);
                    }
                }
            }
        }
        "TransactWriteItems" => {
            for t in request["TransactItems"].as_array().into_iter().flatten() {
                for (kind, w) in t.as_object().into_iter().flatten() {
                    let table = w["TableName"].as_str().unwrap_or("");
                    if kind == "Put" {
                        add(table, None, Some(&w["Item"]));
                    } else {
                        add(table, Some(&w["Key"]), None);
                    }
                }
            }
        }
        _ => {}
    }
    let mut items = Vec::new();
    for (table, key, item) in out {
        let shape = shape_of(state, m, &table).await;
        let key = match (&key, &item) {
            (Some(k), _) => k.clone(),
            (None, Some(i)) => shape.key_of(i),
            (None, None) => Value::Null,
        };
        items.push((table, shape, key, item));
    }
    items
}

/// Read units of a read (a query or scan page adds its items up).
fn read_cost(op: &str, request: &Value, answer: &Value) -> f64 {
    let consistent = request["ConsistentRead"].as_bool().unwrap_or(false);
    match op {
        "GetItem" => meter::read_units(answer.get("Item").map_or(0, meter::item_size), consistent),
        "Query" | "Scan" => {
            let size = answer["Items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(meter::item_size)
                .sum();
            meter::read_units(size, consistent)
        }
        "BatchGetItem" => answer["Responses"]
            .as_object()
            .into_iter()
            .flatten()
            .flat_map(|(_, items)| items.as_array().into_iter().flatten())
            .map(|i| meter::read_units(meter::item_size(i), consistent))
            .sum(),
        "TransactGetItems" => answer["Responses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| 2.0 * meter::read_units(r.get("Item").map_or(0, meter::item_size), true))
            .sum(),
        _ => 0.0,
    }
}

/// A table's shape, asked of the emulator once.
async fn shape_of(state: &State, m: &Metering, table: &str) -> TableShape {
    let mut shapes = m.shapes.lock().await;
    if let Some(s) = shapes.get(table) {
        return s.clone();
    }
    let described = call(
        state,
        "DescribeTable",
        &serde_json::json!({"TableName": table}),
    )
    .await;
    let shape = described
        .map(|d| TableShape::from_description(&d))
        .unwrap_or_default();
    shapes.insert(table.to_owned(), shape.clone());
    shape
}

/// The item as it is now (not metered: the gateway's own look).
async fn read_item(state: &State, table: &str, key: &Value) -> Result<Option<Value>, String> {
    if !key.is_object() {
        return Ok(None);
    }
    let got = call(
        state,
        "GetItem",
        &serde_json::json!({"TableName": table, "Key": key, "ConsistentRead": true}),
    )
    .await?;
    Ok(got.get("Item").cloned())
}

/// A DynamoDB call of the gateway's own, straight to the emulator.
async fn call(state: &State, op: &str, body: &Value) -> Result<Value, String> {
    let resp = state
        .http
        .post(format!("{}/", state.upstream))
        .header("x-amz-target", format!("DynamoDB_20120810.{op}"))
        .header("content-type", "application/x-amz-json-1.0")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let ok = resp.status().is_success();
    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if ok { Ok(v) } else { Err(v.to_string()) }
}

/// A response's parts, to look into it and pass it on.
async fn take(r: Response<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    (status, headers, bytes)
}

/// An SQS request: its operation, queue and body.
struct SqsRequest {
    operation: String,
    queue: String,
    json: Value,
}

fn sqs_request(headers: &HeaderMap, body: &[u8]) -> Option<SqsRequest> {
    let target = headers.get("x-amz-target")?.to_str().ok()?;
    let operation = target.strip_prefix("AmazonSQS.")?.to_owned();
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let queue = json["QueueUrl"]
        .as_str()
        .and_then(|u| u.rsplit('/').next())
        .or_else(|| json["QueueName"].as_str())
        .unwrap_or("")
        .to_owned();
    Some(SqsRequest {
        operation,
        queue,
        json,
    })
}

/// Forwards an SQS request while holding its queue's lock. A receive that
/// may wait is forwarded as receives that do not, every [`POLL_EVERY`],
/// until one returns messages or the wait is over, releasing the lock
/// between them.
async fn forward_sqs(
    state: &State,
    mut sqs: SqsRequest,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let lock = {
        let Ok(mut queues) = state.queues.lock() else {
            return forward(state, method, uri, headers, body).await;
        };
        queues.entry(sqs.queue.clone()).or_default().clone()
    };
    let wait = match sqs.operation.as_str() {
        "ReceiveMessage" => sqs.json["WaitTimeSeconds"].as_u64().unwrap_or(0),
        _ => 0,
    };
    if wait == 0 {
        let _one = lock.lock().await;
        return forward(state, method, uri, headers, body).await;
    }
    sqs.json["WaitTimeSeconds"] = Value::from(0);
    let short = Bytes::from(sqs.json.to_string());
    let until = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let (status, out_headers, bytes) = {
            let _one = lock.lock().await;
            match send(state, method.clone(), &uri, &headers, short.clone()).await {
                Ok(answer) => answer,
                Err(unreachable) => return unreachable,
            }
        };
        let got = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["Messages"].as_array().map(|m| !m.is_empty()))
            .unwrap_or(false);
        if got || !status.is_success() || tokio::time::Instant::now() + POLL_EVERY >= until {
            return response(status, &out_headers, bytes);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The access key id of a SigV4 `Authorization` header.
fn caller(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let cred = auth.split("Credential=").nth(1)?;
    Some(cred.split('/').next()?.to_owned())
}

/// The IAM actions and resources a request needs.
fn requested(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .ok_or("no X-Amz-Target")?;
    let (service, operation) = target
        .split_once('.')
        .ok_or("a target without an operation")?;
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let str_of = |k: &str| json[k].as_str().map(str::to_owned);
    if service.starts_with("DynamoDB_") {
        let action = format!("dynamodb:{operation}");
        let mut tables: Vec<String> = Vec::new();
        if let Some(t) = str_of("TableName") {
            tables.push(match str_of("IndexName") {
                Some(ix) => format!("{}/index/{ix}", table_arn(&t)),
                None => table_arn(&t),
            });
        }
        if let Some(items) = json["RequestItems"].as_object() {
            tables.extend(items.keys().map(|t| table_arn(t)));
        }
        // A transaction is authorized item by item, as the single actions.
        let mut each = Vec::new();
        for item in json["TransactItems"].as_array().into_iter().flatten() {
            for (kind, op) in item.as_object().into_iter().flatten() {
                let single = match kind.as_str() {
                    "Put" => "PutItem",
                    "Update" => "UpdateItem",
                    "Delete" => "DeleteItem",
                    "ConditionCheck" => "ConditionCheckItem",
                    "Get" => "GetItem",
                    _ => kind.as_str(),
                };
                if let Some(t) = op["TableName"].as_str() {
                    each.push((format!("dynamodb:{single}"), table_arn(t)));
                }
            }
        }
        if !each.is_empty() {
            return Ok(each);
        }
        if tables.is_empty() {
            tables.push("*".to_owned());
        }
        return Ok(tables.into_iter().map(|t| (action.clone(), t)).collect());
    }
    if service == "AmazonSQS" {
        // Batch requests are authorized as their single form.
        let action = format!("sqs:{}", operation.trim_end_matches("Batch"));
        let queue = str_of("QueueUrl")
            .and_then(|u| u.rsplit('/').next().map(str::to_owned))
            .or_else(|| str_of("QueueName"))
            .map(|n| queue_arn(&n))
            .unwrap_or_else(|| "*".to_owned());
        return Ok(vec![(action, queue)]);
    }
    if service == "secretsmanager" {
        let id = str_of("SecretId").unwrap_or_default();
        // A secret named by its name: IAM checks its ARN, which ends in the
        // name, a dash and six characters.
        let arn = if id.starts_with("arn:") {
            id
        } else {
            format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{id}-??????")
        };
        return Ok(vec![(format!("secretsmanager:{operation}"), arn)]);
    }
    Err(format!("service {service}"))
}

/// What IAM answers: 400 `AccessDeniedException`, in the service's JSON protocol.
fn denied(
    function: &Function,
    action: &str,
    resource: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    let message = format!(
        "User: arn:aws:sts::{ACCOUNT}:assumed-role/{}Role/{} is not authorized to perform: {action} on resource: {resource} because no identity-based policy allows the {action} action",
        function.logical, function.binary
    );
    let body = serde_json::json!({
        "__type": "com.amazon.coral.service#AccessDeniedException",
        "message": message,
        "Message": message,
    });
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    let ct = headers
        .get("content-type")
        .cloned()
        .unwrap_or(HeaderValue::from_static("application/x-amz-json-1.0"));
    r.headers_mut().insert("content-type", ct);
    r.headers_mut().insert(
        "x-amzn-query-error",
        HeaderValue::from_static("AccessDenied;Sender"),
    );
    r.headers_mut().insert(
        "x-amzn-errortype",
        HeaderValue::from_static("AccessDeniedException"),
    );
    r
}

async fn forward(
    state: &State,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    match send(state, method, &uri, &headers, body).await {
        Ok((status, headers, bytes)) => response(status, &headers, bytes),
        Err(unreachable) => unreachable,
    }
}

/// Sends a request on to the emulator: its answer, or the gateway's 502.
async fn send(
    state: &State,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, HeaderMap, Bytes), Response<Body>> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = state
        .http
        .request(method, format!("{}{path}", state.upstream))
        .body(body);
    for (k, v) in headers {
        if k != "host" && k != "content-length" && k != "connection" {
            req = req.header(k, v);
        }
    }
    let unreachable = |e: reqwest::Error| {
        let mut r = Response::new(Body::from(format!("the emulator is unreachable: {e}")));
        *r.status_mut() = StatusCode::BAD_GATEWAY;
        r
    };
    let resp = req.send().await.map_err(unreachable)?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.map_err(unreachable)?;
    Ok((status, headers, bytes))
}

fn response(status: StatusCode, headers: &HeaderMap, bytes: Bytes) -> Response<Body> {
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    for (k, v) in headers {
        if k != "content-length" && k != "transfer-encoding" && k != "connection" {
            r.headers_mut().append(k, v.clone());
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_its_action_and_resources() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-target",
            HeaderValue::from_static("DynamoDB_20120810.Query"),
        );
        let got = requested(&h, br#"{"TableName":"t-logs","IndexName":"by_day"}"#).unwrap();
        assert_eq!(
            got,
            [(
                "dynamodb:Query".to_owned(),
                format!("{}/index/by_day", table_arn("t-logs"))
            )]
        );
        h.insert(
            "x-amz-target",
            HeaderValue::from_static("AmazonSQS.SendMessageBatch"),
        );
        let got = requested(&h, br#"{"QueueUrl":"http://x/123456789012/q.fifo"}"#).unwrap();
        assert_eq!(got, [("sqs:SendMessage".to_owned(), queue_arn("q.fifo"))]);
        h.insert(
            "x-amz-target",
            HeaderValue::from_static("DynamoDB_20120810.BatchWriteItem"),
        );
        let got = requested(&h, br#"{"RequestItems":{"a":[],"b":[]}}"#).unwrap();
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn the_caller_is_the_signing_key() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=LOCALINGEST/20261201/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=x"),
        );
        assert_eq!(caller(&h).as_deref(), Some("LOCALINGEST"));
    }
}
