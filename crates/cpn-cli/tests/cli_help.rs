//! Checks the built `cpn` binary end to end without a server: help lists the commands, and
//! an unreachable server gives exit code 1 with a pointer to `cpn serve`.

use std::process::{Command, Output};

/// Runs `cpn` in an empty directory with no cpn environment, so no local token or server
/// setting leaks in.
fn cpn(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_cpn"))
        .args(args)
        .current_dir(dir.path())
        .env_remove("CPN_SERVER")
        .env_remove("CPN_TOKEN")
        .env_remove("CPN_DATA_DIR")
        .env_remove("CPN_LISTEN")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn help_lists_the_commands() {
    let out = cpn(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    for cmd in [
        "serve", "platform", "cloud", "site", "resource", "link", "tag", "policy", "explain",
        "dry-run", "topology", "scenario", "login", "logout", "whoami", "tenant", "user", "task",
        "node", "alloc", "op", "events", "agent",
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{cmd} "))),
            "`{cmd}` missing from --help:\n{text}"
        );
    }
    for flag in ["--server", "--token", "--output"] {
        assert!(text.contains(flag), "`{flag}` missing from --help:\n{text}");
    }
}

#[test]
fn bench_help_lists_the_benchmarks() {
    assert_verbs(
        &["bench"],
        &[
            "registry",
            "schedule",
            "tasks",
            "login",
            "livestate",
            "metering",
        ],
    );
}

#[test]
fn site_help_lists_the_verbs() {
    let out = cpn(&["site", "--help"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    for verb in ["list", "get", "create", "update", "delete", "status"] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{verb} "))),
            "`{verb}` missing from site --help:\n{text}"
        );
    }
}

/// `cpn ARGS --help` succeeds and lists each verb at the start of a line.
fn assert_verbs(args: &[&str], verbs: &[&str]) {
    let mut argv = args.to_vec();
    argv.push("--help");
    let out = cpn(&argv);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    for verb in verbs {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{verb} "))),
            "`{verb}` missing from {} --help:\n{text}",
            args.join(" ")
        );
    }
}

/// `cpn ARGS --help` succeeds and names each flag, with an example.
fn assert_flags(args: &[&str], flags: &[&str]) {
    let mut argv = args.to_vec();
    argv.push("--help");
    let out = cpn(&argv);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    for flag in flags {
        assert!(
            text.contains(flag),
            "`{flag}` missing from {} --help:\n{text}",
            args.join(" ")
        );
    }
    assert!(
        text.contains("Example"),
        "no example in {} --help:\n{text}",
        args.join(" ")
    );
}

#[test]
fn runtime_commands_list_their_verbs() {
    assert_verbs(&["task"], &["submit", "list", "get", "logs", "cancel"]);
    assert_verbs(
        &["node"],
        &[
            "list",
            "get",
            "cordon",
            "uncordon",
            "occupy",
            "release-occupy",
            "reclaim",
        ],
    );
    assert_verbs(&["alloc"], &["create", "adjust", "release", "list"]);
    assert_verbs(&["op"], &["list", "get"]);
    assert_verbs(
        &["resource"],
        &["list", "get", "create", "isolate", "unisolate"],
    );
}

#[test]
fn runtime_verbs_name_their_flags() {
    assert_flags(
        &["task", "submit"],
        &[
            "--name <NAME>",
            "--cpu <N>",
            "--memory-gib <GIB>",
            "--gpus <N>",
            "--priority <N>",
            "--site <SITE>",
            "--node-selector <SEL>",
            "--env <K=V>",
            "--workdir <DIR>",
            "--retries <N>",
            "--replicas <N>",
            "--deadline <RFC3339>",
            "--policy <POLICY>",
            "--tenant <TENANT>",
            "--lease <ID>",
            "--script <FILE>",
            "--file <FILE>",
            "--wait",
            "--follow",
            "[PROGRAM]...",
        ],
    );
    assert_flags(
        &["task", "list"],
        &[
            "--state <STATES>",
            "--node <NODE>",
            "--name <NAME>",
            "--limit <N>",
            "--all-pages",
        ],
    );
    assert_flags(&["task", "get"], &["<ID>"]);
    assert_flags(
        &["task", "logs"],
        &["--stream <STREAM>", "--attempt <N>", "--follow"],
    );
    assert_flags(&["task", "cancel"], &["<ID>..."]);
    assert_flags(
        &["agent"],
        &[
            "--site <SITE>",
            "--name <NODE>",
            "--state-dir <DIR>",
            "--label <K=V>",
            "--server",
            "--token",
        ],
    );
    assert_flags(&["node", "get"], &["<NODE>"]);
    assert_flags(&["node", "cordon"], &["<NODE>", "--reason <TEXT>"]);
    assert_flags(&["node", "occupy"], &["--tenant <TENANT>"]);
    assert_flags(&["node", "reclaim"], &["--reason <TEXT>"]);
    assert_flags(
        &["alloc", "create"],
        &[
            "<NODE>",
            "--cpu <N>",
            "--memory-gib <GIB>",
            "--gpus <N>",
            "--tenant <TENANT>",
        ],
    );
    assert_flags(&["alloc", "adjust"], &["<ALLOC_ID>", "--cpu <N>"]);
    assert_flags(&["alloc", "release"], &["<ALLOC_ID>"]);
    assert_flags(&["op", "get"], &["<ID>"]);
    assert_flags(&["site", "status"], &["<NAME_OR_ID>"]);
    assert_flags(&["site", "capacity"], &["[NAME_OR_ID]"]);
    assert_flags(
        &["events"],
        &["--types <TYPES>", "--after <ID>", "--follow", "--limit <N>"],
    );
}

#[test]
fn submit_without_a_program_fails_before_any_request() {
    let out = cpn(&["task", "submit", "--server", "http://127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing to run"), "{err}");
}

#[test]
fn an_agent_that_never_joined_asks_for_a_join_token() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = cpn(&[
        "agent",
        "--token",
        "t",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--join TOKEN") && err.contains("cpn site join-token create"),
        "{err}"
    );
    assert!(
        !state.exists(),
        "nothing is written before the agent has joined"
    );
}

#[test]
fn tag_and_link_have_their_extra_verbs() {
    let text = stdout(&cpn(&["tag", "--help"]));
    assert!(text.contains("apply") && text.contains("remove"), "{text}");
    let text = stdout(&cpn(&["link", "--help"]));
    assert!(text.contains("metrics") && text.contains("list"), "{text}");
}

#[test]
fn policy_help_lists_registry_verbs_and_history() {
    let out = cpn(&["policy", "--help"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    for verb in [
        "list", "get", "create", "update", "delete", "versions", "rollback",
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{verb} "))),
            "`{verb}` missing from policy --help:\n{text}"
        );
    }
    let text = stdout(&cpn(&["policy", "rollback", "--help"]));
    assert!(text.contains("--to <GEN>"), "{text}");
}

#[test]
fn explain_help_names_its_flags() {
    let out = cpn(&["explain", "--help"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    for flag in ["--file <FILE>", "--policy <NAME>", "--output"] {
        assert!(
            text.contains(flag),
            "`{flag}` missing from explain --help:\n{text}"
        );
    }
    assert!(text.contains("why"), "{text}");
}

#[test]
fn dry_run_help_names_its_flags() {
    let out = cpn(&["dry-run", "--help"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    for flag in ["--file <FILE>", "--policy <NAME>", "--seed <N>"] {
        assert!(
            text.contains(flag),
            "`{flag}` missing from dry-run --help:\n{text}"
        );
    }
    let out = cpn(&["dry-run", "-f", "tasks.yaml"]);
    assert_eq!(out.status.code(), Some(2), "--policy is required: {out:?}");
}

#[test]
fn dry_run_refuses_three_policies_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tasks.yaml");
    std::fs::write(&file, "- name: a\n").unwrap();
    let out = cpn(&[
        "dry-run",
        "-f",
        file.to_str().unwrap(),
        "--policy",
        "a",
        "--policy",
        "b",
        "--policy",
        "c",
        "--server",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("one or two policies"), "{err}");
}

#[test]
fn unreachable_server_points_at_cpn_serve() {
    let out = cpn(&["site", "list", "--server", "http://127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("cpn serve"), "{err}");
    assert!(err.contains("http://127.0.0.1:9"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let out = cpn(&["site", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn marketplace_commands_list_their_verbs() {
    assert_verbs(
        &["market"],
        &["list", "show", "publish", "edit", "delist", "relist"],
    );
    assert_verbs(
        &["lease"],
        &[
            "order",
            "code",
            "authorization-code",
            "approve",
            "reject",
            "cancel",
            "orders",
            "list",
            "show",
            "release",
        ],
    );
    assert_verbs(
        &["billing"],
        &[
            "balance",
            "topup",
            "budget",
            "usage",
            "close",
            "invoices",
            "statements",
            "ledger",
        ],
    );
    assert_flags(
        &["market", "list"],
        &["--model", "--mode", "--max-price", "--sort", "--mine"],
    );
    assert_flags(
        &["lease", "order"],
        &["--cards", "--card-id", "--mode", "--periods"],
    );
}
