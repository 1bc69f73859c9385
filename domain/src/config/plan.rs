//! What a sync would change: handler by handler, field by field.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::model::{Config, Handler, HandlerId, Status};
use crate::events::Event;

/// One field that differs. `None` means the field is absent on that side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// What happens to one handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum HandlerChange {
    Create {
        id: HandlerId,
        name: String,
        summary: String,
    },
    Update {
        id: HandlerId,
        name: String,
        /// Set when the status changes: enabled, shadow, disabled or archived.
        #[serde(skip_serializing_if = "Option::is_none")]
        now: Option<Status>,
        fields: Vec<FieldChange>,
        /// Both the name and the target change: probably another handler
        /// under an old id, which would mix two handlers in the execution log.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        repurposed: bool,
    },
    Delete {
        id: HandlerId,
        name: String,
    },
}

impl HandlerChange {
    pub fn id(&self) -> HandlerId {
        match self {
            HandlerChange::Create { id, .. }
            | HandlerChange::Update { id, .. }
            | HandlerChange::Delete { id, .. } => *id,
        }
    }
}

/// What happens to one event type's schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaChange {
    pub event: Event,
    /// `added`, `removed` or `changed`.
    pub action: &'static str,
    /// For a change, each rule that differs (`properties.email.format`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
}

/// The changes between the live config and a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Plan {
    /// `[defaults]`, `[schemas] strict` and the schema version.
    pub settings: Vec<FieldChange>,
    /// The event types' schemas (`[schemas]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<SchemaChange>,
    pub handlers: Vec<HandlerChange>,
}

/// The schemas that differ between `old` and `new`, by event type.
fn schema_changes(old: Option<&Config>, new: &Config) -> Vec<SchemaChange> {
    let empty = BTreeMap::new();
    let before = old.map_or(&empty, |c| &c.schemas.by_event);
    let after = &new.schemas.by_event;
    let mut events: Vec<&Event> = before.keys().chain(after.keys()).collect();
    events.sort();
    events.dedup();
    events
        .into_iter()
        .filter_map(|e| {
            let (action, fields) = match (before.get(e), after.get(e)) {
                (None, Some(_)) => ("added", Vec::new()),
                (Some(_), None) => ("removed", Vec::new()),
                (Some(a), Some(b)) if a != b => ("changed", field_changes(&leaves(a), &leaves(b))),
                _ => return None,
            };
            Some(SchemaChange {
                event: *e,
                action,
                fields,
            })
        })
        .collect()
}

fn leaves(v: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    flatten("", v, &mut out);
    out
}

/// Flattens a JSON value into `a.b.c -> compact JSON` leaves.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        leaf => {
            out.insert(prefix.to_owned(), leaf.to_string());
        }
    }
}

fn fields<T: Serialize>(v: &T) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    flatten(
        "",
        &serde_json::to_value(v).unwrap_or(Value::Null),
        &mut out,
    );
    out
}

fn field_changes(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<FieldChange> {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| FieldChange {
            field: k.clone(),
            old: old.get(k).cloned(),
            new: new.get(k).cloned(),
        })
        .collect()
}

/// One line that says what a handler is.
pub fn summary(h: &Handler) -> String {
    format!(
        "{} · {} · priority {} · {} {} · {}",
        h.phase,
        h.events_display(),
        h.priority,
        h.target.kind(),
        h.target.summary(),
        h.status
    )
}

/// The plan from `old` (the live config; `None` before the first sync) to `new`.
pub fn diff(old: Option<&Config>, new: &Config) -> Plan {
    let empty = Vec::new();
    let old_handlers = old.map(|c| &c.handlers).unwrap_or(&empty);
    let by_id: BTreeMap<HandlerId, &Handler> = old_handlers.iter().map(|h| (h.id, h)).collect();
    let new_ids: BTreeMap<HandlerId, &Handler> = new.handlers.iter().map(|h| (h.id, h)).collect();
    let mut handlers = Vec::new();
    for (id, h) in &new_ids {
        match by_id.get(id) {
            None => handlers.push(HandlerChange::Create {
                id: *id,
                name: h.name.clone(),
                summary: summary(h),
            }),
            Some(before) => {
                let changes = field_changes(&fields(before), &fields(h));
                if !changes.is_empty() {
                    handlers.push(HandlerChange::Update {
                        id: *id,
                        name: h.name.clone(),
                        now: (before.status != h.status).then_some(h.status),
                        repurposed: before.name != h.name && before.target != h.target,
                        fields: changes,
                    });
                }
            }
        }
    }
    for (id, h) in &by_id {
        if !new_ids.contains_key(id) {
            handlers.push(HandlerChange::Delete {
                id: *id,
                name: h.name.clone(),
            });
        }
    }
    handlers.sort_by_key(HandlerChange::id);
    let settings = match old {
        None => Vec::new(),
        Some(o) => {
            let mut a = fields(&o.defaults);
            let mut b = fields(&new.defaults);
            a = a
                .into_iter()
                .map(|(k, v)| (format!("defaults.{k}"), v))
                .collect();
            b = b
                .into_iter()
                .map(|(k, v)| (format!("defaults.{k}"), v))
                .collect();
            a.insert("version".into(), o.version.to_string());
            b.insert("version".into(), new.version.to_string());
            a.insert("schemas.strict".into(), o.schemas.strict.to_string());
            b.insert("schemas.strict".into(), new.schemas.strict.to_string());
            field_changes(&a, &b)
        }
    };
    Plan {
        settings,
        schemas: schema_changes(old, new),
        handlers,
    }
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.settings.is_empty() && self.schemas.is_empty() && self.handlers.is_empty()
    }

    /// `+created ~changed -deleted`.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for h in &self.handlers {
            match h {
                HandlerChange::Create { .. } => c.0 += 1,
                HandlerChange::Update { .. } => c.1 += 1,
                HandlerChange::Delete { .. } => c.2 += 1,
            }
        }
        c
    }

    pub fn summary(&self) -> String {
        let (a, u, d) = self.counts();
        let mut s = format!("+{a} ~{u} -{d}");
        if !self.settings.is_empty() {
            s.push_str(" (settings changed)");
        }
        if !self.schemas.is_empty() {
            s.push_str(&format!(" ({} schemas changed)", self.schemas.len()));
        }
        s
    }

    /// For a terminal.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        if self.is_empty() {
            out.push_str("No changes.\n");
            return out;
        }
        for f in &self.settings {
            let _ = writeln!(out, "  ~ {}: {} -> {}", f.field, show(&f.old), show(&f.new));
        }
        for c in &self.schemas {
            let sign = match c.action {
                "added" => '+',
                "removed" => '-',
                _ => '~',
            };
            let _ = writeln!(out, "  {sign} schema of {} ({})", c.event, c.action);
            for f in &c.fields {
                let _ = writeln!(
                    out,
                    "        {}: {} -> {}",
                    f.field,
                    show(&f.old),
                    show(&f.new)
                );
            }
        }
        for h in &self.handlers {
            match h {
                HandlerChange::Create { id, name, summary } => {
                    let _ = writeln!(out, "  + {id} \"{name}\" (new)\n        {summary}");
                }
                HandlerChange::Update {
                    id,
                    name,
                    now,
                    fields,
                    repurposed,
                } => {
                    let tag = now.map(|s| format!(" [now {s}]")).unwrap_or_default();
                    let _ = writeln!(out, "  ~ {id} \"{name}\"{tag}");
                    if *repurposed {
                        let _ = writeln!(
                            out,
                            "        ! name and target both change: if this is another handler, give it a new id"
                        );
                    }
                    for f in fields {
                        let _ = writeln!(
                            out,
                            "        {}: {} -> {}",
                            f.field,
                            show(&f.old),
                            show(&f.new)
                        );
                    }
                }
                HandlerChange::Delete { id, name } => {
                    let _ = writeln!(
                        out,
                        "  - {id} \"{name}\" (deleted; id {id} is retired for good)"
                    );
                }
            }
        }
        let (a, u, d) = self.counts();
        let _ = writeln!(out, "\n{a} to create, {u} to change, {d} to delete.");
        out
    }

    /// For a pull-request comment.
    pub fn render_markdown(&self, heading: &str) -> String {
        let mut out = format!("### {heading}\n\n");
        if self.is_empty() {
            out.push_str("No changes: the live config already matches this file.\n");
            return out;
        }
        let (a, u, d) = self.counts();
        let _ = writeln!(
            out,
            "**{a}** to create, **{u}** to change, **{d}** to delete.\n"
        );
        if !self.settings.is_empty() {
            out.push_str("| setting | live | file |\n|---|---|---|\n");
            for f in &self.settings {
                let _ = writeln!(out, "| `{}` | {} | {} |", f.field, md(&f.old), md(&f.new));
            }
            out.push('\n');
        }
        if !self.schemas.is_empty() {
            out.push_str("| event type | schema |\n|---|---|\n");
            for c in &self.schemas {
                let mut what = vec![c.action.to_owned()];
                what.extend(
                    c.fields
                        .iter()
                        .map(|f| format!("`{}`: {} → {}", f.field, md(&f.old), md(&f.new))),
                );
                let _ = writeln!(out, "| `{}` | {} |", c.event, what.join("<br>"));
            }
            out.push('\n');
        }
        out.push_str("| | id | handler | change |\n|---|---|---|---|\n");
        for h in &self.handlers {
            match h {
                HandlerChange::Create { id, name, summary } => {
                    let _ = writeln!(
                        out,
                        "| ➕ | {id} | {} | new: {} |",
                        escape(name),
                        escape(summary)
                    );
                }
                HandlerChange::Update {
                    id,
                    name,
                    now,
                    fields,
                    repurposed,
                } => {
                    let mut what: Vec<String> = fields
                        .iter()
                        .map(|f| format!("`{}`: {} → {}", f.field, md(&f.old), md(&f.new)))
                        .collect();
                    if let Some(s) = now {
                        what.insert(0, format!("**now {s}**"));
                    }
                    if *repurposed {
                        what.insert(0, "⚠️ name and target both change: if this is another handler, give it a new id".to_owned());
                    }
                    let _ = writeln!(
                        out,
                        "| ✏️ | {id} | {} | {} |",
                        escape(name),
                        what.join("<br>")
                    );
                }
                HandlerChange::Delete { id, name } => {
                    let _ = writeln!(
                        out,
                        "| ➖ | {id} | {} | deleted (id {id} is retired for good) |",
                        escape(name)
                    );
                }
            }
        }
        out
    }
}

fn show(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "(none)".to_owned())
}

fn escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn md(v: &Option<String>) -> String {
    match v {
        Some(s) => format!("`{}`", s.replace('|', "\\|").replace('`', "'")),
        None => "_(none)_".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ParseOptions;

    fn cfg(extra: &str) -> Config {
        let src = format!(
            "version = 1\n[[handler]]\nid = 1\nname = \"a\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"https://a.example.com\" }}\n[[handler]]\nid = 2\nname = \"b\"\nevent = \"clients.*\"\npriority = 2\nhttp = {{ url = \"https://b.example.com\" }}\n{extra}"
        );
        Config::parse("t.toml", &src, &ParseOptions::default()).unwrap()
    }

    #[test]
    fn the_same_config_plans_nothing() {
        let c = cfg("");
        assert!(diff(Some(&c), &c).is_empty());
        assert_eq!(diff(Some(&c), &c).render_text(), "No changes.\n");
    }

    #[test]
    fn creates_changes_and_deletes_are_listed_field_by_field() {
        let old = cfg(
            "[[handler]]\nid = 3\nname = \"c\"\nevent = \"import.failed\"\npriority = 1\nhttp = { url = \"https://c.example.com\" }\n",
        );
        let mut new = cfg(
            "[[handler]]\nid = 4\nname = \"d\"\nevent = \"accounts.*\"\npriority = 1\nscript = { command = [\"scripts/d.sh\"] }\n",
        );
        new.handlers[0].priority = 5;
        new.handlers[1].status = Status::Disabled;
        new.defaults.timeout = std::time::Duration::from_secs(3);
        let p = diff(Some(&old), &new);
        assert_eq!(p.counts(), (1, 2, 1));
        insta::assert_snapshot!(p.render_text());
        insta::assert_snapshot!(p.render_markdown("Plan against revision 7"));
    }

    #[test]
    fn a_first_sync_creates_everything() {
        let p = diff(None, &cfg(""));
        assert_eq!(p.counts(), (2, 0, 0));
        assert!(p.settings.is_empty());
    }
}
