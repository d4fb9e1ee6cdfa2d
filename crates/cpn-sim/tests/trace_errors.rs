//! Malformed trace rows are rejected with `file:line: column: reason`, never skipped.

use cpn_sim::trace::{parse_nodes, parse_pods};
use cpn_sim::{Problem, TraceError};

const POD_HEADER: &str = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time";

fn pods(rows: &[&str]) -> Result<usize, TraceError> {
    let text = format!("{POD_HEADER}\n{}\n", rows.join("\n"));
    parse_pods("pods.csv", &text).map(|p| p.len())
}

const GOOD: &str = "openb-pod-0000,12000,16384,1,1000,,LS,Running,0,12537496,0";

#[test]
fn a_bad_number_names_its_line_and_column() {
    let e = pods(&[GOOD, "openb-pod-0001,12x00,16384,1,1000,,LS,Running,0,1,0"]).unwrap_err();
    assert_eq!(e.line, 3, "header is line 1");
    assert_eq!(e.problem.column(), Some("cpu_milli"));
    let msg = e.to_string();
    assert!(msg.starts_with("pods.csv:3: column `cpu_milli`"), "{msg}");
    assert!(msg.contains("12x00"), "{msg}");
}

#[test]
fn inconsistent_gpu_fields_are_rejected() {
    let e = pods(&["p,1000,0,1,0,,LS,Running,0,1,0"]).unwrap_err();
    assert_eq!((e.line, e.problem.column()), (2, Some("gpu_milli")));
    let e = pods(&["p,1000,0,1,1500,,LS,Running,0,1,0"]).unwrap_err();
    assert_eq!((e.line, e.problem.column()), (2, Some("gpu_milli")));
    let e = pods(&["p,1000,0,0,300,,LS,Running,0,1,0"]).unwrap_err();
    assert_eq!((e.line, e.problem.column()), (2, Some("gpu_milli")));
    let e = pods(&[GOOD, GOOD]).unwrap_err();
    assert_eq!(e.line, 3);
    assert!(matches!(
        e.problem,
        Problem::Duplicate { column: "name", .. }
    ));
    let e = pods(&["p,-5,0,0,0,,LS,Running,0,1,0"]).unwrap_err();
    assert_eq!(e.problem.column(), Some("cpu_milli"));
}

#[test]
fn wrong_field_counts_and_missing_columns() {
    let e = pods(&[GOOD, "openb-pod-0001,1000,0,0,0"]).unwrap_err();
    assert_eq!(e.line, 3);
    assert_eq!(
        e.problem,
        Problem::FieldCount {
            expected: 11,
            found: 5
        }
    );
    let e = parse_pods("p.csv", "name,cpu_milli,memory_mib,num_gpu\nx,1,1,0\n").unwrap_err();
    assert_eq!(
        (e.line, e.problem.clone()),
        (1, Problem::MissingColumn("gpu_milli"))
    );
    assert_eq!(parse_pods("p.csv", "").unwrap_err().problem, Problem::Empty);
    // Blank lines (a trailing newline) are not rows.
    assert_eq!(pods(&[GOOD, ""]).unwrap(), 1);
}

#[test]
fn node_rows_are_checked_too() {
    let header = "sn,cpu_milli,memory_mib,gpu,model";
    let e = parse_nodes(
        "nodes.csv",
        &format!("{header}\na,64000,262144,2,P100\nb,64000,262144,2,\n"),
    )
    .unwrap_err();
    assert_eq!((e.line, e.problem.column()), (3, Some("model")));
    assert!(
        e.to_string().starts_with("nodes.csv:3: column `model`"),
        "{e}"
    );
    let e = parse_nodes("nodes.csv", &format!("{header}\na,64000,262144,two,P100\n")).unwrap_err();
    assert_eq!((e.line, e.problem.column()), (2, Some("gpu")));
    let ok = parse_nodes("nodes.csv", &format!("{header}\ncpu-only,8000,1024,0,\n")).unwrap();
    assert_eq!(ok[0].gpus, 0);
}
