//! What every page answers through: the console's stores, the page frame,
//! and the error page shown instead of a page that could not be made.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use hooks_core::store::dynamodb::DynamoConfigStore;
use hooks_core::store::events::EventStore;
use hooks_core::store::logs::LogStore;
use hooks_core::wiring::Wiring;

use crate::console::views::{Chrome, ErrorPage};

/// Shared by every request: the stores (the SDK clients inside are cheap to
/// clone and pool their connections).
#[derive(Debug)]
pub(crate) struct Console {
    pub(super) wiring: Wiring,
    pub(super) config: DynamoConfigStore,
    pub(super) logs: LogStore,
    pub(super) events: EventStore,
    env_label: String,
}

impl Console {
    pub(crate) fn new(wiring: Wiring, env_label: String) -> Console {
        Console {
            config: wiring.config_store(),
            logs: wiring.log_store(),
            events: wiring.event_store(),
            wiring,
            env_label,
        }
    }

    /// The frame of a page whose navigation entry `nav` is lit.
    pub(super) fn chrome(&self, nav: &'static str) -> Chrome {
        Chrome {
            nav,
            env: self.env_label.clone(),
            errors: Vec::new(),
        }
    }
}

/// A page that could not be shown: the error page, answered instead.
#[derive(Debug)]
pub(crate) struct Failed(Box<Response>);

impl IntoResponse for Failed {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// What a page handler answers: the page, or the error page in its place.
pub(super) type Page = Result<Response, Failed>;

/// The page of a filled template.
pub(super) fn render(t: &impl Template) -> Page {
    match t.render() {
        Ok(html) => Ok(Html(html).into_response()),
        Err(e) => Err(Failed(Box::new(
            (StatusCode::INTERNAL_SERVER_ERROR, format!("template: {e}")).into_response(),
        ))),
    }
}

/// The error page, with `status`, in the console's frame.
pub(super) fn fail(c: &Console, status: StatusCode, title: &str, message: String) -> Failed {
    let page = ErrorPage {
        chrome: c.chrome(""),
        title: title.to_owned(),
        message,
    };
    Failed(Box::new(match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => (status, e.to_string()).into_response(),
    }))
}

/// The error page of a read that a page cannot do without.
pub(super) fn store_failed(c: &Console, e: &impl std::fmt::Display) -> Failed {
    fail(
        c,
        StatusCode::BAD_GATEWAY,
        "AWS could not be read",
        e.to_string(),
    )
}
