//! Turning a validated `handlers.toml` into the next config revision: the
//! plan against the live revision, the id-reuse check, and publishing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::config::plan::{self, Plan};
use crate::config::{Config, HandlerId};
use crate::store::{
    ConfigStore, Head, RetiredHandler, Revision, RevisionInfo, StoreError, content_hash,
};

/// Where a config comes from, recorded with its revision.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file name, as given.
    pub file: String,
    /// The file's text, comments included.
    pub text: String,
    /// The git commit, `-dirty` when the file had uncommitted changes.
    pub git_commit: Option<String>,
    /// Who synced.
    pub synced_by: String,
}

/// A handler id of the file that belonged to a deleted handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReusedId {
    pub id: HandlerId,
    pub name: String,
    pub old_name: String,
    pub retired_in: u64,
    /// The lowest id never used.
    pub next_free: HandlerId,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}", reused_message(.0))]
    IdReused(Vec<ReusedId>),
}

fn reused_message(ids: &[ReusedId]) -> String {
    ids.iter()
        .map(|r| {
            format!(
                "handler id {} (\"{}\") belonged to \"{}\", deleted in revision {}; ids are never reused: give it a new id, e.g. {}",
                r.id, r.name, r.old_name, r.retired_in, r.next_free
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A sync, planned: what is live, what changes, and the revision to publish
/// (`None` when the file matches the live revision).
#[derive(Debug, Clone)]
pub struct Prepared {
    pub live: Option<RevisionInfo>,
    pub plan: Plan,
    pub next: Option<Revision>,
}

impl Prepared {
    /// The live revision this plan was made against.
    pub fn against(&self) -> Option<u64> {
        self.live.as_ref().map(|i| i.revision)
    }
}

/// Plans `config` against `live`. Refuses ids that belonged to deleted handlers.
pub fn prepare(
    live: Option<&Revision>,
    mut config: Config,
    source: Source,
    now: DateTime<Utc>,
) -> Result<Prepared, SyncError> {
    // The order of handlers in the file means nothing (priority and id order
    // them); a reordered file is the same config, with the same hash.
    config.handlers.sort_by_key(|h| h.id);
    let retired_before: BTreeMap<HandlerId, RetiredHandler> =
        live.map(|r| r.retired.clone()).unwrap_or_default();
    let reused = reused_ids(live, &config, &retired_before);
    if !reused.is_empty() {
        return Err(SyncError::IdReused(reused));
    }
    let plan = plan::diff(live.map(|r| &r.config), &config);
    let hash = content_hash(&config);
    let info = live.map(|r| r.info.clone());
    if live.is_some_and(|r| r.info.content_hash == hash) {
        return Ok(Prepared {
            live: info,
            plan,
            next: None,
        });
    }
    let number = live.map_or(1, |r| r.info.revision + 1);
    let retired = retire_dropped(live, &config, retired_before, number);
    let next = Revision {
        info: RevisionInfo {
            revision: number,
            content_hash: hash,
            git_commit: source.git_commit,
            synced_by: source.synced_by,
            synced_at: now,
            file: source.file,
            handlers: u32::try_from(config.handlers.len()).unwrap_or(u32::MAX),
            summary: plan.summary(),
        },
        config,
        retired,
        source: source.text,
    };
    Ok(Prepared {
        live: info,
        plan,
        next: Some(next),
    })
}

/// The handlers of `config` whose id belonged to a deleted handler (ids are
/// never reused), each with the next free id, to suggest instead.
fn reused_ids(
    live: Option<&Revision>,
    config: &Config,
    retired_before: &BTreeMap<HandlerId, RetiredHandler>,
) -> Vec<ReusedId> {
    let highest = config
        .handlers
        .iter()
        .map(|h| h.id)
        .chain(retired_before.keys().copied())
        .chain(
            live.into_iter()
                .flat_map(|r| r.config.handlers.iter().map(|h| h.id)),
        )
        .max()
        .unwrap_or(0);
    config
        .handlers
        .iter()
        .filter_map(|h| {
            retired_before.get(&h.id).map(|old| ReusedId {
                id: h.id,
                name: h.name.clone(),
                old_name: old.name.clone(),
                retired_in: old.retired_in,
                next_free: highest.saturating_add(1),
            })
        })
        .collect()
}

/// The handlers retired so far, and the live handlers `config` no longer
/// has, retired in revision `number`: their ids stay taken.
fn retire_dropped(
    live: Option<&Revision>,
    config: &Config,
    mut retired: BTreeMap<HandlerId, RetiredHandler>,
    number: u64,
) -> BTreeMap<HandlerId, RetiredHandler> {
    if let Some(r) = live {
        for h in &r.config.handlers {
            if !config.handlers.iter().any(|n| n.id == h.id) {
                retired.insert(
                    h.id,
                    RetiredHandler {
                        name: h.name.clone(),
                        retired_in: number,
                    },
                );
            }
        }
    }
    retired
}

/// Reads the live revision and plans `config` against it.
pub async fn plan_against<S: ConfigStore>(
    store: &S,
    config: Config,
    source: Source,
) -> Result<Prepared, SyncError> {
    let live = store.live().await?;
    prepare(live.as_ref(), config, source, Utc::now())
}

/// Publishes a prepared sync; refused if the live revision moved since it was planned.
pub async fn apply<S: ConfigStore>(
    store: &S,
    prepared: &Prepared,
) -> Result<Option<Head>, SyncError> {
    match &prepared.next {
        None => Ok(None),
        Some(next) => Ok(Some(store.publish(next, prepared.against()).await?)),
    }
}

/// Plans a rollback: a new revision whose content is revision `number`'s,
/// published by [`apply`] through the same guarded switch as a sync. Its
/// source (the file's text and git commit) is that revision's, so `hooks
/// plan` afterwards shows how git differs from what is live.
///
/// Handlers that revision had and a later one deleted come back under their
/// own ids: ids are never reused, so an id in an earlier revision is the
/// same handler (perhaps renamed before it was deleted), and the rollback
/// restores it.
pub async fn plan_rollback<S: ConfigStore>(
    store: &S,
    number: u64,
    synced_by: String,
) -> Result<Prepared, SyncError> {
    let target = store.revision(number).await?.ok_or_else(|| {
        StoreError::Refused(format!(
            "there is no revision {number}; `hooks history` lists them"
        ))
    })?;
    let mut live = store.live().await?;
    if let Some(live) = &mut live {
        for h in &target.config.handlers {
            live.retired.remove(&h.id);
        }
    }
    let source = Source {
        file: format!("rollback to revision {number} ({})", target.info.file),
        text: target.source,
        git_commit: target.info.git_commit,
        synced_by,
    };
    prepare(live.as_ref(), target.config, source, Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ParseOptions;
    use crate::store::memory::MemoryConfigStore;

    fn cfg(handlers: &[(u32, &str)]) -> Config {
        let mut src = String::from("version = 1\n");
        for (id, name) in handlers {
            src.push_str(&format!(
                "[[handler]]\nid = {id}\nname = \"{name}\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"https://x.example.com\" }}\n"
            ));
        }
        Config::parse("t.toml", &src, &ParseOptions::default()).unwrap()
    }

    fn source() -> Source {
        Source {
            file: "handlers.toml".into(),
            text: "# text".into(),
            git_commit: Some("abc123".into()),
            synced_by: "tester".into(),
        }
    }

    async fn sync(store: &MemoryConfigStore, c: Config) -> Result<Prepared, SyncError> {
        let p = plan_against(store, c, source()).await?;
        apply(store, &p).await?;
        Ok(p)
    }

    #[tokio::test]
    async fn revisions_count_up_and_an_unchanged_file_is_a_no_op() {
        let store = MemoryConfigStore::new();
        let p = sync(&store, cfg(&[(1, "a")])).await.unwrap();
        assert_eq!(p.next.as_ref().unwrap().info.revision, 1);
        let p = sync(&store, cfg(&[(1, "a")])).await.unwrap();
        assert!(p.next.is_none() && p.plan.is_empty());
        let p = sync(&store, cfg(&[(1, "a"), (2, "b")])).await.unwrap();
        assert_eq!(p.next.as_ref().unwrap().info.revision, 2);
        assert_eq!(p.next.unwrap().info.summary, "+1 ~0 -0");
        assert_eq!(store.history(10).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_rollback_republishes_an_old_revision_and_brings_back_deleted_handlers() {
        let store = MemoryConfigStore::new();
        sync(&store, cfg(&[(1, "a"), (2, "b")])).await.unwrap();
        sync(&store, cfg(&[(1, "a")])).await.unwrap();
        sync(&store, cfg(&[(1, "a"), (3, "c")])).await.unwrap();
        let p = plan_rollback(&store, 1, "oncall".into()).await.unwrap();
        assert_eq!(p.against(), Some(3));
        let next = p.next.clone().unwrap();
        assert_eq!(next.info.revision, 4);
        assert_eq!(next.info.synced_by, "oncall");
        assert_eq!(next.info.summary, "+1 ~0 -1");
        assert!(next.info.file.starts_with("rollback to revision 1"));
        assert!(!next.retired.contains_key(&2), "handler 2 is back");
        assert!(next.retired.contains_key(&3), "handler 3 is retired now");
        apply(&store, &p).await.unwrap();
        let live = store.live().await.unwrap().unwrap();
        assert_eq!(
            live.info.content_hash,
            store.revision(1).await.unwrap().unwrap().info.content_hash
        );
        // Rolling back to what is live changes nothing.
        let again = plan_rollback(&store, 4, "oncall".into()).await.unwrap();
        assert!(again.next.is_none());
        assert!(matches!(
            plan_rollback(&store, 9, "oncall".into()).await,
            Err(SyncError::Store(StoreError::Refused(_)))
        ));
    }

    #[tokio::test]
    async fn a_rollback_planned_against_a_moved_head_is_refused() {
        let store = MemoryConfigStore::new();
        sync(&store, cfg(&[(1, "a")])).await.unwrap();
        sync(&store, cfg(&[(1, "a"), (2, "b")])).await.unwrap();
        let p = plan_rollback(&store, 1, "oncall".into()).await.unwrap();
        sync(&store, cfg(&[(1, "a"), (2, "b"), (3, "c")]))
            .await
            .unwrap();
        assert!(matches!(
            apply(&store, &p).await,
            Err(SyncError::Store(StoreError::Conflict { .. }))
        ));
    }

    #[tokio::test]
    async fn reordering_the_file_changes_nothing() {
        let store = MemoryConfigStore::new();
        sync(&store, cfg(&[(1, "a"), (2, "b")])).await.unwrap();
        let p = sync(&store, cfg(&[(2, "b"), (1, "a")])).await.unwrap();
        assert!(p.next.is_none() && p.plan.is_empty());
    }

    #[tokio::test]
    async fn a_deleted_handlers_id_is_never_reused() {
        let store = MemoryConfigStore::new();
        sync(&store, cfg(&[(1, "a"), (5, "Legacy CRM")]))
            .await
            .unwrap();
        sync(&store, cfg(&[(1, "a")])).await.unwrap();
        sync(&store, cfg(&[(1, "a"), (2, "b")])).await.unwrap();
        let err = sync(&store, cfg(&[(1, "a"), (2, "b"), (5, "New CRM")]))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "handler id 5 (\"New CRM\") belonged to \"Legacy CRM\", deleted in revision 2; ids are never reused: give it a new id, e.g. 6"
        );
    }

    #[tokio::test]
    async fn a_sync_planned_against_an_old_revision_is_refused() {
        let store = MemoryConfigStore::new();
        sync(&store, cfg(&[(1, "a")])).await.unwrap();
        let slow = plan_against(&store, cfg(&[(1, "a"), (2, "b")]), source())
            .await
            .unwrap();
        sync(&store, cfg(&[(1, "a"), (3, "c")])).await.unwrap();
        let err = apply(&store, &slow).await.unwrap_err();
        assert!(
            matches!(
                err,
                SyncError::Store(StoreError::Conflict {
                    expected: Some(1),
                    actual: Some(2)
                })
            ),
            "{err}"
        );
    }
}
