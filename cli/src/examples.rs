//! The example handler endpoints that the repository's handlers.toml points
//! at, served by `hooks dev` on 127.0.0.1:9181: a risk check that forbids low
//! credit scores, a softswitch that verifies signatures and adds its id, a
//! gateway that checks its token, CRMs that echo. Each request is printed.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hooks_core::signature::SigningKey;
use serde_json::{Value, json};

/// The signing secret the local softswitch expects (a development value).
pub(crate) const DEV_SOFTSWITCH_SECRET: &str = "whsec_ZGV2ZWxvcG1lbnQtb25seS1zb2Z0c3dpdGNo";
/// The token the local gateway expects (a development value).
pub(crate) const DEV_GATEWAY_TOKEN: &str = "dev-gateway-token";

fn say(path: &str, req: &Value, what: &str) {
    println!(
        "  example endpoint {path:<28} {} {} attempt {} → {what}",
        req["event"].as_str().unwrap_or("?"),
        req["id"].as_str().unwrap_or("?"),
        req["attempt"]
    );
}

async fn answer(uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let data = req.get("data").cloned().unwrap_or_else(|| json!({}));
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    match path.as_str() {
        "/risk/check" => {
            let score = data
                .get("credit_score")
                .and_then(Value::as_i64)
                .unwrap_or(700);
            if score < 500 {
                say(&path, &req, "forbid (credit score below 500)");
                axum::Json(json!({"decision": "forbid", "reason": format!("credit score {score} is below 500")})).into_response()
            } else {
                say(&path, &req, "allow, risk = low");
                let mut d = data;
                d["risk"] = json!("low");
                axum::Json(json!({"decision": "allow", "data": d})).into_response()
            }
        }
        "/gateway/validate" => {
            let number = data.get("number").and_then(Value::as_str).unwrap_or("");
            if number.starts_with("+999") {
                say(&path, &req, "forbid (number range not provisioned)");
                axum::Json(
                    json!({"decision": "forbid", "reason": "number range +999 is not provisioned"}),
                )
                .into_response()
            } else {
                say(&path, &req, "allow");
                StatusCode::NO_CONTENT.into_response()
            }
        }
        p if p.starts_with("/softswitch/") => {
            let verified = SigningKey::parse(DEV_SOFTSWITCH_SECRET).is_ok_and(|k| {
                header("webhook-timestamp").parse::<i64>().is_ok_and(|ts| {
                    k.verify(header("webhook-id"), ts, &body, header("webhook-signature"))
                })
            });
            if !verified {
                say(&path, &req, "401 (bad signature)");
                return StatusCode::UNAUTHORIZED.into_response();
            }
            if p == "/softswitch/clients" {
                let id = data
                    .get("client_id")
                    .map(|v| v.to_string().trim_matches('"').to_owned())
                    .unwrap_or_default();
                say(&path, &req, &format!("created softswitch account sw-{id}"));
                let mut d = data;
                d["softswitch_id"] = json!(format!("sw-{id}"));
                axum::Json(json!({"data": d})).into_response()
            } else {
                say(&path, &req, "processed");
                StatusCode::OK.into_response()
            }
        }
        "/gateway/accounts" => {
            if header("authorization") != format!("Bearer {DEV_GATEWAY_TOKEN}") {
                say(&path, &req, "401 (bad token)");
                return StatusCode::UNAUTHORIZED.into_response();
            }
            say(&path, &req, "provisioned");
            StatusCode::OK.into_response()
        }
        _ => {
            say(&path, &req, "echo");
            (StatusCode::OK, body).into_response()
        }
    }
}

/// Serves the example endpoints until the task is dropped.
pub(crate) async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, Router::new().fallback(answer)).await
}
