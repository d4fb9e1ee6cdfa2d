//! OpenSSH for the lease-account tests, shared by `cpn-agent`'s tests and the `lease_ssh`
//! end-to-end test (which includes this file by `#[path]`): a key pair, a test sshd of its
//! own on a loopback port (nothing of the system's sshd is read or changed), and `ssh` with
//! the host key checked.

#![allow(dead_code)] // each including test uses its own part

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SSHD: &str = "/usr/sbin/sshd";
pub const SSH: &str = "/usr/bin/ssh";
pub const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";

/// An ed25519 key pair without a passphrase at `path` (and `path.pub`); the public line.
pub fn keygen(path: &Path) -> String {
    let out = Command::new(SSH_KEYGEN)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test@cpn", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    fs::read_to_string(path.with_extension("pub")).unwrap()
}

/// A command's status and output, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `ssh -p PORT USER@HOST COMMAND` with the key `dir/user_key`, checking the host key
/// against `dir/known_hosts` (which holds only the test sshd's key).
pub fn ssh(
    dir: &Path,
    host: &str,
    port: u16,
    user: &str,
    options: &[&str],
    command: &str,
) -> Output {
    Command::new(SSH)
        .args(["-F", "/dev/null", "-i"])
        .arg(dir.join("user_key"))
        .args(["-p", &port.to_string()])
        .args(["-o", "StrictHostKeyChecking=yes", "-o"])
        .arg(format!(
            "UserKnownHostsFile={}",
            dir.join("known_hosts").display()
        ))
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
        .args(["-o", "PasswordAuthentication=no", "-o", "ConnectTimeout=10"])
        .args(options)
        .arg(format!("{user}@{host}"))
        .arg(command)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// An sshd of the test's own on a loopback port; killed when dropped. It accepts
/// `CUDA_VISIBLE_DEVICES` from clients, so a test can show the forced command overrides it.
pub struct Sshd {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Sshd {
    pub fn start(dir: &Path, host_key: &Path) -> Sshd {
        // The privilege-separation directory Debian's service unit would create.
        fs::create_dir_all("/run/sshd").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\n\
                 UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nAuthorizedKeysFile .ssh/authorized_keys\n\
                 StrictModes yes\nPermitRootLogin no\nAllowUsers cpnl-*\nX11Forwarding no\n\
                 AcceptEnv CUDA_VISIBLE_DEVICES NVIDIA_VISIBLE_DEVICES\nLogLevel VERBOSE\n",
                host_key.display(),
                dir.join("sshd.pid").display()
            ),
        )
        .unwrap();
        let check = Command::new(SSHD)
            .arg("-t")
            .arg("-f")
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "sshd -t: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let log = dir.join("sshd.log");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut sshd = Sshd { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = sshd.child.try_wait().unwrap() {
                panic!("sshd exited ({status}): {}", sshd.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not listen: {}",
                sshd.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sshd
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `command` over ssh to this sshd as `user` (see [`ssh`]).
    pub fn ssh(&self, dir: &Path, user: &str, command: &str) -> Output {
        self.ssh_with(dir, user, &[], command)
    }

    pub fn ssh_with(&self, dir: &Path, user: &str, options: &[&str], command: &str) -> Output {
        ssh(dir, "127.0.0.1", self.port, user, options, command)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
