//! [`CliClient`]: runs jobs through the Slurm command-line tools (`sbatch`, `squeue`,
//! `scontrol`, `sacct`, `scancel`), and parses their `-o` one-line outputs.

use std::collections::BTreeMap;
use std::process::Stdio;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::script::{batch_script, sbatch_args};
use crate::{
    JobRequest, JobState, JobStatus, SlurmApi, SlurmBackendSpec, SlurmError, SlurmNode,
    gpus_in_gres,
};

/// Drives Slurm through its CLI; `SLURM_CONF` is set for the children when configured.
#[derive(Debug, Clone)]
pub struct CliClient {
    partition: Option<String>,
    slurm_conf: Option<String>,
}

/// What a finished command printed.
struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl CliClient {
    /// A client for the cluster `spec` describes (its `partition` and `slurm_conf`).
    pub fn new(spec: &SlurmBackendSpec) -> CliClient {
        CliClient {
            partition: spec.partition.clone().filter(|p| !p.is_empty()),
            slurm_conf: spec.slurm_conf.clone().filter(|p| !p.is_empty()),
        }
    }

    async fn run(
        &self,
        program: &str,
        args: &[String],
        stdin: Option<&str>,
    ) -> Result<Output, SlurmError> {
        let line = command_line(program, args);
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(conf) = &self.slurm_conf {
            cmd.env("SLURM_CONF", conf);
        }
        let err = |message: String| SlurmError::Command {
            command: line.clone(),
            message,
        };
        let mut child = cmd.spawn().map_err(|e| err(format!("cannot start: {e}")))?;
        if let Some(text) = stdin {
            let mut pipe = child
                .stdin
                .take()
                .ok_or_else(|| err("no stdin pipe".into()))?;
            pipe.write_all(text.as_bytes())
                .await
                .map_err(|e| err(format!("writing stdin: {e}")))?;
            drop(pipe);
        }
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
                .await
                .map_err(|_| err("no answer within 60s".into()))?
                .map_err(|e| err(format!("waiting: {e}")))?;
        Ok(Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }

    async fn run_ok(
        &self,
        program: &str,
        args: &[String],
        stdin: Option<&str>,
    ) -> Result<String, SlurmError> {
        let out = self.run(program, args, stdin).await?;
        if out.ok {
            Ok(out.stdout)
        } else {
            Err(SlurmError::Command {
                command: command_line(program, args),
                message: if out.stderr.is_empty() {
                    "exited with an error".into()
                } else {
                    out.stderr
                },
            })
        }
    }
}

fn command_line(program: &str, args: &[String]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(&crate::script::shell_quote(a));
    }
    s
}

fn invalid_job_id(stderr: &str) -> bool {
    stderr.contains("Invalid job id")
}

#[async_trait]
impl SlurmApi for CliClient {
    async fn ping(&self) -> Result<(), SlurmError> {
        let out = self.run_ok("scontrol", &["ping".into()], None).await?;
        if out.contains("is UP") {
            Ok(())
        } else {
            Err(SlurmError::Command {
                command: "scontrol ping".into(),
                message: out.trim().to_string(),
            })
        }
    }

    async fn submit(&self, job: &JobRequest) -> Result<String, SlurmError> {
        let script = batch_script(job)?;
        let args = sbatch_args(job, self.partition.as_deref());
        let out = self.run_ok("sbatch", &args, Some(&script)).await?;
        parse_parsable(&out)
            .ok_or_else(|| SlurmError::Parse(format!("sbatch --parsable printed {out:?}")))
    }

    async fn status(&self, job_id: &str) -> Result<Option<JobStatus>, SlurmError> {
        let args: Vec<String> = ["-h", "-j", job_id, "-o", "%T|%R|%N"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = self.run("squeue", &args, None).await?;
        if out.ok {
            if let Some(st) = parse_squeue(job_id, &out.stdout)
                && !st.state.is_terminal()
            {
                return Ok(Some(st));
            }
        } else if !invalid_job_id(&out.stderr) {
            return Err(SlurmError::Command {
                command: command_line("squeue", &args),
                message: out.stderr,
            });
        }
        // Left the queue: scontrol keeps it MinJobAge seconds, with its exit code.
        let args: Vec<String> = ["show", "job", job_id, "-o"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = self.run("scontrol", &args, None).await?;
        if out.ok {
            if let Some(st) = parse_scontrol_job(&out.stdout) {
                return Ok(Some(st));
            }
        } else if !invalid_job_id(&out.stderr) {
            return Err(SlurmError::Command {
                command: command_line("scontrol", &args),
                message: out.stderr,
            });
        }
        // Older jobs: the jobcomp file (sacct -c), when the cluster keeps one.
        let args: Vec<String> = [
            "-c",
            "-j",
            job_id,
            "-n",
            "-P",
            "-o",
            "JobID,State,ExitCode,NodeList",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = self.run("sacct", &args, None).await?;
        if out.ok {
            return Ok(parse_sacct(job_id, &out.stdout));
        }
        Ok(None)
    }

    async fn find_job(&self, name: &str) -> Result<Option<String>, SlurmError> {
        // `scontrol show jobs` covers queued, running and recently ended jobs (MinJobAge).
        let args: Vec<String> = ["show", "jobs", "-o"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = self.run_ok("scontrol", &args, None).await?;
        Ok(out
            .lines()
            .map(parse_kv_line)
            .filter(|kv| kv.get("JobName").map(String::as_str) == Some(name))
            .filter_map(|kv| kv.get("JobId").and_then(|i| i.parse::<u64>().ok()))
            .max()
            .map(|i| i.to_string()))
    }

    async fn cancel(&self, job_id: &str) -> Result<(), SlurmError> {
        let args = vec![job_id.to_string()];
        let out = self.run("scancel", &args, None).await?;
        if out.ok
            || invalid_job_id(&out.stderr)
            || out.stderr.contains("already completing or completed")
        {
            Ok(())
        } else {
            Err(SlurmError::Command {
                command: command_line("scancel", &args),
                message: out.stderr,
            })
        }
    }

    async fn nodes(&self) -> Result<Vec<SlurmNode>, SlurmError> {
        let args: Vec<String> = ["show", "nodes", "-o"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = self.run_ok("scontrol", &args, None).await?;
        let mut nodes: Vec<SlurmNode> = out.lines().filter_map(parse_scontrol_node).collect();
        if let Some(p) = &self.partition {
            nodes.retain(|n| n.partitions.iter().any(|q| q == p));
        }
        Ok(nodes)
    }

    fn describe(&self) -> String {
        format!(
            "slurm cli (partition {}, SLURM_CONF {})",
            self.partition.as_deref().unwrap_or("default"),
            self.slurm_conf.as_deref().unwrap_or("system")
        )
    }
}

/// The job id from `sbatch --parsable` output (`123` or `123;cluster`).
pub fn parse_parsable(out: &str) -> Option<String> {
    let line = out.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    let id = line.split(';').next()?.trim();
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit() || c == '_')).then(|| id.to_string())
}

/// A status from `squeue -h -o '%T|%R|%N'`; `None` when the job is not listed.
pub fn parse_squeue(job_id: &str, out: &str) -> Option<JobStatus> {
    let line = out.lines().find(|l| !l.trim().is_empty())?;
    let mut parts = line.trim().splitn(3, '|');
    let state = parts.next()?.trim();
    let reason = parts.next().map(str::trim).unwrap_or("");
    let nodes = parts.next().map(str::trim).unwrap_or("");
    let state = JobState::from_slurm(state);
    Some(JobStatus {
        job_id: job_id.to_string(),
        exit_code: None,
        nodes: non_empty(nodes),
        // For a running job %R is its node list, not a reason.
        reason: if state == JobState::Pending {
            non_empty(reason.trim_start_matches('(').trim_end_matches(')'))
        } else {
            None
        },
        state,
    })
}

/// Splits one `scontrol show ... -o` line into `Key=Value` pairs. Values may contain spaces
/// (`OS=Linux 6.1 #1 SMP`): a word that is not `Key=...` continues the previous value.
pub fn parse_kv_line(line: &str) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for word in line.split_whitespace() {
        let key = word.split_once('=').map(|(k, _)| k).filter(|k| {
            !k.is_empty()
                && k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '/' | '.'))
        });
        match key {
            Some(k) => {
                let v = &word[k.len() + 1..];
                map.insert(k.to_string(), v.to_string());
                last = Some(k.to_string());
            }
            None => {
                if let Some(v) = last.as_ref().and_then(|k| map.get_mut(k)) {
                    v.push(' ');
                    v.push_str(word);
                }
            }
        }
    }
    map
}

/// `ExitCode=code:signal` as one exit code: `code`, or 128+`signal` when killed by a signal.
pub fn parse_exit_code(s: &str) -> Option<i32> {
    let (code, sig) = match s.split_once(':') {
        Some((c, g)) => (
            c.trim().parse::<i32>().ok()?,
            g.trim().parse::<i32>().unwrap_or(0),
        ),
        None => (s.trim().parse::<i32>().ok()?, 0),
    };
    Some(if sig != 0 && code == 0 {
        128 + sig
    } else {
        code
    })
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s != "(null)" && s != "None" && s != "None assigned").then(|| s.to_string())
}

/// A status from `scontrol show job ID -o`.
pub fn parse_scontrol_job(out: &str) -> Option<JobStatus> {
    let line = out.lines().find(|l| l.contains("JobId="))?;
    let kv = parse_kv_line(line);
    let state = JobState::from_slurm(kv.get("JobState")?);
    let exit_code = if state.is_terminal() {
        kv.get("ExitCode").and_then(|e| parse_exit_code(e))
    } else {
        None
    };
    Some(JobStatus {
        job_id: kv.get("JobId")?.clone(),
        state,
        exit_code,
        nodes: kv.get("NodeList").and_then(|n| non_empty(n)),
        reason: kv.get("Reason").and_then(|r| non_empty(r)),
    })
}

/// A status from `sacct -c -j ID -n -P -o JobID,State,ExitCode,NodeList`.
pub fn parse_sacct(job_id: &str, out: &str) -> Option<JobStatus> {
    let line = out.lines().find(|l| l.split('|').next() == Some(job_id))?;
    let f: Vec<&str> = line.split('|').collect();
    let state = JobState::from_slurm(f.get(1)?);
    Some(JobStatus {
        job_id: job_id.to_string(),
        exit_code: if state.is_terminal() {
            f.get(2).and_then(|e| parse_exit_code(e))
        } else {
            None
        },
        state,
        nodes: f.get(3).and_then(|n| non_empty(n)),
        reason: None,
    })
}

/// A node from one `scontrol show nodes -o` line.
pub fn parse_scontrol_node(line: &str) -> Option<SlurmNode> {
    let kv = parse_kv_line(line);
    let name = kv.get("NodeName")?.clone();
    let gres = kv
        .get("Gres")
        .and_then(|g| non_empty(g))
        .unwrap_or_default();
    Some(SlurmNode {
        name,
        cpus: kv.get("CPUTot").and_then(|c| c.parse().ok()).unwrap_or(0),
        memory_mib: kv
            .get("RealMemory")
            .and_then(|m| m.parse().ok())
            .unwrap_or(0),
        gpus: gpus_in_gres(&gres),
        gres,
        state: kv
            .get("State")
            .cloned()
            .unwrap_or_default()
            .to_ascii_uppercase(),
        partitions: kv
            .get("Partitions")
            .map(|p| {
                p.split(',')
                    .filter(|s| !s.is_empty() && *s != "(null)")
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB_FAILED: &str = "JobId=1 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901759 Nice=0 Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=7:0 RunTime=00:00:00 TimeLimit=365-00:00:00 TimeMin=N/A SubmitTime=2026-11-23T13:29:30 EligibleTime=2026-11-23T13:29:30 AccrueTime=2026-11-23T13:29:30 StartTime=2026-11-23T13:29:31 EndTime=2026-11-23T13:29:31 Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-23T13:29:31 Scheduler=Backfill Partition=debug AllocNode:Sid=localhost:4810 ReqNodeList=(null) ExcNodeList=(null) NodeList=node1 BatchHost=node1 NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=500M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryCPU=500M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp/cpn-slurm-test/work StdErr=/tmp/cpn-slurm-test/work/x.out StdIn=/dev/null StdOut=/tmp/cpn-slurm-test/work/x.out Power= \n";

    const NODES: &str = "NodeName=node1 Arch=x86_64 CoresPerSocket=1  CPUAlloc=0 CPUEfctv=2 CPUTot=2 CPULoad=1.11 AvailableFeatures=(null) ActiveFeatures=(null) Gres=(null) NodeAddr=127.0.0.1 NodeHostName=localhost Port=17001 Version=22.05.8 OS=Linux 6.18.44-fc-v595 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=2000 AllocMem=0 FreeMem=21357 Sockets=2 Boards=1 State=IDLE ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=debug  BootTime=2026-11-23T13:20:39 SlurmdStartTime=2026-11-23T13:28:02 LastBusyTime=2026-11-23T13:29:31 CfgTRES=cpu=2,mem=2000M,billing=2 AllocTRES= CapWatts=n/a CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s
NodeName=node2 Arch=x86_64 CoresPerSocket=1  CPUAlloc=1 CPUEfctv=2 CPUTot=2 CPULoad=1.11 AvailableFeatures=(null) ActiveFeatures=(null) Gres=gpu:fake:2 NodeAddr=127.0.0.1 NodeHostName=localhost Port=17002 Version=22.05.8 OS=Linux 6.18.44-fc-v595 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=2000 AllocMem=500 FreeMem=21356 Sockets=2 Boards=1 State=MIXED+DRAIN ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=debug,gpu  BootTime=2026-11-23T13:20:38 Reason=maintenance window [root@2026-11-23T13:30:00] CfgTRES=cpu=2,mem=2000M,billing=2 AllocTRES=cpu=1 CapWatts=n/a
";

    #[test]
    fn scontrol_job_line() {
        let st = parse_scontrol_job(JOB_FAILED).unwrap();
        assert_eq!(st.job_id, "1");
        assert_eq!(st.state, JobState::Failed);
        assert_eq!(st.exit_code, Some(7));
        assert_eq!(st.nodes.as_deref(), Some("node1"));
        assert_eq!(st.reason.as_deref(), Some("NonZeroExitCode"));
        let running = JOB_FAILED
            .replace("JobState=FAILED", "JobState=RUNNING")
            .replace("Reason=NonZeroExitCode", "Reason=None");
        let st = parse_scontrol_job(&running).unwrap();
        assert_eq!(st.state, JobState::Running);
        assert_eq!(st.exit_code, None);
        assert_eq!(st.reason, None);
        let cancelled = JOB_FAILED
            .replace("JobState=FAILED", "JobState=CANCELLED")
            .replace("ExitCode=7:0", "ExitCode=0:15");
        let st = parse_scontrol_job(&cancelled).unwrap();
        assert_eq!(st.state, JobState::Cancelled);
        assert_eq!(st.exit_code, Some(143));
        assert!(parse_scontrol_job("").is_none());
    }

    #[test]
    fn kv_values_with_spaces() {
        let kv = parse_kv_line(NODES.lines().next().unwrap());
        assert_eq!(kv["OS"], "Linux 6.18.44-fc-v595 #1 SMP PREEMPT_DYNAMIC @0");
        assert_eq!(kv["AllocTRES"], "");
        assert_eq!(kv["CfgTRES"], "cpu=2,mem=2000M,billing=2");
    }

    #[test]
    fn scontrol_node_lines() {
        let nodes: Vec<SlurmNode> = NODES.lines().filter_map(parse_scontrol_node).collect();
        assert_eq!(nodes.len(), 2);
        assert_eq!(
            nodes[0],
            SlurmNode {
                name: "node1".into(),
                cpus: 2,
                memory_mib: 2000,
                gpus: 0,
                gres: String::new(),
                state: "IDLE".into(),
                partitions: vec!["debug".into()],
            }
        );
        assert_eq!(nodes[1].gpus, 2);
        assert_eq!(nodes[1].gres, "gpu:fake:2");
        assert_eq!(nodes[1].state, "MIXED+DRAIN");
        assert_eq!(
            nodes[1].partitions,
            vec!["debug".to_string(), "gpu".to_string()]
        );
    }

    #[test]
    fn small_outputs() {
        assert_eq!(parse_parsable("42\n").as_deref(), Some("42"));
        assert_eq!(parse_parsable("42;cpn\n").as_deref(), Some("42"));
        assert_eq!(parse_parsable("sbatch: warning\n"), None);
        let st = parse_squeue("5", "PENDING|(Resources)|\n").unwrap();
        assert_eq!(st.state, JobState::Pending);
        assert_eq!(st.reason.as_deref(), Some("Resources"));
        assert_eq!(st.nodes, None);
        let st = parse_squeue("5", "RUNNING|node2|node2\n").unwrap();
        assert_eq!(st.state, JobState::Running);
        assert_eq!(st.nodes.as_deref(), Some("node2"));
        assert!(parse_squeue("5", "").is_none());
        let st = parse_sacct("1", "1|FAILED|7:0|node1\n").unwrap();
        assert_eq!((st.state, st.exit_code), (JobState::Failed, Some(7)));
        assert!(parse_sacct("2", "1|FAILED|7:0|node1\n").is_none());
        assert_eq!(parse_exit_code("0:9"), Some(137));
        assert_eq!(parse_exit_code("3"), Some(3));
        assert_eq!(parse_exit_code("x"), None);
    }
}
