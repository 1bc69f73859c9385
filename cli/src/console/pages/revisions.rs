//! `/revisions`: the synced revisions, newest first, and what one of them
//! (the live one unless another is chosen) changed from the one before.

use std::sync::Arc;

use axum::extract::{Query, State};
use hooks_core::config::plan::{FieldChange, HandlerChange, diff};
use hooks_core::store::{ConfigStore, Revision, RevisionInfo, short_hash};

use super::common::{Console, Page, Reads, render, store_failed};
use super::query::parse_opt;
use crate::console::views::{ChangeView, PlanItem, RevisionRow, RevisionsPage, time};

/// How many revisions the page lists.
const HISTORY: usize = 200;

/// The page's query: the revision whose changes are shown.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct RevisionFilter {
    rev: String,
}

/// The `/revisions` page.
pub(crate) async fn revisions<R: Reads>(
    State(c): State<Arc<Console<R>>>,
    Query(f): Query<RevisionFilter>,
) -> Page {
    let mut chrome = c.chrome("revisions");
    let head = c.config.head().await.map_err(|e| store_failed(&c, &e))?;
    let live = head.as_ref().map(|h| h.revision);
    let history = c
        .config
        .history(HISTORY)
        .await
        .map_err(|e| store_failed(&c, &e))?;
    let selected = parse_opt::<u64>(&f.rev, "revision", &mut chrome.errors)
        .or(live)
        .unwrap_or(0);
    let changes = if selected > 0 {
        changes_in(&c, selected, &mut chrome.errors).await
    } else {
        Vec::new()
    };
    render(&RevisionsPage {
        chrome,
        rows: history.iter().map(|r| row(r, live)).collect(),
        selected,
        changes,
        rollback: if selected > 0 && Some(selected) != live {
            format!("hooks rollback {selected}")
        } else {
            String::new()
        },
    })
}

/// What revision `n` changed from the one before (from nothing, for the
/// first); when it cannot be read, nothing, with a note in `errors`.
async fn changes_in<R: Reads>(c: &Console<R>, n: u64, errors: &mut Vec<String>) -> Vec<PlanItem> {
    match c.config.revision(n).await {
        Ok(Some(new)) => {
            let old = if n > 1 {
                c.config.revision(n - 1).await.ok().flatten()
            } else {
                None
            };
            plan_items(old.as_ref(), &new)
        }
        Ok(None) => {
            errors.push(format!("There is no revision {n}."));
            Vec::new()
        }
        Err(e) => {
            errors.push(format!("Revision {n} could not be read: {e}"));
            Vec::new()
        }
    }
}

/// A revision, as a row of the list; `live` is the live one's number.
fn row(r: &RevisionInfo, live: Option<u64>) -> RevisionRow {
    RevisionRow {
        number: r.revision,
        when: time(&r.synced_at),
        who: r.synced_by.clone(),
        commit: r
            .git_commit
            .as_deref()
            .map_or("-".into(), |g| short_hash(g).to_owned()),
        hash: short_hash(&r.content_hash).to_owned(),
        file: r.file.clone(),
        handlers: r.handlers,
        summary: r.summary.clone(),
        live: Some(r.revision) == live,
    }
}

/// The changes from `old` to `new`, as `hooks plan` shows them: the
/// settings first, then each handler created, changed or deleted.
fn plan_items(old: Option<&Revision>, new: &Revision) -> Vec<PlanItem> {
    let plan = diff(old.map(|r| &r.config), &new.config);
    let mut items: Vec<PlanItem> = Vec::new();
    if !plan.settings.is_empty() {
        items.push(PlanItem {
            kind: "update",
            sign: "~",
            title: "settings ([defaults], version)".into(),
            fields: plan.settings.iter().map(field).collect(),
        });
    }
    items.extend(plan.handlers.iter().map(handler_item));
    items
}

/// A handler created, changed or deleted, as an item of the changes.
fn handler_item(h: &HandlerChange) -> PlanItem {
    match h {
        HandlerChange::Create { id, name, summary } => PlanItem {
            kind: "create",
            sign: "+",
            title: format!("{id} \"{name}\" created: {summary}"),
            fields: Vec::new(),
        },
        HandlerChange::Update {
            id,
            name,
            now,
            fields,
            ..
        } => PlanItem {
            kind: "update",
            sign: "~",
            title: format!(
                "{id} \"{name}\" changed{}",
                now.map(|s| format!(" (now {s})")).unwrap_or_default()
            ),
            fields: fields.iter().map(field).collect(),
        },
        HandlerChange::Delete { id, name } => PlanItem {
            kind: "delete",
            sign: "-",
            title: format!("{id} \"{name}\" deleted"),
            fields: Vec::new(),
        },
    }
}

/// A field's change, before and after (`(absent)` where it was not set).
fn field(f: &FieldChange) -> ChangeView {
    ChangeView {
        path: f.field.clone(),
        before: f.old.clone().unwrap_or_else(|| "(absent)".into()),
        after: f.new.clone().unwrap_or_else(|| "(absent)".into()),
    }
}
