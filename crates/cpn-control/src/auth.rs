//! Passwords, tokens, the password-hashing pool, the password policy and the first-start
//! bootstrap of the operator account.

use crate::error::{ApiError, ApiResult};
pub use crate::join::hash_token;
use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use chrono::{DateTime, Duration, Utc};
use cpn_api_types::Code;
use cpn_store::{NewSession, NewUser, SessionKind, Store, UserRecord};
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

/// Tokens from `POST /auth/login` live at most this long; idle ones end sooner
/// (`AccountsConfig::session_idle`).
pub const LOGIN_TOKEN_TTL: Duration = Duration::days(7);
/// The operator token in `admin.token`: meant for the CLI on the same machine. A start finds
/// an expired one and writes a fresh one; `rotate-admin-token` replaces it at any time.
pub const ADMIN_TOKEN_TTL: Duration = Duration::days(30);
/// API keys without an explicit expiry, and the longest one may ask for.
pub const API_KEY_DEFAULT_TTL: Duration = Duration::days(90);
pub const API_KEY_MAX_TTL: Duration = Duration::days(365);

pub const SYSTEM_TENANT: &str = crate::caller::SYSTEM_TENANT;
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
pub const ADMIN_PASSWORD_FILE: &str = "admin.password";

/// Shortest password accepted; the strength check does the rest.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// zxcvbn score (0..=4) a password needs: 3 is "safely unguessable" against an offline
/// attack with slow hashing, which is what argon2id gives.
pub const MIN_PASSWORD_SCORE: u8 = 3;

/// Account settings of `cpn serve`.
#[derive(Debug, Clone)]
pub struct AccountsConfig {
    /// A login session unused this long stops working.
    pub session_idle: Duration,
    /// Operators must have TOTP to log in with a password.
    pub require_mfa_for_operators: bool,
    /// Threads hashing passwords at once; 0: one per core.
    pub hash_workers: usize,
    /// Audit lines older than this many days are deleted; `None`: kept forever.
    pub audit_retention_days: Option<u32>,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            session_idle: Duration::hours(12),
            require_mfa_for_operators: false,
            hash_workers: 0,
            audit_retention_days: None,
        }
    }
}

/// Account state beside the store: the hashing pool and the login throttle.
pub struct Accounts {
    pub config: AccountsConfig,
    pub hashing: HashPool,
    pub throttle: Arc<crate::throttle::LoginThrottle>,
    /// TOTP steps already used, per account.
    pub totp_used: crate::totp::UsedSteps,
    /// Seals the TOTP secrets kept in the store.
    pub sealer: crate::sealed_secrets::SecretSealer,
}

impl Accounts {
    pub fn new(config: AccountsConfig, sealer: crate::sealed_secrets::SecretSealer) -> Accounts {
        let workers = match config.hash_workers {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            n => n,
        };
        Accounts {
            hashing: HashPool::new(workers, HASH_QUEUE_PER_WORKER * workers),
            throttle: Arc::new(crate::throttle::LoginThrottle::default()),
            totp_used: Default::default(),
            sealer,
            config,
        }
    }
}

/// Requests that may wait for a hashing thread, per thread. A burst of 20 logins on two
/// cores waits (p99 = the queue drained at ~40 ms a hash); a flood beyond it gets 429.
const HASH_QUEUE_PER_WORKER: usize = 16;

/// The pool is full: the client should retry after a second.
#[derive(Debug)]
pub struct Busy;

type HashJob = Box<dyn FnOnce() + Send>;

/// Nice value of the hashing threads. Hashing is slow by design and may fill every core
/// during a burst of logins; a lower priority lets the async workers (health checks, every
/// other request) preempt it, so the rest of the API stays responsive.
const HASH_THREAD_NICE: i32 = 5;

fn lower_priority() {
    // On Linux, PRIO_PROCESS with a thread id sets that thread's nice value alone.
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), HASH_THREAD_NICE) {
        tracing::warn!(error = %e, "cannot lower the priority of a password hashing thread");
    }
}

/// An admitted request's place in the hashing queue.
pub struct Admission<'a> {
    pool: &'a HashPool,
    permit: tokio::sync::OwnedSemaphorePermit,
}

impl Admission<'_> {
    /// Runs `f` on a hashing thread; the place is held until `f` has run, even when the
    /// request is dropped meanwhile.
    pub async fn run<T: Send + 'static>(
        self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let permit = self.permit;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: HashJob = Box::new(move || {
            let _permit = permit;
            let _ = tx.send(f());
        });
        self.pool
            .jobs
            .lock()
            .map_err(|_| Busy)?
            .send(job)
            .map_err(|_| Busy)?;
        rx.await.map_err(|_| Busy)
    }
}

/// Runs argon2 on a fixed set of threads. Argon2id takes ~19 MiB per hash; a fixed set of
/// threads bounds both the memory in use (workers × 19 MiB) and what glibc keeps in its
/// per-thread arenas after freeing it. `spawn_blocking` would run up to 512 threads, each
/// keeping its own arena: that is how 512 wrong logins once took the server to 7 GB.
pub struct HashPool {
    jobs: Mutex<mpsc::Sender<HashJob>>,
    /// Jobs queued or running; beyond it, `Busy`.
    admission: Arc<tokio::sync::Semaphore>,
    workers: usize,
}

impl HashPool {
    pub fn new(workers: usize, queue: usize) -> HashPool {
        let (tx, rx) = mpsc::channel::<HashJob>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("cpn-hash-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held only while taking a job, never while running one.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        HashPool {
            jobs: Mutex::new(tx),
            admission: Arc::new(tokio::sync::Semaphore::new(workers + queue)),
            workers,
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// A place in the queue, or `Busy` at once when it is full. Taking it before any other
    /// work (a store read, say) keeps a flood from costing more than the queue's length.
    pub fn admit(&self) -> Result<Admission<'_>, Busy> {
        let permit = self
            .admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| Busy)?;
        Ok(Admission { pool: self, permit })
    }

    /// Runs `f` on a hashing thread; `Busy` at once when the queue is full.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        self.admit()?.run(f).await
    }

    /// Like `run`, for operator actions (create user, reset password): a full pool is a
    /// 429 with `Retry-After` as well.
    pub async fn run_api<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> ApiResult<T> {
        self.run(f).await.map_err(|Busy| {
            ApiError::new(
                Code::TooManyRequests,
                "the server is busy hashing passwords; retry in a second",
            )
        })
    }
}

pub fn hash_password(password: &str) -> ApiResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::new(Code::Internal, format!("hash password: {e}")))
}

thread_local! {
    /// Argon2's working memory (19 MiB with the default parameters), kept by each hashing
    /// thread for its lifetime: with a fixed pool of threads the server's memory for logins
    /// is a constant, and no 19 MiB block is freed into (and kept by) malloc per login.
    static ARGON2_MEMORY: std::cell::RefCell<Vec<argon2::Block>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether `password` matches the PHC string `phc` (argon2 of any variant and parameters).
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(algorithm), Some(expected), Some(salt)) = (
        argon2::Algorithm::try_from(hash.algorithm),
        hash.hash,
        hash.salt,
    ) else {
        return false;
    };
    let version = match hash.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = argon2::Params::try_from(&hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let blocks = params.block_count();
    let computed = ARGON2_MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, argon2::Block::default());
        }
        Argon2::new(algorithm, version, params).hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut out,
            &mut memory[..blocks],
        )
    });
    computed.is_ok()
        && out.len() == expected.len()
        && out
            .iter()
            .zip(expected.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// A hash no password matches, verified for unknown usernames so that they take as long to
/// refuse as known ones.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&new_token()).unwrap_or_default())
}

/// Refuses short and guessable passwords, naming the field and why (zxcvbn's feedback).
pub fn check_password_policy(field: &str, password: &str, user_inputs: &[&str]) -> ApiResult<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::field(
            field,
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    let entropy = zxcvbn::zxcvbn(password, user_inputs);
    let score = u8::from(entropy.score());
    if score < MIN_PASSWORD_SCORE {
        let mut why = Vec::new();
        if let Some(f) = entropy.feedback() {
            if let Some(w) = f.warning() {
                why.push(w.to_string());
            }
            why.extend(f.suggestions().iter().map(|s| s.to_string()));
        }
        return Err(ApiError::field(
            field,
            format!(
                "too easy to guess (strength {score} of 4, at least {MIN_PASSWORD_SCORE} needed){}{}",
                if why.is_empty() { "" } else { ": " },
                why.join(" ")
            ),
        ));
    }
    Ok(())
}

/// 256 random bits, hex: unguessable, and only its hash is stored.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("cpn_{}", hex::encode(bytes))
}

/// Opens a session of `kind` for `user`; returns the token (shown once) and its expiry.
pub async fn issue_token(
    store: &dyn Store,
    user: &UserRecord,
    kind: SessionKind,
    name: &str,
    scopes: Option<Vec<String>>,
    expires_at: DateTime<Utc>,
) -> ApiResult<(String, cpn_store::SessionInfo)> {
    let token = new_token();
    let info = store
        .open_session(NewSession {
            token_hash: hash_token(&token),
            user_id: user.id.clone(),
            kind,
            name: name.to_string(),
            scopes,
            now: Utc::now(),
            expires_at,
        })
        .await?;
    Ok((token, info))
}

/// A 32-byte key kept hex-encoded in a file of the data dir (mode 0600): read, or generated
/// and written on first start.
pub(crate) fn data_dir_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            hex::decode(text.trim()).with_context(|| format!("{} is not hex", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            OsRng.fill_bytes(&mut key);
            write_secret(path, &hex::encode(key))
                .with_context(|| format!("write {}", path.display()))?;
            Ok(key.to_vec())
        }
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// Writes a secret readable only by the owner (mode 0600), replacing the file atomically so
/// a reader never sees half a token.
pub(crate) fn write_secret(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Replaces the operator token: a new one in `admin.token`, every earlier one revoked.
pub async fn rotate_admin_token(store: &dyn Store, data_dir: &Path) -> ApiResult<DateTime<Utc>> {
    let admin = store
        .find_user(ADMIN_USER)
        .await?
        .ok_or_else(|| ApiError::new(Code::Internal, "the admin user is missing"))?;
    let old = store
        .list_sessions(&admin.id, SessionKind::Admin, Utc::now())
        .await?;
    let (token, info) = issue_token(
        store,
        &admin,
        SessionKind::Admin,
        ADMIN_TOKEN_FILE,
        None,
        Utc::now() + ADMIN_TOKEN_TTL,
    )
    .await?;
    write_secret(&data_dir.join(ADMIN_TOKEN_FILE), &token).map_err(|e| {
        ApiError::new(
            Code::Internal,
            format!("write {}: {e}", data_dir.join(ADMIN_TOKEN_FILE).display()),
        )
    })?;
    for s in old {
        store.revoke_session_id(&admin.id, &s.id).await?;
    }
    Ok(info.expires_at)
}

/// At start: when `admin.token` is missing, expired or revoked, writes a fresh one, so the
/// operator on this machine always has a way in.
pub async fn ensure_admin_token(store: &dyn Store, data_dir: &Path) -> anyhow::Result<bool> {
    let now = Utc::now();
    let live = match std::fs::read_to_string(data_dir.join(ADMIN_TOKEN_FILE)) {
        Ok(t) => store
            .lookup_session(&hash_token(t.trim()), now, now - Duration::days(36500))
            .await?
            .is_some(),
        Err(_) => false,
    };
    if live {
        return Ok(false);
    }
    rotate_admin_token(store, data_dir)
        .await
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    Ok(true)
}

/// On a new data dir: creates the `system` tenant and the `admin` operator, and writes its
/// password and an operator token next to the store. Returns true when it did so.
pub async fn bootstrap(store: &dyn Store, data_dir: &Path) -> anyhow::Result<bool> {
    if store.find_user(ADMIN_USER).await?.is_some() {
        return Ok(false);
    }
    if store.find_tenant(SYSTEM_TENANT).await?.is_none() {
        store
            .create_tenant(SYSTEM_TENANT, "Platform operator")
            .await?;
    }
    let password = new_token();
    store
        .create_user(NewUser {
            username: ADMIN_USER.into(),
            password_hash: hash_password(&password).map_err(|e| anyhow::anyhow!(e.to_string()))?,
            tenant: SYSTEM_TENANT.into(),
            role: "operator".into(),
            display_name: "Administrator".into(),
            now: Utc::now(),
        })
        .await?;
    write_secret(&data_dir.join(ADMIN_PASSWORD_FILE), &password)?;
    rotate_admin_token(store, data_dir)
        .await
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_are_distinct() {
        assert_ne!(new_token(), new_token());
        assert_eq!(new_token().len(), 4 + 64);
    }

    #[test]
    fn weak_passwords_are_refused_with_the_field_named() {
        for weak in [
            "11111111",
            "1111111111",
            "password123",
            "qwertyuiop",
            "alice-2024",
        ] {
            let e = check_password_policy("password", weak, &["alice"]).unwrap_err();
            assert_eq!(e.code, Code::InvalidField, "{weak}");
            assert_eq!(e.field.as_deref(), Some("password"));
        }
        check_password_policy("password", "plum-kettle-orbit-7", &[]).unwrap();
    }

    /// The passwords the README, the e2e and browser tests and the benchmark use.
    #[test]
    fn documented_passwords_pass_the_policy() {
        for p in [
            "a long password",
            "s3cret-password",
            "alice-secret",
            "console-pass-1",
            "bench-orbit-kettle-42",
        ] {
            check_password_policy("password", p, &[]).unwrap_or_else(|e| panic!("{p}: {e}"));
        }
    }

    #[tokio::test]
    async fn the_pool_runs_at_most_its_workers_and_refuses_beyond_its_queue() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pool = Arc::new(HashPool::new(2, 3));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                pool.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(30));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
                .is_ok()
            }));
        }
        let mut done = 0;
        for t in tasks {
            done += usize::from(t.await.unwrap());
        }
        assert!(peak.load(Ordering::SeqCst) <= 2);
        assert!((2..=5).contains(&done), "{done} of 20 ran");
    }
}
