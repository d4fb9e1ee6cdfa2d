//! Decisions as data: for every candidate, each filter's verdict and each factor's raw
//! value, normalized score, weight and contribution. The server stores this with every real
//! decision and returns it from the explain API, so "why there?" always has an answer.

/// One filter's verdict on one candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictReport {
    pub plugin: &'static str,
    pub fits: bool,
    /// The rejection holds until the task changes (not just until capacity frees up).
    pub forever: bool,
    pub code: Option<&'static str>,
    pub detail: Option<String>,
}

/// One factor's part in a candidate's score.
#[derive(Debug, Clone, PartialEq)]
pub struct FactorScore {
    pub plugin: &'static str,
    /// The plugin's own measure (ms, CNY/h, fraction …).
    pub raw: f64,
    pub unit: &'static str,
    /// `raw` mapped onto 0..=100 across the feasible candidates, 100 being best.
    pub normalized: f64,
    pub weight: f64,
    /// `normalized × weight`; the contributions sum to `total`.
    pub contribution: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CandidateReport {
    pub name: String,
    pub feasible: bool,
    pub verdicts: Vec<VerdictReport>,
    pub factors: Vec<FactorScore>,
    pub total: f64,
}

/// The full story of one scheduling cycle.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    pub task: String,
    pub profile: String,
    pub seed: u64,
    /// Every site, feasible or not, best first among the feasible.
    pub sites: Vec<CandidateReport>,
    /// Nodes evaluated inside the chosen site (sampling may stop early), best first.
    pub nodes: Vec<CandidateReport>,
    pub chosen_site: Option<String>,
    pub chosen_node: Option<String>,
    pub score: Option<f64>,
    /// Winner's total minus the runner-up site's total.
    pub margin: Option<f64>,
    /// Rejections counted by `plugin/code`, over sites and nodes.
    pub rejections: Vec<(String, u32)>,
}

impl Decision {
    pub fn count_rejection(&mut self, plugin: &str, code: &str) {
        let key = format!("{plugin}/{code}");
        match self.rejections.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => self.rejections.push((key, 1)),
        }
    }
}
