//! Policies on the server side: validation on save (CEL included) and the choice of the
//! policy, and so of the profile, that schedules a task (SC-POL-03/04/06).

use crate::RuntimeState;
use crate::access::decode_spec;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use cpn_api_types::Code;
use cpn_api_types::schedule::{PolicyChoice, PolicySpec};
use cpn_model::Kind;
use cpn_sched::{Profile, Task};
use cpn_store::ListQuery;

/// The name under which the built-in profile is chosen explicitly.
pub const DEFAULT_POLICY: &str = "default";

/// The wire spec and the policy crate's document have the same shape; the envelope's name
/// joins them.
fn to_policy(name: &str, spec: &PolicySpec) -> ApiResult<cpn_policy::Policy> {
    let mut v =
        serde_json::to_value(spec).map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
    v["name"] = serde_json::Value::String(name.to_string());
    serde_json::from_value(v).map_err(|e| {
        ApiError::new(
            Code::Internal,
            format!("policy {name:?} does not convert for the scheduler: {e}"),
        )
    })
}

/// Validates a policy document before it is stored: weights name real plugins, selectors
/// parse, CEL compiles (errors carry line and column).
pub fn check(name: &str, spec: &PolicySpec) -> ApiResult<()> {
    if name == DEFAULT_POLICY {
        return Err(ApiError::field(
            "name",
            "`default` names the built-in profile; choose another name",
        ));
    }
    let policy = to_policy(name, spec)?;
    let diagnostics = cpn_policy::validate(&policy, &cpn_policy::is_plugin);
    let mut iter = diagnostics.into_iter();
    let Some(first) = iter.next() else {
        return Ok(());
    };
    let describe = |d: &cpn_policy::Diagnostic| match d.position {
        Some((line, col)) => format!("{} (at line {line}, column {col})", d.message),
        None => d.message.clone(),
    };
    let mut message = describe(&first);
    let rest: Vec<String> = iter
        .map(|d| format!("spec.{}: {}", d.field, describe(&d)))
        .collect();
    if !rest.is_empty() {
        message = format!("{message}; also {}", rest.join("; "));
    }
    Err(ApiError::field(format!("spec.{}", first.field), message))
}

pub(crate) async fn load_all(state: &RuntimeState) -> ApiResult<Vec<(cpn_policy::Policy, u64)>> {
    let mut out = Vec::new();
    for rec in state
        .store
        .list_objects(Kind::Policy, &ListQuery::default())
        .await?
    {
        let spec: PolicySpec = decode_spec(&rec)?;
        out.push((to_policy(&rec.name, &spec)?, rec.generation));
    }
    Ok(out)
}

pub(crate) fn compile(
    name: &str,
    policies: &[cpn_policy::Policy],
    workload: &dyn Fn() -> std::sync::Arc<cpn_sched::plugins::gpu::TargetWorkload>,
) -> ApiResult<Profile> {
    let mut profile = compile_plain(name, policies)?;
    // A GPU policy of the FGD paper named by the policy (or an ancestor) scores the nodes
    // and picks the GPUs, as in the digital twin (issue #4).
    let gpu = cpn_policy::resolve(name, policies)
        .map_err(|e| ApiError::new(Code::InvalidField, e.to_string()))?
        .gpu_policy;
    if let Some(g) = gpu {
        let g = cpn_sched::plugins::gpu::GpuPolicy::parse(&g).ok_or_else(|| {
            ApiError::field(
                "gpu_policy",
                format!("policy {name:?}: unknown GPU policy {g:?}"),
            )
        })?;
        let seed = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64;
        cpn_sched::plugins::gpu::add_to(&mut profile, g, workload(), seed);
    }
    Ok(profile)
}

fn compile_plain(name: &str, policies: &[cpn_policy::Policy]) -> ApiResult<Profile> {
    cpn_policy::compile_named(name, policies).map_err(|e| ApiError {
        code: Code::InvalidField,
        message: format!("policy {name:?} cannot be used: {e}"),
        field: Some("policy".into()),
    })
}

/// FGD's target workload when one task is explained or placed on its own: that task.
fn one_task_workload(task: &Task) -> std::sync::Arc<cpn_sched::plugins::gpu::TargetWorkload> {
    std::sync::Arc::new(cpn_sched::plugins::gpu::TargetWorkload::from_tasks(
        std::slice::from_ref(task),
    ))
}

fn weights_of(profile: &Profile) -> std::collections::BTreeMap<String, f64> {
    profile
        .weights
        .iter()
        .filter(|(_, w)| *w != 0.0)
        .cloned()
        .collect()
}

/// Picks the policy for `task`: the one named, else the best match among stored policies
/// (priority, then specificity), else the built-in default. Says why.
pub async fn choose(
    state: &RuntimeState,
    _who: &Caller,
    task: &Task,
    named: Option<&str>,
) -> ApiResult<(PolicyChoice, Profile)> {
    let stored = load_all(state).await?;
    let policies: Vec<cpn_policy::Policy> = stored.iter().map(|(p, _)| p.clone()).collect();
    let generation_of = |name: &str| stored.iter().find(|(p, _)| p.name == name).map(|(_, g)| *g);
    let default = || {
        let profile = cpn_sched::plugins::default_profile();
        (profile.clone(), weights_of(&profile))
    };
    match named {
        Some(DEFAULT_POLICY) => {
            let (profile, weights) = default();
            let choice = PolicyChoice {
                name: DEFAULT_POLICY.into(),
                generation: None,
                reasons: vec!["named in the request".into()],
                also_matched: Vec::new(),
                weights,
            };
            Ok((choice, profile))
        }
        Some(name) => {
            if generation_of(name).is_none() {
                return Err(ApiError::not_found("policy", name));
            }
            let profile = compile(name, &policies, &|| one_task_workload(task))?;
            let choice = PolicyChoice {
                name: name.to_string(),
                generation: generation_of(name),
                reasons: vec!["named in the request".into()],
                also_matched: Vec::new(),
                weights: weights_of(&profile),
            };
            Ok((choice, profile))
        }
        None => match cpn_policy::select(&policies, task) {
            Some(m) => {
                let name = m.policy.name.clone();
                let profile = compile(&name, &policies, &|| one_task_workload(task))?;
                let choice = PolicyChoice {
                    generation: generation_of(&name),
                    reasons: m.reasons.clone(),
                    also_matched: m
                        .runners_up
                        .iter()
                        .map(|r| format!("{}: {}", r.policy.name, r.lost))
                        .collect(),
                    weights: weights_of(&profile),
                    name,
                };
                Ok((choice, profile))
            }
            None => {
                let (profile, weights) = default();
                let reason = if policies.is_empty() {
                    "no policies are stored".to_string()
                } else {
                    format!(
                        "none of the {} stored policies matched the task",
                        policies.len()
                    )
                };
                let choice = PolicyChoice {
                    name: DEFAULT_POLICY.into(),
                    generation: None,
                    reasons: vec![reason],
                    also_matched: Vec::new(),
                    weights,
                };
                Ok((choice, profile))
            }
        },
    }
}
