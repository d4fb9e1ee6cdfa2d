//! Reading processes from `/proc`: CPU time and memory of process groups.

use nix::unistd::{SysconfVar, sysconf};
use std::collections::HashMap;

/// Sums over the processes of one process group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GroupStat {
    /// Processes in the group, zombies included.
    pub processes: u32,
    /// Processes that are not zombies.
    pub live: u32,
    /// utime + stime + cutime + cstime, in clock ticks (the children's times count once
    /// they have been waited for, when they no longer appear themselves).
    pub ticks: u64,
    /// Resident set, in pages.
    pub rss_pages: u64,
}

/// The fields of `/proc/{pid}/stat` this crate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub state: char,
    pub pgrp: i32,
    pub ticks: u64,
    pub rss_pages: u64,
    /// When the process started, in clock ticks after boot (tells a reused pid apart).
    pub start_time: u64,
}

/// Parses a `/proc/{pid}/stat` line; the command name may hold spaces and parentheses.
pub(crate) fn parse_stat(line: &str) -> Option<ProcStat> {
    let rest = &line[line.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    if f.len() < 22 {
        return None;
    }
    let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
    Some(ProcStat {
        state: f[0].chars().next()?,
        pgrp: f[2].parse().ok()?,
        ticks: n(11) + n(12) + n(13) + n(14),
        rss_pages: f[21].parse::<i64>().unwrap_or(0).max(0) as u64,
        start_time: n(19),
    })
}

/// Every process group on the host with its sums.
pub(crate) fn scan_groups() -> HashMap<i32, GroupStat> {
    let mut groups: HashMap<i32, GroupStat> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(line) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some(st) = parse_stat(&line) else {
            continue;
        };
        let g = groups.entry(st.pgrp).or_default();
        g.processes += 1;
        if st.state != 'Z' && st.state != 'X' {
            g.live += 1;
        }
        g.ticks += st.ticks;
        g.rss_pages += st.rss_pages;
    }
    groups
}

/// The state letter of a process (`R`, `S`, `Z`, ...), if it can be read.
pub(crate) fn process_state(pid: i32) -> Option<char> {
    let line = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&line).map(|s| s.state)
}

/// When a process started (clock ticks after boot), if it exists.
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    let line = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&line).map(|s| s.start_time)
}

/// Clock ticks per second (`SC_CLK_TCK`), 100 where it cannot be read.
pub(crate) fn clock_ticks() -> f64 {
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(n)) if n > 0 => n as f64,
        _ => 100.0,
    }
}

/// Bytes per page, 4096 where it cannot be read.
pub(crate) fn page_size() -> u64 {
    match sysconf(SysconfVar::PAGE_SIZE) {
        Ok(Some(n)) if n > 0 => n as u64,
        _ => 4096,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_odd_command_names() {
        let line = "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0 \
                    5000 10000000 250 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0";
        let st = parse_stat(line).unwrap();
        assert_eq!(
            st,
            ProcStat {
                state: 'S',
                pgrp: 1234,
                ticks: 13,
                rss_pages: 250,
                start_time: 5000
            }
        );
    }

    #[test]
    fn sees_its_own_group() {
        let me = std::fs::read_to_string("/proc/self/stat").unwrap();
        let st = parse_stat(&me).unwrap();
        let groups = scan_groups();
        assert!(groups.get(&st.pgrp).is_some_and(|g| g.live >= 1));
        assert!(clock_ticks() > 0.0 && page_size() > 0);
    }
}
