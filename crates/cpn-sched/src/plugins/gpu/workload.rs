//! The target workload M of fragmentation gradient descent ("typical pods", BENCHMARK.md
//! §4.1): the task shapes of the original trace with their popularity.
//!
//! A shape is (cpu milli, GPU milli per GPU, GPU count, allowed GPU models); memory is not
//! part of it. Shapes are counted, sorted by count (ties: larger shape first, comparing CPU,
//! then GPU milli, then GPU count, then the model list) and taken in that order until the
//! taken tasks reach 95 % of all tasks. The popularity of a taken shape is its count over the
//! taken tasks, so the popularities sum to 1. Counts are kept as integers: fragmentation is
//! then computed exactly (in units of 1/`total` milli-GPU) and a placement that leaves it
//! unchanged scores exactly σ(0).

use crate::task::Task;
use std::cmp::Reverse;
use std::collections::HashMap;

/// The popularity threshold of the paper's runs (`podPopularityThreshold: 95`), in percent.
pub const POPULARITY_THRESHOLD_PCT: u64 = 95;

/// One task shape of the target workload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shape {
    pub cpu_milli: u64,
    /// GPU milli per GPU (1..=1000); 0 for CPU-only shapes.
    pub gpu_milli: u32,
    /// GPUs per task; 0 for CPU-only shapes.
    pub num_gpu: u32,
    /// Allowed GPU models as the trace writes them (`V100M16|V100M32`); empty: any model.
    pub gpu_spec: String,
}

impl Shape {
    /// A shape from its parts; a shape with no GPUs or no GPU milli is CPU-only (0, 0).
    pub fn new(cpu_milli: u64, gpu_milli: u32, num_gpu: u32, gpu_spec: &str) -> Shape {
        let cpu_only = num_gpu == 0 || gpu_milli == 0;
        Shape {
            cpu_milli,
            gpu_milli: if cpu_only { 0 } else { gpu_milli.min(1000) },
            num_gpu: if cpu_only { 0 } else { num_gpu },
            gpu_spec: gpu_spec.to_string(),
        }
    }

    /// The shape of a task: its CPU, its per-GPU share and GPU count, and its allowed models
    /// (`Task::models`, joined with `|` as in the trace).
    pub fn of(task: &Task) -> Shape {
        let d = &task.demand;
        Shape::new(d.cpu_milli, d.gpu_milli, d.gpus, &task.models.join("|"))
    }

    pub fn is_cpu_only(&self) -> bool {
        self.gpu_milli == 0
    }

    /// Whether a GPU of model `model` is allowed (an empty spec allows every model).
    pub fn allows_model(&self, model: &str) -> bool {
        self.gpu_spec.is_empty() || self.gpu_spec.split('|').any(|m| m == model)
    }
}

/// The typical shapes with their counts; popularity p = count / `total()`.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetWorkload {
    /// Taken shapes, most popular first, with their task counts.
    shapes: Vec<(Shape, u64)>,
    /// Σ counts of the taken shapes.
    total: u64,
    /// Tasks and distinct shapes in the input (before the threshold cut).
    input_tasks: u64,
    input_shapes: usize,
}

impl TargetWorkload {
    /// The target workload of a task list (the original trace, before inflation), with the
    /// paper's 95 % threshold. CPU-only tasks are included.
    pub fn from_tasks(tasks: &[Task]) -> TargetWorkload {
        TargetWorkload::from_shapes(tasks.iter().map(Shape::of))
    }

    /// As [`from_tasks`](Self::from_tasks), from one shape per task.
    pub fn from_shapes(shapes: impl IntoIterator<Item = Shape>) -> TargetWorkload {
        TargetWorkload::with_threshold(shapes, POPULARITY_THRESHOLD_PCT)
    }

    /// One shape per task, keeping the most popular shapes until they cover at least
    /// `threshold_pct` percent of the tasks (100 keeps every shape).
    pub fn with_threshold(
        shapes: impl IntoIterator<Item = Shape>,
        threshold_pct: u64,
    ) -> TargetWorkload {
        let mut counts: HashMap<Shape, u64> = HashMap::new();
        for s in shapes {
            *counts.entry(s).or_default() += 1;
        }
        let input_shapes = counts.len();
        let input_tasks: u64 = counts.values().sum();
        let mut sorted: Vec<(Shape, u64)> = counts.into_iter().collect();
        // Count descending; ties: larger shape first (cpu, gpu milli, gpu count, spec).
        sorted.sort_by(|(a, ca), (b, cb)| {
            cb.cmp(ca).then_with(|| {
                Reverse((a.cpu_milli, a.gpu_milli, a.num_gpu, &a.gpu_spec)).cmp(&Reverse((
                    b.cpu_milli,
                    b.gpu_milli,
                    b.num_gpu,
                    &b.gpu_spec,
                )))
            })
        });
        let mut taken = 0u64;
        let mut keep = 0;
        for (_, c) in &sorted {
            if taken * 100 >= input_tasks * threshold_pct.min(100) {
                break;
            }
            taken += c;
            keep += 1;
        }
        sorted.truncate(keep);
        TargetWorkload {
            shapes: sorted,
            total: taken,
            input_tasks,
            input_shapes,
        }
    }

    /// Exactly these shapes with these counts (popularity = count / Σ counts), no threshold.
    /// Shapes with a zero count are dropped; equal shapes are merged.
    pub fn from_counts(shapes: impl IntoIterator<Item = (Shape, u64)>) -> TargetWorkload {
        let mut merged: Vec<(Shape, u64)> = Vec::new();
        for (s, c) in shapes {
            if c == 0 {
                continue;
            }
            match merged.iter_mut().find(|(t, _)| *t == s) {
                Some((_, n)) => *n += c,
                None => merged.push((s, c)),
            }
        }
        let total = merged.iter().map(|(_, c)| c).sum();
        TargetWorkload {
            input_shapes: merged.len(),
            input_tasks: total,
            shapes: merged,
            total,
        }
    }

    /// The taken shapes with their task counts, most popular first.
    pub fn shapes(&self) -> &[(Shape, u64)] {
        &self.shapes
    }

    /// Σ counts of the taken shapes: the denominator of every popularity.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Popularity of the i-th taken shape.
    pub fn popularity(&self, i: usize) -> f64 {
        self.shapes[i].1 as f64 / self.total as f64
    }

    pub fn len(&self) -> usize {
        self.shapes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }

    /// Tasks in the input, before the threshold cut.
    pub fn input_tasks(&self) -> u64 {
        self.input_tasks
    }

    /// Distinct shapes in the input, before the threshold cut.
    pub fn input_shapes(&self) -> usize {
        self.input_shapes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Demand;

    fn task(cpu: u64, milli: u32, gpus: u32, models: &[&str]) -> Task {
        Task {
            demand: Demand {
                cpu_milli: cpu,
                memory_mib: 7, // memory is not part of the shape
                gpus,
                gpu_milli: milli,
                storage_gib: 0,
            },
            models: models.iter().map(|m| m.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn shapes_are_counted_sorted_and_cut_at_95_percent() {
        // 20 tasks: A ×10, B ×5, C ×3, D ×1, E ×1. 95 % of 20 is 19: A+B+C = 18 < 19, so D
        // or E (tied at 1) is taken too; the larger shape wins the tie.
        let mut tasks = Vec::new();
        tasks.extend((0..10).map(|_| task(4000, 500, 1, &[])));
        tasks.extend((0..5).map(|_| task(8000, 1000, 1, &[])));
        tasks.extend((0..3).map(|_| task(2000, 0, 0, &[])));
        tasks.push(task(1000, 1000, 2, &[])); // D
        tasks.push(task(1000, 1000, 4, &[])); // E: same cpu and milli, more GPUs: larger
        let w = TargetWorkload::from_tasks(&tasks);
        assert_eq!(w.input_tasks(), 20);
        assert_eq!(w.input_shapes(), 5);
        assert_eq!(w.len(), 4);
        assert_eq!(w.total(), 19);
        assert_eq!(w.shapes()[0], (Shape::new(4000, 500, 1, ""), 10));
        assert_eq!(w.shapes()[2], (Shape::new(2000, 0, 0, ""), 3));
        assert_eq!(w.shapes()[3], (Shape::new(1000, 1000, 4, ""), 1));
        assert_eq!(w.popularity(0), 10.0 / 19.0);
        let p: f64 = (0..w.len()).map(|i| w.popularity(i)).sum();
        assert!((p - 1.0).abs() < 1e-12);
    }

    #[test]
    fn shape_of_a_task_and_model_access() {
        let s = Shape::of(&task(3000, 250, 1, &["V100M16", "V100M32"]));
        assert_eq!(s.gpu_spec, "V100M16|V100M32");
        assert!(s.allows_model("V100M32"));
        assert!(!s.allows_model("V100"));
        assert!(Shape::new(1, 0, 0, "").allows_model("G2"));
        // A CPU-only task's stray GPU milli is not part of its shape.
        assert_eq!(
            Shape::of(&task(3000, 1000, 0, &[])),
            Shape::new(3000, 0, 0, "")
        );
        let w = TargetWorkload::from_counts([
            (Shape::new(1000, 500, 1, ""), 1),
            (Shape::new(1000, 500, 1, ""), 1),
            (Shape::new(1000, 1000, 1, ""), 2),
            (Shape::new(1000, 0, 0, ""), 0),
        ]);
        assert_eq!(w.len(), 2);
        assert_eq!(w.total(), 4);
        assert_eq!(w.popularity(0), 0.5);
    }
}
