//! Stand-ins for NVIDIA GPU device nodes, for the tests of GPU device isolation (shared by
//! `cpn-agent`'s tests and the `lease_ssh` end-to-end test, which include this file by
//! `#[path]`): `nvidia0` and `nvidia1`, character devices 195:0 and 195:1, mode 0666, in a
//! directory of the test's. No driver stands behind major 195 on a test host, so opening a
//! node the devices cgroup allows fails with ENXIO ("No such device or address"), and one
//! it denies with EPERM ("Operation not permitted"): which of the two a process gets shows
//! what its cgroup allows, for real GPUs and emulated ones alike.

#![allow(dead_code)] // each including test uses its own part

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `cat` says for a node the cgroup allows (no driver behind it).
pub const ALLOWED: &str = "No such device or address";
/// What `cat` says for a node the cgroup denies.
pub const DENIED: &str = "Operation not permitted";

/// Makes `dir/nvidia0` (195:0) and `dir/nvidia1` (195:1), readable by everyone; returns
/// their paths. `dir` must be reachable by the processes that open them.
pub fn make(dir: &Path) -> [PathBuf; 2] {
    fs::create_dir_all(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    [0, 1].map(|minor| {
        let node = dir.join(format!("nvidia{minor}"));
        let out = Command::new("mknod")
            .args(["-m", "0666"])
            .arg(&node)
            .args(["c", "195", &minor.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "mknod {}: {out:?}", node.display());
        node
    })
}

/// Whether this host lets a root agent enforce GPU isolation with the cgroup v1 `devices`
/// controller, judged apart from the agent's own probe so that a test can fail when the
/// agent wrongly says it cannot: the hierarchy is mounted read-write, its root group allows
/// every device (a container's root allows a short list, and a child can never allow more
/// than its parent, so the agent's rules cannot be written there), and this process holds
/// `CAP_SYS_ADMIN`, without which the kernel refuses every write to `devices.allow` and
/// `devices.deny`. `Err` says which is missing, for the test's skip message.
pub fn v1_devices_hierarchy() -> Result<(), String> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let root = mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 3
                && f[2] == "cgroup"
                && f[3].split(',').any(|o| o == "devices")
                && f[3].split(',').any(|o| o == "rw"))
            .then(|| PathBuf::from(f[1]))
        })
        .ok_or("no read-write cgroup v1 devices hierarchy is mounted")?;
    let list = fs::read_to_string(root.join("devices.list")).unwrap_or_default();
    if list.trim() != "a *:* rwm" {
        return Err(format!(
            "the devices hierarchy's root group {} allows only {:?}",
            root.display(),
            list.trim()
        ));
    }
    const CAP_SYS_ADMIN: u32 = 21;
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    if effective & (1 << CAP_SYS_ADMIN) == 0 {
        return Err(format!(
            "this process lacks CAP_SYS_ADMIN (CapEff {effective:#x}), which device rules need"
        ));
    }
    // Last, the simplest rules in a group of the test's own: where even these cannot be
    // written, no agent can enforce; where they can, an agent that does not is wrong.
    let probe = root.join(format!("cpn-test-probe-{}", std::process::id()));
    let written = fs::create_dir(&probe).and_then(|()| {
        let rules = fs::write(probe.join("devices.deny"), "a")
            .and_then(|()| fs::write(probe.join("devices.allow"), "c 1:3 rwm"));
        let removed = fs::remove_dir(&probe);
        rules.and(removed)
    });
    written.map_err(|e| {
        format!(
            "a device rule cannot be written in {}: {e}",
            probe.display()
        )
    })
}
