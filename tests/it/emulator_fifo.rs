//! The local emulator hands out a FIFO message group in order after a
//! visibility timeout, as SQS does (`local/emulator.py`): moto alone
//! answered B, C, D and A only later, a per-key order violation whenever a
//! delivery of several messages of a key timed out (a crashed dispatch).

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use hooks_tests::Emulator;

#[tokio::test]
async fn a_group_comes_back_in_order_after_its_visibility_timeout() {
    let emu = Emulator::start();
    let sqs = aws_sdk_sqs::Client::new(&emu.sdk_config().await);
    let url = sqs
        .create_queue()
        .queue_name("order.fifo")
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "true")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let send = |body: &'static str| {
        let (sqs, url) = (sqs.clone(), url.clone());
        async move {
            sqs.send_message()
                .queue_url(url)
                .message_group_id("client:1")
                .message_body(body)
                .send()
                .await
                .unwrap();
        }
    };
    let receive = |hide: i32| {
        let (sqs, url) = (sqs.clone(), url.clone());
        async move {
            sqs.receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(hide)
                .send()
                .await
                .unwrap()
                .messages
                .unwrap_or_default()
                .into_iter()
                .map(|m| m.body.unwrap_or_default())
                .collect::<Vec<_>>()
        }
    };
    send("A").await;
    send("B").await;
    assert_eq!(
        receive(1).await,
        ["A", "B"],
        "a delivery of two, then a crash"
    );
    send("C").await;
    send("D").await;
    assert!(receive(30).await.is_empty(), "the group is in flight");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        receive(30).await,
        ["A", "B", "C", "D"],
        "after the timeout, the group from its first message"
    );
}
