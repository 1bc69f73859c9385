//! Putting a finished event back, against the emulator.

use chrono::Utc;
use hooks_core::events::Event;
use hooks_core::protocol::EventEnvelope;
use hooks_core::queue::Queue;
use hooks_core::records::EventStatus;
use hooks_core::records::QueuedEvent;
use hooks_core::replay::{Replay, replay_event};
use hooks_core::settings::ResourceNames;
use hooks_core::store::events::EventStore;
use hooks_local::bootstrap;
use hooks_tests::{Emulator, unique};

/// Tables and queues of their own on a fresh emulator.
struct Setup {
    _emu: Emulator,
    sqs: aws_sdk_sqs::Client,
    events: EventStore,
    queue: Queue,
}

async fn setup() -> Setup {
    let emu = Emulator::start();
    let names = ResourceNames::prefixed(&unique("replay"));
    let sdk = emu.sdk_config().await;
    bootstrap(&sdk, &names).await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let events = EventStore::new(emu.dynamodb(), &names.events_table, emu.endpoint());
    let queue = Queue::resolve(
        sqs.clone(),
        emu.endpoint(),
        &names.queue,
        &names.dead_letter_queue,
    )
    .await
    .unwrap();
    Setup {
        _emu: emu,
        sqs,
        events,
        queue,
    }
}

fn event(id: &str, key: &str) -> QueuedEvent {
    QueuedEvent {
        event: EventEnvelope {
            id: id.into(),
            event: Event::ClientsCreate,
            occurred_at: Utc::now(),
            data: serde_json::Map::new(),
            trace: None,
        },
        key: key.into(),
        received_at: Utc::now(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_queues_the_record_before_the_message_and_undoes_it_when_the_send_fails() {
    // `_emu` is bound: the emulator stops when it is dropped.
    let Setup {
        _emu,
        sqs,
        events,
        queue,
    } = setup().await;
    let event = event("r-1", "client:1");
    events.accept(&event).await.unwrap();
    let mut dead = events.get("r-1").await.unwrap().unwrap();
    dead.status = EventStatus::Dead;
    dead.last_error = Some("out of attempts".into());
    events.save(&mut dead.clone()).await.unwrap();

    // Refused while on its way: only a finished event is replayed without --force.
    let mut queued = dead.clone();
    queued.status = EventStatus::Queued;
    events.save(&mut queued.clone()).await.unwrap();
    assert!(
        replay_event(&events, &queue, &event, false, false)
            .await
            .is_err()
    );
    events.save(&mut dead.clone()).await.unwrap();

    replay_event(&events, &queue, &event, false, false)
        .await
        .unwrap();
    let record = events.get("r-1").await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Queued);
    assert_eq!(record.last_error, None);
    let sent = queue
        .receive(false, 10, std::time::Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].body().unwrap().contains("\"id\":\"r-1\""));

    // The queue is gone: the send fails, and the record is put back as it was.
    events.save(&mut dead.clone()).await.unwrap();
    sqs.delete_queue()
        .queue_url(queue.url())
        .send()
        .await
        .unwrap();
    let err = replay_event(&events, &queue, &event, false, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("queue"), "{err}");
    let record = events.get("r-1").await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Dead, "the record is as it was");
    assert_eq!(record.last_error.as_deref(), Some("out of attempts"));
}

/// A failed event whose message the stored receipt no longer holds (received
/// again, or moved by SQS's own redrive) is sent again instead.
#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_event_whose_message_is_gone_is_sent_again() {
    let Setup {
        _emu,
        events,
        queue,
        ..
    } = setup().await;
    let event = event("r-2", "client:2");
    let sent = queue.send(std::slice::from_ref(&event)).await.unwrap();
    assert_eq!(sent.len(), 1);
    let first = queue
        .receive(false, 10, std::time::Duration::from_secs(1))
        .await
        .unwrap();
    let receipt = first[0].receipt_handle().unwrap().to_owned();
    queue
        .delete(false, std::slice::from_ref(&receipt))
        .await
        .unwrap();
    events.accept(&event).await.unwrap();
    let mut failed = events.get("r-2").await.unwrap().unwrap();
    failed.status = EventStatus::Failed;
    failed.next_attempt_at = Some(Utc::now() + chrono::Duration::hours(1));
    failed.receipt = Some(receipt);
    events.save(&mut failed.clone()).await.unwrap();

    let done = replay_event(&events, &queue, &event, false, false)
        .await
        .unwrap();
    assert_eq!(done, Replay::Sent);
    let again = queue
        .receive(false, 10, std::time::Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "a new message");
    let record = events.get("r-2").await.unwrap().unwrap();
    assert_eq!(record.status, EventStatus::Queued);
    assert_eq!(record.next_attempt_at, None);
}

/// Puts `q` on the dead-letter queue, as dispatch does, with its record `status`.
async fn dead(s: &Setup, q: &QueuedEvent, status: EventStatus, copy: &str) {
    s.events.accept(q).await.unwrap();
    let mut r = s.events.get(&q.event.id).await.unwrap().unwrap();
    r.status = status;
    s.events.save(&mut r.clone()).await.unwrap();
    let body = hooks_core::queue::message_body(q).unwrap();
    s.queue
        .dead_letter(
            &q.key,
            &format!("{}-{copy}", q.event.id),
            &body,
            "out of attempts",
        )
        .await
        .unwrap();
}

/// While a drain runs, a replayed event that fails again is dead-lettered
/// again: the drain must not pick it up a second time (it looped), and must
/// not replay an event that is no longer dead.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_drain_replays_each_event_once_and_only_dead_ones() {
    let s = setup().await;
    let (a, b) = (event("dead-a", "k1"), event("done-b", "k2"));
    dead(&s, &a, EventStatus::Dead, "1").await;
    // Dead-lettered again, as if its replay had failed once more meanwhile.
    dead(&s, &a, EventStatus::Dead, "2").await;
    // A stale copy of an event that succeeded since.
    dead(&s, &b, EventStatus::Succeeded, "1").await;

    let r = hooks_core::replay::replay_dead(&s.events, &s.queue, None, false)
        .await
        .unwrap();
    assert_eq!(r.replayed, ["dead-a"], "once");
    assert_eq!(
        r.skipped,
        [("done-b".to_owned(), "no longer dead: succeeded".to_owned())]
    );
    assert_eq!(r.kept, 1, "the second copy of dead-a stays");
    assert_eq!(
        s.events.get("done-b").await.unwrap().unwrap().status,
        EventStatus::Succeeded,
        "untouched"
    );
    let (main, _) = s.queue.depth().await.unwrap();
    assert_eq!(main, 1, "one message for dead-a, none for done-b");
}

#[tokio::test(flavor = "multi_thread")]
async fn replaying_a_succeeded_event_says_that_nothing_is_left_to_call() {
    let s = setup().await;
    let q = event("ok-1", "k");
    s.events.accept(&q).await.unwrap();
    let mut r = s.events.get("ok-1").await.unwrap().unwrap();
    r.status = EventStatus::Succeeded;
    s.events.save(&mut r.clone()).await.unwrap();
    let e = replay_event(&s.events, &s.queue, &q, false, false)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("--from-start"), "{e}");
    assert_eq!(s.queue.depth().await.unwrap().0, 0, "nothing sent");
    assert_eq!(
        replay_event(&s.events, &s.queue, &q, true, false)
            .await
            .unwrap(),
        Replay::Sent
    );
}
