//! `[schemas]`: the folder of the event types' JSON Schemas, read and each
//! schema checked when the file is (see [`crate::config::schemas`]).

use std::collections::BTreeMap;
use std::path::{Component, Path};

use serde_json::Value;
use toml::de::DeValue;

use super::read::{Cx, Val, type_name};
use crate::config::diagnostics::Diag;
use crate::config::schemas::{MAX_SCHEMA_BYTES, SchemaError, Schemas, compile, revision_bounds};
use crate::events::Event;

/// The keys of `[schemas]`.
const SCHEMAS_KEYS: &[&str] = &["dir", "strict"];
/// The most schema files read (one per event type, and a few others).
const MAX_FILES: usize = 64;

impl Cx<'_> {
    /// `[schemas]`: `dir` (the folder of `<event>.json` files, relative to
    /// the bundle) and `strict`.
    pub(super) fn schemas(&mut self, v: &Val<'_>) -> Option<Schemas> {
        let t = self.table(
            "schemas",
            v,
            "write `[schemas]` followed by `dir = \"schemas\"`",
        )?;
        self.unknown_keys(t, SCHEMAS_KEYS, "[schemas]");
        let strict = match t.get("strict") {
            None => false,
            Some(sv) => match sv.get_ref() {
                DeValue::Boolean(b) => *b,
                other => {
                    self.push(
                        Diag::new(sv.span(), "`strict` must be true or false")
                            .label(format!("this is {}", type_name(other)))
                            .help("`strict = true` refuses events of a type without a schema"),
                    );
                    return None;
                }
            },
        };
        let Some(dv) = t.get("dir") else {
            self.push(
                Diag::new(v.span(), "`[schemas]` is missing `dir`")
                    .label("no folder")
                    .help("add `dir = \"schemas\"`: a folder of `<event>.json` files, e.g. `schemas/clients.create.json`"),
            );
            return None;
        };
        let dir = self.string("dir", dv)?;
        let p = Path::new(dir);
        let inside = p.is_relative()
            && !dir.is_empty()
            && p.components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside {
            self.push(
                Diag::new(dv.span(), format!("`{dir}` is not a folder of the bundle"))
                    .label("not a relative path inside the bundle")
                    .help("write the folder relative to handlers.toml, e.g. `dir = \"schemas\"`"),
            );
            return None;
        }
        let Some(root) = self.scripts_dir else {
            self.push(
                Diag::new(dv.span(), "the schemas cannot be read here")
                    .label("no bundle folder")
                    .help(
                        "the schemas are read from the folder of handlers.toml (or --scripts-dir)",
                    ),
            );
            return None;
        };
        let by_event = self.schema_files(dv, root, dir)?;
        Some(Schemas {
            dir: dir.to_owned(),
            strict,
            by_event,
        })
    }

    /// Every `<event>.json` of `root/dir`, each a JSON Schema; a file named
    /// after no event type, unreadable, too large, not JSON or not a schema
    /// is reported against `dir`.
    fn schema_files(
        &mut self,
        dv: &Val<'_>,
        root: &Path,
        dir: &str,
    ) -> Option<BTreeMap<Event, Value>> {
        let folder = root.join(dir);
        let escapes = match (std::fs::canonicalize(&folder), std::fs::canonicalize(root)) {
            (Ok(real), Ok(r)) => !real.starts_with(r),
            _ => false,
        };
        let entries = match std::fs::read_dir(&folder) {
            _ if escapes => Err("leads outside the bundle (through a link)".to_owned()),
            Ok(e) => Ok(e),
            Err(e) => Err(format!("cannot be read: {e}")),
        };
        let entries = match entries {
            Ok(e) => e,
            Err(why) => {
                self.push(
                    Diag::new(dv.span(), format!("schema folder `{dir}` {why}"))
                        .label("no schemas here")
                        .help(format!(
                            "create {} with one `<event>.json` per event type",
                            folder.display()
                        )),
                );
                return None;
            }
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        let mut by_event = BTreeMap::new();
        let mut ok = true;
        if names.len() > MAX_FILES {
            self.schema_problem(
                dv,
                dir,
                "",
                &format!(
                    "holds {} JSON files; at most {MAX_FILES} are read",
                    names.len()
                ),
            );
            return None;
        }
        for name in names {
            let stem = name.trim_end_matches(".json");
            let Ok(event) = stem.parse::<Event>() else {
                self.schema_problem(dv, dir, &name, "is named after no event type (write `<event>.json`, e.g. `clients.create.json`)");
                ok = false;
                continue;
            };
            match read_schema(&folder.join(&name)) {
                Ok(doc) => {
                    by_event.insert(event, doc);
                }
                Err(why) => {
                    self.schema_problem(dv, dir, &name, &why.message);
                    ok = false;
                }
            }
        }
        if ok && let Err(e) = revision_bounds(&by_event) {
            self.schema_problem(dv, dir, "", &e.message);
            return None;
        }
        ok.then_some(by_event)
    }

    fn schema_problem(&mut self, dv: &Val<'_>, dir: &str, file: &str, why: &str) {
        let what = if file.is_empty() {
            dir.to_owned()
        } else {
            format!("{dir}/{file}")
        };
        self.push(
            Diag::new(dv.span(), format!("schema {what} {why}"))
                .label("in this folder")
                .help("each file is a JSON Schema (draft 2020-12) of one event type's `data`, named `<event>.json`"),
        );
    }
}

/// One schema file: at most [`MAX_SCHEMA_BYTES`], JSON, a usable schema.
fn read_schema(path: &Path) -> Result<Value, SchemaError> {
    let problem = |message: String| SchemaError { message };
    // Not followed: a link could lead anywhere on the machine that reads
    // the bundle, and the schema is shown in plans and on the console.
    let meta =
        std::fs::symlink_metadata(path).map_err(|e| problem(format!("cannot be read: {e}")))?;
    if meta.file_type().is_symlink() {
        return Err(problem(
            "is a link; schema files are read only from the bundle itself (copy the file here)"
                .into(),
        ));
    }
    if !meta.is_file() {
        return Err(problem("is not a file".into()));
    }
    if meta.len() > MAX_SCHEMA_BYTES as u64 {
        return Err(problem(format!("is larger than {MAX_SCHEMA_BYTES} bytes")));
    }
    let text = std::fs::read(path).map_err(|e| problem(format!("cannot be read: {e}")))?;
    let doc: Value =
        serde_json::from_slice(&text).map_err(|e| problem(format!("is not JSON: {e}")))?;
    compile(&doc)?;
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ParseOptions};
    use crate::events::Event;

    const HANDLER: &str = "[[handler]]\nid = 1\nname = \"h\"\nevent = \"clients.create\"\npriority = 1\nhttp = { url = \"https://h.example.com\" }\n";

    fn parse(dir: Option<&Path>, schemas: &str) -> Result<Config, String> {
        Config::parse(
            "handlers.toml",
            &format!("version = 1\n{schemas}\n{HANDLER}"),
            &ParseOptions { scripts_dir: dir },
        )
        .map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn the_schemas_are_read_with_the_file_and_each_problem_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("schemas");
        std::fs::create_dir(&s).unwrap();
        std::fs::write(s.join("clients.create.json"), r#"{"type": "object"}"#).unwrap();
        std::fs::write(s.join("README.md"), "not read").unwrap();
        let c = parse(
            Some(dir.path()),
            "[schemas]\ndir = \"schemas\"\nstrict = true",
        )
        .unwrap();
        assert!(c.schemas.strict);
        assert_eq!(
            c.schemas.by_event.keys().copied().collect::<Vec<_>>(),
            [Event::ClientsCreate]
        );
        // Without [schemas], nothing: the file reads as before.
        assert!(parse(Some(dir.path()), "").unwrap().schemas.is_empty());

        for (file, text, expected) in [
            ("client.create.json", "{}", "named after no event type"),
            ("clients.update.json", "{not json", "is not JSON"),
            (
                "clients.delete.json",
                r#"{"type": 5}"#,
                "not a valid JSON Schema",
            ),
            (
                "accounts.create.json",
                r#"{"$ref": "https://example.com/x.json"}"#,
                "only JSON pointers into the same schema",
            ),
            (
                "accounts.update.json",
                r##"{"properties": {"children": {"items": {"$ref": "#"}}}}"##,
                "recursive schemas are not supported",
            ),
            (
                "accounts.delete.json",
                r##"{"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/b"}]}, "b": {"properties": {"enum": {"$ref": "#/$defs/a"}}}}, "$ref": "#/$defs/a"}"##,
                "recursive schemas are not supported",
            ),
            (
                "clients.archive.json",
                r#"{"format": "date_time", "type": "string"}"#,
                "cannot be used",
            ),
        ] {
            let d = tempfile::tempdir().unwrap();
            std::fs::create_dir(d.path().join("schemas")).unwrap();
            std::fs::write(d.path().join("schemas").join(file), text).unwrap();
            let e = parse(Some(d.path()), "[schemas]\ndir = \"schemas\"").unwrap_err();
            assert!(e.contains(expected) && e.contains(file), "{file}: {e}");
        }
        for (table, expected) in [
            ("[schemas]\ndir = \"none\"", "cannot be read"),
            (
                "[schemas]\ndir = \"../schemas\"",
                "is not a folder of the bundle",
            ),
            ("[schemas]\ndir = \"/etc\"", "is not a folder of the bundle"),
            ("[schemas]\nstrict = true", "missing `dir`"),
            (
                "[schemas]\ndir = \"schemas\"\nstrict = \"yes\"",
                "`strict` must be true or false",
            ),
            (
                "[schemas]\ndir = \"schemas\"\nformat = 1",
                "unknown key `format`",
            ),
        ] {
            let e = parse(Some(dir.path()), table).unwrap_err();
            assert!(e.contains(expected), "{table}: {e}");
        }
        // A link is not followed, wherever it leads.
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("schemas")).unwrap();
        std::fs::write(d.path().join("elsewhere.json"), r#"{"type": "object"}"#).unwrap();
        std::os::unix::fs::symlink(
            d.path().join("elsewhere.json"),
            d.path().join("schemas").join("clients.create.json"),
        )
        .unwrap();
        let e = parse(Some(d.path()), "[schemas]\ndir = \"schemas\"").unwrap_err();
        assert!(e.contains("is a link"), "{e}");
        // Text alone (no folder): the schemas cannot be read, and that is said.
        let e = parse(None, "[schemas]\ndir = \"schemas\"").unwrap_err();
        assert!(e.contains("cannot be read here"), "{e}");
    }

    #[test]
    fn a_revision_keeps_its_schemas_and_one_without_reads_as_before() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("schemas")).unwrap();
        std::fs::write(
            dir.path().join("schemas/clients.create.json"),
            r#"{"type": "object", "required": ["client_id"]}"#,
        )
        .unwrap();
        let c = parse(Some(dir.path()), "[schemas]\ndir = \"schemas\"").unwrap();
        let json = serde_json::to_string(&c).unwrap();
        let back: Config = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let plain = parse(None, "").unwrap();
        let json = serde_json::to_string(&plain).unwrap();
        assert!(!json.contains("schemas"), "{json}");
    }

    #[test]
    fn a_plan_shows_each_schema_added_removed_or_changed_rule_by_rule() {
        let write = |files: &[(&str, &str)]| {
            let d = tempfile::tempdir().unwrap();
            std::fs::create_dir(d.path().join("schemas")).unwrap();
            for (f, t) in files {
                std::fs::write(d.path().join("schemas").join(f), t).unwrap();
            }
            d
        };
        let old = write(&[
            (
                "clients.create.json",
                r#"{"type": "object", "required": ["client_id"]}"#,
            ),
            ("accounts.create.json", r#"{"type": "object"}"#),
        ]);
        let new = write(&[
            (
                "clients.create.json",
                r#"{"type": "object", "required": ["client_id", "email"]}"#,
            ),
            ("import.failed.json", r#"{"type": "object"}"#),
        ]);
        let a = parse(Some(old.path()), "[schemas]\ndir = \"schemas\"").unwrap();
        let b = parse(
            Some(new.path()),
            "[schemas]\ndir = \"schemas\"\nstrict = true",
        )
        .unwrap();
        let plan = crate::config::plan::diff(Some(&a), &b);
        let text = plan.render_text();
        assert!(
            text.contains("- schema of accounts.create (removed)"),
            "{text}"
        );
        assert!(text.contains("+ schema of import.failed (added)"), "{text}");
        assert!(
            text.contains("~ schema of clients.create (changed)"),
            "{text}"
        );
        assert!(
            text.contains(r#"required: ["client_id"] -> ["client_id","email"]"#),
            "{text}"
        );
        assert!(text.contains("schemas.strict: false -> true"), "{text}");
        assert!(
            plan.render_markdown("plan")
                .contains("| `clients.create` | changed")
        );
        assert!(crate::config::plan::diff(Some(&b), &b).is_empty());
    }

    #[test]
    fn a_condition_reads_only_fields_its_events_schemas_describe_with_their_types() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("schemas")).unwrap();
        std::fs::write(
            dir.path().join("schemas/clients.create.json"),
            r#"{"type": "object", "properties": {"client_id": {"type": "integer"}, "tariff": {"type": "string"}, "custom_fields": {"type": "object"}}}"#,
        )
        .unwrap();
        let with_when = |event: &str, when: &str| {
            Config::parse(
                "handlers.toml",
                &format!(
                    "version = 1\n[schemas]\ndir = \"schemas\"\n[[handler]]\nid = 1\nname = \"h\"\nevent = \"{event}\"\npriority = 1\nwhen = '{when}'\nhttp = {{ url = \"https://h.example.com\" }}\n"
                ),
                &ParseOptions {
                    scripts_dir: Some(dir.path()),
                },
            )
            .map_err(|e| e.render(false))
        };
        assert!(
            with_when(
                "clients.*",
                r#"data.client_id > 3 && data.tariff in ["pro"]"#
            )
            .is_ok()
        );
        // Below a field the schema does not describe further: not checked.
        assert!(with_when("clients.create", r#"data.custom_fields.segment == "x""#).is_ok());
        // A type without a schema: nothing to check against.
        assert!(with_when("accounts.create", r#"data.tarif == "pro""#).is_ok());
        let e = with_when("clients.*", r#"data.tarif == "pro""#).unwrap_err();
        assert!(e.contains("`data.tarif` is not in the schema"), "{e}");
        assert!(e.contains("client_id, custom_fields, tariff"), "{e}");
        assert!(
            e.contains("handlers.toml:9:13"),
            "the place of `data.tarif`: {e}"
        );
        let e = with_when("clients.create", r#"data.client_id == "42""#).unwrap_err();
        assert!(
            e.contains("`data.client_id` is integer by the schema, but is compared with a string"),
            "{e}"
        );
    }
}
