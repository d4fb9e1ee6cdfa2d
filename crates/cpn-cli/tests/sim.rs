//! `cpn sim gpu` end to end on a tiny hand-made trace: per-seed curves, summary and plot are
//! written; a malformed row stops it with `file:line` and exit code 1. And without `--data`,
//! from an empty directory, on the trace built into the binary.

use std::process::Command;

const NODES: &str = "sn,cpu_milli,memory_mib,gpu,model\n\
    n0,32000,131072,8,G2\nn1,16000,65536,2,T4\nn2,8000,32768,1,P100\n";

fn pods() -> String {
    let mut s = String::from("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n");
    for i in 0..12 {
        let (g, m) = [(1, 500), (1, 1000), (0, 0), (2, 1000)][i % 4];
        s.push_str(&format!(
            "p{i:02},{},1024,{g},{m},\n",
            2000 + 1000 * (i % 3)
        ));
    }
    s
}

#[test]
fn sim_gpu_writes_curves_summary_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nodes.csv"), NODES).unwrap();
    std::fs::write(dir.path().join("openb_pod_list_tiny.csv"), pods()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cpn"))
        .args([
            "sim",
            "gpu",
            "--data",
            ".",
            "--nodes",
            "nodes.csv",
            "--pods",
            "openb_pod_list_tiny.csv",
            "--policy",
            "fgd,BestFit",
            "--seeds",
            "1-2",
            "--out",
            "out",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("bestfit"), "{stdout}");
    let o = dir.path().join("out");
    for f in [
        "tiny/fgd/seed-1.csv",
        "tiny/bestfit/seed-2.csv",
        "summary.csv",
        "tiny-unallocated.png",
    ] {
        assert!(o.join(f).is_file(), "{f} missing");
    }
    let curve = std::fs::read_to_string(o.join("tiny/fgd/seed-1.csv")).unwrap();
    assert_eq!(curve.lines().count(), 1 + 131);
    assert!(
        curve.starts_with(
            "arrived_pct,allocated_pct,unallocated_pct,frag_amount_pct,frag_rate_pct\n"
        )
    );
}

#[test]
fn sim_gpu_rejects_a_malformed_row_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nodes.csv"), NODES).unwrap();
    let mut bad = pods();
    bad.push_str("p99,1000,1024,1,abc,\n");
    std::fs::write(dir.path().join("bad.csv"), bad).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cpn"))
        .args([
            "sim",
            "gpu",
            "--nodes",
            "nodes.csv",
            "--pods",
            "bad.csv",
            "--seeds",
            "1",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.csv:14: column `gpu_milli`"), "{err}");
}

/// Without `--data`, from an empty directory: the trace built into the binary is replayed
/// and compared with the built-in published results; a trace not built in names `--data`.
#[test]
fn sim_gpu_replays_the_built_in_trace_from_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let cpn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cpn"))
            .args(["sim", "gpu"])
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    // Random is the cheapest policy: one run of the default trace, some seconds unoptimised.
    let out = cpn(&["--policy", "random", "--seeds", "42", "--threads", "1"]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1213 nodes, 6212 GPUs"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("default") && l.contains("random"))
        .unwrap_or_else(|| panic!("no default/random row:\n{stdout}"));
    // The published mean ± sd of Random on the default trace at 100 % (BENCHMARK.md T4).
    assert!(row.contains("13.70 ± 0.33"), "{row}");

    let out = cpn(&["--traces", "cpu050", "--seeds", "42"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not built into cpn") && err.contains("--data"),
        "{err}"
    );
}
