//! The deployment template agrees with the single definition of the tables
//! and queues (shared/src/store/schema.rs), and the check notices drift.

use std::collections::BTreeSet;
use std::path::Path;

use hooks_core::store::schema::{
    DEAD_LETTER_QUEUE, EVENTS_QUEUE, KeyAttr, QueueDef, TABLES, TableDef,
};
use serde_json::{Value, json};

fn template() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_norway::from_str(&text).unwrap()
}

fn key_schema(pk: KeyAttr, sk: Option<KeyAttr>) -> Value {
    let mut v = vec![json!({"AttributeName": pk.name, "KeyType": "HASH"})];
    if let Some(sk) = sk {
        v.push(json!({"AttributeName": sk.name, "KeyType": "RANGE"}));
    }
    Value::Array(v)
}

fn check_table(t: &Value, def: &TableDef) -> Vec<String> {
    let mut problems = Vec::new();
    let name = format!("{}Table", def.logical);
    let Some(r) = t["Resources"].get(&name) else {
        return vec![format!("{name}: missing")];
    };
    let p = &r["Properties"];
    let mut say = |what: &str, ok: bool| {
        if !ok {
            problems.push(format!("{name}: {what} differs from schema.rs"));
        }
    };
    say("Type", r["Type"] == "AWS::DynamoDB::Table");
    say("BillingMode", p["BillingMode"] == "PAY_PER_REQUEST");
    say(
        "KeySchema",
        p["KeySchema"] == key_schema(def.partition_key, def.sort_key),
    );
    let mut attrs: Vec<KeyAttr> = vec![def.partition_key];
    attrs.extend(def.sort_key);
    for ix in def.indexes {
        attrs.push(ix.partition_key);
        attrs.extend(ix.sort_key);
    }
    let want: BTreeSet<(String, String)> = attrs
        .iter()
        .map(|a| (a.name.to_owned(), a.kind.as_str().to_owned()))
        .collect();
    let got: BTreeSet<(String, String)> = p["AttributeDefinitions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    (
                        d["AttributeName"].as_str().unwrap_or("").to_owned(),
                        d["AttributeType"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    say("AttributeDefinitions", want == got);
    let want_ix: BTreeSet<String> = def
        .indexes
        .iter()
        .map(|ix| json!({"IndexName": ix.name, "KeySchema": key_schema(ix.partition_key, ix.sort_key), "Projection": match ix.include { Some(a) => json!({"ProjectionType": "INCLUDE", "NonKeyAttributes": a}), None => json!({"ProjectionType": "ALL"}) }}).to_string())
        .collect();
    let got_ix: BTreeSet<String> = p["GlobalSecondaryIndexes"]
        .as_array()
        .map(|a| a.iter().map(Value::to_string).collect())
        .unwrap_or_default();
    say("GlobalSecondaryIndexes", want_ix == got_ix);
    let ttl = match def.ttl_attribute {
        Some(a) => json!({"AttributeName": a, "Enabled": true}),
        None => Value::Null,
    };
    say(
        "TimeToLiveSpecification",
        p["TimeToLiveSpecification"] == ttl,
    );
    let pitr = p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] == true;
    say("PointInTimeRecovery", pitr == def.point_in_time_recovery);
    problems
}

fn check_queue(t: &Value, def: &QueueDef, dead_letter: Option<&QueueDef>) -> Vec<String> {
    let mut problems = Vec::new();
    let name = format!("{}Queue", def.logical);
    let Some(r) = t["Resources"].get(&name) else {
        return vec![format!("{name}: missing")];
    };
    let p = &r["Properties"];
    let mut say = |what: &str, ok: bool| {
        if !ok {
            problems.push(format!("{name}: {what} differs from schema.rs"));
        }
    };
    say("Type", r["Type"] == "AWS::SQS::Queue");
    say("FifoQueue", p["FifoQueue"] == def.fifo);
    say(
        "ContentBasedDeduplication",
        p["ContentBasedDeduplication"] == false,
    );
    say(
        "VisibilityTimeout",
        p["VisibilityTimeout"] == def.visibility_timeout_secs,
    );
    let (scope, limit) = if def.high_throughput {
        (json!("messageGroup"), json!("perMessageGroupId"))
    } else {
        (Value::Null, Value::Null)
    };
    say("DeduplicationScope", p["DeduplicationScope"] == scope);
    say("FifoThroughputLimit", p["FifoThroughputLimit"] == limit);
    say(
        "MessageRetentionPeriod",
        p["MessageRetentionPeriod"] == def.retention_secs,
    );
    match (def.max_receive_count, dead_letter) {
        (Some(count), Some(dlq)) => {
            say(
                "RedrivePolicy.maxReceiveCount",
                p["RedrivePolicy"]["maxReceiveCount"] == count,
            );
            say(
                "RedrivePolicy.deadLetterTargetArn",
                p["RedrivePolicy"]["deadLetterTargetArn"]
                    == json!({"Fn::GetAtt": [format!("{}Queue", dlq.logical), "Arn"]}),
            );
        }
        _ => say("RedrivePolicy", p.get("RedrivePolicy").is_none()),
    }
    problems
}

fn check(t: &Value) -> Vec<String> {
    let mut problems: Vec<String> = TABLES.iter().flat_map(|d| check_table(t, d)).collect();
    problems.extend(check_queue(t, &EVENTS_QUEUE, Some(&DEAD_LETTER_QUEUE)));
    problems.extend(check_queue(t, &DEAD_LETTER_QUEUE, None));
    problems
}

#[test]
fn the_template_defines_the_same_tables_and_queues_as_the_code() {
    assert_eq!(check(&template()), Vec::<String>::new());
}

#[test]
fn the_check_notices_a_drifted_template() {
    let mut t = template();
    t["Resources"]["EventsTable"]["Properties"]["GlobalSecondaryIndexes"][0]["IndexName"] =
        json!("by_time_v2");
    t["Resources"]["EventsTable"]["Properties"]["TimeToLiveSpecification"]["AttributeName"] =
        json!("ttl");
    t["Resources"]["ConfigTable"]["Properties"]["PointInTimeRecoverySpecification"] = Value::Null;
    t["Resources"]["EventsQueue"]["Properties"]["VisibilityTimeout"] = json!(30);
    t["Resources"]["EventsQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"] = json!(5);
    assert_eq!(
        check(&t),
        [
            "ConfigTable: PointInTimeRecovery differs from schema.rs",
            "EventsTable: GlobalSecondaryIndexes differs from schema.rs",
            "EventsTable: TimeToLiveSpecification differs from schema.rs",
            "EventsQueue: VisibilityTimeout differs from schema.rs",
            "EventsQueue: RedrivePolicy.maxReceiveCount differs from schema.rs",
        ]
    );
}

/// An alarm on the functions' own metrics names one they write, with the
/// dimension they write it with: a typo would leave it silent forever.
#[test]
fn alarms_on_the_functions_metrics_name_metrics_they_write() {
    let t = template();
    let mut ours = 0;
    for (name, r) in t["Resources"].as_object().unwrap() {
        if r["Type"] != "AWS::CloudWatch::Alarm"
            || r["Properties"]["Namespace"] != hooks_core::metrics::NAMESPACE
        {
            continue;
        }
        ours += 1;
        let p = &r["Properties"];
        let metric = p["MetricName"].as_str().unwrap_or("");
        assert!(
            hooks_core::metrics::SERVICE_METRICS.contains(&metric),
            "{name}: {metric} is not a metric the functions write"
        );
        assert_eq!(
            p["Dimensions"],
            json!([{"Name": "Stack", "Value": {"Ref": "AWS::StackName"}}]),
            "{name}"
        );
    }
    assert!(
        ours >= 2,
        "the paused-handler and dead-letter alarms are there"
    );
}

/// SAM packs only the binary with a function: the scripts handlers.toml runs
/// must ship in the scripts layer (scripts/, mounted at /opt) and the
/// functions must look for them there.
#[test]
fn every_script_the_handlers_run_ships_in_the_scripts_layer() {
    let t = template();
    let globals = &t["Globals"]["Function"];
    assert_eq!(
        globals["Environment"]["Variables"]["HOOKS_SCRIPTS_DIR"],
        "/opt"
    );
    assert_eq!(globals["Layers"][0]["Ref"], "ScriptsLayer");
    let layer = &t["Resources"]["ScriptsLayer"];
    assert_eq!(layer["Metadata"]["BuildMethod"], "makefile");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let makefile = std::fs::read_to_string(root.join("Makefile")).unwrap();
    assert!(
        makefile.contains("build-ScriptsLayer:") && makefile.contains("cp -R scripts/."),
        "the Makefile builds the layer from scripts/"
    );
    let config = hooks_core::config::Config::load(&root.join("handlers.toml"), None).unwrap();
    let scripts: Vec<&str> = config
        .handlers
        .iter()
        .filter_map(|h| match &h.target {
            hooks_core::config::Target::Script(s) => s.command.first().map(String::as_str),
            _ => None,
        })
        .collect();
    assert!(!scripts.is_empty(), "the example file runs a script");
    for s in scripts {
        assert!(
            s.starts_with("scripts/") && root.join(s).is_file(),
            "{s} is not in scripts/, so it is not deployed"
        );
    }
}

/// A template value as CloudFormation evaluates it for `params` (the
/// intrinsics the template's conditions and VPC settings use: Ref, Fn::If,
/// Fn::Not, Fn::Equals, Fn::Join, Condition); a parameter not given takes
/// its default. `None`: `AWS::NoValue`, the property is left out.
fn evaluate(t: &Value, v: &Value, params: &[(&str, &str)]) -> Option<Value> {
    let condition = |name: &str| evaluate(t, &t["Conditions"][name], params) == Some(json!(true));
    let Value::Object(o) = v else {
        return Some(v.clone());
    };
    if o.len() != 1 {
        let mut out = serde_json::Map::new();
        for (k, v) in o {
            if let Some(v) = evaluate(t, v, params) {
                out.insert(k.clone(), v);
            }
        }
        return Some(Value::Object(out));
    }
    let (key, arg) = o.iter().next().unwrap();
    let args = arg.as_array().cloned().unwrap_or_default();
    Some(match key.as_str() {
        "Ref" if arg == "AWS::NoValue" => return None,
        "Ref" => {
            let name = arg.as_str().unwrap();
            let p = &t["Parameters"][name];
            let raw = params.iter().find(|(k, _)| *k == name).map_or_else(
                || p["Default"].as_str().unwrap_or("").to_owned(),
                |(_, v)| (*v).to_owned(),
            );
            if p["Type"] == "CommaDelimitedList" {
                json!(raw.split(',').collect::<Vec<_>>())
            } else {
                json!(raw)
            }
        }
        "Condition" => json!(condition(arg.as_str().unwrap())),
        "Fn::If" => {
            let branch = if condition(args[0].as_str().unwrap()) {
                1
            } else {
                2
            };
            return evaluate(t, &args[branch], params);
        }
        "Fn::Not" => json!(evaluate(t, &args[0], params) != Some(json!(true))),
        "Fn::Equals" => json!(evaluate(t, &args[0], params) == evaluate(t, &args[1], params)),
        "Fn::Join" => {
            let list = evaluate(t, &args[1], params).unwrap();
            let parts: Vec<&str> = list
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect();
            json!(parts.join(args[0].as_str().unwrap()))
        }
        _ => {
            let mut out = serde_json::Map::new();
            out.insert(key.clone(), evaluate(t, arg, params)?);
            Value::Object(out)
        }
    })
}

/// Whether CloudFormation accepts `params` by the template's rules.
fn rules_accept(t: &Value, params: &[(&str, &str)]) -> Vec<String> {
    let mut refused = Vec::new();
    for (name, rule) in t["Rules"].as_object().into_iter().flatten() {
        let applies = rule
            .get("RuleCondition")
            .is_none_or(|c| evaluate(t, c, params) == Some(json!(true)));
        for a in rule["Assertions"].as_array().into_iter().flatten() {
            if applies && evaluate(t, &a["Assert"], params) != Some(json!(true)) {
                refused.push(format!("{name}: {}", a["AssertDescription"]));
            }
        }
    }
    refused
}

/// Both variants: by default no VPC (as locally); with subnets and security
/// groups both functions are in the VPC; subnets alone are refused before
/// anything is created.
#[test]
fn the_functions_join_a_vpc_only_when_subnets_are_given() {
    let t = template();
    let functions = ["IngestFunction", "DispatchFunction"];
    for f in functions {
        assert!(
            t["Resources"][f]["Properties"].get("VpcConfig").is_none(),
            "{f} overrides the globals' VpcConfig"
        );
    }
    let vpc_of = |params: &[(&str, &str)]| {
        evaluate(&t, &t["Globals"]["Function"], params)
            .unwrap()
            .get("VpcConfig")
            .cloned()
    };
    assert_eq!(vpc_of(&[]), None, "the default deploys no VPC");
    assert!(rules_accept(&t, &[]).is_empty());
    let private = [
        ("SubnetIds", "subnet-0aaa,subnet-0bbb"),
        ("SecurityGroupIds", "sg-0ccc"),
    ];
    assert_eq!(
        vpc_of(&private),
        Some(json!({"SubnetIds": ["subnet-0aaa", "subnet-0bbb"], "SecurityGroupIds": ["sg-0ccc"]}))
    );
    assert!(rules_accept(&t, &private).is_empty());
    let refused = rules_accept(&t, &[("SubnetIds", "subnet-0aaa")]);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("SecurityGroupIds"), "{refused:?}");
}
