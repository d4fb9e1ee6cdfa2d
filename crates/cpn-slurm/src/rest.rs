//! [`RestClient`]: runs jobs through slurmrestd, in the JSON shapes of the old
//! (v0.0.36..=v0.0.38, Slurm 20.11–22.05) or the new (v0.0.39+, data_parser, Slurm 23.02+) API
//! generation.
//!
//! The old shapes were checked against a running Slurm 22.05 (v0.0.38); the new ones follow
//! SchedMD's generated v0.0.39/v0.0.40/v0.0.41 schemas (environment as an array of `K=V`,
//! `job_state` as an array, `exit_code` as an object, numbers as `{set, infinite, number}`);
//! v0.0.39 already takes the array environment and `{set, number}` memory, so it counts as new.

use std::path::Path;

use async_trait::async_trait;
use hyper::Method;
use serde_json::{Map, Value, json};

use crate::http::{self, Endpoint};
use crate::script::{batch_script, slurm_path, validate};
use crate::{
    JobRequest, JobState, JobStatus, SlurmApi, SlurmBackendSpec, SlurmError, SlurmNode,
    gpus_in_gres,
};

/// Default `PATH` for REST jobs, which do not inherit a submitting shell's environment.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Which JSON shapes an API version uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiGeneration {
    /// v0.0.36..=v0.0.38: environment is a map, `job_state` a string, `exit_code` a wait status.
    Old,
    /// v0.0.39 and later: environment is an array, `job_state` an array, numbers may be
    /// `{set, infinite, number}`, `exit_code` an object.
    New,
}

impl ApiGeneration {
    /// The generation of `v0.0.N`.
    pub fn of(version: &str) -> Result<ApiGeneration, SlurmError> {
        let minor = version
            .strip_prefix("v0.0.")
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(|| SlurmError::Config(format!("api_version {version:?} is not v0.0.N")))?;
        match minor {
            36..=38 => Ok(ApiGeneration::Old),
            39.. => Ok(ApiGeneration::New),
            _ => Err(SlurmError::Config(format!(
                "api_version {version} is too old; v0.0.36 or later is needed"
            ))),
        }
    }
}

/// A slurmrestd client.
#[derive(Debug, Clone)]
pub struct RestClient {
    endpoint: Endpoint,
    version: String,
    generation: ApiGeneration,
    partition: Option<String>,
    user: Option<String>,
    token_file: Option<String>,
}

impl RestClient {
    /// A client for `spec.rest_url` speaking `spec.api_version`.
    pub fn new(spec: &SlurmBackendSpec) -> Result<RestClient, SlurmError> {
        let url = spec
            .rest_url
            .as_deref()
            .ok_or_else(|| SlurmError::Config("rest_url is not set".into()))?;
        let endpoint = Endpoint::parse(url)?;
        Ok(RestClient {
            generation: ApiGeneration::of(&spec.api_version)?,
            version: spec.api_version.clone(),
            endpoint,
            partition: spec.partition.clone().filter(|p| !p.is_empty()),
            user: spec.user.clone().filter(|u| !u.is_empty()),
            token_file: spec.token_file.clone().filter(|t| !t.is_empty()),
        })
    }

    /// The JSON shape generation in use.
    pub fn generation(&self) -> ApiGeneration {
        self.generation
    }

    fn auth_headers(&self) -> Result<Vec<(&'static str, String)>, SlurmError> {
        let mut h = Vec::new();
        if matches!(self.endpoint, Endpoint::Unix(_)) {
            return Ok(h); // local auth: the socket peer's uid
        }
        if let Some(u) = &self.user {
            h.push(("X-SLURM-USER-NAME", u.clone()));
        }
        if let Some(f) = &self.token_file {
            let text = std::fs::read_to_string(f).map_err(|source| SlurmError::Io {
                path: f.clone(),
                source,
            })?;
            let token = text.trim();
            let token = token.strip_prefix("SLURM_JWT=").unwrap_or(token);
            h.push(("X-SLURM-USER-TOKEN", token.to_string()));
        }
        Ok(h)
    }

    /// Sends a request under `/slurm/{version}` and returns the JSON body; HTTP errors and
    /// `errors` arrays become [`SlurmError::Api`].
    async fn call(
        &self,
        method: Method,
        rel: &str,
        body: Option<Value>,
    ) -> Result<Value, SlurmError> {
        let path = format!("/slurm/{}{rel}", self.version);
        let headers = self.auth_headers()?;
        let body = body.map(|b| b.to_string().into_bytes());
        let resp = http::send(&self.endpoint, method.clone(), &path, &headers, body).await?;
        let json: Option<Value> = serde_json::from_slice(&resp.body).ok();
        let errors = json.as_ref().map(error_messages).unwrap_or_default();
        if resp.status >= 400 || !errors.is_empty() {
            let message = if !errors.is_empty() {
                errors.join("; ")
            } else {
                let text = String::from_utf8_lossy(&resp.body);
                let text = text.trim();
                if text.is_empty() {
                    "(empty body)".to_string()
                } else {
                    text.chars().take(500).collect()
                }
            };
            return Err(SlurmError::Api {
                method: method.to_string(),
                path,
                status: resp.status,
                message,
            });
        }
        json.ok_or_else(|| {
            SlurmError::Parse(format!(
                "{method} {path}: body is not JSON: {}",
                String::from_utf8_lossy(&resp.body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))
        })
    }
}

/// Messages of a response's `errors` array (`error`, `description`), one per entry.
pub fn error_messages(body: &Value) -> Vec<String> {
    let Some(errors) = body.get("errors").and_then(Value::as_array) else {
        return Vec::new();
    };
    errors
        .iter()
        .map(|e| {
            let text = |k: &str| e.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
            let num = e
                .get("error_number")
                .or_else(|| e.get("error_code"))
                .and_then(Value::as_i64);
            let mut m = match (text("error"), text("description")) {
                (Some(a), Some(b)) if a != b => format!("{a}: {b}"),
                (Some(a), _) | (None, Some(a)) => a.to_string(),
                (None, None) => e.to_string(),
            };
            if let Some(n) = num {
                m.push_str(&format!(" (error {n})"));
            }
            m
        })
        .collect()
}

fn is_invalid_job(e: &SlurmError) -> bool {
    matches!(e, SlurmError::Api { message, .. } | SlurmError::Command { message, .. }
        if message.contains("Invalid job id") || message.contains("error 2017"))
}

/// A v0.0.39+ number: plain, or `{set, infinite, number}` (`None` when unset or infinite).
pub fn number(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::Object(o) => {
            if o.get("set").and_then(Value::as_bool) == Some(false)
                || o.get("infinite").and_then(Value::as_bool) == Some(true)
            {
                None
            } else {
                o.get("number").and_then(Value::as_i64)
            }
        }
        _ => None,
    }
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The `POST /job/submit` body for `job` in the given generation.
pub fn submit_body(
    job: &JobRequest,
    generation: ApiGeneration,
    partition: Option<&str>,
) -> Result<Value, SlurmError> {
    validate(job)?;
    let script = batch_script(job)?;
    let mut env: Vec<(String, String)> = job
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !job.env.contains_key("PATH") {
        env.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
    }
    let mut j = Map::new();
    j.insert(
        "name".into(),
        json!(if job.name.is_empty() {
            "cpn-job"
        } else {
            &job.name
        }),
    );
    if let Some(p) = partition {
        j.insert("partition".into(), json!(p));
    }
    j.insert("tasks".into(), json!(1));
    if job.cpus > 0 {
        j.insert("cpus_per_task".into(), json!(job.cpus));
    }
    j.insert(
        "current_working_directory".into(),
        json!(path_str(&job.workdir)),
    );
    j.insert("standard_output".into(), json!(slurm_path(&job.stdout)));
    j.insert("standard_error".into(), json!(slurm_path(&job.stderr)));
    match generation {
        ApiGeneration::Old => {
            if let Some(n) = &job.nodelist {
                return Err(SlurmError::InvalidJob(format!(
                    "nodelist {n:?}: slurmrestd v0.0.36..v0.0.38 disable \"required_nodes\"; use the CLI client or v0.0.39+"
                )));
            }
            j.insert("nodes".into(), json!([1, 1]));
            if job.memory_mib > 0 {
                j.insert("memory_per_node".into(), json!(job.memory_mib));
            }
            if job.gpus > 0 {
                j.insert("gres".into(), json!(format!("gpu:{}", job.gpus)));
            }
            let map: Map<String, Value> = env
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            j.insert("environment".into(), Value::Object(map));
            Ok(json!({ "script": script, "job": Value::Object(j) }))
        }
        ApiGeneration::New => {
            j.insert("nodes".into(), json!("1"));
            if job.memory_mib > 0 {
                j.insert(
                    "memory_per_node".into(),
                    json!({ "set": true, "infinite": false, "number": job.memory_mib }),
                );
            }
            if job.gpus > 0 {
                j.insert(
                    "tres_per_node".into(),
                    json!(format!("gres/gpu:{}", job.gpus)),
                );
            }
            if let Some(n) = &job.nodelist {
                j.insert("required_nodes".into(), json!([n]));
            }
            let list: Vec<Value> = env
                .into_iter()
                .map(|(k, v)| Value::String(format!("{k}={v}")))
                .collect();
            j.insert("environment".into(), Value::Array(list));
            // The top-level `script` is accepted from v0.0.39 through v0.0.44.
            Ok(json!({ "script": script, "job": Value::Object(j) }))
        }
    }
}

/// The job id of a submit response.
pub fn parse_submit(body: &Value) -> Result<String, SlurmError> {
    body.get("job_id")
        .and_then(number)
        .or_else(|| {
            body.get("result")
                .and_then(|r| r.get("job_id"))
                .and_then(number)
        })
        .map(|id| id.to_string())
        .ok_or_else(|| SlurmError::Parse(format!("submit response has no job_id: {body}")))
}

/// Decodes a wait status (v0.0.38 `exit_code`, e.g. 1792 for exit 7) to an exit code,
/// 128+signal when killed by a signal.
pub fn wait_status_code(status: i64) -> i32 {
    let sig = (status & 0x7f) as i32;
    if sig != 0 && sig != 0x7f {
        128 + sig
    } else {
        ((status >> 8) & 0xff) as i32
    }
}

/// The exit code of a v0.0.39+ `exit_code` object (`{status, return_code, signal}`), or a
/// plain wait status.
fn new_exit_code(v: &Value) -> Option<i32> {
    if let Value::Object(o) = v
        && (o.contains_key("return_code") || o.contains_key("signal"))
    {
        let sig = o
            .get("signal")
            .and_then(|s| s.get("id"))
            .and_then(number)
            .filter(|s| *s > 0);
        let rc = o.get("return_code").and_then(number);
        return match (rc, sig) {
            (Some(rc), _) if rc != 0 => Some(rc as i32),
            (_, Some(sig)) => Some(128 + sig as i32),
            (rc, None) => rc.map(|r| r as i32),
        };
    }
    number(v).map(wait_status_code)
}

fn str_field(o: &Value, k: &str) -> Option<String> {
    o.get(k)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "None" && *s != "(null)")
        .map(str::to_string)
}

/// The status of `job_id` in a `GET /job/{id}` response; `None` when it is not listed.
pub fn parse_job(
    body: &Value,
    job_id: &str,
    generation: ApiGeneration,
) -> Result<Option<JobStatus>, SlurmError> {
    let jobs = body
        .get("jobs")
        .and_then(Value::as_array)
        .ok_or_else(|| SlurmError::Parse(format!("job response has no jobs array: {body}")))?;
    let job = jobs
        .iter()
        .find(|j| {
            j.get("job_id")
                .and_then(number)
                .map(|i| i.to_string())
                .as_deref()
                == Some(job_id)
        })
        .or_else(|| jobs.first());
    let Some(job) = job else { return Ok(None) };
    let state_text = match job.get("job_state") {
        Some(Value::String(s)) => s.clone(),
        // v0.0.39+: ["COMPLETED"] or ["RUNNING", "COMPLETING"]; the first is the base state.
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .next()
            .unwrap_or("")
            .to_string(),
        _ => {
            return Err(SlurmError::Parse(format!(
                "job {job_id} has no job_state: {job}"
            )));
        }
    };
    let state = JobState::from_slurm(&state_text);
    let exit_code = if state.is_terminal() {
        match generation {
            ApiGeneration::Old => job.get("exit_code").and_then(number).map(wait_status_code),
            ApiGeneration::New => job.get("exit_code").and_then(new_exit_code),
        }
    } else {
        None
    };
    Ok(Some(JobStatus {
        job_id: job
            .get("job_id")
            .and_then(number)
            .map(|i| i.to_string())
            .unwrap_or_else(|| job_id.to_string()),
        state,
        exit_code,
        nodes: str_field(job, "nodes"),
        reason: str_field(job, "state_reason"),
    }))
}

/// The nodes of a `GET /nodes` response (either generation).
pub fn parse_nodes(body: &Value) -> Result<Vec<SlurmNode>, SlurmError> {
    let nodes = body
        .get("nodes")
        .and_then(Value::as_array)
        .ok_or_else(|| SlurmError::Parse(format!("nodes response has no nodes array: {body}")))?;
    Ok(nodes
        .iter()
        .filter_map(|n| {
            let name = n.get("name").and_then(Value::as_str)?.to_string();
            let gres = n
                .get("gres")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
                .to_string();
            let gres = if gres == "(null)" {
                String::new()
            } else {
                gres
            };
            let state = match n.get("state") {
                Some(Value::String(s)) => {
                    let mut parts = vec![s.to_ascii_uppercase()];
                    if let Some(flags) = n.get("state_flags").and_then(Value::as_array) {
                        parts.extend(
                            flags
                                .iter()
                                .filter_map(Value::as_str)
                                .map(str::to_ascii_uppercase),
                        );
                    }
                    parts.join("+")
                }
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_ascii_uppercase)
                    .collect::<Vec<_>>()
                    .join("+"),
                _ => String::new(),
            };
            let partitions = match n.get("partitions") {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                Some(Value::String(s)) => s
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect(),
                _ => Vec::new(),
            };
            Some(SlurmNode {
                name,
                cpus: n.get("cpus").and_then(number).unwrap_or(0).max(0) as u32,
                memory_mib: n.get("real_memory").and_then(number).unwrap_or(0).max(0) as u64,
                gpus: gpus_in_gres(&gres),
                gres,
                state,
                partitions,
            })
        })
        .collect())
}

/// Whether a `GET /ping` response says the primary controller is up.
pub fn parse_ping(body: &Value) -> Result<(), SlurmError> {
    let pings = body
        .get("pings")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let up = pings.iter().any(|p| {
        p.get("ping").and_then(Value::as_str) == Some("UP")
            || p.get("pinged").and_then(Value::as_str) == Some("UP")
            || p.get("responding").and_then(Value::as_bool) == Some(true)
    });
    if up {
        Ok(())
    } else {
        Err(SlurmError::Parse(format!(
            "no controller answers UP: {}",
            Value::Array(pings)
        )))
    }
}

#[async_trait]
impl SlurmApi for RestClient {
    async fn ping(&self) -> Result<(), SlurmError> {
        let body = self.call(Method::GET, "/ping", None).await?;
        parse_ping(&body)
    }

    async fn submit(&self, job: &JobRequest) -> Result<String, SlurmError> {
        let body = submit_body(job, self.generation, self.partition.as_deref())?;
        let resp = self.call(Method::POST, "/job/submit", Some(body)).await?;
        parse_submit(&resp)
    }

    async fn status(&self, job_id: &str) -> Result<Option<JobStatus>, SlurmError> {
        match self
            .call(Method::GET, &format!("/job/{job_id}"), None)
            .await
        {
            Ok(body) => parse_job(&body, job_id, self.generation),
            Err(e) if is_invalid_job(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn find_job(&self, name: &str) -> Result<Option<String>, SlurmError> {
        let body = self.call(Method::GET, "/jobs", None).await?;
        Ok(body
            .get("jobs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|j| j.get("name").and_then(Value::as_str) == Some(name))
            .filter_map(|j| j.get("job_id").and_then(number))
            .max()
            .map(|i| i.to_string()))
    }

    async fn cancel(&self, job_id: &str) -> Result<(), SlurmError> {
        match self
            .call(Method::DELETE, &format!("/job/{job_id}"), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_invalid_job(&e) => Ok(()),
            Err(SlurmError::Api { message, .. })
                if message.contains("already completing or completed") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn nodes(&self) -> Result<Vec<SlurmNode>, SlurmError> {
        let body = self.call(Method::GET, "/nodes", None).await?;
        let mut nodes = parse_nodes(&body)?;
        if let Some(p) = &self.partition {
            nodes.retain(|n| n.partitions.iter().any(|q| q == p));
        }
        Ok(nodes)
    }

    fn describe(&self) -> String {
        let ep = match &self.endpoint {
            Endpoint::Unix(p) => format!("unix:{p}"),
            Endpoint::Tcp { authority, prefix } => format!("http://{authority}{prefix}"),
        };
        format!(
            "slurmrestd {ep} {} (partition {})",
            self.version,
            self.partition.as_deref().unwrap_or("default")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn job() -> JobRequest {
        let mut env = BTreeMap::new();
        env.insert("A".to_string(), "1 2".to_string());
        JobRequest {
            name: "n".into(),
            argv: vec!["echo".into(), "hi".into()],
            env,
            workdir: "/w".into(),
            cpus: 2,
            memory_mib: 300,
            gpus: 1,
            stdout: "/w/o".into(),
            stderr: "/w/e".into(),
            ..Default::default()
        }
    }

    #[test]
    fn generations() {
        assert_eq!(ApiGeneration::of("v0.0.38").unwrap(), ApiGeneration::Old);
        assert_eq!(ApiGeneration::of("v0.0.36").unwrap(), ApiGeneration::Old);
        assert_eq!(ApiGeneration::of("v0.0.39").unwrap(), ApiGeneration::New);
        assert_eq!(ApiGeneration::of("v0.0.41").unwrap(), ApiGeneration::New);
        assert!(ApiGeneration::of("v0.0.35").is_err());
        assert!(ApiGeneration::of("v1").is_err());
    }

    #[test]
    fn submit_body_v0038_matches_the_22_05_spec() {
        let b = submit_body(&job(), ApiGeneration::Old, Some("debug")).unwrap();
        let j = &b["job"];
        assert!(b["script"].as_str().unwrap().contains("exec -- echo hi"));
        assert_eq!(j["environment"]["A"], "1 2");
        assert!(j["environment"]["PATH"].is_string());
        assert_eq!(j["memory_per_node"], 300);
        assert_eq!(j["gres"], "gpu:1");
        assert_eq!(j["partition"], "debug");
        assert_eq!(j["cpus_per_task"], 2);
        // Every key we send is a property of v0.0.38_job_properties in the real spec.
        let spec = fixture("v0.0.38_openapi_trimmed.json");
        let props = &spec["components"]["schemas"]["v0.0.38_job_properties"]["properties"];
        for k in j.as_object().unwrap().keys() {
            assert!(
                props.get(k).is_some(),
                "{k} is not in v0.0.38_job_properties"
            );
        }
        let mut with_nodes = job();
        with_nodes.nodelist = Some("node1".into());
        assert!(matches!(
            submit_body(&with_nodes, ApiGeneration::Old, None),
            Err(SlurmError::InvalidJob(_))
        ));
    }

    #[test]
    fn submit_body_v0040() {
        let mut jr = job();
        jr.nodelist = Some("node[1-2]".into());
        let b = submit_body(&jr, ApiGeneration::New, None).unwrap();
        let j = &b["job"];
        assert!(b["script"].as_str().unwrap().starts_with("#!/bin/bash"));
        let env: Vec<&str> = j["environment"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(env.contains(&"A=1 2"));
        assert!(env.iter().any(|e| e.starts_with("PATH=")));
        assert_eq!(
            j["memory_per_node"],
            json!({"set": true, "infinite": false, "number": 300})
        );
        assert_eq!(j["tres_per_node"], "gres/gpu:1");
        assert_eq!(j["required_nodes"], json!(["node[1-2]"]));
        assert!(j.get("partition").is_none());
    }

    #[test]
    fn parses_real_v0038_responses() {
        let st = parse_job(&fixture("v0.0.38_job_failed.json"), "2", ApiGeneration::Old)
            .unwrap()
            .unwrap();
        assert_eq!(st.job_id, "2");
        assert_eq!(st.state, JobState::Failed);
        assert_eq!(st.exit_code, Some(7)); // 1792 = 7 << 8
        assert_eq!(st.nodes.as_deref(), Some("node2"));
        assert_eq!(st.reason.as_deref(), Some("NonZeroExitCode"));
        let nodes = parse_nodes(&fixture("v0.0.38_nodes.json")).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(
            (
                nodes[0].name.as_str(),
                nodes[0].cpus,
                nodes[0].memory_mib,
                nodes[0].gpus
            ),
            ("node1", 2, 2000, 0)
        );
        assert_eq!((nodes[1].gres.as_str(), nodes[1].gpus), ("gpu:fake:2", 2));
        assert_eq!(nodes[1].state, "IDLE");
        assert_eq!(nodes[1].partitions, vec!["debug".to_string()]);
        parse_ping(&fixture("v0.0.38_ping.json")).unwrap();
        assert_eq!(
            parse_submit(&json!({"errors": [], "job_id": 12, "step_id": "BATCH"})).unwrap(),
            "12"
        );
    }

    #[test]
    fn v0038_errors_and_wait_status() {
        let body = json!({"errors": [{"description": "Unable to find JobId=9999", "error_number": 2017,
            "error": "Invalid job id specified", "source": "slurm_load_job"}], "jobs": []});
        let m = error_messages(&body);
        assert_eq!(
            m,
            vec!["Invalid job id specified: Unable to find JobId=9999 (error 2017)".to_string()]
        );
        let body = json!({"errors": [{"error_code": 9001, "error": "Failure during parsing"}]});
        assert_eq!(
            error_messages(&body),
            vec!["Failure during parsing (error 9001)".to_string()]
        );
        assert!(error_messages(&json!({"errors": []})).is_empty());
        assert_eq!(wait_status_code(0), 0);
        assert_eq!(wait_status_code(7 << 8), 7);
        assert_eq!(wait_status_code(9), 137);
        assert_eq!(wait_status_code(15), 143);
    }

    /// v0.0.40/41 shapes, from SchedMD's documented schemas (not testable against 22.05 here).
    #[test]
    fn parses_v0040_samples() {
        let body = json!({
            "jobs": [{
                "job_id": 41,
                "job_state": ["COMPLETED"],
                "exit_code": {"status": ["SUCCESS"], "return_code": {"set": true, "infinite": false, "number": 0},
                              "signal": {"id": {"set": false, "infinite": false, "number": 0}, "name": ""}},
                "nodes": "node1",
                "state_reason": "None"
            }],
            "warnings": [], "errors": []
        });
        let st = parse_job(&body, "41", ApiGeneration::New).unwrap().unwrap();
        assert_eq!(
            (st.state, st.exit_code, st.nodes.as_deref(), st.reason),
            (JobState::Completed, Some(0), Some("node1"), None)
        );

        let failed = json!({"jobs": [{"job_id": 42, "job_state": ["FAILED"],
            "exit_code": {"status": ["ERROR"], "return_code": {"set": true, "infinite": false, "number": 7}},
            "nodes": "node2", "state_reason": "NonZeroExitCode"}]});
        let st = parse_job(&failed, "42", ApiGeneration::New)
            .unwrap()
            .unwrap();
        assert_eq!((st.state, st.exit_code), (JobState::Failed, Some(7)));

        let signalled = json!({"jobs": [{"job_id": 43, "job_state": ["CANCELLED"],
            "exit_code": {"status": ["SIGNALED"], "return_code": {"set": true, "number": 0},
                          "signal": {"id": {"set": true, "infinite": false, "number": 15}, "name": "TERM"}}}]});
        let st = parse_job(&signalled, "43", ApiGeneration::New)
            .unwrap()
            .unwrap();
        assert_eq!((st.state, st.exit_code), (JobState::Cancelled, Some(143)));

        let running = json!({"jobs": [{"job_id": 44, "job_state": ["RUNNING", "COMPLETING"],
            "exit_code": {"status": ["PENDING"], "return_code": {"set": false, "number": 0}}}]});
        let st = parse_job(&running, "44", ApiGeneration::New)
            .unwrap()
            .unwrap();
        assert_eq!((st.state, st.exit_code), (JobState::Running, None));

        assert_eq!(
            parse_job(&json!({"jobs": []}), "1", ApiGeneration::New).unwrap(),
            None
        );

        let nodes = json!({"nodes": [
            {"name": "gpu1", "cpus": 64, "real_memory": 515000, "gres": "gpu:h100:8(S:0-1)",
             "state": ["IDLE", "DRAIN"], "partitions": ["gpu", "all"]},
            {"name": "cpu1", "cpus": 32, "real_memory": {"set": true, "infinite": false, "number": 128000},
             "gres": "", "state": ["MIXED"], "partitions": ["all"]}
        ]});
        let n = parse_nodes(&nodes).unwrap();
        assert_eq!(
            (n[0].gpus, n[0].state.as_str(), n[0].memory_mib),
            (8, "IDLE+DRAIN", 515000)
        );
        assert_eq!((n[1].gpus, n[1].memory_mib, n[1].cpus), (0, 128000, 32));

        parse_ping(&json!({"pings": [{"hostname": "c", "pinged": "UP", "latency": 120, "mode": "primary"}]})).unwrap();
        parse_ping(&json!({"pings": [{"hostname": "c", "responding": true, "primary": true}]}))
            .unwrap();
        assert!(parse_ping(&json!({"pings": [{"hostname": "c", "pinged": "DOWN"}]})).is_err());
        assert_eq!(
            parse_submit(&json!({"job_id": 99, "step_id": "batch", "result": {"job_id": 99}}))
                .unwrap(),
            "99"
        );
        assert_eq!(
            number(&json!({"set": true, "infinite": true, "number": 0})),
            None
        );
        assert_eq!(number(&json!({"set": false, "number": 5})), None);
        assert_eq!(number(&json!(5)), Some(5));
    }

    #[test]
    fn client_from_spec() {
        let spec = SlurmBackendSpec {
            partition: Some("debug".into()),
            rest_url: Some("unix:/tmp/x.sock".into()),
            api_version: "v0.0.41".into(),
            user: None,
            token_file: None,
            slurm_conf: None,
            work_dir: "/w".into(),
        };
        let c = RestClient::new(&spec).unwrap();
        assert_eq!(c.generation(), ApiGeneration::New);
        assert!(c.describe().contains("unix:/tmp/x.sock v0.0.41"));
        assert!(
            crate::connect(&spec)
                .unwrap()
                .describe()
                .starts_with("slurmrestd")
        );
        let cli = SlurmBackendSpec {
            rest_url: None,
            ..spec.clone()
        };
        assert!(
            crate::connect(&cli)
                .unwrap()
                .describe()
                .starts_with("slurm cli")
        );
        let bad = SlurmBackendSpec {
            rest_url: Some("ftp://x".into()),
            ..spec
        };
        assert!(matches!(crate::connect(&bad), Err(SlurmError::Config(_))));
    }

    #[test]
    fn http_auth_headers_read_the_token_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let tok = dir.path().join("tok");
        std::fs::write(&tok, "SLURM_JWT=abc\n").unwrap();
        let spec = SlurmBackendSpec {
            partition: None,
            rest_url: Some("http://127.0.0.1:6820".into()),
            api_version: "v0.0.38".into(),
            user: Some("alice".into()),
            token_file: Some(tok.to_string_lossy().into_owned()),
            slurm_conf: None,
            work_dir: "/w".into(),
        };
        let c = RestClient::new(&spec).unwrap();
        let h = c.auth_headers().unwrap();
        assert_eq!(
            h,
            vec![
                ("X-SLURM-USER-NAME", "alice".to_string()),
                ("X-SLURM-USER-TOKEN", "abc".to_string())
            ]
        );
        std::fs::write(&tok, "def").unwrap();
        assert_eq!(c.auth_headers().unwrap()[1].1, "def");
    }
}
