use serde_json::json;

use super::*;

fn data(v: serde_json::Value) -> Data {
    match v {
        serde_json::Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn eval(src: &str, d: serde_json::Value) -> Result<bool, String> {
    Condition::compile(src)
        .map_err(|p| p.message)?
        .eval(Event::ClientsCreate, &data(d))
        .map_err(|e| e.to_string())
}

fn problems(src: &str) -> Vec<String> {
    match Condition::compile(src) {
        Ok(c) => c.check().into_iter().map(|p| p.message).collect(),
        Err(p) => vec![p.message],
    }
}

#[test]
fn the_issue_example_evaluates_against_data() {
    let src = r#"data.balance < 0 && data.tariff in ["pro", "enterprise"]"#;
    assert_eq!(eval(src, json!({"balance": -5, "tariff": "pro"})), Ok(true));
    assert_eq!(
        eval(src, json!({"balance": -5.5, "tariff": "enterprise"})),
        Ok(true)
    );
    assert_eq!(
        eval(src, json!({"balance": 10, "tariff": "pro"})),
        Ok(false)
    );
    assert_eq!(
        eval(src, json!({"balance": -1, "tariff": "basic"})),
        Ok(false)
    );
    assert!(problems(src).is_empty(), "{:?}", problems(src));
}

#[test]
fn numbers_of_either_kind_compare() {
    assert_eq!(eval("data.x > 1", json!({"x": 1.5})), Ok(true));
    assert_eq!(eval("data.x == 2", json!({"x": 2.0})), Ok(true));
    assert_eq!(eval("data.x < 2.5", json!({"x": 2})), Ok(true));
    assert_eq!(eval("data.x in [1, 2]", json!({"x": 2})), Ok(true));
    assert_eq!(
        eval(
            "data.x * 2 == 4 && data.x + 1 == 3 && -data.x == -2",
            json!({"x": 2})
        ),
        Ok(true)
    );
    assert_eq!(eval("data.x > 1", json!({"x": u64::MAX})), Ok(true));
}

#[test]
fn a_missing_field_or_a_wrong_type_is_an_error_not_true() {
    let missing = eval("data.balance < 0", json!({}));
    assert!(
        missing.as_ref().is_err_and(|e| e.contains("balance")),
        "{missing:?}"
    );
    let wrong = eval("data.balance < 0", json!({"balance": "low"}));
    assert!(wrong.is_err(), "{wrong:?}");
    assert_eq!(
        eval("has(data.balance) && data.balance < 0", json!({})),
        Ok(false)
    );
    let not_bool = eval("data.balance", json!({"balance": 3}));
    assert!(not_bool.is_err_and(|e| e.contains("instead of true or false")));
}

#[test]
fn the_event_name_and_macros_and_functions_work() {
    assert_eq!(eval(r#"event == "clients.create""#, json!({})), Ok(true));
    assert_eq!(
        eval(r#"event.startsWith("accounts.")"#, json!({})),
        Ok(false)
    );
    let items = json!({"items": [{"qty": 1}, {"qty": 0}]});
    assert_eq!(
        eval("data.items.exists(i, i.qty == 0)", items.clone()),
        Ok(true)
    );
    assert_eq!(
        eval("data.items.all(i, i.qty > 0)", items.clone()),
        Ok(false)
    );
    assert_eq!(eval("size(data.items) == 2", items), Ok(true));
    assert_eq!(
        eval(
            r#"data.name.contains("ac") && data.name.endsWith("me")"#,
            json!({"name": "acme"})
        ),
        Ok(true)
    );
    assert_eq!(
        eval(
            r#"data.number.matches("^\\+44")"#,
            json!({"number": "+4420"})
        ),
        Ok(true)
    );
    assert_eq!(
        eval(
            r#"int(data.n) + 1 == 3 && string(data.n) == "2" && double(data.n) > 1.5"#,
            json!({"n": 2})
        ),
        Ok(true)
    );
    assert_eq!(
        eval(
            r#"type(data.b) == string && bool(data.b)"#,
            json!({"n": 2, "b": "true"})
        ),
        Ok(true)
    );
    assert_eq!(
        eval(
            r#"has(data.a.b) && data.a.b == null"#,
            json!({"a": {"b": null}})
        ),
        Ok(true)
    );
    assert_eq!(
        eval(
            r#"dyn(data.n) == 2 && uint(data.n) == 2u && bytes("a") == b"a""#,
            json!({"n": 2})
        ),
        Ok(true)
    );
    assert_eq!(
        eval(
            r#"data.items.map(i, i * 2).filter(i, i > 2) == [4]"#,
            json!({"items": [1, 2]})
        ),
        Ok(true)
    );
    assert_eq!(
        eval(
            r#"data.items.exists_one(i, i == 1)"#,
            json!({"items": [1, 2]})
        ),
        Ok(true)
    );
}

#[test]
fn syntax_errors_have_a_place() {
    let e = Condition::compile("data.balance < && x").expect_err("invalid");
    assert!(e.message.contains("not valid CEL"), "{e:?}");
    assert_eq!(e.at.start, 15, "{e:?}");
    let e = Condition::compile("data.a == 1 &&\n  data.b <").expect_err("invalid");
    assert!(e.at.start > 14, "{e:?}");
    assert!(Condition::compile("   ").is_err());
    assert!(Condition::compile(&"a".repeat(MAX_CONDITION_BYTES + 1)).is_err());
}

#[test]
fn validation_finds_what_is_knowable() {
    let unknown = problems("date.balance < 0");
    assert_eq!(unknown, vec!["unknown variable `date`"]);
    assert_eq!(
        problems("sise(data.x) > 1"),
        vec!["unknown function `sise`"]
    );
    assert_eq!(
        problems("data.balance + 1"),
        vec!["the condition comes to a number instead of true or false"]
    );
    assert_eq!(
        problems(r#""a" < 1"#),
        vec!["a string is compared with a number: always an error"]
    );
    assert_eq!(
        problems(r#"data.balance < 0 || data.balance == "none""#),
        vec!["`data.balance` is compared with a string here and with a number at `0`"]
    );
    assert_eq!(
        problems(r#"data.tariff in ["pro", 1]"#),
        vec!["the list mixes values of different types"]
    );
    assert_eq!(
        problems(r#"data.tariff == 1 || data.tariff in ["pro"]"#),
        vec![r#"`data.tariff` is compared with a string here and with a number at `1`"#]
    );
    assert_eq!(
        problems(r#"data.x in "abc""#),
        vec!["`in` looks in a list or a map, not in a string"]
    );
    assert_eq!(
        problems("1 && data.x"),
        vec!["`&&` needs true or false here, not a number"]
    );
    assert_eq!(
        problems("data.x < true"),
        vec!["a boolean cannot be ordered with <, <=, > or >="]
    );
    assert!(problems("data.x == null || data.x > 1").is_empty());
    assert!(problems("data.items.all(i, i.qty > 0 && i.sku != \"\")").is_empty());
    assert_eq!(
        problems("data.items.exists(i, data.items.exists(j, i.id == j.parent))"),
        vec!["a macro inside another macro is not allowed"]
    );
    assert_eq!(
        problems("data.l.map(x, x.m.all(y, y > 0)).size() > 0"),
        vec!["a macro inside another macro is not allowed"]
    );
    assert_eq!(
        problems("data.l.map(x, data.l).size() > 0"),
        vec!["`data` inside a macro is not allowed"]
    );
    assert!(problems("data.a.b.c == 1 && data.a.b.d == \"x\"").is_empty());
}

#[test]
fn a_condition_round_trips_as_its_source() {
    let c = Condition::compile("data.x > 1").expect("valid");
    let s = serde_json::to_string(&c).expect("serializes");
    assert_eq!(s, "\"data.x > 1\"");
    let back: Condition = serde_json::from_str(&s).expect("deserializes");
    assert_eq!(back, c);
    assert!(serde_json::from_str::<Condition>("\"data.x >\"").is_err());
}

#[test]
fn only_the_fields_read_are_converted_and_a_whole_data_use_converts_all() {
    let c = |s: &str| Condition::compile(s).expect("valid");
    assert_eq!(
        c("data.a.b > 1 && has(data.c) && data.a.d == 2")
            .reads
            .as_deref(),
        Some(&["a".to_owned(), "c".to_owned()][..])
    );
    assert_eq!(c("size(data) > 1").reads, None);
    assert_eq!(
        c("data.items.all(i, i > 0) && [data.x].size() == 1")
            .reads
            .as_deref()
            .map(<[String]>::len),
        Some(2)
    );
    // Whichever way it is read, the answer is the same.
    let d = json!({"a": {"b": 2, "d": 2}, "c": null, "other": [1, 2, 3]});
    assert_eq!(
        eval("data.a.b > 1 && has(data.c) && data.a.d == 2", d.clone()),
        Ok(true)
    );
    assert_eq!(eval("size(data) == 3", d.clone()), Ok(true));
    assert_eq!(eval(r#"data["other"][1] == 2"#, d), Ok(true));
}

#[test]
fn a_problem_after_non_ascii_text_is_placed_on_the_right_bytes() {
    let src = r#"data.city == "Zürich" || date.x == 1"#;
    let c = Condition::compile(src).expect("valid syntax");
    let p = c.check();
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(&src[p[0].at.clone()], "date");
    let e = Condition::compile(r#"data.city == "Zürich" || )"#).expect_err("invalid");
    assert_eq!(&r#"data.city == "Zürich" || )"#[e.at.clone()], ")");
}

#[test]
fn nesting_is_bounded_before_and_after_parsing() {
    // Brackets: refused before the parser recurses into them.
    let deep = format!("{}data.a > 0{}", "(".repeat(40), ")".repeat(40));
    let p = Condition::compile(&deep).unwrap_err();
    assert!(
        p.message.contains("brackets nest 40 levels"),
        "{}",
        p.message
    );
    // Brackets inside a string do not count.
    let quoted = format!("data.s == '{}'", "(".repeat(100));
    assert!(Condition::compile(&quoted).is_ok());
    // A chain of operators nests once per operator.
    let chain = format!("data.a{} > 0", " + data.a".repeat(100));
    let p = Condition::compile(&chain).unwrap_err();
    assert!(p.message.contains("levels deep"), "{}", p.message);
    // What people write stays far inside.
    let fine = format!("data.a{} > 0", " + data.a".repeat(20));
    assert!(Condition::compile(&fine).is_ok());
}

#[test]
fn a_condition_over_its_budget_does_not_run_and_says_so() {
    let src = format!(
        "size(data.items.map(i, [{}])) > 0",
        vec!["i"; 480].join(",")
    );
    let c = Condition::compile(&src).unwrap();
    let items: Vec<serde_json::Value> = (0..5_000).map(|n| json!({"n": n})).collect();
    let big = data(json!({ "items": items }));
    assert!(c.steps_over(&big) > MAX_EVAL_STEPS);
    match c.eval(Event::ClientsCreate, &big) {
        Err(EvalError::OverBudget(e)) => assert!(e.contains("at most 250000"), "{e}"),
        other => panic!("{other:?}"),
    }
    // A field the condition does not read does not count.
    let c = Condition::compile("data.a > 0").unwrap();
    let mut d = big.clone();
    d.insert("a".into(), json!(1));
    assert_eq!(c.eval(Event::ClientsCreate, &d), Ok(true));
    // An ordinary macro over a long list is within budget.
    let c = Condition::compile("data.items.all(i, i.n >= 0)").unwrap();
    assert_eq!(c.eval(Event::ClientsCreate, &big), Ok(true));
}

#[test]
fn matches_compiles_each_pattern_once_and_validate_checks_it() {
    let src = r"data.users.exists(u, !u.name.matches('^[\\w .-]{1,64}$'))";
    let c = Condition::compile(src).unwrap();
    assert!(c.check().is_empty(), "{:?}", c.check());
    let users: Vec<serde_json::Value> = (0..500)
        .map(|n| json!({"name": format!("user {n}")}))
        .collect();
    assert_eq!(
        c.eval(Event::ClientsCreate, &data(json!({ "users": users }))),
        Ok(false)
    );
    assert!(
        PATTERNS.lock().unwrap().contains_key(r"^[\w .-]{1,64}$"),
        "compiled once, kept"
    );
    // Both spellings are ours.
    let c = Condition::compile("matches(data.email, '^[a-z]+@x[.]com$')").unwrap();
    assert_eq!(
        c.eval(Event::ClientsCreate, &data(json!({"email": "ann@x.com"}))),
        Ok(true)
    );
    // A pattern from the data, or an invalid one, is refused by validate.
    let p = problems("data.name.matches(data.pattern)");
    assert!(
        p.iter()
            .any(|m| m.contains("must be written in the condition")),
        "{p:?}"
    );
    let p = problems("data.name.matches('(unclosed')");
    assert!(p.iter().any(|m| m.contains("not a valid pattern")), "{p:?}");
    let p = problems(&format!("data.name.matches('{}')", r"\\w{1000}{1000}"));
    assert!(
        p.iter().any(|m| m.contains("not a valid pattern")),
        "too large: {p:?}"
    );
}

#[test]
fn validate_finds_unsigned_literals_and_index_type_mixes() {
    let p = problems("data.count + 1u > 2");
    assert!(p.iter().any(|m| m.contains("unsigned literal")), "{p:?}");
    // Compared, an int and a uint are equal when their values are.
    assert!(problems("data.count == 1u").is_empty());
    assert_eq!(eval("data.count == 1u", json!({"count": 1})), Ok(true));
    let p = problems(r#"data['a'] < 0 || data['a'] == "none""#);
    assert!(
        p.iter()
            .any(|m| m.contains("`data.a` is compared with a string")),
        "{p:?}"
    );
    let p = problems(r#"data['a'] < 0 || data.a == "none""#);
    assert!(p.iter().any(|m| m.contains("`data.a`")), "{p:?}");
    assert!(problems("data['a']['b'] > 1 && data.a.b < 5").is_empty());
}

/// The deepest accepted condition compiles, checks and evaluates on a
/// thread with the stack of a tokio worker (2 MiB), in this (debug) build.
#[test]
fn the_deepest_accepted_condition_fits_a_workers_stack() {
    let src = format!(
        "{}data.a{} > 0",
        "(".repeat(MAX_BRACKET_DEPTH),
        ")".repeat(MAX_BRACKET_DEPTH)
    );
    // The longest chain, and the deepest macro body, that compile.
    let deepest = |make: &dyn Fn(usize) -> String| {
        (1..=MAX_EXPRESSION_DEPTH)
            .rev()
            .map(make)
            .find(|s| Condition::compile(s).is_ok())
            .unwrap()
    };
    let chain = deepest(&|n| format!("data.a{} > 0", " + data.a".repeat(n)));
    let body = deepest(&|n| format!("data.l.exists(x, x{} > 0)", " + x".repeat(n)));
    assert!(chain.matches('+').count() >= 25, "{chain}");
    let run = move || {
        for src in [&src, &chain, &body] {
            let c = Condition::compile(src).unwrap_or_else(|p| panic!("{}", p.message));
            assert!(c.check().is_empty());
            assert_eq!(
                c.eval(Event::ClientsCreate, &data(json!({"a": 1, "l": [1]}))),
                Ok(true)
            );
        }
    };
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(run)
        .unwrap()
        .join()
        .unwrap();
}
