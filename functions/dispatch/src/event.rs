//! One event's way through dispatch, in named steps: read the message
//! ([`App::handle_record`]), take the event for a run ([`App::claim`]), run
//! its chain ([`App::run`]), and act on what [`decide::after_run`] says
//! follows ([`App::finish`]).
//!
//! A run is written once, when it ends: the record's new status, progress
//! and the run's calls in one conditional put ([`App::commit`]). Nothing is
//! written before or between calls. A run that dies before its write (a
//! crash, a timeout, a store error) leaves the record as it was; the next
//! delivery of the message sees the queue's receive count jump past the one
//! the record holds, logs each handler the lost run may have called as
//! `interrupted`, and calls them again (same `webhook-id`). So a success is
//! never repeated once written, and one that was not written may be.
//! Every write is conditional on the version read: a replay that resets the
//! record meanwhile is never overwritten (the run's calls are added to it).

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsMessage;
use chrono::{DateTime, Utc};
use hooks_core::chain::{AfterRun, run_after};
use hooks_core::config::{Handler, Phase};
use hooks_core::metrics::Counter;
use hooks_core::pause::PauseGate;
use hooks_core::queue::dedup_id;
use hooks_core::records::{DeliveryMark, EventRecord, EventStatus, LogEntry, QueuedEvent};
use hooks_core::store::events::MAX_DOC_BYTES;
use hooks_core::store::{EventLedger, QueueError, Redelivery, Revision, StoreError};
use tokio::time::Instant;

use crate::decide::{self, Next};
use crate::handler::{App, Done, Ports, RESERVE};
use crate::message::{delivery_mark, sent_at};

/// The event taken for a run, and the config it runs under.
struct Claimed {
    record: EventRecord,
    revision: std::sync::Arc<Revision>,
    /// The calls the record held before this run: the rest are the run's.
    calls_before: usize,
}

/// Why a delivery was not settled: it comes back after the visibility
/// timeout.
#[derive(Debug, thiserror::Error)]
enum Unsettled {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("the event's record changed meanwhile")]
    Changed,
}

/// What reading the record found.
enum Claim {
    Run(Box<Claimed>),
    /// Nothing to run now.
    Skip(Done),
}

impl<P: Ports> App<P> {
    #[tracing::instrument(skip_all, fields(message.id = msg.message_id.as_deref().unwrap_or(""), event.id))]
    pub(crate) async fn handle_record(
        &self,
        group: &str,
        msg: &SqsMessage,
        deadline: Instant,
    ) -> Done {
        let id = msg.message_id.clone().unwrap_or_default();
        let body = msg.body.clone().unwrap_or_default();
        let Some(receipt) = msg.receipt_handle.clone() else {
            return self
                .dead_letter_raw(group, &id, &body, "record without a receipt handle")
                .await;
        };
        let queued: QueuedEvent = match serde_json::from_str(&body) {
            Ok(q) => q,
            Err(e) => {
                return self
                    .dead_letter_raw(group, &id, &body, &format!("not an event: {e}"))
                    .await;
            }
        };
        tracing::Span::current().record("event.id", queued.event.id.as_str());
        let delivery = Delivery {
            group,
            receipt: &receipt,
            body: &body,
            sent_at: sent_at(msg),
            queued: &queued,
            mark: delivery_mark(msg),
        };
        let done = async {
            match self.claim(&delivery).await {
                Ok(Claim::Skip(done)) => Ok(done),
                Ok(Claim::Run(claimed)) => self.run(&delivery, *claimed, deadline).await,
                // What no retry can read would hold up its key for good.
                Err(Unsettled::Store(StoreError::Unreadable(reason))) => {
                    Ok(self.park(&delivery, &reason).await)
                }
                Err(e) => Err(e),
            }
        };
        match done.await {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "event not handled; it comes back after the visibility timeout");
                Done::Again
            }
        }
    }

    /// Reads the event's record and takes it for a run (in memory), unless
    /// it is finished (a repeated delivery) or early (hidden again). Logs the
    /// calls of deliveries that ended without writing the record.
    #[tracing::instrument(skip_all)]
    async fn claim(&self, d: &Delivery<'_>) -> Result<Claim, Unsettled> {
        // The config (cached, but read at a cold start) with the record.
        let (record, revision) =
            tokio::join!(self.events.get_or_accept(d.queued), self.live.current());
        let mut record = record?;
        if record.status.is_final() {
            tracing::info!(
                status = record.status.as_str(),
                "already handled: a repeated delivery"
            );
            return Ok(Claim::Skip(Done::Handled));
        }
        let now = Utc::now();
        if let Some(wait) = decide::early(record.next_attempt_at, now) {
            // Hidden again; its new receipt kept for replay, and this
            // delivery marked, so the next one does not count it as lost.
            self.queue.defer(d.receipt, wait).await?;
            record.receipt = Some(d.receipt.to_owned());
            record.delivery = Some(d.mark.clone());
            if !self.events.save_if(&mut record).await? {
                // Replayed meanwhile: the replay's message or retry follows.
                tracing::info!("the event changed meanwhile; left to its replay");
            }
            return Ok(Claim::Skip(Done::Again));
        }
        let revision = match revision {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "no handler config");
                return Ok(Claim::Skip(Done::Again));
            }
        };
        let calls_before = record.calls.len();
        let lost = DeliveryMark::lost_before(record.delivery.as_ref(), &d.mark);
        if lost > 0 {
            let pending: Vec<(u32, String)> = revision
                .config
                .chain_for(d.queued.event.event, Phase::After)
                .into_iter()
                .filter(|h| !record.progress.completed.contains(&h.id))
                .map(|h| (h.id, h.name.clone()))
                .collect();
            let run_revision = record.revision.unwrap_or(revision.info.revision);
            let logged = record.lost_deliveries(lost, &pending, run_revision, now);
            let interrupted: Vec<_> = record
                .calls
                .iter()
                .skip(calls_before)
                .map(|e| e.record.clone())
                .collect();
            self.metrics.calls(&interrupted);
            tracing::warn!(
                lost,
                handlers = logged,
                "deliveries of this event ended without writing it: their calls are logged interrupted"
            );
        }
        record.claim(revision.info.revision, now);
        Ok(Claim::Run(Box::new(Claimed {
            record,
            revision,
            calls_before,
        })))
    }

    /// Runs the handlers not yet done; the record is written when it ends.
    #[tracing::instrument(skip_all, fields(revision = claimed.revision.info.revision))]
    async fn run(
        &self,
        d: &Delivery<'_>,
        claimed: Claimed,
        deadline: Instant,
    ) -> Result<Done, Unsettled> {
        let Claimed {
            mut record,
            revision,
            calls_before,
        } = claimed;
        let chain: Vec<&Handler> = revision
            .config
            .chain_for(d.queued.event.event, Phase::After);
        let run = run_after(
            &self.targets,
            &chain,
            &revision.config.defaults,
            &d.queued.event,
            record.progress.clone(),
            Some(deadline.checked_sub(RESERVE).unwrap_or(deadline)),
            &mut PauseGate::new(&self.live, &revision.config),
        )
        .await;
        self.metrics.calls(&run.handlers);
        record.calls.extend(run.handlers.iter().map(|c| LogEntry {
            record: c.clone(),
            revision: revision.info.revision,
        }));
        let done = self
            .finish(d, &mut record, calls_before, &revision, run)
            .await;
        if done.is_err() {
            // Not written: the calls go to the function's log, and the next
            // delivery logs them as interrupted and makes them again.
            // (`get`: a trim in the write may have dropped the oldest calls.)
            record
                .calls
                .get(calls_before..)
                .unwrap_or_default()
                .iter()
                .for_each(spill);
        }
        done
    }

    /// Acts on what follows the run: writes the record's new status with the
    /// run's calls, and tells the queue (hide for a retry, dead-letter, or go
    /// on at once).
    #[tracing::instrument(skip_all, fields(outcome = ?run.outcome))]
    async fn finish(
        &self,
        d: &Delivery<'_>,
        record: &mut EventRecord,
        calls_before: usize,
        revision: &Revision,
        run: AfterRun,
    ) -> Result<Done, Unsettled> {
        record.progress = run.progress;
        record.delivery = Some(d.mark.clone());
        let error = run
            .handlers
            .last()
            .and_then(|c| c.error.clone())
            .unwrap_or_else(|| "failed".into());
        let now = Utc::now();
        let next = decide::after_run(
            &revision.config,
            &run.outcome,
            &error,
            d.sent_at,
            now,
            rand::random::<f64>(),
        );
        match next {
            Next::Succeeded => {
                record.succeed(now);
                self.commit(record, calls_before).await?;
                self.finished(Counter::EventsCompleted, d, now);
                Ok(Done::Handled)
            }
            Next::Forbidden { handler, reason } => {
                record.forbid(handler, &reason, now);
                self.commit(record, calls_before).await?;
                self.finished(Counter::EventsForbidden, d, now);
                Ok(Done::Handled)
            }
            Next::Continue => {
                tracing::info!("out of time; the event continues in the next invocation");
                record.pause(now);
                self.commit(record, calls_before).await?;
                self.queue.defer(d.receipt, Duration::ZERO).await?;
                Ok(Done::Again)
            }
            Next::Retry { delay, error } => {
                record.last_error = Some(error);
                // Hidden first: a replay, which needs the record's receipt,
                // must come after, or this would undo it.
                self.queue.defer(d.receipt, delay).await?;
                let at = chrono::Duration::from_std(delay).ok().map(|dl| now + dl);
                record.fail_until(at, d.receipt, now);
                self.commit(record, calls_before).await?;
                tracing::warn!(
                    // As hidden: whole seconds, at least 1 (a jittered 0.9 s
                    // printed as 0).
                    hidden_secs = hooks_core::queue::visibility_secs(delay),
                    error = record.last_error.as_deref().unwrap_or(""),
                    "handler failed; retrying later"
                );
                Ok(Done::Again)
            }
            Next::DeadLetter { reason } => {
                // Marked `running` while it moves, so that a drain of the
                // dead-letter queue leaves its message alone until the record
                // says `dead`.
                record.status = EventStatus::Running;
                self.commit(record, calls_before).await?;
                let dedup = dedup_id(&d.queued.event.id, &format!("dead-{}", record.runs));
                self.queue
                    .dead_letter(d.group, &dedup, d.body, &reason)
                    .await?;
                tracing::error!(%reason, "event dead-lettered");
                record.die(reason, Utc::now());
                self.events.save(record).await?;
                self.finished(Counter::EventsDeadLettered, d, now);
                Ok(Done::Handled)
            }
        }
    }

    /// Writes the record if it is still the version read. If it changed
    /// meanwhile (a replay), the stored one wins, with this run's calls added
    /// to it: its log must show them.
    #[tracing::instrument(skip_all)]
    async fn commit(
        &self,
        record: &mut EventRecord,
        calls_before: usize,
    ) -> Result<(), StoreError> {
        let dropped = record.trim_calls(MAX_DOC_BYTES);
        dropped.iter().for_each(spill);
        if self.events.save_if(record).await? {
            return Ok(());
        }
        // This run's calls (a trim drops the oldest first).
        let from = calls_before.saturating_sub(dropped.len());
        let ours: Vec<LogEntry> = record.calls.get(from..).unwrap_or_default().to_vec();
        for _ in 0..3 {
            let stored = self.events.get_or_accept(&record.event).await?;
            let mut merged = merge_after_conflict(record, stored, &ours);
            merged.trim_calls(MAX_DOC_BYTES).iter().for_each(spill);
            if self.events.save_if(&mut merged).await? {
                *record = merged;
                return Ok(());
            }
        }
        Err(StoreError::Refused(
            "the event's record kept changing during the write".into(),
        ))
    }

    /// An event whose record cannot be read: dead-lettered with the reason,
    /// and its record replaced by a readable one that says so (without the
    /// data, which is on the dead-letter queue), so that its key moves on and
    /// `GET /events/{id}` and `hooks events show` tell what happened.
    #[tracing::instrument(skip_all, fields(why = %why))]
    async fn park(&self, d: &Delivery<'_>, why: &str) -> Done {
        let reason = format!(
            "the event's record cannot be read ({why}); its message is on the dead-letter queue"
        );
        tracing::error!(%reason, "event parked");
        let dedup = dedup_id(&d.queued.event.id, "unreadable");
        if let Err(e) = self
            .queue
            .dead_letter(d.group, &dedup, d.body, &reason)
            .await
        {
            tracing::error!(error = %e, "could not dead-letter an unreadable event");
            return Done::Again;
        }
        self.metrics.count(Counter::EventsDeadLettered, 1);
        let mut bare = d.queued.clone();
        bare.event.data = Default::default();
        let mut record = EventRecord::accepted(&bare, Utc::now());
        record.die(reason, Utc::now());
        if let Err(e) = self.events.save(&mut record).await {
            tracing::error!(error = %e, "the unreadable record stays as it was");
        }
        Done::Handled
    }

    /// Records that this delivery of `msg` ran nothing (held back behind a
    /// failing event of its key), so that the next one is not taken for the
    /// delivery after a lost run. Only when no delivery before it is
    /// unaccounted for: a lost run stays visible to the next delivery. A
    /// failure here costs only that: the next run logs its handlers as
    /// possibly called.
    #[tracing::instrument(skip_all, fields(message.id = msg.message_id.as_deref().unwrap_or("")))]
    pub(crate) async fn mark_not_run(&self, msg: &SqsMessage) {
        let Some(Ok(queued)) = msg.body.as_deref().map(serde_json::from_str::<QueuedEvent>) else {
            return;
        };
        let mark = delivery_mark(msg);
        let written = async {
            let mut record = self.events.get_or_accept(&queued).await?;
            if record.status.is_final()
                || DeliveryMark::lost_before(record.delivery.as_ref(), &mark) > 0
                || record.delivery.as_ref() == Some(&mark)
            {
                return Ok(());
            }
            record.delivery = Some(mark);
            self.events.save_if(&mut record).await.map(|_| ())
        };
        if let Err(e) = written.await {
            tracing::warn!(event.id = %queued.event.id, error = %e, "could not record a held-back delivery");
        }
    }

    /// Counts an event that is done with, and its time since ingest queued it.
    fn finished(&self, counter: Counter, d: &Delivery<'_>, now: DateTime<Utc>) {
        self.metrics.count(counter, 1);
        self.metrics
            .latency(d.sent_at.unwrap_or(d.queued.received_at), now);
    }

    /// Moves a message that is not an event to the dead-letter queue, alone.
    #[tracing::instrument(skip_all)]
    pub(crate) async fn dead_letter_raw(
        &self,
        group: &str,
        id: &str,
        body: &str,
        reason: &str,
    ) -> Done {
        tracing::error!(
            message.id = id,
            reason,
            "dead-lettering a malformed message"
        );
        let group = if group.is_empty() { "malformed" } else { group };
        match self
            .queue
            .dead_letter(group, &dedup_id(id, "malformed"), body, reason)
            .await
        {
            Ok(()) => {
                self.metrics.count(Counter::EventsDeadLettered, 1);
                Done::Handled
            }
            Err(e) => {
                tracing::error!(error = %e, "could not dead-letter");
                Done::Again
            }
        }
    }

    /// A message held back behind a failing event of its group that may
    /// expire before that event is done: dead-lettered now, where `hooks
    /// replay --dead` finds it, rather than dropped by the queue unseen.
    #[tracing::instrument(skip_all, fields(group = %group))]
    pub(crate) async fn expire_held(&self, group: &str, msg: &SqsMessage) -> Done {
        let id = msg.message_id.clone().unwrap_or_default();
        let body = msg.body.clone().unwrap_or_default();
        let reason = "held behind a failing event of its key until the queue would drop it (it keeps a message 14 days from when it was sent)";
        let Ok(queued) = serde_json::from_str::<QueuedEvent>(&body) else {
            return self.dead_letter_raw(group, &id, &body, reason).await;
        };
        let gave_up = async {
            let mut record = self.events.get_or_accept(&queued).await?;
            if record.status.is_final() {
                return Ok(());
            }
            // `running` while it moves, so that a dead-letter drain leaves it
            // alone until its record says `dead`.
            record.status = EventStatus::Running;
            record.updated_at = Utc::now();
            if !self.events.save_if(&mut record).await? {
                return Err(Unsettled::Changed);
            }
            self.queue
                .dead_letter(group, &dedup_id(&queued.event.id, "expired"), &body, reason)
                .await?;
            record.die(reason.to_owned(), Utc::now());
            self.events.save(&mut record).await?;
            Ok::<(), Unsettled>(())
        };
        match gave_up.await {
            Ok(()) => {
                tracing::error!(event.id = %queued.event.id, reason, "event dead-lettered");
                self.metrics.count(Counter::EventsDeadLettered, 1);
                Done::Handled
            }
            Err(e) => {
                tracing::error!(event.id = %queued.event.id, error = %e, "could not dead-letter an expiring event");
                Done::Again
            }
        }
    }
}

/// The record to write when another writer came first during this run.
///
/// A replay (the stored record is `queued` again, its progress reset) wins:
/// this run's calls are added to it, and the replay's message runs it.
/// Anyone else — a held-back delivery of the same message marking itself,
/// or a delivery that overlapped this one — does not: this run's outcome
/// (status, progress, next attempt) is what this delivery does with the
/// message (delete it, or hide it for the retry), so it is kept, with the
/// other writer's calls added and the later delivery mark. Keeping the
/// other writer's status instead could leave a record waiting for a
/// message this delivery deletes.
fn merge_after_conflict(
    run: &EventRecord,
    mut stored: EventRecord,
    ours: &[LogEntry],
) -> EventRecord {
    if stored.status == EventStatus::Queued {
        for call in ours {
            if !stored.calls.contains(call) {
                stored.calls.push(call.clone());
            }
        }
        tracing::warn!("the event was replayed during its run: its calls were added to it");
        return stored;
    }
    let mut mine = run.clone();
    mine.version = stored.version;
    for call in stored.calls {
        if !mine.calls.contains(&call) {
            mine.calls.push(call);
        }
    }
    mine.calls.sort_by_key(|c| c.record.started_at);
    let later = |a: &Option<DeliveryMark>, b: &Option<DeliveryMark>| match (a, b) {
        (Some(x), Some(y)) => x.message_id == y.message_id && x.receives > y.receives,
        (Some(_), None) => true,
        _ => false,
    };
    if later(&stored.delivery, &mine.delivery) {
        mine.delivery = stored.delivery;
    }
    tracing::warn!(
        "the event's record was written during its run (a held-back or overlapping delivery): this run's outcome is kept, with every call"
    );
    mine
}

/// One delivery of an event's message.
pub(crate) struct Delivery<'a> {
    pub(crate) group: &'a str,
    pub(crate) receipt: &'a str,
    pub(crate) body: &'a str,
    pub(crate) sent_at: Option<DateTime<Utc>>,
    pub(crate) queued: &'a QueuedEvent,
    pub(crate) mark: DeliveryMark,
}

/// Writes a call the execution log did not take to the function's own log.
pub(crate) fn spill(entry: &LogEntry) {
    let entry = serde_json::to_string(entry).unwrap_or_default();
    tracing::error!(%entry, "call not written to the event's record: kept in the function log");
}
