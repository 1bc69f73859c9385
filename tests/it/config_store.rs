//! Config revisions in DynamoDB (the local emulator, through the real SDK).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hooks_core::config::plan::HandlerChange;
use hooks_core::config::{Config, HandlerId, ParseOptions};
use hooks_core::pause::{HandlerHealth, Health};
use hooks_core::store::dynamodb::{DynamoConfigStore, create_tables};
use hooks_core::store::live::LiveConfig;
use hooks_core::store::schema::CONFIG_TABLE;
use hooks_core::store::{ConfigStore, Head, Revision, RevisionInfo, StoreError};
use hooks_core::sync::{Prepared, Source, SyncError, apply, plan_against};
use hooks_tests::{Emulator, closed_port, unique};
use tokio::time::Instant;

async fn store(emu: &Emulator) -> DynamoConfigStore {
    let table = unique("config");
    let client = emu.dynamodb();
    create_tables(&client, emu.endpoint(), &[(CONFIG_TABLE, table.clone())])
        .await
        .unwrap();
    DynamoConfigStore::new(client, table, emu.endpoint())
}

/// `n` handlers whose URLs end in `/<tag>`; `extra` lines go into handler 1.
fn cfg(ids: impl IntoIterator<Item = u32>, tag: &str) -> Config {
    let mut src = String::from("version = 1\n");
    for id in ids {
        src.push_str(&format!(
            "[[handler]]\nid = {id}\nname = \"Handler number {id} of the provisioning chain\"\nevent = [\"clients.create\", \"clients.update\", \"accounts.*\"]\npriority = {}\nhttp = {{ url = \"https://softswitch-{id}.example.com/api/v2/provisioning/{tag}\", headers = {{ \"X-Tenant\" = \"tenant-{id}\", Authorization = {{ env = \"TOKEN_{id}\" }} }}, secret = {{ env = \"SECRET_{id}\" }}, timeout = \"5s\" }}\n",
            id % 50 + 1
        ));
    }
    match Config::parse("handlers.toml", &src, &ParseOptions::default()) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn source() -> Source {
    Source {
        file: "handlers.toml".into(),
        text: "# the file".into(),
        git_commit: Some("0123456789abcdef".into()),
        synced_by: "tests".into(),
    }
}

async fn sync(store: &DynamoConfigStore, c: Config) -> Result<Prepared, SyncError> {
    let p = plan_against(store, c, source()).await?;
    apply(store, &p).await?;
    Ok(p)
}

#[tokio::test]
async fn any_revision_is_read_back_and_a_rollback_republishes_it() {
    let emu = Emulator::start();
    let store = store(&emu).await;
    sync(&store, cfg(1..=3, "v1")).await.unwrap();
    // A large revision is stored in chunks: it is read back whole.
    sync(&store, cfg(1..=2000, "v2")).await.unwrap();
    let first = store.revision(1).await.unwrap().unwrap();
    assert_eq!(first.config, cfg(1..=3, "v1"));
    assert_eq!(first.source, "# the file");
    let second = store.revision(2).await.unwrap().unwrap();
    assert_eq!(second.config.handlers.len(), 2000);
    assert_eq!(store.revision(3).await.unwrap(), None);

    let p = hooks_core::sync::plan_rollback(&store, 1, "oncall".into())
        .await
        .unwrap();
    assert_eq!(p.against(), Some(2));
    let head = apply(&store, &p).await.unwrap().unwrap();
    assert_eq!(head.revision, 3);
    let live = store.live().await.unwrap().unwrap();
    assert_eq!(live.config, first.config);
    assert_eq!(live.info.synced_by, "oncall");
    assert_eq!(live.info.git_commit.as_deref(), Some("0123456789abcdef"));
    assert!(live.retired.contains_key(&4) && !live.retired.contains_key(&1));
}

#[tokio::test]
async fn first_sync_then_no_op_then_a_change() {
    let emu = Emulator::start();
    let store = store(&emu).await;
    assert_eq!(store.head().await.unwrap(), None);

    let first = sync(&store, cfg(1..=3, "a")).await.unwrap();
    assert_eq!(first.against(), None);
    assert_eq!(first.plan.counts(), (3, 0, 0));
    let live = store.live().await.unwrap().unwrap();
    assert_eq!(live.info.revision, 1);
    assert_eq!(live.config, cfg(1..=3, "a"));
    assert_eq!(live.info.git_commit.as_deref(), Some("0123456789abcdef"));
    assert_eq!(live.source, "# the file");

    let again = sync(&store, cfg(1..=3, "a")).await.unwrap();
    assert!(again.next.is_none(), "an unchanged file makes no revision");
    assert_eq!(store.history(10).await.unwrap().len(), 1);

    let mut changed = cfg(1..=3, "a");
    changed.handlers[1].priority = 40;
    let p = sync(&store, changed.clone()).await.unwrap();
    assert_eq!(p.against(), Some(1));
    match &p.plan.handlers[..] {
        [HandlerChange::Update { id: 2, fields, .. }] => {
            assert_eq!(fields.len(), 1);
            assert_eq!(fields[0].field, "priority");
            assert_eq!(
                (fields[0].old.as_deref(), fields[0].new.as_deref()),
                (Some("3"), Some("40"))
            );
        }
        other => panic!("unexpected plan {other:?}"),
    }
    assert_eq!(store.live().await.unwrap().unwrap().config, changed);
    let history: Vec<u64> = store
        .history(10)
        .await
        .unwrap()
        .iter()
        .map(|i| i.revision)
        .collect();
    assert_eq!(history, [2, 1], "newest first");
}

#[tokio::test]
async fn of_two_concurrent_syncs_exactly_one_wins_and_the_other_changes_nothing() {
    let emu = Emulator::start();
    let store = store(&emu).await;
    sync(&store, cfg(1..=2, "a")).await.unwrap();
    let left = plan_against(&store, cfg(1..=3, "left"), source())
        .await
        .unwrap();
    let right = plan_against(&store, cfg(1..=4, "right"), source())
        .await
        .unwrap();
    let (l, r) = tokio::join!(apply(&store, &left), apply(&store, &right));
    let (winner, loser) = match (l, r) {
        (Ok(_), Err(e)) => (cfg(1..=3, "left"), e),
        (Err(e), Ok(_)) => (cfg(1..=4, "right"), e),
        (l, r) => panic!("exactly one must win: {l:?} / {r:?}"),
    };
    assert!(
        matches!(
            loser,
            SyncError::Store(StoreError::Conflict {
                expected: Some(1),
                actual: Some(2)
            })
        ),
        "{loser}"
    );
    assert!(
        loser.to_string().contains("run `hooks plan` again"),
        "{loser}"
    );
    assert_eq!(store.live().await.unwrap().unwrap().config, winner);
    assert_eq!(store.history(10).await.unwrap().len(), 2);
    // The loser's document was removed: only the two live revisions' blobs remain.
    let blobs = emu
        .dynamodb()
        .scan()
        .table_name(store.table())
        .filter_expression("begins_with(pk, :b)")
        .expression_attribute_values(
            ":b",
            aws_sdk_dynamodb::types::AttributeValue::S("BLOB#".into()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(blobs.count(), 2);
}

#[tokio::test]
async fn the_id_of_a_deleted_handler_is_refused_naming_the_old_handler() {
    let emu = Emulator::start();
    let store = store(&emu).await;
    sync(&store, cfg([1, 5], "a")).await.unwrap();
    let p = sync(&store, cfg([1], "a")).await.unwrap();
    assert!(matches!(
        &p.plan.handlers[..],
        [HandlerChange::Delete { id: 5, .. }]
    ));
    let mut reuse = cfg([1, 5], "a");
    reuse.handlers[1].name = "Something new".into();
    let err = sync(&store, reuse).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "handler id 5 (\"Something new\") belonged to \"Handler number 5 of the provisioning chain\", deleted in revision 2; ids are never reused: give it a new id, e.g. 6"
    );
    assert_eq!(
        store.head().await.unwrap().unwrap().revision,
        2,
        "nothing was synced"
    );
}

#[tokio::test]
async fn a_thousand_handlers_are_stored_in_chunks_and_read_back_exactly() {
    let emu = Emulator::start();
    let store = store(&emu).await;
    let big = cfg(1..=1000, "a");
    sync(&store, big.clone()).await.unwrap();
    let head = store.head().await.unwrap().unwrap();
    assert!(
        head.chunks > 1,
        "over one item's limit, so chunked: {} chunk(s)",
        head.chunks
    );
    assert_eq!(store.live().await.unwrap().unwrap().config, big);
    let mut changed = big;
    changed.handlers[999].priority = 77;
    let p = sync(&store, changed.clone()).await.unwrap();
    assert_eq!(p.plan.counts(), (0, 1, 0));
    assert_eq!(store.live().await.unwrap().unwrap().config, changed);
}

#[tokio::test]
async fn a_reader_during_a_sync_sees_the_old_revision_or_the_new_one_never_a_mix() {
    let emu = Emulator::start();
    let store = store(&emu).await;
    sync(&store, cfg(1..=1000, "old")).await.unwrap();
    assert!(
        store.head().await.unwrap().unwrap().chunks > 1,
        "a document of several chunks"
    );
    let reader_store = store.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_reader = stop.clone();
    let reader = tokio::spawn(async move {
        let (mut reads, mut seen_new) = (0u32, false);
        while !stop_reader.load(Ordering::Relaxed) || !seen_new {
            let rev = reader_store.live().await.unwrap().unwrap();
            let tags: std::collections::BTreeSet<String> = rev
                .config
                .handlers
                .iter()
                .filter_map(|h| match &h.target {
                    hooks_core::config::Target::Http(t) => {
                        t.url.path_segments()?.next_back().map(str::to_owned)
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(
                tags.len(),
                1,
                "revision {} mixes {tags:?}",
                rev.info.revision
            );
            assert_eq!(rev.config.handlers.len(), 1000);
            seen_new |= tags.contains("new");
            reads += 1;
            if reads > 2000 {
                break;
            }
        }
        (reads, seen_new)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    sync(&store, cfg(1..=1000, "new")).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let (reads, seen_new) = reader.await.unwrap();
    assert!(
        seen_new,
        "the reader saw the new revision after {reads} reads"
    );
    assert!(reads >= 2);
    eprintln!("{reads} reads during the sync, none mixed");
}

/// Counts the `HEAD` reads of a store.
#[derive(Clone)]
struct Counting<S> {
    inner: S,
    heads: Arc<AtomicU64>,
}

impl<S: ConfigStore> ConfigStore for Counting<S> {
    async fn head(&self) -> Result<Option<Head>, StoreError> {
        self.heads.fetch_add(1, Ordering::Relaxed);
        self.inner.head().await
    }
    async fn head_and_health(&self) -> Result<(Option<Head>, Health), StoreError> {
        self.heads.fetch_add(1, Ordering::Relaxed);
        self.inner.head_and_health().await
    }
    async fn health_of(&self, id: HandlerId) -> Result<Option<HandlerHealth>, StoreError> {
        self.inner.health_of(id).await
    }
    async fn put_health(
        &self,
        h: &HandlerHealth,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        self.inner.put_health(h, expected).await
    }
    async fn add_failure(
        &self,
        id: HandlerId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<hooks_core::pause::Streak, StoreError> {
        self.inner.add_failure(id, now).await
    }
    async fn reset_failures(&self, id: HandlerId) -> Result<(), StoreError> {
        self.inner.reset_failures(id).await
    }
    async fn load(&self, head: &Head) -> Result<Revision, StoreError> {
        self.inner.load(head).await
    }
    async fn history(&self, limit: usize) -> Result<Vec<RevisionInfo>, StoreError> {
        self.inner.history(limit).await
    }
    async fn revision(&self, number: u64) -> Result<Option<Revision>, StoreError> {
        self.inner.revision(number).await
    }
    async fn publish(
        &self,
        revision: &Revision,
        expected: Option<u64>,
    ) -> Result<Head, StoreError> {
        self.inner.publish(revision, expected).await
    }
}

#[tokio::test]
async fn the_reader_costs_one_small_read_per_interval_and_sees_a_sync_within_it() {
    let emu = Emulator::start();
    let store = store(&emu).await;
    sync(&store, cfg(1..=3, "a")).await.unwrap();
    let heads = Arc::new(AtomicU64::new(0));
    let counting = Counting {
        inner: store.clone(),
        heads: heads.clone(),
    };
    let t0 = Instant::now();
    let offset = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let clock_offset = offset.clone();
    let clock = Arc::new(move || t0 + *clock_offset.lock().unwrap());
    let live = LiveConfig::with_clock(counting, Duration::from_secs(2), clock);
    let at = |d: Duration| *offset.lock().unwrap() = d;

    assert_eq!(live.current().await.unwrap().info.revision, 1);
    for ms in [100, 500, 1000, 1500, 1999] {
        at(Duration::from_millis(ms));
        live.current().await.unwrap();
    }
    assert_eq!(
        heads.load(Ordering::Relaxed),
        1,
        "steady state: cached between checks"
    );

    at(Duration::from_millis(2000));
    sync(&store, cfg(1..=4, "a")).await.unwrap(); // `hooks sync` returns at t = 2.0 s
    assert_eq!(
        live.current().await.unwrap().info.revision,
        2,
        "checked again at 2 s"
    );
    at(Duration::from_millis(3999));
    live.current().await.unwrap();
    assert_eq!(heads.load(Ordering::Relaxed), 2);

    // A sync just after a check is seen at the next check, max_age (2 s) later.
    sync(&store, cfg(1..=5, "a")).await.unwrap(); // at t = 3.999 s (last check at 2.0 s)
    at(Duration::from_millis(4000));
    assert_eq!(
        live.current().await.unwrap().info.revision,
        3,
        "seen within 2 s, well inside 5 s"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_and_a_missing_table_are_one_clear_line() {
    let port = closed_port().await;
    let emu = Emulator::start();
    let down = DynamoConfigStore::new(
        aws_sdk_dynamodb::Client::from_conf(
            emu.dynamodb()
                .config()
                .to_builder()
                .endpoint_url(format!("http://127.0.0.1:{port}"))
                .build(),
        ),
        "t",
        format!("http://127.0.0.1:{port}"),
    );
    let err = down.head().await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Service(hooks_core::fault::Fault::Unreachable { .. })
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "cannot reach DynamoDB at http://127.0.0.1:{port}: "
        )),
        "{text}"
    );
    assert!(text.contains("onnection refused"), "{text}");
    assert!(!text.contains('\n'));

    let missing = DynamoConfigStore::new(emu.dynamodb(), "no-such-table", emu.endpoint());
    let err = missing.live().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "table `no-such-table` does not exist: create it with `hooks bootstrap` (local) or deploy the stack, or set HOOKS_CONFIG_TABLE to the right name"
    );
}

/// The pause state under concurrent dispatch invocations, against DynamoDB:
/// conditional writes lose no failure count, and one probe is taken per due
/// time however many invocations reach the paused handler at once.
#[tokio::test]
async fn pause_state_is_exact_under_concurrent_writers_and_one_probe_wins() {
    use hooks_core::pause::write;
    let emu = Emulator::start();
    let store = store(&emu).await;
    sync(&store, cfg([1], "a")).await.unwrap();
    let now = chrono::Utc::now();
    // 12 invocations count a failure at once: an atomic ADD, no conflict.
    // (The first count creates the item; the emulator, unlike DynamoDB, can
    // let two concurrent ADDs that both create it each see 1, so it is made first.)
    let first = store.add_failure(1, now).await.unwrap();
    assert_eq!(
        (first.failures, first.since.timestamp_millis()),
        (1, now.timestamp_millis())
    );
    let later = now + chrono::Duration::seconds(5);
    let streaks = futures_util::future::join_all((0..11).map(|_| {
        let store = store.clone();
        async move { store.add_failure(1, later).await.unwrap() }
    }))
    .await;
    assert!(
        streaks.iter().all(|s| s.since == first.since),
        "the streak began with the first failure: {streaks:?}"
    );
    let counts: Vec<u32> = streaks.iter().map(|s| s.failures).collect();
    let mut sorted = counts.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (2..=12).collect::<Vec<u32>>(),
        "each saw its own count"
    );
    let state = store.health_of(1).await.unwrap().unwrap();
    assert_eq!(state.failures, 12, "no count lost, none doubled");
    assert_eq!(state.version, 0, "a count alone is not a document");

    // Paused, with the probe due: 8 invocations race for it.
    let paused = write(&store, 1, Some(state), |h| {
        let mut p = h.pause_by("ops", "test", now);
        p.paused.as_mut().unwrap().probe_at = Some(now);
        Some(p)
    })
    .await
    .unwrap()
    .unwrap();
    let taken = futures_util::future::join_all((0..8).map(|_| {
        let (store, seen) = (store.clone(), paused.clone());
        async move {
            // Each takes from what it saw; a conflict re-reads, and the
            // re-read state has no probe due.
            write(&store, 1, Some(seen), |h| h.take_probe(now))
                .await
                .unwrap()
        }
    }))
    .await;
    assert_eq!(taken.iter().filter(|t| t.is_some()).count(), 1, "{taken:?}");
    let (head, health) = store.head_and_health().await.unwrap();
    assert!(head.is_some(), "HEAD is read with the state beside it");
    assert_eq!(health[&1].paused.as_ref().unwrap().probes, 1);
    assert_eq!(
        health[&1].failures, 12,
        "document writes leave the count alone"
    );
    assert_eq!(
        health[&1].failing_since.map(|t| t.timestamp_millis()),
        Some(now.timestamp_millis())
    );
    store.reset_failures(1).await.unwrap();
    let reset = store.health_of(1).await.unwrap().unwrap();
    assert_eq!((reset.failures, reset.failing_since), (0, None));
    // The next streak starts anew.
    let next = store.add_failure(1, later).await.unwrap();
    assert_eq!(
        (next.failures, next.since.timestamp_millis()),
        (1, later.timestamp_millis())
    );
}
