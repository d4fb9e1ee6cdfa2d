//! Limits at save time and budgets at run time, on the expressions that once took the
//! server down (nested loops over a large input).

use super::*;

fn ctx_with_list(n: i64) -> Context<'static, 'static> {
    let mut ctx = Context::default();
    let xs: Vec<Value> = (0..n).map(Value::Int).collect();
    let mut inputs = std::collections::HashMap::new();
    inputs.insert(cel::objects::Key::from("xs"), Value::List(Arc::new(xs)));
    ctx.add_variable_from_value(
        "inputs",
        Value::Map(cel::objects::Map {
            map: Arc::new(inputs),
        }),
    );
    ctx
}

fn eval(source: &str, n: i64, iterations: u64) -> Result<Value, EvalError> {
    let b = Bounded::compile(source, &LIMITS).expect("compiles");
    b.eval(&mut ctx_with_list(n), &Budget::new(iterations))
}

#[test]
fn results_are_unchanged_within_the_budget() {
    let cases = [
        ("inputs.xs.all(a, a >= 0)", Value::Bool(true)),
        ("inputs.xs.exists(a, a == 7)", Value::Bool(true)),
        ("inputs.xs.exists_one(a, a == 7)", Value::Bool(true)),
        ("inputs.xs.map(a, a * 2)[3]", Value::Int(6)),
        ("size(inputs.xs.filter(a, a % 2 == 0))", Value::Int(5)),
        ("inputs.xs.map(a, a % 2 == 0, a)[1]", Value::Int(2)),
        (
            "inputs.xs.all(a, inputs.xs.exists(b, a == b))",
            Value::Bool(true),
        ),
        ("size(inputs.xs) + 1", Value::Int(11)),
    ];
    for (source, want) in cases {
        assert_eq!(eval(source, 10, 1_000), Ok(want), "{source}");
    }
}

#[test]
fn a_nested_loop_over_a_large_list_stops_at_its_budget_quickly() {
    let started = std::time::Instant::now();
    for source in [
        "inputs.xs.all(a, inputs.xs.all(b, a + b >= 0))",
        "inputs.xs.exists(a, inputs.xs.exists(b, a + b < 0))",
        "size(inputs.xs.map(a, inputs.xs.map(b, a + b))) > 0",
        "inputs.xs.exists(a, inputs.xs.exists(b, a + b < 0)) || true",
        "size(inputs.xs.filter(a, inputs.xs.exists_one(b, b == a))) > 0",
    ] {
        assert_eq!(
            eval(source, 8_000, 100_000),
            Err(EvalError::OverBudget {
                iterations: 100_000
            }),
            "{source}"
        );
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn a_raised_stop_flag_ends_the_evaluation() {
    let b = Bounded::compile("inputs.xs.all(a, inputs.xs.all(b, a + b >= 0))", &LIMITS)
        .expect("compiles");
    let budget = Budget::new(u64::MAX);
    let stop = budget.stop.clone();
    let raiser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        stop.raise("ran past its deadline");
    });
    let started = std::time::Instant::now();
    let r = b.eval(&mut ctx_with_list(8_000), &budget);
    raiser.join().unwrap();
    assert_eq!(r, Err(EvalError::Stopped("ran past its deadline".into())));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn save_time_limits_refuse_long_deep_and_deeply_nested_expressions() {
    let long = format!("'{}' == ''", "x".repeat(5000));
    let e = parse(&long, &LIMITS).unwrap_err();
    assert!(e[0].message.contains("at most 4096"), "{e:?}");

    let nested3 = "inputs.xs.all(a, inputs.xs.all(b, inputs.xs.all(c, a + b + c >= 0)))";
    let e = Bounded::compile(nested3, &LIMITS).unwrap_err();
    assert!(e[0].message.contains("nested 3 deep"), "{e:?}");
    assert!(e[0].position.is_some());

    // Two levels pass; the range of a nested loop is outside it and does not count.
    assert!(Bounded::compile("inputs.xs.all(a, inputs.xs.all(b, a + b >= 0))", &LIMITS).is_ok());
    assert!(
        Bounded::compile(
            "inputs.xs.map(a, a).filter(b, b > 0).all(c, c > 0)",
            &LIMITS
        )
        .is_ok()
    );

    let deep = format!("{}1{}", "(".repeat(60), ")".repeat(60));
    let program = parse(&deep, &LIMITS).expect("a parser deeper than a request thread's stack");
    assert!(
        check(&program, &LIMITS).is_empty(),
        "parentheses add no depth"
    );
    let deep = (0..30).fold("1".to_string(), |acc, i| format!("[{acc}, {i}]"));
    let program = parse(&deep, &LIMITS).expect("parses");
    let e = check(&program, &LIMITS);
    assert!(e[0].message.contains("levels deep"), "{e:?}");
}

#[test]
fn expressions_without_loops_need_no_budget() {
    assert_eq!(eval("size(inputs.xs) == 10", 10, 0), Ok(Value::Bool(true)));
}

#[test]
fn the_deepest_expressions_the_parser_takes_fit_its_thread() {
    for n in [90, 95, 100, 200, 1000] {
        for deep in [
            format!("{}1{}", "(".repeat(n), ")".repeat(n)),
            format!("{}1{}", "[".repeat(n), "]".repeat(n)),
            format!("{}true", "!".repeat(n)),
            format!("{}1{}", "f(".repeat(n), ")".repeat(n)),
            format!("1{}", " + 1".repeat(n)),
            "a.".repeat(n) + "b",
            format!("{}1{}", "{1: ".repeat(n), "}".repeat(n)),
        ] {
            // Parsed or refused, but never a crash.
            let _ = parse(&deep, &LIMITS).map(|p| check(&p, &LIMITS));
        }
    }
}
