//! `/schemas`: each event type of the catalogue, with the live revision's
//! JSON Schema of its data (if it has one) and an example that fits it.

use std::sync::Arc;

use axum::extract::State;
use hooks_core::config::schemas::example;
use hooks_core::events::Event;
use hooks_core::store::ConfigStore;

use super::common::{Console, Page, Reads, render, store_failed};
use crate::console::views::{SchemaRow, SchemasPage};

/// The `/schemas` page.
pub(crate) async fn schemas<R: Reads>(State(c): State<Arc<Console<R>>>) -> Page {
    let chrome = c.chrome("schemas");
    let live = c.config.live().await.map_err(|e| store_failed(&c, &e))?;
    let config = live.as_ref().map(|r| &r.config);
    let schemas = config.map(|c| &c.schemas);
    let rows = Event::ALL
        .iter()
        .map(|e| {
            let schema = schemas.and_then(|s| s.by_event.get(e));
            SchemaRow {
                event: e.as_str().to_owned(),
                description: e.description().to_owned(),
                schema: schema.map(pretty).unwrap_or_default(),
                example: schema.map(|s| pretty(&example(s))).unwrap_or_default(),
            }
        })
        .collect();
    render(&SchemasPage {
        chrome,
        revision: live.as_ref().map_or(0, |r| r.info.revision),
        dir: schemas.map(|s| s.dir.clone()).unwrap_or_default(),
        strict: schemas.is_some_and(|s| s.strict),
        rows,
    })
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}
