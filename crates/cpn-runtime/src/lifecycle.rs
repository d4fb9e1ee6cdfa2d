//! The task state machine, free of I/O: each function moves a stored task one step,
//! appends the change to its history and returns the events that step publishes. The
//! callers write the result with a compare-and-set, so a step that lost a race changes
//! nothing.
//!
//! pending → scheduled → running → succeeded | failed | cancelled | lost, where a failed
//! attempt with retries left and an attempt lost with a node go back to pending.

use chrono::{DateTime, Duration, Utc};
use cpn_api_types::agent::AttemptUsage;
use cpn_api_types::events::{Severity, alarms, types};
use cpn_api_types::tasks::{StateChange, TaskKpis, TaskState, TaskSubmit, TaskView};
use cpn_store::{NewEvent, TaskRecord};
use serde::{Deserialize, Serialize};

/// Longest wait between two placement tries of an unschedulable task while no capacity
/// appears (capacity that does wakes the binder, which tries it at once).
pub(crate) const MAX_UNSCHEDULABLE_BACKOFF_S: i64 = 10;
/// How the reason of a task that waits for capacity starts.
const UNSCHEDULABLE_PREFIX: &str = "unschedulable: ";

/// What the server keeps about a task beyond its columns (stored as JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    #[serde(default)]
    pub history: Vec<StateChange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Retries used after failed attempts.
    #[serde(default)]
    pub retries: u32,
    /// Reschedules used after lost attempts.
    #[serde(default)]
    pub reschedules: u32,
    /// Consecutive placement tries that found no node.
    #[serde(default)]
    pub unschedulable_streak: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<AttemptUsage>,
    /// Sum and count of GPU utilization samples of the task's GPUs while it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_util: Option<(f64, u32)>,
    /// Why the binder put the current attempt where it did, as it decided then ("why here").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<BindingRecord>,
    /// Since when every placement try was refused for good: no site could ever take the task
    /// as the federation stands. Cleared by any try that was refused only for now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unplaceable_since: Option<DateTime<Utc>>,
}

/// A binding's explanation as the binder made it: a brief decision (`Mode::Brief`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingRecord {
    pub at: DateTime<Utc>,
    pub policy: String,
    pub decision: cpn_api_types::schedule::DecisionView,
}

/// A task as loaded for one step: the record plus its decoded spec and status.
#[derive(Debug, Clone)]
pub struct Task {
    pub record: TaskRecord,
    pub spec: TaskSubmit,
    pub status: TaskStatus,
}

impl Task {
    pub fn decode(record: TaskRecord) -> Result<Task, String> {
        let spec = serde_json::from_value(record.spec.clone())
            .map_err(|e| format!("stored task {} has a bad spec: {e}", record.id))?;
        let status = serde_json::from_value(record.status.clone())
            .map_err(|e| format!("stored task {} has a bad status: {e}", record.id))?;
        Ok(Task {
            record,
            spec,
            status,
        })
    }

    pub fn state(&self) -> TaskState {
        TaskState::parse(&self.record.state).unwrap_or(TaskState::Failed)
    }

    pub fn attempt_id(&self) -> String {
        attempt_id(&self.record.id, self.record.attempt)
    }

    /// The record to write, with the status encoded.
    pub fn into_record(mut self) -> TaskRecord {
        self.record.status =
            serde_json::to_value(&self.status).expect("the task status always encodes");
        self.record
    }

    fn set(&mut self, state: TaskState, now: DateTime<Utc>, reason: Option<String>) {
        self.record.state = state.as_str().to_string();
        self.record.updated_at = now;
        self.status.history.push(StateChange {
            state,
            at: now,
            attempt: self.record.attempt,
            reason: reason.clone(),
        });
        self.status.reason = reason;
    }

    fn event(&self, now: DateTime<Utc>, message: String) -> NewEvent {
        NewEvent {
            at: now,
            event_type: types::TASK_STATE.into(),
            subject: self.record.id.clone(),
            tenant: self.record.tenant.clone(),
            severity: match self.state() {
                TaskState::Failed | TaskState::Lost => "warning",
                _ => "info",
            }
            .into(),
            message,
            data: serde_json::json!({
                "name": self.record.name,
                "state": self.record.state,
                "attempt": self.record.attempt,
                "node": self.status.node,
                "site": self.status.site,
                "exit_code": self.status.exit_code,
                "reason": self.status.reason,
            }),
        }
    }

    fn alarm(
        &self,
        now: DateTime<Utc>,
        kind: &str,
        severity: Severity,
        message: String,
    ) -> NewEvent {
        NewEvent {
            at: now,
            event_type: types::ALARM.into(),
            subject: self.record.id.clone(),
            tenant: self.record.tenant.clone(),
            severity: severity_str(severity).into(),
            message,
            data: serde_json::json!({
                "kind": kind,
                "task": self.record.id,
                "name": self.record.name,
                "attempt": self.record.attempt,
                "node": self.status.node,
                "exit_code": self.status.exit_code,
                "reason": self.status.reason,
            }),
        }
    }

    // ------------------------------------------------------------ steps

    /// pending → scheduled on a node: a new attempt.
    pub fn bind(
        &mut self,
        now: DateTime<Utc>,
        node_id: &str,
        node: &str,
        site: &str,
        gpus: Vec<u32>,
        policy: &str,
    ) -> Vec<NewEvent> {
        self.record.attempt += 1;
        self.record.node_id = Some(node_id.to_string());
        self.record.not_before = None;
        self.status.node = Some(node.to_string());
        self.status.site = Some(site.to_string());
        self.status.gpus = gpus;
        self.status.policy = Some(policy.to_string());
        self.status.exit_code = None;
        self.status.external_id = None;
        self.status.started_at = None;
        self.status.finished_at = None;
        self.status.usage = None;
        self.status.gpu_util = None;
        self.status.unschedulable_streak = 0;
        self.status.unplaceable_since = None;
        self.status.binding = None;
        self.set(TaskState::Scheduled, now, None);
        vec![self.event(
            now,
            format!("attempt {} bound to {site}/{node}", self.record.attempt),
        )]
    }

    /// scheduled → running: the executor started the attempt.
    pub fn start(
        &mut self,
        now: DateTime<Utc>,
        started_at: DateTime<Utc>,
        external_id: Option<String>,
    ) -> Vec<NewEvent> {
        self.status.started_at = Some(started_at);
        if external_id.is_some() {
            self.status.external_id = external_id;
        }
        self.set(TaskState::Running, now, None);
        vec![self.event(
            now,
            format!(
                "attempt {} running on {}",
                self.record.attempt,
                self.status.node.as_deref().unwrap_or("?")
            ),
        )]
    }

    /// The attempt ended by itself: success, or a failure that is retried while retries last.
    pub fn finish(
        &mut self,
        now: DateTime<Utc>,
        exit_code: Option<i32>,
        error: Option<String>,
        usage: Option<AttemptUsage>,
    ) -> Vec<NewEvent> {
        self.status.exit_code = exit_code;
        self.status.finished_at = Some(now);
        if usage.is_some() {
            self.status.usage = usage;
        }
        if exit_code == Some(0) && error.is_none() {
            self.set(TaskState::Succeeded, now, None);
            return vec![self.event(now, format!("attempt {} succeeded", self.record.attempt))];
        }
        let why = match (&error, exit_code) {
            (Some(e), _) => e.clone(),
            (None, Some(c)) => format!("exited with code {c}"),
            (None, None) => "ended with no exit code".into(),
        };
        if self.status.retries < self.spec.retry.max_retries {
            self.status.retries += 1;
            let delay = retry_delay(&self.spec, self.status.retries);
            self.back_to_pending(now, now + delay);
            self.status.reason = Some(format!(
                "attempt {} {why}; retry {} of {} after {:.1} s",
                self.record.attempt,
                self.status.retries,
                self.spec.retry.max_retries,
                delay.num_milliseconds() as f64 / 1000.0
            ));
            self.status.history.last_mut().expect("just pushed").reason =
                self.status.reason.clone();
            return vec![self.event(now, self.status.reason.clone().unwrap_or_default())];
        }
        self.set(TaskState::Failed, now, Some(why.clone()));
        vec![
            self.event(
                now,
                format!("attempt {} failed: {why}", self.record.attempt),
            ),
            self.alarm(
                now,
                alarms::TASK_FAILED,
                Severity::Warning,
                format!(
                    "task {} ({}) failed: {why}",
                    self.record.name, self.record.id
                ),
            ),
        ]
    }

    /// The node running the attempt is gone: reschedule elsewhere if the policy allows.
    pub fn lose(&mut self, now: DateTime<Utc>, why: &str) -> Vec<NewEvent> {
        self.status.finished_at = Some(now);
        let policy = self.spec.retry.clone();
        if policy.reschedule_on_lost && self.status.reschedules < policy.max_reschedules {
            self.status.reschedules += 1;
            self.back_to_pending(now, now);
            let msg = format!(
                "attempt {} lost ({why}); rescheduling ({} of {})",
                self.record.attempt, self.status.reschedules, policy.max_reschedules
            );
            self.status.reason = Some(msg.clone());
            self.status.history.last_mut().expect("just pushed").reason = Some(msg.clone());
            return vec![self.event(now, msg)];
        }
        self.set(TaskState::Lost, now, Some(why.to_string()));
        vec![
            self.event(now, format!("attempt {} lost: {why}", self.record.attempt)),
            self.alarm(
                now,
                alarms::TASK_LOST,
                Severity::Critical,
                format!("task {} ({}) lost: {why}", self.record.name, self.record.id),
            ),
        ]
    }

    /// Taken back from its node without blame (reclaim): back to the queue at once.
    pub fn evict(&mut self, now: DateTime<Utc>, why: &str) -> Vec<NewEvent> {
        self.status.finished_at = Some(now);
        self.back_to_pending(now, now);
        let msg = format!(
            "attempt {} evicted ({why}); rescheduling",
            self.record.attempt
        );
        self.status.reason = Some(msg.clone());
        self.status.history.last_mut().expect("just pushed").reason = Some(msg.clone());
        vec![self.event(now, msg)]
    }

    pub fn cancel(&mut self, now: DateTime<Utc>, by: &str) -> Vec<NewEvent> {
        self.status.finished_at = Some(now);
        self.record.not_before = None;
        self.set(
            TaskState::Cancelled,
            now,
            Some(format!("cancelled by {by}")),
        );
        vec![self.event(now, format!("cancelled by {by}"))]
    }

    /// A try that found no node: stay pending, try again after a growing pause. The first
    /// miss raises an alarm; later ones only update the reason.
    pub fn unschedulable(&mut self, now: DateTime<Utc>, why: String) -> Vec<NewEvent> {
        self.status.unplaceable_since = None;
        self.status.unschedulable_streak += 1;
        let streak = self.status.unschedulable_streak;
        let backoff = (1i64 << streak.min(4)).min(MAX_UNSCHEDULABLE_BACKOFF_S);
        self.record.not_before = Some(now + Duration::seconds(backoff));
        self.record.updated_at = now;
        self.status.reason = Some(format!("{UNSCHEDULABLE_PREFIX}{why}"));
        if streak == 1 {
            vec![self.alarm(
                now,
                alarms::UNSCHEDULABLE,
                Severity::Warning,
                format!(
                    "task {} ({}) cannot be placed now: {why}",
                    self.record.name, self.record.id
                ),
            )]
        } else {
            Vec::new()
        }
    }

    /// No site can ever take the task as the federation stands (every rejection was
    /// permanent). It waits `wait` from the first such try for capacity to appear (a node
    /// joining, a site opening to its tenant), retried like any unschedulable task; then it
    /// fails with the reason instead of waiting for ever.
    pub fn unplaceable(
        &mut self,
        now: DateTime<Utc>,
        why: String,
        wait: std::time::Duration,
    ) -> Vec<NewEvent> {
        let since = self.status.unplaceable_since.unwrap_or(now);
        let deadline = since + Duration::from_std(wait).unwrap_or(Duration::MAX);
        if now >= deadline {
            self.status.finished_at = Some(now);
            self.set(TaskState::Failed, now, Some(format!("unplaceable: {why}")));
            let message = format!(
                "task {} ({}) failed: no site can take it ({why}), and none appeared in {} s",
                self.record.name,
                self.record.id,
                wait.as_secs()
            );
            return vec![
                self.event(now, format!("failed: unplaceable: {why}")),
                self.alarm(now, alarms::TASK_FAILED, Severity::Warning, message),
            ];
        }
        let events = self.unschedulable(
            now,
            format!(
                "{why}: it fails at {} unless capacity appears",
                deadline.format("%Y-%m-%dT%H:%M:%SZ")
            ),
        );
        self.status.unplaceable_since = Some(since);
        events
    }

    /// Whether the task waits for capacity: its last placement tries found no node, so its
    /// `not_before` is that backoff, which capacity appearing may cut short. (A retry's
    /// backoff is never cut short: it starts after a bind, which clears the streak.)
    pub fn waits_for_capacity(&self) -> bool {
        self.state() == TaskState::Pending && self.status.unschedulable_streak > 0
    }

    /// Whether a miss for this reason would tell nothing new: the task already waits
    /// for capacity for exactly it.
    pub fn unschedulable_for(&self, why: &str) -> bool {
        self.waits_for_capacity()
            && self
                .status
                .reason
                .as_deref()
                .and_then(|r| r.strip_prefix(UNSCHEDULABLE_PREFIX))
                == Some(why)
    }

    /// Still waiting at its deadline.
    pub fn expire(&mut self, now: DateTime<Utc>) -> Vec<NewEvent> {
        self.abandon(
            now,
            "deadline: the task had not started by its deadline",
            "its deadline passed before it could start",
        )
    }

    /// A task that has not started fails for good, without retries: `reason` is its
    /// state's reason, `why` what its event and alarm say.
    pub fn abandon(&mut self, now: DateTime<Utc>, reason: &str, why: &str) -> Vec<NewEvent> {
        self.status.finished_at = Some(now);
        self.set(TaskState::Failed, now, Some(reason.into()));
        vec![
            self.event(now, format!("failed: {why}")),
            self.alarm(
                now,
                alarms::TASK_FAILED,
                Severity::Warning,
                format!(
                    "task {} ({}) failed: {why}",
                    self.record.name, self.record.id
                ),
            ),
        ]
    }

    fn back_to_pending(&mut self, now: DateTime<Utc>, not_before: DateTime<Utc>) {
        self.record.node_id = None;
        self.record.not_before = (not_before > now).then_some(not_before);
        self.status.gpus.clear();
        self.set(TaskState::Pending, now, None);
    }

    // ------------------------------------------------------------ views

    pub fn view(&self, now: DateTime<Utc>) -> TaskView {
        let r = &self.record;
        let s = &self.status;
        let state = self.state();
        let run_end = if state == TaskState::Running {
            Some(now)
        } else {
            s.finished_at
        };
        let kpis = TaskKpis {
            queue_wait_s: s.started_at.map(|t| seconds(t - r.submitted_at).max(0.0)),
            run_time_s: match (s.started_at, run_end) {
                (Some(a), Some(b)) => Some(seconds(b - a).max(0.0)),
                _ => None,
            },
            cpu_seconds: s.usage.map(|u| u.cpu_seconds),
            cpu_util_pct: s.usage.map(|u| u.cpu_util_pct),
            max_rss_mib: s.usage.map(|u| u.max_rss_mib),
            gpu_util_pct: s
                .gpu_util
                .filter(|(_, n)| *n > 0)
                .map(|(sum, n)| sum / n as f64),
            attempts: r.attempt,
        };
        let (group, replica) = split_replica(&r.id);
        TaskView {
            id: r.id.clone(),
            name: r.name.clone(),
            tenant: r.tenant.clone(),
            owner: r.owner.clone(),
            state,
            priority: r.priority,
            attempt: r.attempt,
            attempt_id: (r.attempt > 0).then(|| self.attempt_id()),
            site: s.site.clone(),
            node: s.node.clone(),
            policy: s.policy.clone(),
            gpus: s.gpus.clone(),
            external_id: s.external_id.clone(),
            exit_code: s.exit_code,
            reason: s.reason.clone(),
            not_before: r.not_before,
            submitted_at: r.submitted_at,
            updated_at: r.updated_at,
            history: s.history.clone(),
            kpis,
            group,
            replica,
            spec: self.spec.clone(),
        }
    }
}

pub(crate) fn severity_str(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

fn seconds(d: Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// Backoff before retry `n` (1-based): `backoff_s · 2^(n-1)`, at most `max_backoff_s`.
pub(crate) fn retry_delay(spec: &TaskSubmit, n: u32) -> Duration {
    let p = &spec.retry;
    let secs = (p.backoff_s * 2f64.powi(n.saturating_sub(1).min(30) as i32)).min(p.max_backoff_s);
    Duration::milliseconds((secs * 1000.0).round() as i64)
}

/// `{task}.{attempt}`: the id an executor dedupes on.
pub(crate) fn attempt_id(task: &str, attempt: u32) -> String {
    format!("{task}.{attempt}")
}

/// Splits `{task}.{attempt}`.
pub(crate) fn parse_attempt_id(id: &str) -> Option<(&str, u32)> {
    let (task, n) = id.rsplit_once('.')?;
    Some((task, n.parse().ok()?))
}

/// Replica k > 0 of a submission has the id `{first}-r{k}`.
pub(crate) fn replica_id(first: &str, k: u32) -> String {
    if k == 0 {
        first.to_string()
    } else {
        format!("{first}-r{k}")
    }
}

pub(crate) fn split_replica(id: &str) -> (String, u32) {
    match id.rsplit_once("-r") {
        Some((first, k)) if k.chars().all(|c| c.is_ascii_digit()) && !k.is_empty() => {
            (first.to_string(), k.parse().unwrap_or(0))
        }
        _ => (id.to_string(), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(retries: u32) -> Task {
        let spec: TaskSubmit = serde_json::from_value(serde_json::json!({
            "name": "t", "command": ["true"], "retry": {"max_retries": retries, "backoff_s": 2.0}
        }))
        .unwrap();
        let now = Utc::now();
        Task {
            record: TaskRecord {
                seq: 1,
                id: "task-1".into(),
                tenant: "default".into(),
                owner: "admin".into(),
                name: "t".into(),
                state: "pending".into(),
                priority: 0,
                attempt: 0,
                node_id: None,
                not_before: None,
                submitted_at: now,
                updated_at: now,
                spec: serde_json::to_value(&spec).unwrap(),
                status: serde_json::json!({}),
            },
            spec,
            status: TaskStatus::default(),
        }
    }

    #[test]
    fn a_success_runs_through_every_state_once() {
        let mut t = task(0);
        let now = Utc::now();
        t.bind(now, "node-1", "n1", "local", vec![], "default");
        assert_eq!((t.state(), t.record.attempt), (TaskState::Scheduled, 1));
        assert_eq!(t.attempt_id(), "task-1.1");
        t.start(now, now, Some("42".into()));
        t.finish(now, Some(0), None, None);
        let states: Vec<_> = t.status.history.iter().map(|h| h.state).collect();
        assert_eq!(
            states,
            [
                TaskState::Scheduled,
                TaskState::Running,
                TaskState::Succeeded
            ]
        );
    }

    #[test]
    fn failures_retry_with_doubling_backoff_then_fail_with_an_alarm() {
        let mut t = task(2);
        let now = Utc::now();
        for expected in [2, 4] {
            t.bind(now, "n", "n", "s", vec![], "default");
            let events = t.finish(now, Some(1), None, None);
            assert_eq!(t.state(), TaskState::Pending);
            assert_eq!(
                t.record.not_before.unwrap() - now,
                Duration::seconds(expected)
            );
            assert!(events.iter().all(|e| e.event_type != types::ALARM));
        }
        t.bind(now, "n", "n", "s", vec![], "default");
        let events = t.finish(now, Some(1), None, None);
        assert_eq!(t.state(), TaskState::Failed);
        assert_eq!(t.status.exit_code, Some(1));
        assert!(events.iter().any(|e| e.event_type == types::ALARM));
        assert_eq!(t.record.attempt, 3);
    }

    #[test]
    fn a_lost_attempt_is_rescheduled_until_the_limit() {
        let mut t = task(0);
        let now = Utc::now();
        for _ in 0..3 {
            t.bind(now, "n", "n", "s", vec![], "default");
            t.lose(now, "node n stopped answering");
            assert_eq!(t.state(), TaskState::Pending);
            assert!(t.record.node_id.is_none());
        }
        t.bind(now, "n", "n", "s", vec![], "default");
        let events = t.lose(now, "node n stopped answering");
        assert_eq!(t.state(), TaskState::Lost);
        assert!(events.iter().any(|e| e.data["kind"] == alarms::TASK_LOST));
    }

    #[test]
    fn unschedulable_backs_off_and_alarms_once() {
        let mut t = task(0);
        let now = Utc::now();
        assert_eq!(t.unschedulable(now, "no node".into()).len(), 1);
        assert!(t.unschedulable(now, "no node".into()).is_empty());
        assert_eq!(t.state(), TaskState::Pending);
        assert!(t.record.not_before.unwrap() > now);
    }

    #[test]
    fn attempt_and_replica_ids_round_trip() {
        assert_eq!(parse_attempt_id("task-0a.3"), Some(("task-0a", 3)));
        assert_eq!(parse_attempt_id("nodot"), None);
        assert_eq!(
            split_replica(&replica_id("task-1", 4)),
            ("task-1".into(), 4)
        );
        assert_eq!(split_replica("task-1"), ("task-1".into(), 0));
    }
}
