//! The boundary between the HTTP edge and the services, checked on the source (ARCHITECTURE.md,
//! "The edge and the services"): the services — everything in `src/` but the edge modules
//! listed here — know nothing of HTTP. They take a `caller::Caller` or `caller::Actor`, typed
//! queries, and return `error::ServiceError`; the edge turns requests into those and answers
//! into responses. This is what lets the services move into their own crates.

use std::path::{Path, PathBuf};

/// The HTTP edge: handlers (`api*.rs`, matched by prefix, and anything under `src/api/`),
/// the OpenAPI document, extractors, query parsing, responses, the audit layer, the accept
/// loop, and `lib.rs`, which composes the server (store, runtime, router, agents). Every
/// other file is checked, `tls.rs` included: it sets up rustls and knows nothing of HTTP.
const EDGE: &[&str] = &[
    "openapi.rs",
    "extract.rs",
    "query.rs",
    "response.rs",
    "audit_layer.rs",
    "listener.rs",
    "lib.rs",
];

/// Services that may still use what the rule forbids, with why. Empty: keep it so, or say
/// here why a module cannot be split yet.
const EXCEPTIONS: &[(&str, &str)] = &[];

/// Crates and items of the HTTP layer, as identifiers in code (comments and strings do not
/// count).
const FORBIDDEN_IDENTS: &[&str] = &[
    "axum",
    "http",
    "hyper",
    "tower",
    "tower_http",
    "IntoResponse",
    "Principal",
    "QueryMap",
];

/// Edge modules a service must not reach into (with whitespace removed).
const FORBIDDEN_PATHS: &[&str] = &[
    "crate::api",
    "crate::openapi",
    "crate::extract",
    "crate::query",
    "crate::response",
    "crate::audit_layer",
    "crate::listener",
];

fn is_edge(rel: &str) -> bool {
    rel.starts_with("api") || EDGE.contains(&rel)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a Rust file without comments and without the contents of string and char
/// literals, so that a doc comment naming `axum` or a URL `"http://…"` is not a dependency.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
            }
            b'r' if matches!(b.get(i + 1), Some(b'"') | Some(b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                // A raw string r"…", r#"…"#: ends at a quote followed by as many hashes.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= b.len() {
                        break;
                    }
                    if b[j] == b'"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&b'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            // A char literal ('x', '\n', '"'); a lifetime ('a) has no closing quote.
            b'\'' if b.get(i + 2) == Some(&b'\'') => {
                i += 3;
                out.push_str("' '");
            }
            b'\'' if b.get(i + 1) == Some(&b'\\') => {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

/// What in `src` crosses the boundary.
fn violations(src: &str) -> Vec<String> {
    let code = code_only(src);
    let mut found = Vec::new();
    for ident in code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if FORBIDDEN_IDENTS.contains(&ident) && !found.iter().any(|f| f == ident) {
            found.push(ident.to_string());
        }
    }
    let squeezed: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    for path in FORBIDDEN_PATHS {
        // A whole module name: `crate::query` is not `crate::query_cache`. `crate::api` is
        // a prefix on purpose: it covers every `api_*` handler module.
        let hit = squeezed.match_indices(path).any(|(at, _)| {
            *path == "crate::api"
                || squeezed[at + path.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
        });
        if hit {
            found.push(path.to_string());
        }
    }
    found
}

#[test]
fn services_know_nothing_of_http() {
    // Whatever of this crate is not the edge, and the whole control and runtime crates
    // below it.
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let roots = [
        crates.join("cpn-server/src"),
        crates.join("cpn-control/src"),
        crates.join("cpn-runtime/src"),
    ];
    let mut checked = 0;
    let mut problems = Vec::new();
    for src in &roots {
        let mut files = Vec::new();
        rust_files(src, &mut files);
        files.sort();
        let below_the_edge = !src.ends_with("cpn-server/src");
        for path in &files {
            let rel = path
                .strip_prefix(src)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            if !below_the_edge && is_edge(&rel) {
                continue;
            }
            checked += 1;
            let found = violations(&std::fs::read_to_string(path).expect("read source"));
            let excused = EXCEPTIONS.iter().any(|(m, _)| *m == rel);
            if !found.is_empty() && !excused {
                problems.push(format!("{rel}: {}", found.join(", ")));
            }
        }
    }
    // The services named by issue #13 are all among those checked (below the edge).
    for service in [
        "cpn-control/src/registry.rs",
        "cpn-control/src/design/mod.rs",
        "cpn-control/src/flows/mod.rs",
        "cpn-control/src/simulation.rs",
        "cpn-control/src/schedule.rs",
        "cpn-control/src/topology.rs",
        "cpn-control/src/identity.rs",
        "cpn-control/src/audit.rs",
        "cpn-control/src/federation.rs",
        "cpn-control/src/rules.rs",
        "cpn-runtime/src/lib.rs",
        "cpn-runtime/src/inventory.rs",
        "cpn-runtime/src/policy.rs",
        "cpn-runtime/src/caller.rs",
        "cpn-runtime/src/error.rs",
    ] {
        // Every file of cpn-control and cpn-runtime is checked.
        assert!(
            crates.join(service).exists(),
            "{service} should be a checked service module"
        );
    }
    assert!(
        checked >= 30,
        "only {checked} service files found under {roots:?}"
    );
    assert!(
        problems.is_empty(),
        "service modules must not use the HTTP layer (take caller::Caller/Actor, typed queries, \
         return error::ServiceError; parse and answer in the edge: extract, query, response):\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_exceptions_are_still_needed() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for (module, why) in EXCEPTIONS {
        let text = std::fs::read_to_string(src.join(module)).expect("excepted module exists");
        assert!(
            !violations(&text).is_empty(),
            "{module} no longer crosses the boundary ({why}): remove its exception"
        );
    }
}

#[test]
fn the_scanner_sees_code_and_ignores_comments_and_strings() {
    assert_eq!(violations("use axum::Json;"), ["axum"]);
    assert_eq!(
        violations("fn f(who: &crate::extract::Principal) {}"),
        ["Principal", "crate::extract"]
    );
    assert_eq!(
        violations("fn f(q: QueryMap) -> impl IntoResponse {}"),
        ["QueryMap", "IntoResponse"]
    );
    assert_eq!(violations("use http::StatusCode;"), ["http"]);
    assert_eq!(violations("use crate :: api :: router;"), ["crate::api"]);
    assert!(violations("//! the edge's `axum` router\nfn f() {}").is_empty());
    assert!(
        violations("/* QueryMap */ let s = \"http://x\"; let c = '\"'; let r = r#\"axum\"#;")
            .is_empty()
    );
    assert!(violations("let https = true; use crate::caller::Caller;").is_empty());
    assert!(violations("fn f<'a>(x: &'a str) -> &'a str { x } // axum").is_empty());
}

/// The `[dependencies]` of a workspace crate's manifest, by name (dev-dependencies left out).
fn dependencies(krate: &str) -> Vec<String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).expect("read manifest");
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
        } else if in_deps && let Some((name, _)) = line.split_once('=') {
            out.push(name.trim().to_string());
        }
    }
    out
}

/// The dependency rule of the split (ARCHITECTURE.md, "cpn-server"): dependencies point
/// inward, edge → control → runtime. The runtime knows neither the control services nor the
/// edge, control knows no edge, and no server crate knows the agent: `cpn serve` composes.
#[test]
fn dependencies_point_inward() {
    for (inner, outer) in [
        (
            "cpn-runtime",
            ["cpn-control", "cpn-server", "cpn-agent", "axum"],
        ),
        ("cpn-control", ["cpn-server", "cpn-agent", "axum", "hyper"]),
    ] {
        let deps = dependencies(inner);
        for o in outer {
            assert!(
                !deps.iter().any(|d| d == o),
                "{inner} must not depend on {o}: {deps:?}"
            );
        }
    }
    assert!(
        dependencies("cpn-control")
            .iter()
            .any(|d| d == "cpn-runtime"),
        "cpn-control builds on cpn-runtime"
    );
    let server = dependencies("cpn-server");
    assert!(
        ["cpn-control", "cpn-runtime"]
            .iter()
            .all(|c| server.iter().any(|d| d == c)),
        "cpn-server builds on cpn-control and cpn-runtime: {server:?}"
    );
    assert!(
        !server.iter().any(|d| d == "cpn-agent"),
        "cpn-server must not depend on cpn-agent (the CLI composes the in-process agents): {server:?}"
    );
}
