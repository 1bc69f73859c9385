//! One event's way through dispatch, in named steps: read the message
//! ([`App::handle_record`]), claim the event ([`App::claim`]), run its chain
//! ([`App::run`]), and act on what [`decide::after_run`] says follows
//! ([`App::finish`]). Every write is conditional on the status read, so a
//! replay that resets the record meanwhile is never overwritten.

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsMessage;
use chrono::{DateTime, Utc};
use hooks_core::chain::{AfterRun, run_after};
use hooks_core::config::{Handler, Phase};
use hooks_core::queue::dedup_id;
use hooks_core::records::{EventRecord, EventStatus, QueuedEvent};
use hooks_core::store::{EventLedger, Redelivery, Revision, StoreError};
use tokio::time::Instant;

use crate::decide::{self, Next};
use crate::handler::{App, Done, Ports, RESERVE};
use crate::outbox::{Saver, flush_logs, spill};

/// When SQS received the message (its `SentTimestamp`).
pub(crate) fn sent_at(msg: &SqsMessage) -> Option<DateTime<Utc>> {
    msg.attributes
        .get("SentTimestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_millis)
}

/// The event claimed for a run, and the config it runs under.
struct Claimed {
    record: EventRecord,
    revision: std::sync::Arc<Revision>,
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
        };
        let done = async {
            match self.claim(&delivery).await {
                Ok(Claim::Skip(done)) => Ok(done),
                Ok(Claim::Run(claimed)) => self.run(&delivery, *claimed, deadline).await,
                // What no retry can read would hold up its key for good.
                Err(StoreError::Unreadable(reason)) => Ok(self.park(&delivery, &reason).await),
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

    /// Reads the event's record and takes it for a run (status `running`),
    /// unless it is finished (a repeated delivery) or early (hidden again).
    /// A replay may reset the record between the read and the write: the
    /// write is conditional on the status read, and a lost race reads again.
    async fn claim(&self, d: &Delivery<'_>) -> Result<Claim, StoreError> {
        for tries in 1..=3 {
            let mut record = self.events.get_or_accept(d.queued).await?;
            let read = record.status;
            if read.is_final() {
                tracing::info!(
                    status = read.as_str(),
                    "already handled: a repeated delivery"
                );
                // The run that finished it may have died before its log
                // write: what it left in the record is written now.
                flush_logs(&self.logs, &mut record).await;
                return Ok(Claim::Skip(Done::Handled));
            }
            let now = Utc::now();
            if let Some(wait) = decide::early(record.next_attempt_at, now) {
                // Hidden again; its new receipt kept for replay.
                self.queue.defer(d.receipt, wait).await?;
                if record.receipt.as_deref() != Some(d.receipt) {
                    record.receipt = Some(d.receipt.to_owned());
                    if !self.events.save_if(&record, read).await? && tries < 3 {
                        continue; // replayed meanwhile: run it now instead
                    }
                }
                return Ok(Claim::Skip(Done::Again));
            }
            let revision = match self.live.current().await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "no handler config");
                    return Ok(Claim::Skip(Done::Again));
                }
            };
            // A call the last run left in flight, and entries it left behind.
            if let Some(h) = record.in_flight.map(|f| f.handler) {
                let name = revision
                    .config
                    .handler(h)
                    .map_or_else(|| format!("handler {h}"), |h| h.name.clone());
                let run_revision = record.revision.unwrap_or(revision.info.revision);
                if let Some(entry) = record.take_interrupted(&name, run_revision) {
                    tracing::warn!(
                        handler = h,
                        attempt = entry.record.attempt,
                        "a call of the last run was interrupted"
                    );
                    record.unlogged.push(entry);
                }
            }
            flush_logs(&self.logs, &mut record).await;
            record.claim(revision.info.revision, now);
            if self.events.save_if(&record, read).await? {
                return Ok(Claim::Run(Box::new(Claimed { record, revision })));
            }
        }
        Ok(Claim::Skip(Done::Again))
    }

    /// Runs the handlers not yet done, saving the progress after each.
    async fn run(
        &self,
        d: &Delivery<'_>,
        claimed: Claimed,
        deadline: Instant,
    ) -> Result<Done, StoreError> {
        let Claimed {
            mut record,
            revision,
        } = claimed;
        let chain: Vec<&Handler> = revision
            .config
            .chain_for(d.queued.event.event, Phase::After);
        let progress = record.progress.clone();
        let mut saver = Saver {
            events: &self.events,
            logs: &self.logs,
            record: &mut record,
            revision: revision.info.revision,
            log_down: false,
        };
        let run = run_after(
            &self.targets,
            &chain,
            &revision.config.defaults,
            &d.queued.event,
            progress,
            Some(deadline.checked_sub(RESERVE).unwrap_or(deadline)),
            &mut saver,
        )
        .await;
        let log_down = saver.log_down;
        let run = match run {
            Ok(run) => run,
            Err(e) => {
                // The record could not be saved. The entries it holds are
                // written by the next run; the rest (the last call's) go to
                // the function's log: the execution log must not show a
                // success the record does not (the next run will log that
                // call as interrupted and make it again).
                record.unlogged.iter().for_each(spill);
                return Err(e);
            }
        };
        self.finish(d, record, &revision, run, log_down).await
    }

    /// Acts on what follows the run: saves the record's new status and
    /// tells the queue (hide for a retry, dead-letter, or go on at once).
    /// The record is saved, with the run's log entries, before they are
    /// written to the log: were the log written first and the process to die
    /// before the save, the log would show a success that the record does
    /// not, and the next run would call that handler again. Written, they
    /// stay in the saved record until its next save (reads merge them; a
    /// second write of an entry leaves one item).
    async fn finish(
        &self,
        d: &Delivery<'_>,
        mut record: EventRecord,
        revision: &Revision,
        run: AfterRun,
        log_down: bool,
    ) -> Result<Done, StoreError> {
        record.progress = run.progress;
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
        let done = match next {
            Next::Succeeded => {
                record.succeed(now);
                Done::Handled
            }
            Next::Forbidden { handler, reason } => {
                record.forbid(handler, &reason, now);
                Done::Handled
            }
            Next::Continue => {
                tracing::info!("out of time; the event continues in the next invocation");
                record.pause(now);
                self.events.save(&record).await?;
                self.queue.defer(d.receipt, Duration::ZERO).await?;
                if !log_down {
                    flush_logs(&self.logs, &mut record).await;
                }
                return Ok(Done::Again);
            }
            Next::Retry { delay, error } => {
                record.last_error = Some(error);
                // Hidden first: a replay, which needs the record's receipt,
                // must come after, or this would undo it.
                self.queue.defer(d.receipt, delay).await?;
                let at = chrono::Duration::from_std(delay).ok().map(|dl| now + dl);
                record.fail_until(at, d.receipt, now);
                self.events.save(&record).await?;
                if !log_down {
                    flush_logs(&self.logs, &mut record).await;
                }
                tracing::warn!(
                    delay_secs = delay.as_secs(),
                    error = record.last_error.as_deref().unwrap_or(""),
                    "handler failed; retrying later"
                );
                return Ok(Done::Again);
            }
            Next::DeadLetter { reason } => {
                let dedup = dedup_id(&d.queued.event.id, &format!("dead-{}", record.runs));
                self.queue
                    .dead_letter(d.group, &dedup, d.body, &reason)
                    .await?;
                tracing::error!(%reason, "event dead-lettered");
                record.die(reason, now);
                Done::Handled
            }
        };
        self.events.save(&record).await?;
        if (log_down || !flush_logs(&self.logs, &mut record).await) && !record.unlogged.is_empty() {
            // Not written now: they stay in the record (shown with the
            // event; a repeated delivery writes them) and go to the
            // function's log too.
            record.unlogged.iter().for_each(spill);
        }
        Ok(done)
    }

    /// An event whose record cannot be read: dead-lettered with the reason,
    /// and its record replaced by a readable one that says so (without the
    /// data, which is on the dead-letter queue), so that its key moves on and
    /// `GET /events/{id}` and `hooks events show` tell what happened.
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
        let mut bare = d.queued.clone();
        bare.event.data = Default::default();
        let mut record = EventRecord::accepted(&bare, Utc::now());
        record.die(reason, Utc::now());
        if let Err(e) = self.events.save(&record).await {
            tracing::error!(error = %e, "the unreadable record stays as it was");
        }
        Done::Handled
    }

    /// Moves a message that is not an event to the dead-letter queue, alone.
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
            Ok(()) => Done::Handled,
            Err(e) => {
                tracing::error!(error = %e, "could not dead-letter");
                Done::Again
            }
        }
    }

    /// A message held back behind a failing event of its group that may
    /// expire before that event is done: dead-lettered now, where `hooks
    /// replay --dead` finds it, rather than dropped by the queue unseen.
    pub(crate) async fn expire_held(&self, group: &str, msg: &SqsMessage) -> Done {
        let id = msg.message_id.clone().unwrap_or_default();
        let body = msg.body.clone().unwrap_or_default();
        let reason = "held behind a failing event of its key until the queue would drop it (it keeps a message 14 days from when it was sent)";
        let Ok(queued) = serde_json::from_str::<QueuedEvent>(&body) else {
            return self.dead_letter_raw(group, &id, &body, reason).await;
        };
        let gave_up = async {
            let mut record = self.events.get_or_accept(&queued).await?;
            let read = record.status;
            if read.is_final() {
                return Ok(());
            }
            // `running` while it moves, so that a dead-letter drain leaves it
            // alone until its record says `dead`.
            record.status = EventStatus::Running;
            record.updated_at = Utc::now();
            if !self.events.save_if(&record, read).await? {
                return Err(StoreError::Refused("the event changed meanwhile".into()));
            }
            self.queue
                .dead_letter(group, &dedup_id(&queued.event.id, "expired"), &body, reason)
                .await?;
            record.die(reason.to_owned(), Utc::now());
            self.events.save(&record).await
        };
        match gave_up.await {
            Ok(()) => {
                tracing::error!(event.id = %queued.event.id, reason, "event dead-lettered");
                Done::Handled
            }
            Err(e) => {
                tracing::error!(event.id = %queued.event.id, error = %e, "could not dead-letter an expiring event");
                Done::Again
            }
        }
    }
}

/// One delivery of an event's message.
pub(crate) struct Delivery<'a> {
    pub(crate) group: &'a str,
    pub(crate) receipt: &'a str,
    pub(crate) body: &'a str,
    pub(crate) sent_at: Option<DateTime<Utc>>,
    pub(crate) queued: &'a QueuedEvent,
}
