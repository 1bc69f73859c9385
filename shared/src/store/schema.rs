//! The DynamoDB tables, defined once. `hooks bootstrap` creates them locally
//! from these definitions, and the deployment template must agree with them.
//!
//! # The config table
//!
//! | pk | sk | what |
//! |---|---|---|
//! | `HEAD` | `HEAD` | the live revision: `revision`, `blob`, `chunks`, `content_hash` |
//! | `REVISIONS` | `<revision, 10 digits>` | one item per revision: who, when, commit, hash, counts |
//! | `BLOB#<id>` | `CHUNK#<n, 5 digits>` | the revision document (config, retired ids, source), in chunks of at most 350 KB |
//!
//! A revision's document is written first, under a fresh blob id nobody
//! points at; then one two-item transaction adds its `REVISIONS` item and
//! moves `HEAD`, on condition that `HEAD` is still the revision the sync was
//! planned against. Readers follow `HEAD` to an immutable blob, so they see
//! the old revision or the new one, never a mix, and the transaction stays
//! two items whatever the size of the config.

/// Type of a key attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// String.
    S,
    /// Number.
    N,
    /// Binary.
    B,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::S => "S",
            KeyType::N => "N",
            KeyType::B => "B",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAttr {
    pub name: &'static str,
    pub kind: KeyType,
}

/// A global secondary index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexDef {
    pub name: &'static str,
    pub partition_key: KeyAttr,
    pub sort_key: Option<KeyAttr>,
    /// The attributes besides the keys that the index holds (`None`: all).
    pub include: Option<&'static [&'static str]>,
}

/// One table: keys, indexes, TTL, and where its name comes from at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableDef {
    /// The name in the deployment template (logical id stem) and in messages.
    pub logical: &'static str,
    /// The environment variable that carries the table's name.
    pub env: &'static str,
    /// The name used when the variable is not set (local development).
    pub default_name: &'static str,
    pub partition_key: KeyAttr,
    pub sort_key: Option<KeyAttr>,
    pub indexes: &'static [IndexDef],
    /// The attribute holding an expiry time (epoch seconds), if items expire.
    pub ttl_attribute: Option<&'static str>,
    /// Point-in-time recovery (backups of every change for 35 days).
    pub point_in_time_recovery: bool,
}

/// Handler config revisions.
pub const CONFIG_TABLE: TableDef = TableDef {
    logical: "Config",
    env: "HOOKS_CONFIG_TABLE",
    default_name: "provisioning-hooks-config",
    partition_key: KeyAttr {
        name: "pk",
        kind: KeyType::S,
    },
    sort_key: Some(KeyAttr {
        name: "sk",
        kind: KeyType::S,
    }),
    indexes: &[],
    ttl_attribute: None,
    point_in_time_recovery: true,
};

/// One item per event: where it stands, every call made for it (its part of
/// the execution log), the progress a retry resumes from. Also the
/// idempotency record of billing's event ids.
///
/// | attribute | what |
/// |---|---|
/// | `id` | the event id (billing's, or `decision-…`) |
/// | `status` | where it stands |
/// | `v` | the item's version: every write is conditional on it |
/// | `docz` | the record (`EventRecord`), JSON, deflated (`doc`, plain JSON, in records written before) |
/// | `bucket` | once it has calls (or is dead, failed or forbidden): the day (UTC) of its last change and a shard, `2026-12-01#3` |
/// | `at` | the time of its last change (RFC 3339, µs) |
/// | `problem` | `bucket` again, only when a call failed, timed out, was interrupted or forbade, or the event is dead, failed or forbidden |
/// | `expires_at` | TTL: the record (and so its calls and its duplicate detection) expires |
///
/// | `ekey` | once it has calls: the event's ordering key (indexed, for a search by key) |
/// | `etype` | once it has calls: the event's type (indexed, for a filter by type) |
///
/// The execution log and the list of events are read through two indexes
/// sorted by `at`: `by_time` (every record with calls) and `by_problem`
/// (sparse: only those with a failed, timed-out, interrupted or forbidding
/// call). They hold the keys and [`INDEXED`] (status, key, type): a list of
/// events filtered by those reads only the index, and the entry stays under
/// the 1 KB of one write unit. Their partition key is a day (UTC) and one
/// of [`TIME_SHARDS`] shards, so no partition takes more than a share of
/// the writes, and a reader queries the shards of a day at once, newest day
/// first (a week back is 56 queries at most).
pub const EVENTS_TABLE: TableDef = TableDef {
    logical: "Events",
    env: "HOOKS_EVENTS_TABLE",
    default_name: "provisioning-hooks-events",
    partition_key: KeyAttr {
        name: "id",
        kind: KeyType::S,
    },
    sort_key: None,
    indexes: &[
        IndexDef {
            name: "by_time",
            partition_key: KeyAttr {
                name: "bucket",
                kind: KeyType::S,
            },
            sort_key: Some(KeyAttr {
                name: "at",
                kind: KeyType::S,
            }),
            include: Some(INDEXED),
        },
        IndexDef {
            name: "by_problem",
            partition_key: KeyAttr {
                name: "problem",
                kind: KeyType::S,
            },
            sort_key: Some(KeyAttr {
                name: "at",
                kind: KeyType::S,
            }),
            include: Some(INDEXED),
        },
    ],
    ttl_attribute: Some("expires_at"),
    point_in_time_recovery: false,
};

/// The attributes the time indexes hold besides their keys.
pub const INDEXED: &[&str] = &["status", "ekey", "etype"];

/// Shards of a day in the time indexes. A partition of an index takes
/// 1,000 write units a second; 8 shards take 8,000 records finishing a
/// second, far above what dispatch's default concurrency reaches.
pub const TIME_SHARDS: u32 = 8;

/// Every table of the bundle.
pub const TABLES: &[TableDef] = &[CONFIG_TABLE, EVENTS_TABLE];

/// An SQS queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueDef {
    pub logical: &'static str,
    /// The environment variable that carries the queue's name (`.fifo` included).
    pub env: &'static str,
    pub default_name: &'static str,
    pub fifo: bool,
    /// How long a received message stays hidden; at least six times the
    /// dispatch function's timeout.
    pub visibility_timeout_secs: u32,
    /// How long SQS keeps a message (14 days, the longest).
    pub retention_secs: u32,
    /// Receives after which SQS itself moves a message to the dead-letter
    /// queue. Dispatch dead-letters events itself after their last attempt;
    /// this is only the last-resort net for a message that keeps failing
    /// before any handler runs (e.g. the function crashing), so it is SQS's
    /// maximum: held-back messages of a group and early re-deliveries also
    /// count as receives.
    pub max_receive_count: Option<u32>,
    /// High-throughput FIFO (`DeduplicationScope: messageGroup`,
    /// `FifoThroughputLimit: perMessageGroupId`): the 300 calls/s per
    /// action apply per partition rather than per queue, and SQS adds
    /// partitions as message groups grow. Free; deduplication becomes per
    /// message group, which changes nothing here (ingest's idempotency is
    /// the conditional write of the event's record).
    pub high_throughput: bool,
}

/// How long the dispatch function may run (its Lambda timeout).
pub const DISPATCH_TIMEOUT_SECS: u32 = 60;

/// Events from ingest to dispatch, in order per key (message group).
pub const EVENTS_QUEUE: QueueDef = QueueDef {
    logical: "Events",
    env: "HOOKS_QUEUE_NAME",
    default_name: "provisioning-hooks-events.fifo",
    fifo: true,
    visibility_timeout_secs: 6 * DISPATCH_TIMEOUT_SECS,
    retention_secs: 14 * 24 * 3600,
    max_receive_count: Some(1000),
    high_throughput: true,
};

/// Events whose last attempt failed, and malformed messages; `hooks replay` puts them back.
pub const DEAD_LETTER_QUEUE: QueueDef = QueueDef {
    logical: "DeadLetter",
    env: "HOOKS_DLQ_NAME",
    default_name: "provisioning-hooks-dead-letters.fifo",
    fifo: true,
    visibility_timeout_secs: 30,
    retention_secs: 14 * 24 * 3600,
    max_receive_count: None,
    // One message per dead event: nothing to gain.
    high_throughput: false,
};
