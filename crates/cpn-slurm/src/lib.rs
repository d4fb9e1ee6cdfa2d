//! Adapter that runs cpn jobs on a real Slurm cluster.
//!
//! Two clients implement [`SlurmApi`]:
//! - [`CliClient`] drives the Slurm command-line tools (`sbatch`, `squeue`, `scontrol`,
//!   `sacct`, `scancel`), honouring `slurm_conf` as `SLURM_CONF`;
//! - [`RestClient`] talks to `slurmrestd` over a unix socket (local auth) or `http://`
//!   (JWT headers), in the old (v0.0.36..=v0.0.39) or new (v0.0.40+) JSON shapes.
//!
//! [`connect`] picks one from a [`SlurmBackendSpec`]: REST when `rest_url` is set, else CLI.
//! Both run the same generated bash batch script ([`script::batch_script`]).

pub mod cli;
mod http;
pub mod rest;
pub mod script;

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
pub use cpn_api_types::registry::SlurmBackendSpec;

pub use cli::CliClient;
pub use rest::{ApiGeneration, RestClient};

/// Errors of the Slurm adapter; each carries what failed and Slurm's own message.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// The backend spec cannot be used (bad URL, bad API version, ...).
    #[error("invalid slurm configuration: {0}")]
    Config(String),
    /// The job request cannot be turned into a Slurm job.
    #[error("invalid job request: {0}")]
    InvalidJob(String),
    /// A Slurm command could not be started or exited with an error.
    #[error("`{command}` failed: {message}")]
    Command {
        /// The command line that was run.
        command: String,
        /// Its stderr (or the reason it could not start).
        message: String,
    },
    /// slurmrestd could not be reached or the HTTP exchange failed.
    #[error("slurmrestd {url}: {message}")]
    Transport {
        /// The request URL or socket.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// slurmrestd answered with an HTTP error or a non-empty `errors` array.
    #[error("slurmrestd {method} {path}: HTTP {status}: {message}")]
    Api {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
        /// HTTP status code.
        status: u16,
        /// Slurm's error messages, joined.
        message: String,
    },
    /// A response could not be understood.
    #[error("unexpected slurm output: {0}")]
    Parse(String),
    /// Reading a local file (token, script) failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A job to run on Slurm: one task of `cpus` CPUs on one node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobRequest {
    /// Slurm job name.
    pub name: String,
    /// Program and arguments, run with `exec` (each argument shell-quoted). Ignored when
    /// `script` is set.
    pub argv: Vec<String>,
    /// Bash script text run instead of `argv`.
    pub script: Option<String>,
    /// Environment variables exported before the command runs.
    pub env: BTreeMap<String, String>,
    /// Working directory of the job (must exist on the node).
    pub workdir: PathBuf,
    /// `--cpus-per-task`; 0 leaves Slurm's default.
    pub cpus: u32,
    /// `--mem` in MiB; 0 leaves Slurm's default.
    pub memory_mib: u64,
    /// `--gres=gpu:N`; 0 asks for none.
    pub gpus: u32,
    /// `--nodelist`, a Slurm hostlist such as `node[1-2]`.
    pub nodelist: Option<String>,
    /// File receiving the job's stdout.
    pub stdout: PathBuf,
    /// File receiving the job's stderr.
    pub stderr: PathBuf,
}

/// A Slurm job's state, reduced to what cpn acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Queued (also configuring, held, requeued...).
    Pending,
    /// Running (also completing, suspended, stopped...).
    Running,
    /// Finished with exit code 0.
    Completed,
    /// Finished with a non-zero exit code or failed to launch.
    Failed,
    /// Cancelled by a user or admin.
    Cancelled,
    /// Hit its time limit (or deadline).
    Timeout,
    /// A node it ran on failed.
    NodeFail,
    /// Killed for exceeding its memory.
    OutOfMemory,
    /// Any other state, as Slurm spelled it.
    Other(String),
}

impl JobState {
    /// Maps a Slurm state name (`COMPLETED`, `CANCELLED by 0`, `cancelled`, `CD`...) to a state.
    pub fn from_slurm(s: &str) -> JobState {
        let word = s.split_whitespace().next().unwrap_or("");
        let word = word.trim_end_matches('+').to_ascii_uppercase();
        match word.as_str() {
            "PENDING" | "PD" | "CONFIGURING" | "CF" | "REQUEUED" | "RQ" | "REQUEUE_HOLD"
            | "REQUEUE_FED" | "RESV_DEL_HOLD" | "RF" | "RH" | "RD" => JobState::Pending,
            "RUNNING" | "R" | "COMPLETING" | "CG" | "SUSPENDED" | "S" | "STOPPED" | "ST"
            | "SIGNALING" | "SI" | "STAGE_OUT" | "SO" | "RESIZING" | "RS" => JobState::Running,
            "COMPLETED" | "CD" => JobState::Completed,
            "FAILED" | "F" | "BOOT_FAIL" | "BF" | "SPECIAL_EXIT" | "SE" | "LAUNCH_FAILED" => {
                JobState::Failed
            }
            "CANCELLED" | "CA" | "REVOKED" | "RV" => JobState::Cancelled,
            "TIMEOUT" | "TO" | "DEADLINE" | "DL" => JobState::Timeout,
            "PREEMPTED" | "PR" => JobState::Other("PREEMPTED".into()),
            "NODE_FAIL" | "NF" => JobState::NodeFail,
            "OUT_OF_MEMORY" | "OOM" => JobState::OutOfMemory,
            _ => JobState::Other(word),
        }
    }

    /// Whether the job will not change state any more.
    pub fn is_terminal(&self) -> bool {
        match self {
            JobState::Pending | JobState::Running => false,
            JobState::Completed
            | JobState::Failed
            | JobState::Cancelled
            | JobState::Timeout
            | JobState::NodeFail
            | JobState::OutOfMemory => true,
            JobState::Other(s) => s == "PREEMPTED",
        }
    }
}

/// What Slurm says about one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    /// Slurm job id.
    pub job_id: String,
    /// Current state.
    pub state: JobState,
    /// Exit code of the batch script once known (128+signal when killed by a signal).
    pub exit_code: Option<i32>,
    /// Nodes allocated to it, as a hostlist.
    pub nodes: Option<String>,
    /// Why it is pending or failed, when Slurm says (`None` is dropped).
    pub reason: Option<String>,
}

/// A Slurm node as imported into cpn.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmNode {
    /// Node name.
    pub name: String,
    /// Configured CPUs.
    pub cpus: u32,
    /// Configured real memory in MiB.
    pub memory_mib: u64,
    /// GPUs counted from its gres.
    pub gpus: u32,
    /// Its gres string as Slurm reports it (`gpu:fake:2`), empty when none.
    pub gres: String,
    /// Its state (`IDLE`, `MIXED`, `IDLE+DRAIN`...), upper-case.
    pub state: String,
    /// Partitions it belongs to.
    pub partitions: Vec<String>,
}

/// The operations cpn needs from a Slurm cluster.
#[async_trait]
pub trait SlurmApi: Send + Sync {
    /// Checks that the controller answers.
    async fn ping(&self) -> Result<(), SlurmError>;
    /// Submits a batch job and returns its id.
    async fn submit(&self, job: &JobRequest) -> Result<String, SlurmError>;
    /// The job's status; `None` when Slurm no longer (or never) knew it.
    async fn status(&self, job_id: &str) -> Result<Option<JobStatus>, SlurmError>;
    /// The id of a job Slurm still knows by this name (the newest), if any. cpn names jobs
    /// after their attempt id, so this finds a job submitted just before a crash.
    async fn find_job(&self, name: &str) -> Result<Option<String>, SlurmError>;
    /// Cancels the job (no error when it already ended).
    async fn cancel(&self, job_id: &str) -> Result<(), SlurmError>;
    /// The cluster's nodes, limited to the configured partition when there is one.
    async fn nodes(&self) -> Result<Vec<SlurmNode>, SlurmError>;
    /// A one-line description for logs (`slurm cli (partition debug)`...).
    fn describe(&self) -> String;
}

/// Builds the client the spec asks for: [`RestClient`] when `rest_url` is set, else
/// [`CliClient`].
pub fn connect(spec: &SlurmBackendSpec) -> Result<Box<dyn SlurmApi>, SlurmError> {
    if spec.rest_url.is_some() {
        Ok(Box::new(RestClient::new(spec)?))
    } else {
        Ok(Box::new(CliClient::new(spec)))
    }
}

/// Counts GPUs in a gres string such as `gpu:fake:2,shard:4` or `gpu:a100:4(S:0-1)`.
pub fn gpus_in_gres(gres: &str) -> u32 {
    gres.split(',')
        .map(|item| item.split('(').next().unwrap_or("").trim())
        .filter(|item| *item == "gpu" || item.starts_with("gpu:"))
        .map(|item| {
            let last = item.rsplit(':').next().unwrap_or("");
            // `gpu` or `gpu:type` without a count means one
            last.parse::<u32>().unwrap_or(1)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map() {
        assert_eq!(JobState::from_slurm("COMPLETED"), JobState::Completed);
        assert_eq!(JobState::from_slurm("CANCELLED by 0"), JobState::Cancelled);
        assert_eq!(JobState::from_slurm("CANCELLED+"), JobState::Cancelled);
        assert_eq!(JobState::from_slurm("running"), JobState::Running);
        assert_eq!(JobState::from_slurm("PD"), JobState::Pending);
        assert_eq!(JobState::from_slurm("OUT_OF_MEMORY"), JobState::OutOfMemory);
        assert_eq!(JobState::from_slurm("TIMEOUT"), JobState::Timeout);
        assert_eq!(JobState::from_slurm("DEADLINE"), JobState::Timeout);
        assert_eq!(JobState::from_slurm("NODE_FAIL"), JobState::NodeFail);
        assert_eq!(
            JobState::from_slurm("PREEMPTED"),
            JobState::Other("PREEMPTED".into())
        );
        assert_eq!(
            JobState::from_slurm("WEIRD"),
            JobState::Other("WEIRD".into())
        );
        assert!(JobState::Failed.is_terminal());
        assert!(!JobState::Running.is_terminal());
        assert!(!JobState::Other("WEIRD".into()).is_terminal());
    }

    #[test]
    fn gres_counts() {
        assert_eq!(gpus_in_gres("gpu:fake:2"), 2);
        assert_eq!(gpus_in_gres("gpu:2"), 2);
        assert_eq!(gpus_in_gres("gpu:a100:4(S:0-1),shard:8"), 4);
        assert_eq!(gpus_in_gres("gpu:a100:2,gpu:v100:1"), 3);
        assert_eq!(gpus_in_gres("(null)"), 0);
        assert_eq!(gpus_in_gres(""), 0);
        assert_eq!(gpus_in_gres("gpu"), 1);
    }
}
