//! What SQS says of a message, beside its body.

use aws_lambda_events::event::sqs::SqsMessage;
use chrono::{DateTime, Utc};
use hooks_core::records::DeliveryMark;

/// When SQS received the message (its `SentTimestamp`).
pub(crate) fn sent_at(msg: &SqsMessage) -> Option<DateTime<Utc>> {
    msg.attributes
        .get("SentTimestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_millis)
}

/// Which delivery of which message this is (SQS's
/// `ApproximateReceiveCount`; 1 if absent).
pub(crate) fn delivery_mark(msg: &SqsMessage) -> DeliveryMark {
    DeliveryMark {
        message_id: msg.message_id.clone().unwrap_or_default(),
        receives: msg
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1),
    }
}
