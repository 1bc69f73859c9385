//! How soon a reader sees a new config revision, and what the cached reader
//! costs, against the local emulator. Prints figures; asserts nothing.
//! Run with `make bench`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hooks_core::config::{Config, HandlerId, ParseOptions};
use hooks_core::pause::{HandlerHealth, Health};
use hooks_core::store::dynamodb::{DynamoConfigStore, create_tables};
use hooks_core::store::live::{DEFAULT_MAX_AGE, LiveConfig};
use hooks_core::store::schema::CONFIG_TABLE;
use hooks_core::store::{ConfigStore, Head, Revision, RevisionInfo, StoreError};
use hooks_core::sync::{Source, apply, plan_against};
use hooks_tests::{Emulator, unique};

const SYNCS: usize = 10;

#[derive(Clone)]
struct Counting {
    inner: DynamoConfigStore,
    heads: Arc<AtomicU64>,
}

impl ConfigStore for Counting {
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
    async fn publish(&self, r: &Revision, expected: Option<u64>) -> Result<Head, StoreError> {
        self.inner.publish(r, expected).await
    }
}

fn cfg(n: u32, priority: u32) -> Config {
    let mut src = String::from("version = 1\n");
    for id in 1..=n {
        src.push_str(&format!(
            "[[handler]]\nid = {id}\nname = \"handler {id}\"\nevent = \"clients.*\"\npriority = {priority}\nhttp = {{ url = \"https://h{id}.example.com/hooks\" }}\n"
        ));
    }
    Config::parse("bench.toml", &src, &ParseOptions::default()).unwrap()
}

async fn sync(store: &DynamoConfigStore, c: Config) {
    let source = Source {
        file: "bench.toml".into(),
        text: String::new(),
        git_commit: None,
        synced_by: "bench".into(),
    };
    let p = plan_against(store, c, source).await.unwrap();
    apply(store, &p).await.unwrap();
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let emu = Emulator::start();
    let table = unique("bench-config");
    let client = emu.dynamodb();
    create_tables(&client, emu.endpoint(), &[(CONFIG_TABLE, table.clone())])
        .await
        .unwrap();
    let store = DynamoConfigStore::new(client, table, emu.endpoint());
    sync(&store, cfg(100, 1)).await;

    let heads = Arc::new(AtomicU64::new(0));
    let live = LiveConfig::new(Counting {
        inner: store.clone(),
        heads: heads.clone(),
    });
    live.current().await.unwrap();

    // Time from `sync` returning to the reader (polled every 10 ms, like a
    // busy function) returning the new revision.
    let mut seen = Vec::new();
    let (mut calls, started) = (0u64, Instant::now());
    let heads_before = heads.load(Ordering::Relaxed);
    for i in 0..SYNCS {
        // Sync at a different point of the cache interval each time.
        tokio::time::sleep(Duration::from_millis(150 * i as u64 % 2000)).await;
        sync(&store, cfg(100, 2 + i as u32)).await;
        let returned = Instant::now();
        let target = live.store().inner.head().await.unwrap().unwrap().revision;
        loop {
            calls += 1;
            if live.current().await.unwrap().info.revision == target {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen.push(returned.elapsed());
    }
    let elapsed = started.elapsed();
    let heads_used = heads.load(Ordering::Relaxed) - heads_before;
    seen.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "config revision visibility, {SYNCS} syncs of a 100-handler file, reader polled every 10 ms, cache max age {:?}",
        DEFAULT_MAX_AGE
    );
    println!(
        "  sync returned -> reader sees it: median {:.0} ms, max {:.0} ms  (target <= 5000 ms: {})",
        ms(seen[seen.len() / 2]),
        ms(seen[seen.len() - 1]),
        if seen[seen.len() - 1] <= Duration::from_secs(5) {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "  reader calls {calls}, HEAD reads {heads_used} over {:.1} s: {:.2} reads/s cached vs {:.0} reads/s uncached (ratio {:.3})",
        elapsed.as_secs_f64(),
        heads_used as f64 / elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64(),
        heads_used as f64 / calls as f64
    );
}
