//! The execution log's outbox: each call's entry waits in the event's record
//! (saved with the progress after every handler) until it is written to the
//! log, so a crash between a call and the log write loses no entry.

use std::time::Duration;

use chrono::Utc;
use hooks_core::chain::{CallRecord, Checkpoint, Progress};
use hooks_core::config::HandlerId;
use hooks_core::records::{EventRecord, InFlight, LogEntry};
use hooks_core::store::{EventLedger, LogSink, StoreError};

/// Log entries wait in the event's record until a run ends, or until this
/// many (one `BatchWriteItem`) or [`LOG_FLUSH_BYTES`] have gathered: the
/// record is rewritten after every handler, and what it carries costs write
/// capacity each time.
pub(crate) const LOG_BATCH: usize = 25;
pub(crate) const LOG_FLUSH_BYTES: usize = 4 * 1024;

/// If the execution log cannot be written, at most this much waits in the
/// event's record: with the event's data twice (64 KiB each at most) it stays
/// well under DynamoDB's 400 KB item. Older entries go to the function's own
/// log instead.
pub(crate) const MAX_UNLOGGED_BYTES: usize = 96 * 1024;

/// The longest a log write may take (throttling retries included): it must
/// fit in the time kept in reserve before the invocation's deadline. What is
/// not written in time stays in the event's record.
pub(crate) const LOG_WRITE_BUDGET: Duration = Duration::from_secs(2);

/// The size of the waiting entries, as stored in the record.
pub(crate) fn unlogged_bytes(record: &EventRecord) -> usize {
    record
        .unlogged
        .iter()
        .map(|e| serde_json::to_vec(e).map_or(0, |v| v.len()))
        .sum()
}

/// Writes the record's waiting log entries to the execution log and clears
/// them (in memory: the record's next save stores that); on failure keeps them
/// for a later run (within [`MAX_UNLOGGED_BYTES`]). Entries are keyed by event,
/// start time, handler and attempt, so writing one twice (after a crash)
/// leaves one item.
pub(crate) async fn flush_logs(logs: &impl LogSink, record: &mut EventRecord) -> bool {
    if record.unlogged.is_empty() {
        return true;
    }
    let written = tokio::time::timeout(LOG_WRITE_BUDGET, logs.write(&record.unlogged))
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unknown(format!(
                "log write not done within {LOG_WRITE_BUDGET:?}"
            )))
        });
    match written {
        Ok(()) => {
            record.unlogged.clear();
            true
        }
        Err(e) => {
            tracing::error!(error = %e, waiting = record.unlogged.len(), "log entries not written yet");
            trim_unlogged(record);
            false
        }
    }
}

/// Moves the oldest waiting entries to the function's own log until the rest
/// fit [`MAX_UNLOGGED_BYTES`]; returns the size of the rest.
pub(crate) fn trim_unlogged(record: &mut EventRecord) -> usize {
    let mut total = unlogged_bytes(record);
    let mut over = 0;
    for entry in &record.unlogged {
        if total <= MAX_UNLOGGED_BYTES {
            break;
        }
        total -= serde_json::to_vec(entry).map_or(0, |v| v.len());
        spill(entry);
        over += 1;
    }
    record.unlogged.drain(..over);
    total
}

/// Writes an entry the execution log did not take to the function's own log.
pub(crate) fn spill(entry: &LogEntry) {
    let entry = serde_json::to_string(entry).unwrap_or_default();
    tracing::error!(%entry, "execution log unreachable: entry kept in the function log");
}

/// The chain's checkpoint. Before each call it saves the record with the
/// call marked in flight, together with the progress and log entries of the
/// calls before it: one write per call. After the last call, the run's
/// final save (in `event.rs`) records it. The log is written in batches.
pub(crate) struct Saver<'a, E, L> {
    pub(crate) events: &'a E,
    pub(crate) logs: &'a L,
    pub(crate) record: &'a mut EventRecord,
    pub(crate) revision: u64,
    /// A log write failed in this run: no more are tried (each may take
    /// [`LOG_WRITE_BUDGET`], and the run's reserve is short).
    pub(crate) log_down: bool,
}

impl<E: EventLedger, L: LogSink> Checkpoint for Saver<'_, E, L> {
    type Error = StoreError;

    async fn calling(
        &mut self,
        handler: HandlerId,
        attempt: u32,
        progress: &Progress,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        self.record.progress = progress.clone();
        self.record.in_flight = Some(InFlight {
            handler,
            attempt,
            started_at: now,
        });
        self.record.updated_at = now;
        // The record must fit its item, whatever the log table does.
        let waiting = trim_unlogged(self.record);
        // The progress first: nothing may delay it past the deadline.
        self.events.save(self.record).await?;
        if !self.log_down && (self.record.unlogged.len() >= LOG_BATCH || waiting > LOG_FLUSH_BYTES)
        {
            self.log_down = !flush_logs(self.logs, self.record).await;
        }
        Ok(())
    }

    /// The call ended: kept in memory until the next call's save or the
    /// run's final save, microseconds later.
    async fn save(&mut self, progress: &Progress, call: &CallRecord) -> Result<(), StoreError> {
        self.record.unlogged.push(LogEntry {
            record: call.clone(),
            revision: self.revision,
        });
        self.record.progress = progress.clone();
        self.record.in_flight = None;
        self.record.updated_at = Utc::now();
        Ok(())
    }
}
