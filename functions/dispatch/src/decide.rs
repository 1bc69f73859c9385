//! What happens to an event after a run, and to a delivery that comes
//! early: pure functions of the chain's outcome, the retry policy, when the
//! queue received the message and the clock. No AWS, no I/O: tested here.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hooks_core::chain::AfterOutcome;
use hooks_core::config::{Config, HandlerId};
use hooks_core::queue::MAX_VISIBILITY;
use hooks_core::store::schema::EVENTS_QUEUE;

/// A message must be visible again at least this long before the queue would
/// drop it, so that it is received (and dead-lettered, if need be) in time.
pub(crate) const RETENTION_MARGIN: Duration = Duration::from_secs(3600);

/// What follows a run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Next {
    /// Every handler is done.
    Succeeded,
    /// A handler forbade; the rest are not called.
    Forbidden { handler: HandlerId, reason: String },
    /// Out of time in this invocation: go on in the next one, at once.
    Continue,
    /// A handler failed: try again after `delay`.
    Retry { delay: Duration, error: String },
    /// Give up: dead-letter the event.
    DeadLetter { reason: String },
}

/// Whether a message sent at `sent_at` and hidden for `delay` from `now`
/// would come back too close to the end of the queue's retention.
pub(crate) fn expiring(
    sent_at: Option<DateTime<Utc>>,
    delay: Duration,
    now: DateTime<Utc>,
) -> bool {
    let keep = Duration::from_secs(u64::from(EVENTS_QUEUE.retention_secs)) - RETENTION_MARGIN;
    let (Some(sent_at), Ok(delay), Ok(keep)) = (
        sent_at,
        chrono::Duration::from_std(delay),
        chrono::Duration::from_std(keep),
    ) else {
        return false;
    };
    now + delay > sent_at + keep
}

/// A delivery before the event's next attempt (a wait longer than SQS can
/// hide a message, or clocks that differ): how long to hide it again. A
/// retry never runs before its time; visibility timeouts round up.
pub(crate) fn early(
    next_attempt_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let at = next_attempt_at?;
    (at > now).then(|| (at - now).to_std().unwrap_or_default())
}

/// An event stopped at a paused handler: hidden until `until` (at least a
/// second, at most what SQS can hide it for), its attempts untouched; or
/// dead-lettered if the queue would drop it first.
fn waiting(
    until: DateTime<Utc>,
    reason: &str,
    sent_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Next {
    let delay = (until - now)
        .to_std()
        .unwrap_or_default()
        .clamp(Duration::from_secs(1), MAX_VISIBILITY);
    let error = format!("waiting (attempts not used): {reason}");
    if expiring(sent_at, delay, now) {
        return Next::DeadLetter {
            reason: format!(
                "the queue would drop it while it waits for a paused handler (it keeps a message 14 days from when it was sent): {error}"
            ),
        };
    }
    Next::Retry { delay, error }
}

/// What follows a run of the chain that ended with `outcome` under
/// `config`; `error` is the last call's error, `jitter` a number in [0, 1).
pub(crate) fn after_run(
    config: &Config,
    outcome: &AfterOutcome,
    error: &str,
    sent_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    jitter: f64,
) -> Next {
    let (handler, attempt, retryable, retry_after_secs) = match outcome {
        AfterOutcome::Completed => return Next::Succeeded,
        AfterOutcome::Forbidden { handler, reason } => {
            return Next::Forbidden {
                handler: *handler,
                reason: reason.clone(),
            };
        }
        AfterOutcome::Paused { .. } => return Next::Continue,
        AfterOutcome::HandlerPaused { until, reason, .. } => {
            return waiting(*until, reason, sent_at, now);
        }
        AfterOutcome::Blocked {
            handler,
            attempt,
            retryable,
            retry_after_secs,
        } => (*handler, *attempt, *retryable, *retry_after_secs),
    };
    let error = format!("handler {handler}, attempt {attempt}: {error}");
    let policy = config
        .handler(handler)
        .map_or(&config.defaults.retry, |h| config.retry_of(h));
    let delay = retryable
        .then(|| policy.jittered_delay_before(attempt + 1, jitter))
        .flatten()
        // Retry-After is honoured, within what SQS can hide a message for.
        .map(|delay| {
            retry_after_secs
                .map(Duration::from_secs)
                .map_or(delay, |ra| delay.max(ra.min(MAX_VISIBILITY)))
        });
    let why = match delay {
        Some(delay) if !expiring(sent_at, delay, now) => return Next::Retry { delay, error },
        Some(_) => {
            "the queue would drop it before its next attempt (it keeps a message 14 days from when it was sent)"
        }
        None if retryable => "out of attempts",
        None => "a permanent failure",
    };
    Next::DeadLetter {
        reason: format!("{why}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hooks_core::config::ParseOptions;

    fn config(extra: &str) -> Config {
        let toml = format!(
            "version = 1\n[defaults]\nretry = {{ schedule = [\"1m\", \"1h\"] }}\n[[handler]]\nid = 1\nname = \"a\"\nevent = \"clients.create\"\npriority = 1\nhttp = {{ url = \"https://a.example.com\" }}\n{extra}"
        );
        Config::parse("t.toml", &toml, &ParseOptions::default()).unwrap()
    }

    fn blocked(attempt: u32, retryable: bool, retry_after_secs: Option<u64>) -> AfterOutcome {
        AfterOutcome::Blocked {
            handler: 1,
            attempt,
            retryable,
            retry_after_secs,
        }
    }

    #[test]
    fn an_event_at_a_paused_handler_waits_for_the_probe_time_without_an_attempt() {
        let now = Utc::now();
        let c = config("");
        let paused = |secs: i64| AfterOutcome::HandlerPaused {
            handler: 1,
            until: now + chrono::Duration::seconds(secs),
            reason: "handler 1 is paused".into(),
        };
        match after_run(&c, &paused(90), "", Some(now), now, 0.5) {
            Next::Retry { delay, error } => {
                assert_eq!(delay, Duration::from_secs(90));
                assert!(error.contains("attempts not used") && error.contains("paused"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            after_run(&c, &paused(-5), "", Some(now), now, 0.5),
            Next::Retry { delay, .. } if delay == Duration::from_secs(1)
        ));
        let sent = now - chrono::Duration::days(14) + chrono::Duration::minutes(30);
        assert!(matches!(
            after_run(&c, &paused(90), "", Some(sent), now, 0.5),
            Next::DeadLetter { reason } if reason.contains("paused handler")
        ));
    }

    #[test]
    fn a_retryable_failure_waits_its_scheduled_delay_with_jitter() {
        let now = Utc::now();
        let c = config("");
        let at = |jitter| {
            after_run(
                &c,
                &blocked(1, true, None),
                "HTTP 503",
                Some(now),
                now,
                jitter,
            )
        };
        assert_eq!(
            at(0.5),
            Next::Retry {
                delay: Duration::from_secs(60),
                error: "handler 1, attempt 1: HTTP 503".into()
            }
        );
        let Next::Retry { delay: low, .. } = at(0.0) else {
            panic!()
        };
        let Next::Retry { delay: high, .. } = at(0.999) else {
            panic!()
        };
        assert_eq!(low, Duration::from_secs(54), "-10 %");
        assert!(
            high > Duration::from_secs(65) && high <= Duration::from_secs(66),
            "+10 %"
        );
    }

    #[test]
    fn retry_after_lengthens_a_delay_but_never_past_what_sqs_can_hide() {
        let now = Utc::now();
        let c = config("");
        let next = after_run(&c, &blocked(1, true, Some(600)), "429", Some(now), now, 0.5);
        assert!(matches!(next, Next::Retry { delay, .. } if delay == Duration::from_secs(600)));
        let next = after_run(&c, &blocked(1, true, Some(10)), "429", Some(now), now, 0.5);
        assert!(
            matches!(next, Next::Retry { delay, .. } if delay == Duration::from_secs(60)),
            "never shorter"
        );
        let next = after_run(
            &c,
            &blocked(1, true, Some(99 * 3600)),
            "429",
            Some(now),
            now,
            0.5,
        );
        assert!(matches!(next, Next::Retry { delay, .. } if delay == MAX_VISIBILITY));
    }

    #[test]
    fn out_of_attempts_or_permanent_is_dead() {
        let now = Utc::now();
        let c = config("");
        let Next::DeadLetter { reason } =
            after_run(&c, &blocked(3, true, None), "HTTP 503", Some(now), now, 0.5)
        else {
            panic!()
        };
        assert_eq!(reason, "out of attempts: handler 1, attempt 3: HTTP 503");
        let Next::DeadLetter { reason } = after_run(
            &c,
            &blocked(1, false, None),
            "HTTP 410",
            Some(now),
            now,
            0.5,
        ) else {
            panic!()
        };
        assert!(reason.starts_with("a permanent failure: "), "{reason}");
    }

    #[test]
    fn a_handlers_own_schedule_wins_over_the_default() {
        let now = Utc::now();
        let c = config("retry = { schedule = [\"5s\"] }\n");
        let next = after_run(&c, &blocked(1, true, None), "x", Some(now), now, 0.5);
        assert!(
            matches!(next, Next::Retry { delay, .. } if delay == Duration::from_secs(5)),
            "{next:?}"
        );
    }

    #[test]
    fn a_retry_the_queue_would_drop_first_is_dead_instead() {
        let now = Utc::now();
        let c = config("");
        let sent = now - chrono::Duration::days(13) - chrono::Duration::hours(23);
        let Next::DeadLetter { reason } =
            after_run(&c, &blocked(1, true, None), "x", Some(sent), now, 0.5)
        else {
            panic!()
        };
        assert!(reason.starts_with("the queue would drop it"), "{reason}");
        assert!(
            !expiring(None, Duration::from_secs(3600), now),
            "unknown send time: kept"
        );
    }

    #[test]
    fn the_other_outcomes_need_no_policy() {
        let now = Utc::now();
        let c = config("");
        assert_eq!(
            after_run(&c, &AfterOutcome::Completed, "", None, now, 0.5),
            Next::Succeeded
        );
        assert_eq!(
            after_run(&c, &AfterOutcome::Paused { next: 1 }, "", None, now, 0.5),
            Next::Continue
        );
        assert_eq!(
            after_run(
                &c,
                &AfterOutcome::Forbidden {
                    handler: 1,
                    reason: "no".into()
                },
                "",
                None,
                now,
                0.5
            ),
            Next::Forbidden {
                handler: 1,
                reason: "no".into()
            }
        );
    }

    #[test]
    fn an_early_delivery_is_hidden_until_its_time() {
        let now = Utc::now();
        assert_eq!(early(None, now), None);
        assert_eq!(early(Some(now), now), None, "at its time");
        assert_eq!(
            hooks_core::queue::visibility_secs(Duration::from_millis(300)),
            1,
            "hidden a whole second: never early"
        );
        assert_eq!(
            early(Some(now + chrono::Duration::milliseconds(300)), now),
            Some(Duration::from_millis(300)),
            "not even a fraction of a second early"
        );
        assert_eq!(
            early(Some(now + chrono::Duration::seconds(90)), now),
            Some(Duration::from_secs(90))
        );
    }
}
