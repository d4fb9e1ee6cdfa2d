//! Evaluation of a class B cluster after a lease (SH-CL-18, -22, -27): what monitoring saw
//! while the lease ran, summed into a bounded [`Monitoring`] record, and the score it
//! earns when the lease ends, which the listing's reliability follows. Class A clusters
//! are neither monitored nor evaluated (003 §6.5.6, §6.5.7).
//!
//! **What is observed.** Each metering run (and a release) gives the lease one sample: per
//! node of the lease, whether its node record is ready and, if its agent reported within
//! the answer window, the report's CPU utilisation and per-GPU utilisation
//! ([`NodeSample`]). From the samples, counted per lease:
//!
//! - *availability*: the share of samples in which every node of the lease answered
//!   (ready, with a fresh report);
//! - *mean CPU utilisation* of the lease's nodes and *mean GPU utilisation* of its cards,
//!   over the answers;
//! - *GPU drop-off* (掉卡): a leased card that was present and then is missing while its
//!   node answers — the agent's report lists GPU metrics but not this card, or the node's
//!   inventory no longer lists it (the catalog reports the card offline). Counted once per
//!   disappearance; a card that comes back and goes again counts again;
//! - *errors*: node losses — a node of the lease whose record turns not ready (the runtime
//!   marks a node lost when its heartbeats stop for the node timeout, and loses its task
//!   attempts). Counted once per loss. Task attempts that fail by their own exit status are
//!   the user's program, not the cluster, and are not counted.
//!
//! A node that does not answer makes its cards unobserved (neither present nor missing):
//! that is availability, not drop-off.
//!
//! **The score** (per mille, [`score`]): availability, less 200 per drop-off and 100 per
//! node loss, never below 0. Utilisation is part of the evaluation as feedback to the user
//! and the supplier, but not of the score: how busy a lessee keeps the cards is the
//! lessee's choice, not the cluster's quality. A lease without any sample gets an
//! evaluation without a score, which leaves the reliability as it was.
//!
//! **Reliability** ([`next_reliability`]): the first score, then each new score moves it a
//! quarter of the way (an exponentially weighted mean), so recent service counts most and
//! one bad lease does not erase a long record.

use crate::catalog::CardId;
use crate::lease::LeaseId;
use crate::listing::CpcId;
use crate::time::Timestamp;
use std::collections::BTreeSet;

/// What one drop-off costs the score, per mille.
pub const DROP_OFF_PENALTY: u16 = 200;
/// What one node loss costs the score, per mille.
pub const NODE_LOSS_PENALTY: u16 = 100;

/// One node of a lease as a metering run found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSample {
    pub node: String,
    /// The node record says ready.
    pub ready: bool,
    /// The agent's latest report, if it came within the answer window.
    pub report: Option<NodeReport>,
}

/// The figures of an agent's report the evaluation uses, per mille.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    pub cpu_util: u16,
    /// GPU utilisation by device index, when the agent reports GPU metrics at all; `None`
    /// when it reports none (no GPU sensor): then only the inventory says a card is there.
    pub gpus: Option<Vec<(u32, u16)>>,
}

/// A leased card as the sample needs it: its node, device index, and whether the catalog
/// has it reported (its node is ready and its inventory lists it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeasedCard<'a> {
    pub id: CardId,
    pub node: &'a str,
    pub index: u32,
    pub reported: bool,
}

/// What monitoring saw of one lease so far: counters and sums, bounded by the lease's
/// cards and nodes, whatever its length. Kept with the lease in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Monitoring {
    pub samples: u32,
    /// Samples in which every node of the lease answered.
    pub answered: u32,
    /// Sum of the nodes' CPU utilisation (per mille) over their answers, and their count.
    pub cpu_util_sum: u64,
    pub cpu_readings: u32,
    /// Sum of the cards' GPU utilisation (per mille) over their readings, and their count.
    pub gpu_util_sum: u64,
    pub gpu_readings: u32,
    pub drop_offs: u32,
    pub node_losses: u32,
    /// Cards missing at their last observation: a disappearance counts once.
    pub missing: BTreeSet<CardId>,
    /// Nodes not ready at the last sample: a loss counts once.
    pub down: BTreeSet<String>,
}

impl Monitoring {
    /// Adds one sample. A node of the lease without a sample counts as not ready (its
    /// record is gone). O(cards × nodes of the lease).
    pub fn observe(&mut self, cards: &[LeasedCard<'_>], nodes: &[NodeSample]) {
        self.samples = self.samples.saturating_add(1);
        let lease_nodes: BTreeSet<&str> = cards.iter().map(|c| c.node).collect();
        let sample_of = |node: &str| nodes.iter().find(|n| n.node == node);
        let answer_of = |node: &str| {
            sample_of(node)
                .filter(|n| n.ready)
                .and_then(|n| n.report.as_ref())
        };
        let mut down = BTreeSet::new();
        let mut all_answered = true;
        for node in &lease_nodes {
            if !sample_of(node).is_some_and(|n| n.ready) {
                if !self.down.contains(*node) {
                    self.node_losses = self.node_losses.saturating_add(1);
                }
                down.insert((*node).to_string());
            }
            match answer_of(node) {
                Some(r) => {
                    self.cpu_util_sum += u64::from(r.cpu_util.min(1000));
                    self.cpu_readings = self.cpu_readings.saturating_add(1);
                }
                None => all_answered = false,
            }
        }
        self.down = down;
        if all_answered {
            self.answered = self.answered.saturating_add(1);
        }
        for card in cards {
            // An unanswered node says nothing of its cards: they keep their last state.
            let Some(report) = answer_of(card.node) else {
                continue;
            };
            let reading = report
                .gpus
                .as_ref()
                .map(|g| g.iter().find(|(i, _)| *i == card.index).map(|(_, u)| *u));
            let listed = !matches!(reading, Some(None));
            if card.reported && listed {
                self.missing.remove(&card.id);
                if let Some(Some(util)) = reading {
                    self.gpu_util_sum += u64::from(util.min(1000));
                    self.gpu_readings = self.gpu_readings.saturating_add(1);
                }
            } else if self.missing.insert(card.id) {
                self.drop_offs = self.drop_offs.saturating_add(1);
            }
        }
    }

    /// The share of samples in which every node answered, per mille; `None` without samples.
    pub fn availability(&self) -> Option<u16> {
        per_mille(u64::from(self.answered) * 1000, self.samples)
    }

    pub fn mean_cpu_util(&self) -> Option<u16> {
        per_mille(self.cpu_util_sum, self.cpu_readings)
    }

    pub fn mean_gpu_util(&self) -> Option<u16> {
        per_mille(self.gpu_util_sum, self.gpu_readings)
    }
}

/// `sum / count`, rounded half up, as per mille; `None` for no count.
fn per_mille(sum: u64, count: u32) -> Option<u16> {
    (count > 0).then(|| {
        let c = u64::from(count);
        u16::try_from(((sum + c / 2) / c).min(1000)).expect("at most 1000")
    })
}

/// The score of a lease's monitoring (module documentation); `None` without samples.
pub fn score(m: &Monitoring) -> Option<u16> {
    let availability = i64::from(m.availability()?);
    let penalty = i64::from(m.drop_offs) * i64::from(DROP_OFF_PENALTY)
        + i64::from(m.node_losses) * i64::from(NODE_LOSS_PENALTY);
    Some(u16::try_from((availability - penalty).max(0)).expect("at most 1000"))
}

/// The listing's reliability after a new score: the first score, then a quarter of the way
/// from the old value to the new score, rounded half up.
pub fn next_reliability(old: Option<u16>, score: u16) -> u16 {
    match old {
        None => score,
        Some(r) => u16::try_from((3 * u32::from(r) + u32::from(score) + 2) / 4)
            .expect("a mean of values up to 1000"),
    }
}

/// The evaluation of one ended class B lease: its monitoring's components and its score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub lease: LeaseId,
    pub listing: CpcId,
    pub at: Timestamp,
    pub samples: u32,
    pub availability: Option<u16>,
    pub cpu_util: Option<u16>,
    pub gpu_util: Option<u16>,
    pub drop_offs: u32,
    pub node_losses: u32,
    pub score: Option<u16>,
}

impl Evaluation {
    pub fn of(lease: LeaseId, listing: CpcId, at: Timestamp, m: &Monitoring) -> Evaluation {
        Evaluation {
            lease,
            listing,
            at,
            samples: m.samples,
            availability: m.availability(),
            cpu_util: m.mean_cpu_util(),
            gpu_util: m.mean_gpu_util(),
            drop_offs: m.drop_offs,
            node_losses: m.node_losses,
            score: score(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cards(reported: bool) -> Vec<LeasedCard<'static>> {
        vec![
            LeasedCard {
                id: CardId(0),
                node: "n1",
                index: 0,
                reported,
            },
            LeasedCard {
                id: CardId(1),
                node: "n1",
                index: 1,
                reported,
            },
        ]
    }

    fn answered(gpus: Option<Vec<(u32, u16)>>) -> Vec<NodeSample> {
        vec![NodeSample {
            node: "n1".into(),
            ready: true,
            report: Some(NodeReport {
                cpu_util: 400,
                gpus,
            }),
        }]
    }

    fn silent(ready: bool) -> Vec<NodeSample> {
        vec![NodeSample {
            node: "n1".into(),
            ready,
            report: None,
        }]
    }

    #[test]
    fn a_lease_that_always_answered_scores_full_with_its_utilisation_as_feedback() {
        let mut m = Monitoring::default();
        for _ in 0..4 {
            m.observe(&cards(true), &answered(Some(vec![(0, 900), (1, 700)])));
        }
        assert_eq!(m.availability(), Some(1000));
        assert_eq!(m.mean_cpu_util(), Some(400));
        assert_eq!(m.mean_gpu_util(), Some(800));
        assert_eq!(score(&m), Some(1000));
        // Idle cards are the lessee's choice: utilisation does not lower the score.
        let mut idle = Monitoring::default();
        idle.observe(&cards(true), &answered(Some(vec![(0, 0), (1, 0)])));
        assert_eq!(idle.mean_gpu_util(), Some(0));
        assert_eq!(score(&idle), Some(1000));
    }

    #[test]
    fn a_card_missing_from_the_report_is_one_drop_off_until_it_comes_back() {
        let mut m = Monitoring::default();
        m.observe(&cards(true), &answered(Some(vec![(0, 500), (1, 500)])));
        m.observe(&cards(true), &answered(Some(vec![(0, 500)])));
        m.observe(&cards(true), &answered(Some(vec![(0, 500)])));
        assert_eq!(m.drop_offs, 1, "a card gone for two samples dropped once");
        m.observe(&cards(true), &answered(Some(vec![(0, 500), (1, 500)])));
        m.observe(&cards(true), &answered(Some(vec![(0, 500)])));
        assert_eq!(m.drop_offs, 2, "back, then gone again");
        assert_eq!(m.availability(), Some(1000));
        assert_eq!(score(&m), Some(1000 - 2 * DROP_OFF_PENALTY));
    }

    #[test]
    fn a_card_the_inventory_no_longer_lists_drops_off_even_without_gpu_metrics() {
        let mut m = Monitoring::default();
        m.observe(&cards(true), &answered(None));
        assert_eq!(m.drop_offs, 0);
        assert_eq!(
            m.mean_gpu_util(),
            None,
            "no GPU metrics, no GPU utilisation"
        );
        m.observe(&cards(false), &answered(None));
        assert_eq!(m.drop_offs, 2);
        assert!(score(&m).unwrap() < 1000);
    }

    #[test]
    fn a_lost_node_is_an_error_and_lowers_availability_but_is_no_drop_off() {
        let mut m = Monitoring::default();
        m.observe(&cards(true), &answered(Some(vec![(0, 500), (1, 500)])));
        m.observe(&cards(true), &silent(false));
        m.observe(&cards(true), &silent(false));
        m.observe(&cards(true), &answered(Some(vec![(0, 500), (1, 500)])));
        assert_eq!(m.node_losses, 1, "down for two samples is one loss");
        assert_eq!(
            m.drop_offs, 0,
            "an unanswered node says nothing of its cards"
        );
        assert_eq!(m.availability(), Some(500));
        assert_eq!(score(&m), Some(500 - NODE_LOSS_PENALTY));
        // A node record that is gone counts as not ready.
        let mut gone = Monitoring::default();
        gone.observe(&cards(true), &[]);
        assert_eq!(gone.node_losses, 1);
        assert_eq!(gone.availability(), Some(0));
    }

    #[test]
    fn a_silent_but_ready_node_costs_availability_only() {
        let mut m = Monitoring::default();
        m.observe(&cards(true), &answered(Some(vec![(0, 500), (1, 500)])));
        m.observe(&cards(true), &silent(true));
        assert_eq!((m.node_losses, m.drop_offs), (0, 0));
        assert_eq!(score(&m), Some(500));
    }

    #[test]
    fn penalties_floor_at_zero_and_no_sample_means_no_score() {
        let mut m = Monitoring::default();
        assert_eq!(score(&m), None);
        for i in 0..8 {
            m.observe(&cards(true), &answered(Some(vec![(0, 500), (1, 500)])));
            let gpus = if i % 2 == 0 { vec![] } else { vec![(0, 1)] };
            m.observe(&cards(true), &answered(Some(gpus)));
        }
        assert!(m.drop_offs >= 8);
        assert_eq!(score(&m), Some(0));
    }

    #[test]
    fn reliability_starts_at_the_first_score_and_moves_a_quarter_of_the_way() {
        assert_eq!(next_reliability(None, 600), 600);
        assert_eq!(next_reliability(Some(1000), 0), 750);
        assert_eq!(next_reliability(Some(750), 1000), 813);
        assert_eq!(next_reliability(Some(1000), 1000), 1000);
    }

    #[test]
    fn an_evaluation_carries_its_components() {
        let mut m = Monitoring::default();
        m.observe(&cards(true), &answered(Some(vec![(0, 1000), (1, 0)])));
        let e = Evaluation::of(
            LeaseId(3),
            CpcId::from_sequence(1).unwrap(),
            Timestamp::from_unix(9),
            &m,
        );
        assert_eq!(e.samples, 1);
        assert_eq!(e.availability, Some(1000));
        assert_eq!(e.gpu_util, Some(500));
        assert_eq!(e.cpu_util, Some(400));
        assert_eq!(e.score, Some(1000));
    }
}
