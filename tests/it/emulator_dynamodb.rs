//! The local emulator applies a DynamoDB transaction atomically and
//! isolated from other requests, as DynamoDB does (`local/emulator.py`):
//! moto alone copies every table a transaction touches when it begins and,
//! when the transaction fails, puts the copies back, losing what other
//! requests wrote in between (one of two concurrent syncs then saw the old
//! revision live after losing to the other).

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put, PutRequest,
    ScalarAttributeType, TransactWriteItem, WriteRequest,
};
use hooks_tests::Emulator;

async fn table(db: &aws_sdk_dynamodb::Client, name: &str) {
    db.create_table()
        .table_name(name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}

fn put(table: &str, key: &str, condition: Option<&str>) -> TransactWriteItem {
    let mut put = Put::builder()
        .table_name(table)
        .item("pk", AttributeValue::S(key.into()));
    if let Some(c) = condition {
        put = put.condition_expression(c);
    }
    TransactWriteItem::builder()
        .put(put.build().unwrap())
        .build()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_transaction_loses_no_write_made_while_it_ran() {
    let emu = Emulator::start();
    let db = emu.dynamodb();
    table(&db, "small").await;
    table(&db, "big").await;
    // A table slow to copy: items of long lists (each element an object).
    let numbers: Vec<AttributeValue> = (0..8000)
        .map(|i| AttributeValue::N((i % 10).to_string()))
        .collect();
    for batch in 0..4 {
        let writes: Vec<WriteRequest> = (0..10)
            .map(|i| {
                let put = PutRequest::builder()
                    .item("pk", AttributeValue::S(format!("filler-{batch}-{i}")))
                    .item("list", AttributeValue::L(numbers.clone()))
                    .build()
                    .unwrap();
                WriteRequest::builder().put_request(put).build()
            })
            .collect();
        db.batch_write_item()
            .request_items("big", writes)
            .send()
            .await
            .unwrap();
    }
    // A transaction over both tables that fails its condition: the small
    // table is copied first, then the big one, slowly.
    let started = Instant::now();
    let failing = {
        let db = db.clone();
        tokio::spawn(async move {
            let r = db
                .transact_write_items()
                .transact_items(put("small", "from-the-transaction", None))
                .transact_items(put("big", "head", Some("attribute_exists(never)")))
                .send()
                .await;
            (r.is_err(), started.elapsed())
        })
    };
    // A plain write to the small table while the transaction runs.
    tokio::time::sleep(Duration::from_millis(200)).await;
    db.put_item()
        .table_name("small")
        .item("pk", AttributeValue::S("meanwhile".into()))
        .send()
        .await
        .unwrap();
    let (refused, took) = failing.await.unwrap();
    assert!(refused, "the condition cannot hold");
    let got = |key: &'static str| {
        let db = db.clone();
        async move {
            db.get_item()
                .table_name("small")
                .key("pk", AttributeValue::S(key.into()))
                .send()
                .await
                .unwrap()
                .item
                .is_some()
        }
    };
    assert!(
        !got("from-the-transaction").await,
        "a failed transaction writes nothing"
    );
    assert!(
        got("meanwhile").await,
        "the write made while the transaction ran ({took:?}) was lost"
    );
}
