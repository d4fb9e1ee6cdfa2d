//! Failure detection (issue #5 item 5): a node not heard from within the node timeout is
//! NotReady, an alarm is raised, and the tasks it held are lost, which reschedules them
//! elsewhere when their retry policy allows (IF-I2-05). The same loop marks expired holds
//! of the capacity ledger released (`ledger::sweep`).

use crate::RuntimeState;
use crate::error::ApiResult;
use chrono::Utc;
use cpn_api_types::events::{alarms, types};
use cpn_store::{NewEvent, NodePatch, TaskQuery, TaskWrite};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub(crate) async fn run(state: RuntimeState) {
    loop {
        if let Err(e) = check(&state).await {
            tracing::warn!(error = %e, "node liveness check failed");
        }
        if let Err(e) = super::ledger::sweep(&state).await {
            tracing::warn!(error = %e, "releasing expired holds failed");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Which agent nodes have been silent too long (Slurm nodes are watched by their back end).
fn silent(state: &RuntimeState, nodes: &[cpn_store::NodeRecord]) -> Vec<String> {
    let timeout = state.runtime.config.node_timeout;
    let live = state
        .runtime
        .live
        .lock()
        .expect("live-node lock is never poisoned");
    let now = Instant::now();
    nodes
        .iter()
        .filter(|n| n.ready && n.executor == "agent")
        .filter(|n| {
            live.get(&n.id)
                .is_some_and(|l| now.duration_since(l.last_heartbeat) > timeout)
        })
        .map(|n| n.id.clone())
        .collect()
}

pub(crate) async fn check(state: &RuntimeState) -> ApiResult<()> {
    let nodes = state.store.list_nodes().await?;
    for id in silent(state, &nodes) {
        let Some(node) = nodes.iter().find(|n| n.id == id) else {
            continue;
        };
        mark_lost(state, node, "no heartbeat within the node timeout").await?;
    }
    Ok(())
}

/// NotReady, alarm, and every active task of the node lost.
pub(crate) async fn mark_lost(
    state: &RuntimeState,
    node: &cpn_store::NodeRecord,
    why: &str,
) -> ApiResult<()> {
    let rt = &state.runtime;
    let now = Utc::now();
    let secs = rt.config.node_timeout.as_secs_f64();
    let alarm = NewEvent {
        at: now,
        event_type: types::ALARM.into(),
        subject: node.id.clone(),
        tenant: String::new(),
        severity: "critical".into(),
        message: format!("node {}/{} lost: {why} ({secs:.0} s)", node.site, node.name),
        data: serde_json::json!({"kind": alarms::NODE_LOST, "node": node.name, "site": node.site, "node_id": node.id}),
    };
    let mut after = node.clone();
    after.ready = false;
    let state_event = super::agents::node_event(
        &after,
        "critical",
        format!("node {}/{} is NotReady", node.site, node.name),
    );
    let rec = state
        .store
        .patch_node(
            &node.id,
            NodePatch {
                ready: Some(false),
                ..Default::default()
            },
            now,
            vec![state_event, alarm],
        )
        .await?;
    state.runtime.federation.node_changed(&rec);
    rt.counters.nodes_lost.fetch_add(1, Ordering::Relaxed);
    let active = state
        .store
        .list_tasks(TaskQuery {
            node_id: Some(node.id.clone()),
            states: vec!["scheduled".into(), "running".into()],
            ..Default::default()
        })
        .await?;
    let mut writes = Vec::new();
    for rec in active {
        let mut task = super::tasks::decode(rec)?;
        let expect = task.record.state.clone();
        let attempt = task.record.attempt;
        let events = task.lose(now, &format!("node {} lost", node.name));
        writes.push(TaskWrite {
            expect_states: vec![expect],
            expect_attempt: attempt,
            record: task.into_record(),
            events,
        });
    }
    tracing::warn!(node = %node.name, site = %node.site, tasks = writes.len(), "node lost");
    rt.commit(state, writes).await?;
    rt.events_written();
    rt.capacity_changed();
    Ok(())
}
