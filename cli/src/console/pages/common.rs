//! What every page answers through: the console's reads (the domain's
//! store traits, so that a page runs on the AWS adapters or in memory), the
//! page frame, and the error page shown instead of a page that could not
//! be made.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use hooks_core::queue::QueueCounts;
use hooks_core::store::dynamodb::DynamoConfigStore;
use hooks_core::store::events::EventStore;
use hooks_core::store::logs::LogStore;
use hooks_core::store::{ConfigStore, EventLedger, Listings, QueueDepth, QueueError};
use hooks_core::wiring::Wiring;

use crate::console::views::{Chrome, ErrorPage};

/// What the pages read, each through a domain trait: the config and its
/// revisions, the events' records, the execution log and the list of
/// events, the queue's counts.
pub(crate) trait Reads: Send + Sync + 'static {
    type Config: ConfigStore + 'static;
    type Events: EventLedger + 'static;
    type Listings: Listings + 'static;
    type Queue: QueueDepth + 'static;
}

/// The deployment's: DynamoDB and SQS.
#[derive(Debug)]
pub(crate) struct Aws;

impl Reads for Aws {
    type Config = DynamoConfigStore;
    type Events = EventStore;
    type Listings = LogStore;
    type Queue = WiredQueue;
}

/// The queue, looked up when its counts are asked for (a console started
/// before `hooks bootstrap` shows the queue once it exists).
#[derive(Debug)]
pub(crate) struct WiredQueue(Wiring);

impl QueueDepth for WiredQueue {
    async fn counts(&self) -> Result<[QueueCounts; 2], QueueError> {
        self.0.queue().await?.counts().await
    }
}

/// Shared by every request: the reads (the SDK clients inside are cheap to
/// clone and pool their connections).
#[derive(Debug)]
pub(crate) struct Console<R: Reads = Aws> {
    pub(super) config: R::Config,
    pub(super) events: R::Events,
    pub(super) logs: R::Listings,
    pub(super) queue: R::Queue,
    env_label: String,
}

impl Console<Aws> {
    pub(crate) fn new(wiring: Wiring, env_label: String) -> Console<Aws> {
        Console {
            config: wiring.config_store(),
            logs: wiring.log_store(),
            events: wiring.event_store(),
            queue: WiredQueue(wiring),
            env_label,
        }
    }
}

impl<R: Reads> Console<R> {
    /// Over given reads (tests, in memory).
    #[cfg(test)]
    pub(crate) fn over(
        config: R::Config,
        events: R::Events,
        logs: R::Listings,
        queue: R::Queue,
    ) -> Console<R> {
        Console {
            config,
            events,
            logs,
            queue,
            env_label: "memory".into(),
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
pub(super) fn fail<R: Reads>(
    c: &Console<R>,
    status: StatusCode,
    title: &str,
    message: String,
) -> Failed {
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
pub(super) fn store_failed<R: Reads>(c: &Console<R>, e: &impl std::fmt::Display) -> Failed {
    fail(
        c,
        StatusCode::BAD_GATEWAY,
        "AWS could not be read",
        e.to_string(),
    )
}
