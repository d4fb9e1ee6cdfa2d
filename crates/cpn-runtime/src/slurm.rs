//! The Slurm back end (issue #5 item 7): a site whose spec has `backend: {kind: slurm}` is
//! a real Slurm cluster. Its partition's nodes are imported as the site's nodes; tasks the
//! binder places on them become Slurm jobs named after their attempt id; job states are
//! synced back into the task lifecycle, output files are copied into the task's logs, and
//! cancel becomes scancel.
//!
//! Dispatch is idempotent like the agents': before submitting an attempt, the cluster is
//! asked for a job of that name, so a crash between sbatch and recording the job id never
//! submits the attempt twice.

use super::agents::apply_report;
use crate::RuntimeState;
use crate::access::decode_spec;
use crate::caller::{Actor, SystemActor};
use crate::error::ApiResult;
use chrono::Utc;
use cpn_api_types::agent::{AttemptReport, AttemptState, GpuInfo, NodeInventory};
use cpn_api_types::registry::{SiteBackend, SiteSpec, SlurmBackendSpec};
use cpn_api_types::tasks::{LogStream, TaskState};
use cpn_model::Kind;
use cpn_slurm::{JobRequest, JobState, SlurmApi};
use cpn_store::{ListQuery, NodePatch, NodeRegistration, TaskQuery, TaskWrite};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often node inventories are re-imported.
const IMPORT_EVERY: Duration = Duration::from_secs(10);
/// How often the registry is read for new or changed Slurm sites.
const REFRESH_EVERY: Duration = Duration::from_secs(2);
/// How often job states are polled.
const SYNC_EVERY: Duration = Duration::from_millis(500);

/// One connected Slurm site.
pub struct SlurmSite {
    pub site_id: String,
    pub site: String,
    pub spec: SlurmBackendSpec,
    pub api: Arc<dyn SlurmApi>,
}

/// The Slurm sites of the registry, reconnected when their spec changes.
#[derive(Default)]
pub struct SlurmSites {
    sites: std::sync::Mutex<HashMap<String, Arc<SlurmSite>>>,
}

impl SlurmSites {
    pub fn get(&self, site_id: &str) -> Option<Arc<SlurmSite>> {
        self.sites
            .lock()
            .expect("slurm site lock is never poisoned")
            .get(site_id)
            .cloned()
    }

    fn all(&self) -> Vec<Arc<SlurmSite>> {
        self.sites
            .lock()
            .expect("slurm site lock is never poisoned")
            .values()
            .cloned()
            .collect()
    }
}

pub(crate) async fn run(state: RuntimeState) {
    let mut last_import: Option<Instant> = None;
    let mut last_refresh: Option<Instant> = None;
    loop {
        let mut new_site = false;
        if last_refresh.is_none_or(|t| t.elapsed() >= REFRESH_EVERY) {
            match refresh_sites(&state).await {
                Ok(added) => new_site = added,
                Err(e) => tracing::warn!(error = %e, "reading Slurm sites failed"),
            }
            last_refresh = Some(Instant::now());
        }
        if new_site || last_import.is_none_or(|t| t.elapsed() >= IMPORT_EVERY) {
            for site in state.runtime.slurm.all() {
                if let Err(e) = import_nodes(&state, &site).await {
                    tracing::warn!(site = %site.site, error = %e, "Slurm node import failed");
                }
            }
            last_import = Some(Instant::now());
        }
        for site in state.runtime.slurm.all() {
            if let Err(e) = sync(&state, &site).await {
                tracing::warn!(site = %site.site, error = %e, "Slurm sync failed");
            }
        }
        tokio::time::sleep(SYNC_EVERY).await;
    }
}

/// Connects every site whose backend is Slurm; forgets sites that are no longer. Says
/// whether a site was connected (or reconnected) now.
async fn refresh_sites(state: &RuntimeState) -> ApiResult<bool> {
    let mut found = HashMap::new();
    let mut added = false;
    for rec in state
        .store
        .list_objects(Kind::Site, &ListQuery::default())
        .await?
    {
        let spec: SiteSpec = decode_spec(&rec)?;
        let Some(SiteBackend::Slurm(slurm)) = spec.backend else {
            continue;
        };
        if let Some(existing) = state.runtime.slurm.get(&rec.id)
            && existing.spec == slurm
        {
            found.insert(rec.id.clone(), existing);
            continue;
        }
        match cpn_slurm::connect(&slurm) {
            Ok(api) => {
                added = true;
                tracing::info!(site = %rec.name, backend = %api.describe(), "Slurm site connected");
                found.insert(
                    rec.id.clone(),
                    Arc::new(SlurmSite {
                        site_id: rec.id.clone(),
                        site: rec.name.clone(),
                        spec: slurm,
                        api: Arc::from(api),
                    }),
                );
            }
            Err(e) => tracing::warn!(site = %rec.name, error = %e, "cannot use the Slurm back end"),
        }
    }
    *state
        .runtime
        .slurm
        .sites
        .lock()
        .expect("slurm site lock is never poisoned") = found;
    Ok(added)
}

/// Imports the partition's nodes (CPUs, memory, GRES GPUs) as the site's nodes.
pub(crate) async fn import_nodes(state: &RuntimeState, site: &SlurmSite) -> ApiResult<()> {
    let nodes = match site.api.nodes().await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(site = %site.site, error = %e, "Slurm does not answer; its nodes are not ready");
            mark_all(state, site, false).await?;
            return Ok(());
        }
    };
    if let Err(e) = import_resources(state, site, &nodes).await {
        tracing::warn!(site = %site.site, error = %e, "Slurm partition not recorded in the registry");
    }
    let now = Utc::now();
    let known = state.store.list_nodes().await?;
    for n in &nodes {
        let usable = ![
            "DOWN",
            "DRAIN",
            "FAIL",
            "INVAL",
            "NOT_RESPONDING",
            "UNKNOWN",
        ]
        .iter()
        .any(|bad| n.state.to_uppercase().contains(bad));
        let model = n
            .gres
            .split(',')
            .find(|g| g.trim().starts_with("gpu"))
            .and_then(|g| g.split(':').nth(1))
            .filter(|m| m.parse::<u32>().is_err())
            .unwrap_or("gpu")
            .to_string();
        let inventory = NodeInventory {
            hostname: n.name.clone(),
            os: "slurm".into(),
            cpu_model: "slurm".into(),
            cpu_cores: n.cpus,
            memory_mib: n.memory_mib,
            gpus: (0..n.gpus)
                .map(|i| GpuInfo {
                    index: i,
                    uuid: String::new(),
                    model: model.clone(),
                    memory_mib: 0,
                })
                .collect(),
            agent_version: format!("slurm {}", n.state),
            ..Default::default()
        };
        let existing = known
            .iter()
            .find(|k| k.site_id == site.site_id && k.name == n.name);
        let changed = existing.is_none_or(|k| {
            k.ready != usable
                || serde_json::to_value(&inventory).ok().as_ref() != Some(&k.inventory)
        });
        if !changed {
            continue;
        }
        let rec = state
            .store
            .register_node(
                NodeRegistration {
                    id: format!("node-{}", uuid::Uuid::now_v7().simple()),
                    site_id: site.site_id.clone(),
                    site: site.site.clone(),
                    name: n.name.clone(),
                    executor: "slurm".into(),
                    labels: [("slurm.partitions".to_string(), n.partitions.join("."))]
                        .into_iter()
                        .filter(|(_, v)| !v.is_empty())
                        .collect(),
                    inventory: serde_json::to_value(&inventory).unwrap_or_default(),
                    now,
                },
                Vec::new(),
            )
            .await?;
        state.runtime.federation.node_changed(&rec);
        if !usable {
            let rec = state
                .store
                .patch_node(
                    &rec.id,
                    NodePatch {
                        ready: Some(false),
                        ..Default::default()
                    },
                    now,
                    Vec::new(),
                )
                .await?;
            state.runtime.federation.node_changed(&rec);
        }
        let msg = format!(
            "Slurm node {}/{} imported ({} CPUs, {} MiB, {} GPUs, {})",
            site.site, n.name, n.cpus, n.memory_mib, n.gpus, n.state
        );
        state
            .store
            .append_events(vec![super::agents::node_event(&rec, "info", msg)])
            .await?;
        state.runtime.events_written();
        state.runtime.capacity_changed();
    }
    Ok(())
}

/// Keeps the registry's view of the partition current: one compute resource for its CPU
/// cores and one for its GPUs, so explain, dry-run and plans see the Slurm capacity too.
async fn import_resources(
    state: &RuntimeState,
    site: &SlurmSite,
    nodes: &[cpn_slurm::SlurmNode],
) -> ApiResult<()> {
    let partition = site
        .spec
        .partition
        .clone()
        .unwrap_or_else(|| "default".into());
    let cores: u64 = nodes.iter().map(|n| n.cpus as u64).sum();
    let mib: u64 = nodes.iter().map(|n| n.memory_mib).sum();
    let gpus: u64 = nodes.iter().map(|n| n.gpus as u64).sum();
    let gpu_model = nodes
        .iter()
        .flat_map(|n| n.gres.split(','))
        .find_map(|g| g.trim().strip_prefix("gpu:"))
        .and_then(|g| g.split(':').next())
        .filter(|m| m.parse::<u32>().is_err())
        .unwrap_or("gpu")
        .to_string();
    let mut wanted = vec![(
        format!("{}-slurm-{partition}-cpu", site.site),
        serde_json::json!({"supply_mode": "slurm", "chip_type": "cpu", "architecture": "x86_64",
            "model": "slurm", "count": cores.max(1),
            "memory_gib": if cores > 0 { mib as f64 / 1024.0 / cores as f64 } else { 0.0 }}),
    )];
    if gpus > 0 {
        wanted.push((
            format!("{}-slurm-{partition}-gpu", site.site),
            serde_json::json!({"supply_mode": "slurm", "chip_type": "gpu", "architecture": "cuda",
                "model": gpu_model, "count": gpus}),
        ));
    }
    let Some(site_rec) = state.store.get_object(Kind::Site, &site.site_id).await? else {
        return Ok(());
    };
    // The back end writes as itself (`system:slurm`), in the tenant of the site it runs.
    let who = Actor::System(SystemActor::Slurm {
        tenant: site_rec.tenant,
    });
    for (name, compute) in wanted {
        let spec = serde_json::json!({"site": site.site_id, "type": "compute", "compute": compute});
        match state
            .store
            .find_object_by_name(Kind::Resource, &name)
            .await?
        {
            None => {
                let body: cpn_api_types::registry::ResourceCreate = serde_json::from_value(
                    serde_json::json!({"name": name, "visibility": "public", "spec": spec}),
                )
                .map_err(|e| {
                    crate::error::ApiError::new(cpn_api_types::Code::Internal, e.to_string())
                })?;
                state.hooks.create_resource(state, &who, body).await?;
            }
            Some(rec)
                if serde_json::from_value::<cpn_api_types::registry::ComputeSpec>(
                    rec.spec["compute"].clone(),
                )
                .ok()
                    != serde_json::from_value(spec["compute"].clone()).ok() =>
            {
                let body: cpn_api_types::registry::ResourceUpdate = serde_json::from_value(
                    serde_json::json!({"generation": rec.generation, "visibility": "public", "spec": spec}),
                )
                .map_err(|e| crate::error::ApiError::new(cpn_api_types::Code::Internal, e.to_string()))?;
                state
                    .hooks
                    .update_resource(state, &who, &rec.id, body)
                    .await?;
            }
            Some(_) => {}
        }
    }
    Ok(())
}

async fn mark_all(state: &RuntimeState, site: &SlurmSite, ready: bool) -> ApiResult<()> {
    for n in state.store.list_nodes().await? {
        if n.site_id == site.site_id && n.ready != ready {
            let rec = state
                .store
                .patch_node(
                    &n.id,
                    NodePatch {
                        ready: Some(ready),
                        ..Default::default()
                    },
                    Utc::now(),
                    Vec::new(),
                )
                .await?;
            state.runtime.federation.node_changed(&rec);
        }
    }
    Ok(())
}

fn attempt_dir(spec: &SlurmBackendSpec, attempt_id: &str) -> PathBuf {
    Path::new(&spec.work_dir).join(attempt_id)
}

/// Submits bound attempts, follows running ones, copies output, reports ends.
async fn sync(state: &RuntimeState, site: &SlurmSite) -> ApiResult<()> {
    let nodes: HashMap<String, String> = state
        .store
        .list_nodes()
        .await?
        .into_iter()
        .filter(|n| n.site_id == site.site_id && n.executor == "slurm")
        .map(|n| (n.id, n.name))
        .collect();
    if nodes.is_empty() {
        return Ok(());
    }
    let active = state
        .store
        .list_tasks(TaskQuery {
            states: vec!["scheduled".into(), "running".into()],
            ..Default::default()
        })
        .await?;
    for rec in active {
        let Some(node_id) = rec.node_id.clone() else {
            continue;
        };
        let Some(node_name) = nodes.get(&node_id) else {
            continue;
        };
        let task = super::tasks::decode(rec)?;
        let attempt_id = task.attempt_id();
        let bound_at = task
            .status
            .history
            .iter()
            .rev()
            .find(|h| h.state == TaskState::Scheduled)
            .map(|h| h.at);
        let job = match task.status.external_id.clone() {
            Some(j) => j,
            None => match submit(state, site, task, node_name).await {
                Ok(Some(j)) => j,
                Ok(None) => continue,
                // slurmrestd dropped the connection or could not be reached: try again next
                // sync, for a while. `submit` looks the job up by name first, so a request
                // that did reach Slurm is adopted, never submitted twice.
                Err(SubmitFailure::Transient(e))
                    if bound_at.is_some_and(|at| Utc::now() - at < TRANSIENT_GRACE) =>
                {
                    tracing::warn!(attempt = %attempt_id, error = %e, "Slurm submit failed; will retry");
                    continue;
                }
                Err(SubmitFailure::Transient(e) | SubmitFailure::Permanent(e)) => {
                    report(
                        state,
                        &node_id,
                        &attempt_id,
                        AttemptState::FailedToStart,
                        None,
                        Some(e),
                    )
                    .await?;
                    continue;
                }
            },
        };
        let status = match site.api.status(&job).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(job = %job, error = %e, "Slurm job status failed");
                continue;
            }
        };
        copy_output(state, site, &attempt_id)?;
        let Some(status) = status else {
            report(
                state,
                &node_id,
                &attempt_id,
                AttemptState::Exited,
                None,
                Some(format!("Slurm no longer knows job {job}")),
            )
            .await?;
            continue;
        };
        let (st, code, err) = match status.state {
            JobState::Pending => continue,
            JobState::Running => (AttemptState::Running, None, None),
            JobState::Completed => (
                AttemptState::Exited,
                Some(status.exit_code.unwrap_or(0)),
                None,
            ),
            JobState::Failed => (
                AttemptState::Exited,
                Some(status.exit_code.unwrap_or(1)),
                None,
            ),
            JobState::Cancelled => (AttemptState::Killed, status.exit_code, None),
            JobState::OutOfMemory => (
                AttemptState::Exited,
                status.exit_code.or(Some(137)),
                Some("out of memory".to_string()),
            ),
            JobState::Timeout => (
                AttemptState::Exited,
                status.exit_code.or(Some(1)),
                Some("hit its Slurm time limit".to_string()),
            ),
            JobState::NodeFail => (
                AttemptState::Exited,
                None,
                Some("its Slurm node failed".to_string()),
            ),
            JobState::Other(s) => {
                tracing::debug!(job = %job, state = %s, "Slurm job in an unmapped state");
                continue;
            }
        };
        if st == AttemptState::Exited && code.is_some() && err.is_some() {
            // Failed with a reason of Slurm's own: keep the code, say why.
            report(
                state,
                &node_id,
                &attempt_id,
                AttemptState::Exited,
                code,
                None,
            )
            .await?;
        } else {
            report(state, &node_id, &attempt_id, st, code, err).await?;
        }
    }
    Ok(())
}

async fn report(
    state: &RuntimeState,
    node_id: &str,
    attempt_id: &str,
    st: AttemptState,
    exit_code: Option<i32>,
    error: Option<String>,
) -> ApiResult<()> {
    apply_report(
        state,
        node_id,
        AttemptReport {
            attempt_id: attempt_id.to_string(),
            state: st,
            exit_code,
            pid: None,
            started_at: None,
            finished_at: None,
            error,
            usage: None,
            end_reason: None,
        },
    )
    .await?;
    Ok(())
}

/// Submits the attempt (unless Slurm already has a job of its name) and records the job
/// id; `None` when another actor moved the task meanwhile.
/// How long after binding a task's submission is retried when slurmrestd drops the
/// connection or cannot be reached, before the attempt fails to start.
const TRANSIENT_GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Why a submission did not happen.
enum SubmitFailure {
    /// The exchange with Slurm failed (connection refused or dropped): worth another try.
    Transient(String),
    /// Slurm refused the job, or it cannot be prepared: trying again would not help.
    Permanent(String),
}

impl From<cpn_slurm::SlurmError> for SubmitFailure {
    fn from(e: cpn_slurm::SlurmError) -> Self {
        match e {
            cpn_slurm::SlurmError::Transport { .. } => SubmitFailure::Transient(e.to_string()),
            other => SubmitFailure::Permanent(other.to_string()),
        }
    }
}

async fn submit(
    state: &RuntimeState,
    site: &SlurmSite,
    mut task: super::lifecycle::Task,
    node: &str,
) -> Result<Option<String>, SubmitFailure> {
    let attempt_id = task.attempt_id();
    let job = match site.api.find_job(&attempt_id).await? {
        Some(j) => j,
        None => {
            let dir = attempt_dir(&site.spec, &attempt_id);
            let work = task
                .spec
                .workdir
                .clone()
                .map(PathBuf::from)
                .unwrap_or_else(|| dir.join("work"));
            std::fs::create_dir_all(&work)
                .map_err(|e| SubmitFailure::Permanent(format!("create {}: {e}", work.display())))?;
            // Jobs may run as another user (slurmrestd's): let them write here.
            for d in [&dir, &work] {
                let _ = std::fs::set_permissions(
                    d,
                    std::os::unix::fs::PermissionsExt::from_mode(0o1777),
                );
            }
            let mut env = task.spec.env.clone();
            env.insert("CPN_TASK_ID".into(), task.record.id.clone());
            env.insert("CPN_ATTEMPT_ID".into(), attempt_id.clone());
            env.insert("CPN_ATTEMPT".into(), task.record.attempt.to_string());
            let r = &task.spec.resources;
            let pin = site.spec.rest_url.is_none()
                || cpn_slurm::ApiGeneration::of(&site.spec.api_version)
                    .is_ok_and(|g| g == cpn_slurm::ApiGeneration::New);
            let request = JobRequest {
                name: attempt_id.clone(),
                argv: task.spec.command.clone(),
                script: task.spec.script.clone(),
                env,
                workdir: work,
                cpus: r.cpu_cores.ceil().max(1.0) as u32,
                memory_mib: (r.memory_gib * 1024.0).ceil() as u64,
                gpus: r.gpus,
                nodelist: pin.then(|| node.to_string()),
                stdout: dir.join("stdout"),
                stderr: dir.join("stderr"),
            };
            site.api.submit(&request).await?
        }
    };
    let attempt = task.record.attempt;
    let expect = task.record.state.clone();
    task.status.external_id = Some(job.clone());
    let write = TaskWrite {
        expect_states: vec![expect],
        expect_attempt: attempt,
        record: task.into_record(),
        events: Vec::new(),
    };
    match state.runtime.commit(state, vec![write]).await {
        Ok(r) if matches!(r.last(), Some(Some(_))) => {
            tracing::info!(attempt = %attempt_id, job = %job, site = %site.site, "submitted to Slurm");
            Ok(Some(job))
        }
        Ok(_) => Ok(None),
        // The job is in Slurm but not recorded: the next sync finds it by name.
        Err(e) => Err(SubmitFailure::Transient(e.to_string())),
    }
}

/// Copies what the job wrote so far into the task's logs (offsets make it idempotent).
fn copy_output(state: &RuntimeState, site: &SlurmSite, attempt_id: &str) -> ApiResult<()> {
    let Some((task, attempt)) = super::lifecycle::parse_attempt_id(attempt_id) else {
        return Ok(());
    };
    let dir = attempt_dir(&site.spec, attempt_id);
    for (stream, file) in [(LogStream::Stdout, "stdout"), (LogStream::Stderr, "stderr")] {
        if state.runtime.logs.is_capped(task, attempt) {
            break;
        }
        let Ok(bytes) = std::fs::read(dir.join(file)) else {
            continue;
        };
        let have = state
            .runtime
            .logs
            .append(task, attempt, stream, 0, &[])
            .map_or(0, |a| a.length);
        if (bytes.len() as u64) > have {
            let _ = state
                .runtime
                .logs
                .append(task, attempt, stream, have, &bytes[have as usize..]);
        }
    }
    Ok(())
}

/// scancel for a cancelled or reclaimed attempt.
pub(crate) async fn cancel(state: &RuntimeState, site_id: &str, job: &str) {
    let Some(site) = state.runtime.slurm.get(site_id) else {
        tracing::warn!(job = %job, site = %site_id, "cannot cancel: the Slurm site is not connected");
        return;
    };
    match site.api.cancel(job).await {
        Ok(()) => tracing::info!(job = %job, site = %site.site, "cancelled on Slurm"),
        Err(e) => tracing::warn!(job = %job, error = %e, "scancel failed"),
    }
}
