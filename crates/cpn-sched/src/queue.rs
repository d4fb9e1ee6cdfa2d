//! The scheduling queue (SC-ENG-04): priority classes, FIFO inside a class, and aging so a
//! low-priority task is never starved by a stream of higher ones.
//!
//! Time is a tick supplied by the caller (seconds in the server, virtual time in the twin).
//! A task's effective priority is its class plus one for every `aging_ticks` it has waited.
//! Within a class the head is the oldest entry, so it also has the class's highest effective
//! priority: choosing the next task only compares the heads, O(classes).

use std::collections::{BTreeMap, VecDeque};

/// How long a task waits to gain one priority level, in the live binder and the twins alike:
/// after five minutes a task outranks fresh tasks of the class above its own.
pub const DEFAULT_AGING_S: u64 = 300;

#[derive(Debug, Clone)]
struct Entry<T> {
    item: T,
    enqueued_at: u64,
    seq: u64,
}

#[derive(Debug, Clone)]
pub struct TaskQueue<T> {
    classes: BTreeMap<i32, VecDeque<Entry<T>>>,
    aging_ticks: u64,
    seq: u64,
    len: usize,
}

impl<T> TaskQueue<T> {
    /// `aging_ticks`: how long a task waits to gain one priority level; 0 turns aging off.
    pub fn new(aging_ticks: u64) -> Self {
        TaskQueue {
            classes: BTreeMap::new(),
            aging_ticks,
            seq: 0,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, item: T, priority: i32, now: u64) {
        self.seq += 1;
        self.classes.entry(priority).or_default().push_back(Entry {
            item,
            enqueued_at: now,
            seq: self.seq,
        });
        self.len += 1;
    }

    fn effective(&self, class: i32, e: &Entry<T>, now: u64) -> i64 {
        let boost = now
            .saturating_sub(e.enqueued_at)
            .checked_div(self.aging_ticks)
            .unwrap_or(0);
        class as i64 + boost.min(i64::MAX as u64 / 2) as i64
    }

    /// The class whose head goes next: highest effective priority, then the oldest.
    fn next_class(&self, now: u64) -> Option<i32> {
        self.classes
            .iter()
            .filter_map(|(&class, q)| {
                q.front()
                    .map(|e| (class, self.effective(class, e, now), e.seq))
            })
            .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)))
            .map(|(class, _, _)| class)
    }

    pub fn pop(&mut self, now: u64) -> Option<T> {
        let class = self.next_class(now)?;
        let q = self
            .classes
            .get_mut(&class)
            .expect("next_class names a present class");
        let e = q.pop_front().expect("next_class names a non-empty class");
        if q.is_empty() {
            self.classes.remove(&class);
        }
        self.len -= 1;
        Some(e.item)
    }

    /// Up to `n` tasks in the order they would be popped: a batch for one placement round.
    pub fn pop_batch(&mut self, n: usize, now: u64) -> Vec<T> {
        let mut out = Vec::with_capacity(n.min(self.len));
        while out.len() < n {
            match self.pop(now) {
                Some(t) => out.push(t),
                None => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_class_first_then_fifo() {
        let mut q = TaskQueue::new(0);
        q.push("low-1", 0, 0);
        q.push("high-1", 10, 1);
        q.push("low-2", 0, 2);
        q.push("high-2", 10, 3);
        assert_eq!(
            q.pop_batch(10, 4),
            vec!["high-1", "high-2", "low-1", "low-2"]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn aging_lets_an_old_low_priority_task_through() {
        // One level per 10 ticks: a class-0 task waiting 100 ticks ranks like class 10,
        // and wins the tie against a newer class-10 task by being older.
        let mut q = TaskQueue::new(10);
        q.push("old-low", 0, 0);
        q.push("new-high", 10, 100);
        assert_eq!(q.pop(100), Some("old-low"));
        assert_eq!(q.pop(100), Some("new-high"));
    }

    #[test]
    fn without_enough_wait_priority_holds() {
        let mut q = TaskQueue::new(10);
        q.push("low", 0, 0);
        q.push("high", 10, 50);
        assert_eq!(q.pop(50), Some("high"));
    }
}
