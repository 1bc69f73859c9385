//! Each page: what it reads (through the domain's store traits, bundled as
//! [`Reads`]: the AWS adapters, or memory in the tests), and the view it
//! fills. One module a page, each reading as: parse the query,
//! read the stores, build the view; over the helpers they share, which
//! import no page:
//!
//! - [`common`]: the console's stores, the page frame, the error page;
//! - [`query`]: filters from the URL, links that keep them, the `hooks …`
//!   command of the same;
//! - [`shared`]: reads and views more than one page draws on.

mod common;
mod query;
mod shared;

mod event;
mod events;
mod handler;
mod handlers;
mod logs;
mod not_found;
mod queue;
mod revisions;
mod schemas;

pub(crate) use common::{Console, Reads};

#[cfg(test)]
mod memory_tests;
pub(crate) use event::event;
pub(crate) use events::events;
pub(crate) use handler::handler;
pub(crate) use handlers::handlers;
pub(crate) use logs::logs;
pub(crate) use not_found::not_found;
pub(crate) use queue::queue;
pub(crate) use revisions::revisions;
pub(crate) use schemas::schemas;
