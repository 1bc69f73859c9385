//! `hooks console`: the operator console, a read-only web page over the live
//! system. Server-rendered (axum, askama templates), no JavaScript needed:
//! every list and filter is a plain link or GET form, so each page has a
//! stable URL that holds its filters. It reads DynamoDB and SQS with the
//! operator's own AWS credentials, through the same store queries as the
//! CLI; where an operator would act, it shows the `hooks …` command.
//!
//! Access: bound to 127.0.0.1 by default, where only this machine reaches
//! it, and only under a loopback `Host` (a web page elsewhere cannot read it
//! through DNS rebinding). Bound to any other address it requires a token
//! (`--token` or `HOOKS_CONSOLE_TOKEN`): sent as `Authorization: Bearer`, or
//! once as `?token=`, which sets a same-site, HTTP-only session cookie. The
//! cookie never holds the token: it holds an expiry and an HMAC of it under
//! a key the console draws at start, so it lasts [`SESSION`] (12 hours) or
//! until the console restarts, whichever comes first, and a stolen cookie
//! reveals nothing that opens another console.

mod charts;
mod health;
mod pages;
mod views;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hooks_core::wiring::Wiring;
use subtle::ConstantTimeEq;

pub(crate) use pages::{Console, Reads};

const CSS: &str = include_str!("../../static/console.css");
const JS: &str = include_str!("../../static/console.js");

/// The name of the session cookie.
const COOKIE: &str = "hooks_console_session";

/// How long a session opened with `?token=` lasts.
pub(crate) const SESSION: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// What every page is sent with: nothing may load from elsewhere, nothing
/// inline may run, no page may frame it, no link leaks its URL.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// How the console is reached.
#[derive(Clone)]
pub(crate) struct Access {
    pub token: Option<String>,
    /// Bound to a loopback address: requests must name a loopback host.
    pub loopback: bool,
    /// Signs the sessions of this run of the console.
    session_key: [u8; 32],
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("loopback", &self.loopback)
            .finish_non_exhaustive()
    }
}

impl Access {
    pub(crate) fn new(token: Option<String>, loopback: bool) -> Access {
        Access {
            token,
            loopback,
            session_key: rand::random(),
        }
    }

    /// The cookie value of a session that ends at `expires` (Unix seconds).
    fn session(&self, expires: i64) -> String {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.session_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(format!("console-session|{expires}").as_bytes());
        format!("{expires}.{}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Whether `value` is a session of this console that has not ended at `now`.
    fn valid_session(&self, value: &str, now: i64) -> bool {
        let Some(expires) = value
            .split_once('.')
            .and_then(|(e, _)| e.parse::<i64>().ok())
        else {
            return false;
        };
        let longest = now.saturating_add(SESSION.as_secs() as i64);
        expires > now && expires <= longest && same(value, &self.session(expires))
    }
}

/// The routes, with access control and security headers.
pub(crate) fn router<R: Reads>(console: Arc<Console<R>>, access: Access) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/handlers") }),
        )
        .route("/handlers", get(pages::handlers::<R>))
        .route("/handlers/{id}", get(pages::handler::<R>))
        .route("/logs", get(pages::logs::<R>))
        .route("/events", get(pages::events::<R>))
        .route("/events/{id}", get(pages::event::<R>))
        .route("/revisions", get(pages::revisions::<R>))
        .route("/schemas", get(pages::schemas::<R>))
        .route("/queue", get(pages::queue::<R>))
        .route(
            "/static/console.css",
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/static/console.js",
            get(|| async { asset(JS, "text/javascript; charset=utf-8") }),
        )
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(pages::not_found::<R>)
        .with_state(console)
        .layer(middleware::from_fn_with_state(Arc::new(access), guard))
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Equal, in a time that tells nothing of either (not even their lengths):
/// the digests are compared.
fn same(a: &str, b: &str) -> bool {
    use sha2::Digest;
    let (a, b) = (sha2::Sha256::digest(a), sha2::Sha256::digest(b));
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

/// Whether a `Host` header names this machine.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn refuse(status: StatusCode, message: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

/// Whether a request comes from a page of another site that is not a
/// navigation to the console (an `<img>` or a `fetch` planted elsewhere).
/// Browsers say so in `Sec-Fetch-*`; clients that do not send them (curl,
/// older browsers) are taken as they are.
fn cross_site_subrequest(headers: &HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    matches!(get("sec-fetch-site"), Some("cross-site" | "same-site"))
        && !(get("sec-fetch-mode") == Some("navigate") && get("sec-fetch-dest") == Some("document"))
}

/// Whether a token can travel in a cookie and a header as it is.
pub(crate) fn token_is_plain(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The request's path and query without `token`, as a local path.
fn without_token(uri: &axum::http::Uri) -> String {
    let path = format!("/{}", uri.path().trim_start_matches('/'));
    let rest: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| k != "token")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    if rest.is_empty() {
        path
    } else {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(rest)
            .finish();
        format!("{path}?{query}")
    }
}

/// Access control, then the security headers on whatever is answered.
async fn guard(State(access): State<Arc<Access>>, req: Request<Body>, next: Next) -> Response {
    let mut response = admit(&access, req, next).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn admit(access: &Access, req: Request<Body>, next: Next) -> Response {
    if access.loopback && !loopback_host(req.headers()) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "this console answers only to localhost or 127.0.0.1\n",
        );
    }
    if cross_site_subrequest(req.headers()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "this console does not answer requests made by other sites' pages\n",
        );
    }
    let Some(token) = &access.token else {
        return next.run(req).await;
    };
    let from_query = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    });
    if from_query.as_deref().is_some_and(|t| same(t, token)) {
        // The token leaves the address bar (and the history) at once.
        let mut r = axum::response::Redirect::to(&without_token(req.uri())).into_response();
        let expires = chrono::Utc::now().timestamp() + SESSION.as_secs() as i64;
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            access.session(expires),
            SESSION.as_secs()
        )) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        return r;
    }
    let now = chrono::Utc::now().timestamp();
    if bearer(req.headers()).is_some_and(|t| same(t, token))
        || cookie_token(req.headers()).is_some_and(|s| access.valid_session(s, now))
    {
        return next.run(req).await;
    }
    refuse(
        StatusCode::UNAUTHORIZED,
        "a token is needed: open the console's URL with ?token=… once, or send Authorization: Bearer …\n",
    )
}

/// Serves the console on `listener` until the process ends.
pub(crate) async fn serve(
    wiring: Wiring,
    listener: tokio::net::TcpListener,
    token: Option<String>,
    env_label: String,
) -> std::io::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    let console = Arc::new(Console::new(wiring, env_label));
    let access = Access::new(token, addr.ip().is_loopback());
    axum::serve(listener, router(console, access)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_loopback_hosts_pass() {
        for ok in [
            "127.0.0.1:8700",
            "localhost:8700",
            "[::1]:8700",
            "LOCALHOST",
        ] {
            assert!(loopback_host(&headers(&[(header::HOST, ok)])), "{ok}");
        }
        for bad in [
            "evil.example:8700",
            "10.0.0.1:8700",
            "127.0.0.1.evil.example",
        ] {
            assert!(!loopback_host(&headers(&[(header::HOST, bad)])), "{bad}");
        }
        assert!(!loopback_host(&HeaderMap::new()));
    }

    #[test]
    fn other_sites_pages_cannot_make_requests_but_may_link_here() {
        let h = |site: &str, mode: &str, dest: &str| {
            headers(&[
                (header::HeaderName::from_static("sec-fetch-site"), site),
                (header::HeaderName::from_static("sec-fetch-mode"), mode),
                (header::HeaderName::from_static("sec-fetch-dest"), dest),
            ])
        };
        assert!(cross_site_subrequest(&h("cross-site", "no-cors", "image")));
        assert!(cross_site_subrequest(&h("same-site", "cors", "empty")));
        assert!(cross_site_subrequest(&h(
            "cross-site",
            "navigate",
            "iframe"
        )));
        assert!(!cross_site_subrequest(&h(
            "cross-site",
            "navigate",
            "document"
        )));
        assert!(!cross_site_subrequest(&h("same-origin", "cors", "empty")));
        assert!(!cross_site_subrequest(&HeaderMap::new()));
    }

    #[test]
    fn the_token_leaves_the_address_and_nothing_else_does() {
        let uri = |s: &str| s.parse::<axum::http::Uri>().unwrap();
        assert_eq!(
            without_token(&uri("/logs?handler=2&token=abc&outcome=failed")),
            "/logs?handler=2&outcome=failed"
        );
        assert_eq!(
            without_token(&uri("//evil.example/x?token=abc")),
            "/evil.example/x"
        );
        assert_eq!(without_token(&uri("/?token=abc")), "/");
        assert!(token_is_plain("a-Z_0.9~") && !token_is_plain("a;b") && !token_is_plain(""));
    }

    #[test]
    fn a_session_is_signed_by_this_console_and_ends() {
        let access = Access::new(Some("s3cret".into()), true);
        let now = 1_700_000_000;
        let later = now + 3600;
        let session = access.session(later);
        assert!(
            !session.contains("s3cret"),
            "the cookie never holds the token"
        );
        assert!(access.valid_session(&session, now));
        assert!(!access.valid_session(&session, later), "ended");
        let other = Access::new(Some("s3cret".into()), true);
        assert!(
            !other.valid_session(&session, now),
            "another console's session"
        );
        // An expiry pushed out by hand breaks the signature; one beyond the
        // longest session is refused even if signed.
        let forged = session.replacen(&later.to_string(), &(later + 1).to_string(), 1);
        assert!(!access.valid_session(&forged, now));
        let too_long = access.session(now + SESSION.as_secs() as i64 + 60);
        assert!(!access.valid_session(&too_long, now));
        for junk in ["", ".", "x.y", "s3cret", "99999999999999999999.00"] {
            assert!(!access.valid_session(junk, now), "{junk}");
        }
    }

    #[test]
    fn the_token_is_read_from_the_cookie_or_the_bearer_header() {
        let h = headers(&[(header::COOKIE, "a=1; hooks_console_session=s3cret; b=2")]);
        assert_eq!(cookie_token(&h), Some("s3cret"));
        let h = headers(&[(header::AUTHORIZATION, "Bearer s3cret")]);
        assert_eq!(bearer(&h), Some("s3cret"));
        assert!(same("s3cret", "s3cret") && !same("s3cret", "s3cre") && !same("a", "b"));
    }
}
