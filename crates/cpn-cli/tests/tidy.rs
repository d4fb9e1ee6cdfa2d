//! Tidy checks that hold the architecture in place (see ARCHITECTURE.md): the pure core
//! crates stay free of runtimes, databases and HTTP, every source file says why it exists,
//! and nothing reads data from outside the repository.

use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates that must stay pure: no I/O, no async runtime, deterministic.
const CORE: &[&str] = &[
    "cpn-model",
    "cpn-topology",
    "cpn-sched",
    "cpn-policy",
    "cpn-sim",
    "cpn-template",
    "cpn-flow",
    "cpn-cel",
    "cpn-market",
];
/// Crates a core crate may never reach, directly or through others.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "mio",
    "axum",
    "hyper",
    "tower",
    "reqwest",
    "rusqlite",
    "libsqlite3-sys",
    "sqlx",
    "postgres",
    "tokio-postgres",
    "kube",
    "tonic",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

#[test]
fn core_crates_have_no_io_dependencies() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Only the host's dependency graph: other platforms' crates need not be downloaded.
    let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()
        .expect("run rustc -vV");
    let host = String::from_utf8(rustc.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc -vV names the host");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            &host,
        ])
        .current_dir(workspace_root())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: HashMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    for core in CORE {
        let root = names
            .iter()
            .find(|(_, n)| *n == core)
            .map(|(id, _)| *id)
            .unwrap_or_else(|| panic!("{core} not in workspace"));
        // Closure over normal and build dependencies; dev-dependencies do not ship.
        let mut seen = BTreeSet::new();
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            for dep in nodes[id]["deps"].as_array().unwrap() {
                let shipped = dep["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].as_str() != Some("dev"));
                if shipped {
                    stack.push(dep["pkg"].as_str().unwrap());
                }
            }
        }
        let reached: BTreeSet<&str> = seen.iter().map(|id| names[id]).collect();
        let bad: Vec<&&str> = FORBIDDEN.iter().filter(|f| reached.contains(**f)).collect();
        assert!(
            bad.is_empty(),
            "{core} must stay pure but depends on {bad:?}"
        );
    }
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let mut missing = Vec::new();
    let mut stack = vec![workspace_root().join("crates")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                if !text.trim_start().starts_with("//!") {
                    missing.push(path.display().to_string());
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "files without a leading //! line saying why they exist: {missing:#?}"
    );
}

/// Paths outside the repository that code, scripts, CI or docs once read data from. Spelt
/// in pieces so that this file does not name them itself.
const OUTSIDE: &[&str] = &[
    concat!("..", "/shared"),
    concat!("shared", "/data"),
    concat!("/work", "/shared"),
];

/// The repository's files: those git tracks, or every file but build outputs and installed
/// packages where this is not a git checkout (a source archive).
fn repository_files(root: &Path) -> Vec<PathBuf> {
    let git = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output();
    if let Ok(out) = git
        && out.status.success()
    {
        return out
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            .collect();
    }
    let mut files = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(root.join(&dir)).unwrap() {
            let entry = entry.unwrap();
            let rel = dir.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                let name = entry.file_name();
                if !["target", "node_modules", ".git", "cpn-data"]
                    .iter()
                    .any(|skip| name == *skip)
                {
                    stack.push(rel);
                }
            } else {
                files.push(rel);
            }
        }
    }
    files
}

/// The repository is self-contained (issue #13): the traces the tests and `cpn sim gpu`
/// read are in `data/`, and no source, script, CI file or doc points at a folder beside the
/// checkout. Only `data/` may say where its files first came from.
#[test]
fn nothing_reads_data_from_outside_the_repository() {
    let root = workspace_root();
    let mut found = Vec::new();
    for rel in repository_files(&root) {
        if rel.starts_with("data") {
            continue;
        }
        let Ok(bytes) = std::fs::read(root.join(&rel)) else {
            continue; // deleted in the working tree but still tracked
        };
        let text = String::from_utf8_lossy(&bytes);
        for (n, line) in text.lines().enumerate() {
            if let Some(p) = OUTSIDE.iter().find(|p| line.contains(**p)) {
                found.push(format!("{}:{}: {p}: {}", rel.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "files that point outside the repository (put the data in data/ and read it from \
         there):\n{}",
        found.join("\n")
    );
}
