//! Any other path: the error page, with 404.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use super::common::{Console, Failed, Reads, fail};

/// The page of a path that is none of the console's.
pub(crate) async fn not_found<R: Reads>(State(c): State<Arc<Console<R>>>) -> Failed {
    fail(
        &c,
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page.".into(),
    )
}
