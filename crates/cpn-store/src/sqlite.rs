//! The embedded store: one SQLite database in the data dir.
//!
//! Writes go to a single writer thread that commits them in groups: it takes every write
//! waiting in its queue, runs each inside its own savepoint (so a failed write is rolled back
//! alone), commits once with `synchronous=FULL`, and only then answers the callers. One fsync
//! thus covers many concurrent requests without weakening "acknowledged means durable".
//! Reads use a small pool of connections; WAL lets them run beside the writer.

use crate::{
    DecisionQuery, DecisionRecord, HistoryRecord, LabelChange, LabelChangeSummary, ListQuery,
    MetricRecord, NewDecision, NewObject, NewUser, ObjectRecord, ObjectUpdate, Reference, Result,
    SessionRecord, Store, StoreError, TenantRecord, UserRecord,
};
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use cpn_model::{Kind, Labels};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::oneshot;

const DB_FILE: &str = "cpn.db";
const LOCK_FILE: &str = "cpn.lock";
/// Reads that run at once, each on a connection of its own. A connection is opened when
/// first needed and kept: opening one parses the whole schema again, which under 64
/// concurrent clients, with 8 kept, cost more CPU than the reads. Reads past this many
/// wait for a connection rather than open more (each would take a blocking thread too).
const READERS: usize = 64;
/// WAL size (pages) from which the checkpointer folds it back into the database file:
/// SQLite's own autocheckpoint threshold.
const CHECKPOINT_PAGES: std::ffi::c_int = 1000;
/// Upper bound of writes committed together; bounds the latency one slow batch adds.
const MAX_GROUP: usize = 512;

/// Schema versions, applied in order at open. Never edit a released entry; append one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE objects (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    owner       TEXT NOT NULL,
    public      INTEGER NOT NULL,
    labels      TEXT NOT NULL,
    generation  INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    spec        TEXT NOT NULL,
    UNIQUE (kind, name)
);
CREATE INDEX objects_by_kind ON objects (kind, id);
CREATE TABLE refs (
    from_id TEXT NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    field   TEXT NOT NULL,
    to_kind TEXT NOT NULL,
    to_id   TEXT NOT NULL,
    PRIMARY KEY (from_id, field)
);
CREATE INDEX refs_by_target ON refs (to_id);
CREATE TABLE metrics (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    object_id TEXT NOT NULL,
    kind      TEXT NOT NULL,
    at        TEXT NOT NULL,
    value     TEXT NOT NULL
);
CREATE INDEX metrics_by_object ON metrics (object_id, at);
CREATE INDEX metrics_by_kind ON metrics (kind, at);
CREATE TABLE tenants (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    tenant        TEXT NOT NULL REFERENCES tenants (name),
    role          TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE object_history (
    object_id  TEXT NOT NULL,
    generation INTEGER NOT NULL,
    at         TEXT NOT NULL,
    labels     TEXT NOT NULL,
    spec       TEXT NOT NULL,
    PRIMARY KEY (object_id, generation)
);
INSERT INTO object_history (object_id, generation, at, labels, spec)
    SELECT id, generation, updated_at, labels, spec FROM objects;
"#,
    r#"
CREATE TABLE decisions (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    task        TEXT NOT NULL,
    site_id     TEXT NOT NULL,
    node        TEXT NOT NULL,
    demand      TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    released_at TEXT
);
CREATE INDEX decisions_active ON decisions (released_at, id);
"#,
    r#"
ALTER TABLE tenants ADD COLUMN quota TEXT NOT NULL DEFAULT '{}';
"#,
    r#"
CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,
    site_id       TEXT NOT NULL,
    site          TEXT NOT NULL,
    name          TEXT NOT NULL,
    executor      TEXT NOT NULL,
    labels        TEXT NOT NULL,
    inventory     TEXT NOT NULL,
    cordoned      INTEGER NOT NULL DEFAULT 0,
    occupied_by   TEXT,
    ready         INTEGER NOT NULL,
    registered_at TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (site_id, name)
);
CREATE TABLE tasks (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    tenant       TEXT NOT NULL,
    owner        TEXT NOT NULL,
    name         TEXT NOT NULL,
    state        TEXT NOT NULL,
    priority     INTEGER NOT NULL,
    attempt      INTEGER NOT NULL,
    node_id      TEXT,
    not_before   TEXT,
    submitted_at TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    spec         TEXT NOT NULL,
    status       TEXT NOT NULL
);
CREATE INDEX tasks_queue ON tasks (state, priority DESC, seq);
CREATE INDEX tasks_by_node ON tasks (node_id, state);
CREATE TABLE events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    at       TEXT NOT NULL,
    type     TEXT NOT NULL,
    subject  TEXT NOT NULL,
    tenant   TEXT NOT NULL,
    severity TEXT NOT NULL,
    message  TEXT NOT NULL,
    data     TEXT NOT NULL
);
CREATE TABLE allocations (
    id          TEXT PRIMARY KEY,
    node_id     TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    resources   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    released_at TEXT
);
CREATE TABLE operations (
    id     TEXT PRIMARY KEY,
    at     TEXT NOT NULL,
    tenant TEXT NOT NULL,
    body   TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE docs (
    collection TEXT NOT NULL,
    id         TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    owner      TEXT NOT NULL,
    name       TEXT NOT NULL,
    state      TEXT NOT NULL,
    version    INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (collection, id)
);
CREATE TABLE doc_history (
    collection TEXT NOT NULL,
    id         TEXT NOT NULL,
    version    INTEGER NOT NULL,
    at         TEXT NOT NULL,
    state      TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (collection, id, version)
);
CREATE TABLE journal (
    journal TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    at      TEXT NOT NULL,
    entry   TEXT NOT NULL,
    PRIMARY KEY (journal, seq)
);
"#,
    // The event log by subject (a task's or a node's history in the console).
    r#"
CREATE INDEX events_by_subject ON events (subject, seq);
"#,
    // Accounts an operator controls (issue #12): disabled users, TOTP, idle expiry, API keys
    // with scopes, and the append-only audit log, kept when the object it names is deleted.
    r#"
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN totp_secret TEXT;
ALTER TABLE users ADD COLUMN totp_pending TEXT;
ALTER TABLE sessions ADD COLUMN id TEXT;
ALTER TABLE sessions ADD COLUMN kind TEXT NOT NULL DEFAULT 'session';
ALTER TABLE sessions ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN scopes TEXT;
ALTER TABLE sessions ADD COLUMN last_used_at TEXT;
UPDATE sessions SET id = 'ses-' || substr(token_hash, 1, 32) WHERE id IS NULL;
-- Tokens made to last a year were the operator token of admin.token: no idle expiry.
UPDATE sessions SET kind = 'admin' WHERE julianday(expires_at) - julianday(created_at) > 1;
CREATE UNIQUE INDEX sessions_by_id ON sessions (id);
CREATE INDEX sessions_by_user ON sessions (user_id, kind);
CREATE TABLE audit (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    at                TEXT NOT NULL,
    actor             TEXT NOT NULL,
    tenant            TEXT NOT NULL,
    source            TEXT NOT NULL,
    action            TEXT NOT NULL,
    object_kind       TEXT NOT NULL,
    object_id         TEXT NOT NULL,
    generation_before INTEGER,
    generation_after  INTEGER,
    result            TEXT NOT NULL,
    status            INTEGER NOT NULL,
    detail            TEXT NOT NULL
);
CREATE INDEX audit_by_time ON audit (at);
CREATE INDEX audit_by_actor ON audit (actor, seq);
CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#,
    // Join tokens and node credentials (issue #12): agents authenticate as their node.
    r#"
CREATE TABLE join_tokens (
    id          TEXT PRIMARY KEY,
    site_id     TEXT NOT NULL,
    site        TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    max_uses    INTEGER,
    uses        INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    revoked_at  TEXT
);
CREATE TABLE node_credentials (
    token_hash TEXT PRIMARY KEY,
    node_id    TEXT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    join_token TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX node_credentials_by_node ON node_credentials (node_id);
"#,
    // The sharing marketplace (issue #14): the store is the source of truth of the market;
    // times are Unix seconds and money minor units (INTEGER), as cpn-market counts them.
    r#"
CREATE TABLE market_sequences (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE market_accounts (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,
    username     TEXT NOT NULL,
    state        TEXT NOT NULL,
    state_reason TEXT,
    profile      TEXT,
    version      INTEGER NOT NULL
);
CREATE INDEX market_accounts_by_state ON market_accounts (state, id);
-- Username, e-mail and phone, each unique across accounts: SHA-256 of key and value.
CREATE TABLE market_account_keys (
    key     TEXT NOT NULL,
    digest  TEXT NOT NULL,
    account INTEGER NOT NULL REFERENCES market_accounts (id),
    PRIMARY KEY (key, digest)
);
CREATE INDEX market_account_keys_by_account ON market_account_keys (account);
-- Keyed hashes of national IDs, credit codes and bank accounts; never the numbers.
CREATE TABLE market_account_identifiers (
    account INTEGER NOT NULL REFERENCES market_accounts (id),
    seq     INTEGER NOT NULL,
    field   TEXT NOT NULL,
    kind    TEXT NOT NULL,
    digest  TEXT NOT NULL,
    masked  TEXT NOT NULL,
    PRIMARY KEY (account, field)
);
CREATE INDEX market_account_identifiers_by_digest ON market_account_identifiers (digest);
-- The lifecycle with the operators' review decisions: kept after deregistration.
CREATE TABLE market_account_history (
    account INTEGER NOT NULL REFERENCES market_accounts (id),
    seq     INTEGER NOT NULL,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    state   TEXT NOT NULL,
    reason  TEXT,
    PRIMARY KEY (account, seq)
);
CREATE TABLE market_listings (
    cpcid         INTEGER PRIMARY KEY,
    supplier      INTEGER NOT NULL,
    spec          TEXT NOT NULL,
    status        TEXT NOT NULL,
    delisted_at   INTEGER,
    delist_reason TEXT,
    reliability   INTEGER,
    published_at  INTEGER NOT NULL,
    first_card    INTEGER NOT NULL UNIQUE
);
CREATE TABLE market_price_versions (
    cpcid   INTEGER NOT NULL REFERENCES market_listings (cpcid),
    version INTEGER NOT NULL,
    hourly  INTEGER,
    monthly INTEGER,
    yearly  INTEGER,
    PRIMARY KEY (cpcid, version)
);
-- state is what users see (idle, reserved, busy, offline); occupancy, holder and reported
-- are what it follows from. A reservation is UPDATE ... WHERE state = 'idle'.
CREATE TABLE market_cards (
    id           INTEGER PRIMARY KEY,
    cpcid        INTEGER NOT NULL REFERENCES market_listings (cpcid),
    node         TEXT NOT NULL,
    device_index INTEGER NOT NULL,
    state        TEXT NOT NULL,
    occupancy    TEXT NOT NULL,
    holder       INTEGER,
    reported     INTEGER NOT NULL,
    UNIQUE (cpcid, node, device_index)
);
CREATE INDEX market_cards_by_listing ON market_cards (cpcid, state);
CREATE TABLE market_orders (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL,
    tenant        TEXT NOT NULL,
    supplier      INTEGER NOT NULL,
    cpcid         INTEGER NOT NULL REFERENCES market_listings (cpcid),
    class         TEXT NOT NULL,
    cards         TEXT NOT NULL,
    price_version INTEGER NOT NULL,
    mode          TEXT NOT NULL,
    unit_price    INTEGER NOT NULL,
    periods       INTEGER NOT NULL,
    placed_at     INTEGER NOT NULL,
    state         TEXT NOT NULL,
    reason        TEXT,
    lease         INTEGER
);
CREATE INDEX market_orders_by_state ON market_orders (state, id);
CREATE TABLE market_leases (
    id            INTEGER PRIMARY KEY REFERENCES market_orders (id),
    user_id       INTEGER NOT NULL,
    tenant        TEXT NOT NULL,
    supplier      INTEGER NOT NULL,
    cpcid         INTEGER NOT NULL REFERENCES market_listings (cpcid),
    class         TEXT NOT NULL,
    cards         TEXT NOT NULL,
    price_version INTEGER NOT NULL,
    mode          TEXT NOT NULL,
    unit_price    INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    ends_at       INTEGER,
    state         TEXT NOT NULL,
    attempts_left INTEGER,
    active_since  INTEGER,
    ended_at      INTEGER,
    end_reason    TEXT,
    code_digest   TEXT,
    code_masked   TEXT,
    metered_until INTEGER NOT NULL,
    card_seconds  INTEGER NOT NULL,
    charged       INTEGER NOT NULL
);
CREATE INDEX market_leases_by_state ON market_leases (state, id);
CREATE TABLE market_usage (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    lease         INTEGER NOT NULL REFERENCES market_leases (id),
    tenant        TEXT NOT NULL,
    supplier      INTEGER NOT NULL,
    cpcid         INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    quantity      INTEGER NOT NULL,
    start_at      INTEGER NOT NULL,
    end_at        INTEGER NOT NULL,
    price_version INTEGER NOT NULL,
    mode          TEXT NOT NULL,
    unit_price    INTEGER NOT NULL,
    amount        INTEGER NOT NULL
);
CREATE INDEX market_usage_by_start ON market_usage (start_at);
CREATE TABLE market_transactions (
    id   INTEGER PRIMARY KEY,
    key  TEXT NOT NULL UNIQUE,
    at   INTEGER NOT NULL,
    memo TEXT NOT NULL
);
CREATE TABLE market_postings (
    tx      INTEGER NOT NULL REFERENCES market_transactions (id),
    seq     INTEGER NOT NULL,
    account TEXT NOT NULL,
    amount  INTEGER NOT NULL,
    PRIMARY KEY (tx, seq)
);
CREATE INDEX market_postings_by_account ON market_postings (account);
-- Accounting records: corrected by new transactions, never edited.
CREATE TRIGGER market_transactions_append_only_update BEFORE UPDATE ON market_transactions
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER market_transactions_append_only_delete BEFORE DELETE ON market_transactions
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER market_postings_append_only_update BEFORE UPDATE ON market_postings
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER market_postings_append_only_delete BEFORE DELETE ON market_postings
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TABLE market_budgets (
    tenant        TEXT PRIMARY KEY,
    monthly_limit INTEGER NOT NULL,
    alarm_percent INTEGER NOT NULL,
    month         TEXT NOT NULL,
    spent         INTEGER NOT NULL,
    alarmed       INTEGER NOT NULL,
    exhausted     INTEGER NOT NULL
);
CREATE TABLE market_invoices (
    month     TEXT NOT NULL,
    tenant    TEXT NOT NULL,
    total     INTEGER NOT NULL,
    csv       TEXT NOT NULL,
    closed_at INTEGER NOT NULL,
    PRIMARY KEY (month, tenant)
);
CREATE TABLE market_statements (
    month      TEXT NOT NULL,
    supplier   INTEGER NOT NULL,
    gross      INTEGER NOT NULL,
    commission INTEGER NOT NULL,
    net        INTEGER NOT NULL,
    csv        TEXT NOT NULL,
    closed_at  INTEGER NOT NULL,
    PRIMARY KEY (month, supplier)
);
-- cpn-notify's delivery log: masked targets and fingerprints, never an address.
CREATE TABLE notification_attempts (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL,
    kind            TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    channel         TEXT NOT NULL,
    target          TEXT NOT NULL,
    target_id       TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    status          TEXT NOT NULL,
    error           TEXT,
    permanent       INTEGER NOT NULL,
    at              TEXT NOT NULL
);
CREATE INDEX notification_attempts_by_key ON notification_attempts (idempotency_key, target_id, status);
"#,
    // Notifications and codes that survive a crash or restart (issue #14): the outbox the
    // server writes before it answers and delivers from, and pending verification codes as
    // keyed digests (never the code), with their expiry and the tries they have left.
    r#"
CREATE TABLE notification_outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    key        TEXT NOT NULL UNIQUE,
    recipient  TEXT NOT NULL,
    message    TEXT NOT NULL,
    state      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    settled_at TEXT
);
CREATE INDEX notification_outbox_by_state ON notification_outbox (state, seq);
CREATE INDEX notification_outbox_by_recipient ON notification_outbox (recipient, state);
CREATE TABLE market_pending_codes (
    account_id    INTEGER NOT NULL,
    purpose       TEXT NOT NULL,
    digest        TEXT NOT NULL,
    issued_at     INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    attempts_left INTEGER NOT NULL,
    PRIMARY KEY (account_id, purpose)
);
"#,
    // Evaluation after a class B lease (issue #14, SH-CL-18): what monitoring saw while
    // the lease ran (a bounded summary, JSON), and one evaluation per ended lease, never
    // rewritten; the listing's reliability (market_listings) follows the scores.
    r#"
ALTER TABLE market_leases ADD COLUMN monitoring TEXT;
CREATE TABLE market_evaluations (
    lease        INTEGER PRIMARY KEY REFERENCES market_leases (id),
    cpcid        INTEGER NOT NULL REFERENCES market_listings (cpcid),
    at           INTEGER NOT NULL,
    samples      INTEGER NOT NULL,
    availability INTEGER,
    cpu_util     INTEGER,
    gpu_util     INTEGER,
    drop_offs    INTEGER NOT NULL,
    node_losses  INTEGER NOT NULL,
    score        INTEGER
);
CREATE INDEX market_evaluations_by_listing ON market_evaluations (cpcid, lease);
"#,
    // Login lockouts of accounts (issue #12), so that a restart does not lift them; the
    // per-address counters stay in memory. Times are `ts()` text, which sorts as time.
    r#"
CREATE TABLE login_lockouts (
    username     TEXT PRIMARY KEY REFERENCES users (username) ON DELETE CASCADE,
    failures     INTEGER NOT NULL,
    locked_until TEXT NOT NULL
);
"#,
    // The operator's audit retention (issue #12): still no UPDATE and no DELETE, except of
    // lines older than a row of `audit_prune_before`, which only `prune_audit` writes and
    // removes again within its own transaction.
    r#"
CREATE TABLE audit_prune_before (at TEXT NOT NULL);
DROP TRIGGER audit_is_append_only_delete;
CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
    WHEN NOT EXISTS (SELECT 1 FROM audit_prune_before p WHERE old.at < p.at)
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#,
    // The outbox as operators see it and retry it: what kind of message, where it goes
    // (masked, JSON), its attempts, when the next is due and the last error; and the
    // delivery log's recipient filter (`cpn notify deliveries --recipient`) by index, newest
    // first, instead of a scan of every attempt.
    r#"
ALTER TABLE notification_outbox ADD COLUMN kind TEXT NOT NULL DEFAULT '';
ALTER TABLE notification_outbox ADD COLUMN targets TEXT NOT NULL DEFAULT '';
ALTER TABLE notification_outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE notification_outbox ADD COLUMN next_attempt_at TEXT;
ALTER TABLE notification_outbox ADD COLUMN last_error TEXT;
CREATE INDEX notification_attempts_by_recipient ON notification_attempts (recipient, seq);
"#,
];

type Deliver = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
type WriteJob = Box<dyn FnOnce(&Connection) -> (bool, Deliver) + Send>;

pub struct SqliteStore {
    writer: Mutex<mpsc::Sender<WriteJob>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// One permit a connection: at most `READERS` reads run at once.
    read_permits: Arc<tokio::sync::Semaphore>,
    path: PathBuf,
    // Held for the store's lifetime: the OS lock keeps a second server off this data dir.
    _lock: File,
}

/// Fixed-width UTC timestamps, so text order is time order in SQL.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_ts(s: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
}

pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;",
    )?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {version}, newer than this cpn knows ({known}); use a newer cpn"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied store migration");
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, applying migrations.
    pub fn open(dir: &Path) -> Result<SqliteStore> {
        private_dir(dir)?;
        let lock = File::create(dir.join(LOCK_FILE)).map_err(|e| {
            StoreError::Backend(format!("create lock file in {}: {e}", dir.display()))
        })?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked {
                path: dir.display().to_string(),
            });
        }
        let path = dir.join(DB_FILE);
        private_file(&path)?;
        let mut writer_conn = open_connection(&path)?;
        migrate(&mut writer_conn)?;
        // SQLite checkpoints the WAL in the connection whose commit crossed 1,000 pages:
        // that commit (and every write job grouped with it, and every one queued behind it)
        // waits for pages to be copied into the database file and for its fsync. The
        // writer's commits only tell the checkpointer thread, off the commit path, once the
        // WAL is that large (the hook replaces the autocheckpoint). Durability is the WAL's
        // (each commit is fsynced there, synchronous = FULL); a checkpoint only moves
        // committed pages. The hook's sender goes with the writer's connection, and with it
        // the checkpointer.
        let checkpoint_conn = open_connection(&path)?;
        let (checkpoint, checkpoints) = mpsc::sync_channel::<()>(1);
        writer_conn.wal_hook(Some(
            move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
                if pages >= CHECKPOINT_PAGES {
                    // Full: one is asked for already.
                    let _ = checkpoint.try_send(());
                }
                Ok(())
            },
        ))?;
        // One reader now, so that a database that cannot be read fails the open; the
        // others as reads need them.
        let mut readers = Vec::with_capacity(READERS);
        readers.push(open_connection(&path)?);
        // SQLite creates the WAL and shared-memory files with the database's mode; files
        // left by an older server are tightened here.
        for suffix in ["-wal", "-shm"] {
            let side = dir.join(format!("{DB_FILE}{suffix}"));
            if side.exists() {
                private_file(&side)?;
            }
        }
        let (tx, rx) = mpsc::channel::<WriteJob>();
        std::thread::Builder::new()
            .name("cpn-store-writer".into())
            .spawn(move || writer_loop(writer_conn, rx))
            .map_err(|e| StoreError::Backend(format!("start writer thread: {e}")))?;
        std::thread::Builder::new()
            .name("cpn-store-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoint_conn, checkpoints))
            .map_err(|e| StoreError::Backend(format!("start checkpoint thread: {e}")))?;
        Ok(SqliteStore {
            writer: Mutex::new(tx),
            readers: Arc::new(Mutex::new(readers)),
            read_permits: Arc::new(tokio::sync::Semaphore::new(READERS)),
            path,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates the data dir with mode 0700, or tightens an existing one to it: it holds the
/// database and the admin's credentials, which tasks on this machine must not read.
fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StoreError::Backend(format!("create data dir {}: {e}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| StoreError::Backend(format!("chmod 0700 {}: {e}", dir.display())))
}

/// Creates a file of the database with mode 0600, or tightens an existing one to it.
fn private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::Backend(format!("create {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| StoreError::Backend(format!("chmod 0600 {}: {e}", path.display())))
}

impl SqliteStore {
    /// Runs `f` in the writer's transaction and answers after the group it joined committed.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: WriteJob = Box::new(move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let deliver: Deliver = Box::new(move |committed| {
                let _ = tx.send(match committed {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Backend(format!("commit failed: {e}"))),
                });
            });
            (ok, deliver)
        });
        self.writer
            .lock()
            .expect("writer sender lock is never held across a panic")
            .send(job)
            .map_err(|_| StoreError::Backend("the store writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("the store writer dropped a request".into()))?
    }

    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        let permit = self
            .read_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Backend("the store's readers are closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = readers
                .lock()
                .expect("reader pool lock is never held across a panic")
                .pop();
            // The permit guarantees a place for it in the pool afterwards.
            let conn = match pooled {
                Some(c) => c,
                None => open_connection(&path)?,
            };
            let result = f(&conn);
            readers
                .lock()
                .expect("reader pool lock is never held across a panic")
                .push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("reader task: {e}")))?
    }
}

/// Folds the WAL into the database file each time the writer asks, until the writer's
/// connection is gone. PASSIVE: it never waits for (nor blocks) the writer or a reader; what
/// it could not copy this time (frames a reader still needs) is copied the next.
fn checkpoint_loop(conn: Connection, asked: mpsc::Receiver<()>) {
    while asked.recv().is_ok() {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
        }
    }
}

fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<WriteJob>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let mut delivers = Vec::with_capacity(jobs.len());
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Dropping a job drops its answer channel: each caller gets a backend error.
            tracing::error!(error = %e, "cannot begin a write transaction");
            drop(jobs);
            continue;
        }
        for job in jobs {
            // Cached statements: a batch of 512 jobs would otherwise parse these 1,024 times.
            if let Err(e) = run_cached(&conn, "SAVEPOINT job") {
                tracing::error!(error = %e, "cannot open a savepoint");
                continue;
            }
            let (ok, deliver) = job(&conn);
            let end = if ok {
                run_cached(&conn, "RELEASE job")
            } else {
                run_cached(&conn, "ROLLBACK TO job").and_then(|()| run_cached(&conn, "RELEASE job"))
            };
            if let Err(e) = end {
                tracing::error!(error = %e, "closing a savepoint failed");
            }
            delivers.push(deliver);
        }
        let committed = conn.execute_batch("COMMIT").map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            e.to_string()
        });
        for deliver in delivers {
            deliver(committed.clone());
        }
    }
}

// ---------------------------------------------------------------- row mapping

const OBJECT_COLUMNS: &str =
    "id, kind, name, tenant, owner, public, labels, generation, created_at, updated_at, spec";

fn object_from_row(row: &Row<'_>) -> rusqlite::Result<ObjectRecord> {
    let kind: String = row.get(1)?;
    let labels: String = row.get(6)?;
    let spec: String = row.get(10)?;
    let bad = |what: &str, e: String| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("{what}: {e}").into(),
        )
    };
    Ok(ObjectRecord {
        id: row.get(0)?,
        kind: Kind::parse(&kind).ok_or_else(|| bad("kind", kind.clone()))?,
        name: row.get(2)?,
        tenant: row.get(3)?,
        owner: row.get(4)?,
        public: row.get::<_, i64>(5)? != 0,
        labels: serde_json::from_str(&labels).map_err(|e| bad("labels", e.to_string()))?,
        generation: row.get::<_, i64>(7)? as u64,
        created_at: parse_ts(&row.get::<_, String>(8)?)?,
        updated_at: parse_ts(&row.get::<_, String>(9)?)?,
        spec: serde_json::from_str(&spec).map_err(|e| bad("spec", e.to_string()))?,
        refs: Vec::new(),
    })
}

fn load_refs(conn: &Connection, obj: &mut ObjectRecord) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT field, to_kind, to_id FROM refs WHERE from_id = ?1 ORDER BY field",
    )?;
    let rows = stmt.query_map([&obj.id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    obj.refs.clear();
    for row in rows {
        let (field, kind, id) = row?;
        let kind = Kind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("reference kind {kind}")))?;
        obj.refs.push(Reference { field, kind, id });
    }
    Ok(())
}

fn get_object_tx(conn: &Connection, kind: Kind, id: &str) -> Result<Option<ObjectRecord>> {
    let sql = format!("SELECT {OBJECT_COLUMNS} FROM objects WHERE kind = ?1 AND id = ?2");
    let obj = conn
        .prepare_cached(&sql)?
        .query_row(params![kind.as_str(), id], object_from_row)
        .optional()?;
    match obj {
        Some(mut o) => {
            load_refs(conn, &mut o)?;
            Ok(Some(o))
        }
        None => Ok(None),
    }
}

fn write_refs(conn: &Connection, from_id: &str, refs: &[Reference]) -> Result<()> {
    conn.prepare_cached("DELETE FROM refs WHERE from_id = ?1")?
        .execute([from_id])?;
    for r in refs {
        let exists: Option<i64> = conn
            .prepare_cached("SELECT 1 FROM objects WHERE kind = ?1 AND id = ?2")?
            .query_row(params![r.kind.as_str(), r.id], |row| row.get(0))
            .optional()?;
        if exists.is_none() {
            return Err(StoreError::BrokenRef {
                field: r.field.clone(),
                kind: r.kind,
                id: r.id.clone(),
            });
        }
        conn.prepare_cached(
            "INSERT INTO refs (from_id, field, to_kind, to_id) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![from_id, r.field, r.kind.as_str(), r.id])?;
    }
    Ok(())
}

/// Keeps every version of every object, so any earlier spec can be read or restored.
fn append_history(conn: &Connection, obj: &ObjectRecord) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO object_history (object_id, generation, at, labels, spec) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        obj.id,
        obj.generation as i64,
        ts(obj.updated_at),
        json(&obj.labels)?,
        json(&obj.spec)?
    ])?;
    Ok(())
}

fn current_generation(conn: &Connection, kind: Kind, id: &str) -> Result<Option<u64>> {
    Ok(conn
        .prepare_cached("SELECT generation FROM objects WHERE kind = ?1 AND id = ?2")?
        .query_row(params![kind.as_str(), id], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|g| g as u64))
}

fn not_found(kind: Kind, id: &str) -> StoreError {
    StoreError::NotFound {
        kind: kind.to_string(),
        id: id.to_string(),
    }
}

pub(crate) fn json(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("encode json: {e}")))
}

pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

fn tenant_from_row(r: &Row<'_>) -> rusqlite::Result<TenantRecord> {
    let quota: String = r.get(4)?;
    Ok(TenantRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        display_name: r.get(2)?,
        created_at: parse_ts(&r.get::<_, String>(3)?)?,
        quota: serde_json::from_str(&quota).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
        })?,
    })
}

pub(crate) const USER_COLUMNS: &str = "id, username, password_hash, tenant, role, display_name, created_at, disabled, totp_secret, totp_pending";

pub(crate) fn user_from_row(r: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: r.get(0)?,
        username: r.get(1)?,
        password_hash: r.get(2)?,
        tenant: r.get(3)?,
        role: r.get(4)?,
        display_name: r.get(5)?,
        created_at: parse_ts(&r.get::<_, String>(6)?)?,
        disabled: r.get::<_, i64>(7)? != 0,
        totp_secret: r.get(8)?,
        totp_pending: r.get(9)?,
    })
}

fn metric_from_row(r: &Row<'_>) -> rusqlite::Result<MetricRecord> {
    let value: String = r.get(2)?;
    Ok(MetricRecord {
        object_id: r.get(0)?,
        at: parse_ts(&r.get::<_, String>(1)?)?,
        value: serde_json::from_str(&value).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?,
    })
}

const DECISION_COLUMNS: &str =
    "id, tenant, task, site_id, node, demand, body, created_at, released_at";

fn decision_from_row(r: &Row<'_>) -> rusqlite::Result<DecisionRecord> {
    let bad = |e: serde_json::Error| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    };
    Ok(DecisionRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        task: r.get(2)?,
        site_id: r.get(3)?,
        node: r.get(4)?,
        demand: serde_json::from_str(&r.get::<_, String>(5)?).map_err(bad)?,
        body: serde_json::from_str(&r.get::<_, String>(6)?).map_err(bad)?,
        created_at: parse_ts(&r.get::<_, String>(7)?)?,
        released_at: r
            .get::<_, Option<String>>(8)?
            .map(|t| parse_ts(&t))
            .transpose()?,
    })
}

// ---------------------------------------------------------------- the trait

#[async_trait]
impl Store for SqliteStore {
    async fn create_object(&self, new: NewObject) -> Result<ObjectRecord> {
        self.write(move |conn| {
            let id = new_id(new.kind.id_prefix());
            let now = ts(new.now);
            let inserted = conn
                .prepare_cached(&format!(
                    "INSERT INTO objects ({OBJECT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?8, ?9)"
                ))?
                .execute(params![
                    id,
                    new.kind.as_str(),
                    new.name,
                    new.tenant,
                    new.owner,
                    new.public as i64,
                    json(&new.labels)?,
                    now,
                    json(&new.spec)?,
                ]);
            match inserted {
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::AlreadyExists {
                        kind: new.kind.to_string(),
                        name: new.name.clone(),
                    });
                }
                other => other?,
            };
            write_refs(conn, &id, &new.refs)?;
            let created = get_object_tx(conn, new.kind, &id)?
                .ok_or_else(|| StoreError::Backend("created object vanished".into()))?;
            append_history(conn, &created)?;
            Ok(created)
        })
        .await
    }

    async fn get_object(&self, kind: Kind, id: &str) -> Result<Option<ObjectRecord>> {
        let id = id.to_string();
        self.read(move |conn| get_object_tx(conn, kind, &id)).await
    }

    async fn find_object_by_name(&self, kind: Kind, name: &str) -> Result<Option<ObjectRecord>> {
        let name = name.to_string();
        self.read(move |conn| {
            let id: Option<String> = conn
                .prepare_cached("SELECT id FROM objects WHERE kind = ?1 AND name = ?2")?
                .query_row(params![kind.as_str(), name], |r| r.get(0))
                .optional()?;
            match id {
                Some(id) => get_object_tx(conn, kind, &id),
                None => Ok(None),
            }
        })
        .await
    }

    async fn list_objects(&self, kind: Kind, query: &ListQuery) -> Result<Vec<ObjectRecord>> {
        let query = query.clone();
        self.read(move |conn| {
            let mut sql =
                format!("SELECT {OBJECT_COLUMNS} FROM objects o WHERE kind = ?1 AND id > ?2");
            if query.visible_to_tenant.is_some() {
                sql.push_str(" AND (tenant = ?3 OR public = 1)");
            }
            if query.referencing.is_some() {
                sql.push_str(
                    " AND EXISTS (SELECT 1 FROM refs WHERE from_id = o.id AND to_id = ?4)",
                );
            }
            sql.push_str(" ORDER BY id LIMIT ?5");
            let limit = query.limit.map(|l| l as i64).unwrap_or(-1);
            let mut stmt = conn.prepare_cached(&sql)?;
            let after = query.after.clone().unwrap_or_default();
            let mut out: Vec<ObjectRecord> = Vec::new();
            // Unused numbered parameters are fine in SQLite; binding them all keeps one statement shape.
            let mut rows = stmt.query(params![
                kind.as_str(),
                after,
                query.visible_to_tenant.clone().unwrap_or_default(),
                query.referencing.clone().unwrap_or_default(),
                limit
            ])?;
            while let Some(row) = rows.next()? {
                out.push(object_from_row(row)?);
            }
            drop(rows);
            for o in &mut out {
                load_refs(conn, o)?;
            }
            Ok(out)
        })
        .await
    }

    async fn update_object(&self, update: ObjectUpdate) -> Result<ObjectRecord> {
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE objects SET labels = ?1, public = ?2, spec = ?3, updated_at = ?4,
                     generation = generation + 1
                     WHERE kind = ?5 AND id = ?6 AND generation = ?7",
                )?
                .execute(params![
                    json(&update.labels)?,
                    update.public as i64,
                    json(&update.spec)?,
                    ts(update.now),
                    update.kind.as_str(),
                    update.id,
                    update.expected_generation as i64
                ])?;
            if changed == 0 {
                return Err(match current_generation(conn, update.kind, &update.id)? {
                    None => not_found(update.kind, &update.id),
                    Some(actual) => StoreError::Conflict {
                        kind: update.kind,
                        id: update.id.clone(),
                        expected: update.expected_generation,
                        actual,
                    },
                });
            }
            write_refs(conn, &update.id, &update.refs)?;
            let updated = get_object_tx(conn, update.kind, &update.id)?
                .ok_or_else(|| StoreError::Backend("updated object vanished".into()))?;
            append_history(conn, &updated)?;
            Ok(updated)
        })
        .await
    }

    async fn delete_object(
        &self,
        kind: Kind,
        id: &str,
        expected_generation: Option<u64>,
    ) -> Result<()> {
        let id = id.to_string();
        self.write(move |conn| {
            let actual =
                current_generation(conn, kind, &id)?.ok_or_else(|| not_found(kind, &id))?;
            if let Some(expected) = expected_generation
                && expected != actual
            {
                return Err(StoreError::Conflict {
                    kind,
                    id: id.clone(),
                    expected,
                    actual,
                });
            }
            let referrer: Option<(String, String, String)> = conn
                .prepare_cached(
                    "SELECT o.kind, o.name, r.field FROM refs r JOIN objects o ON o.id = r.from_id
                     WHERE r.to_id = ?1 LIMIT 1",
                )?
                .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            if let Some((k, name, field)) = referrer {
                let count: i64 = conn
                    .prepare_cached("SELECT COUNT(*) FROM refs WHERE to_id = ?1")?
                    .query_row([&id], |r| r.get(0))?;
                return Err(StoreError::InUse {
                    kind,
                    id: id.clone(),
                    by: format!("{count} object(s), e.g. {k} {name:?} ({field})"),
                });
            }
            conn.prepare_cached("DELETE FROM objects WHERE kind = ?1 AND id = ?2")?
                .execute(params![kind.as_str(), id])?;
            conn.prepare_cached("DELETE FROM object_history WHERE object_id = ?1")?
                .execute([&id])?;
            Ok(())
        })
        .await
    }

    async fn change_labels(&self, changes: Vec<LabelChange>) -> Result<LabelChangeSummary> {
        self.write(move |conn| {
            let mut summary = LabelChangeSummary::default();
            for change in changes {
                let labels: Option<String> = conn
                    .prepare_cached("SELECT labels FROM objects WHERE kind = ?1 AND id = ?2")?
                    .query_row(params![change.kind.as_str(), change.id], |r| r.get(0))
                    .optional()?;
                let labels = labels.ok_or_else(|| not_found(change.kind, &change.id))?;
                let mut labels: Labels = serde_json::from_str(&labels)
                    .map_err(|e| StoreError::Corrupt(format!("labels of {}: {e}", change.id)))?;
                let before = labels.get(&change.key).cloned();
                match &change.value {
                    Some(v) => labels.insert(change.key.clone(), v.clone()),
                    None => labels.remove(&change.key),
                };
                if before == change.value {
                    summary.unchanged += 1;
                    continue;
                }
                conn.prepare_cached(
                    "UPDATE objects SET labels = ?1, updated_at = ?2, generation = generation + 1
                     WHERE kind = ?3 AND id = ?4",
                )?
                .execute(params![
                    json(&labels)?,
                    ts(change.now),
                    change.kind.as_str(),
                    change.id
                ])?;
                if let Some(obj) = get_object_tx(conn, change.kind, &change.id)? {
                    append_history(conn, &obj)?;
                }
                summary.changed += 1;
            }
            Ok(summary)
        })
        .await
    }

    async fn object_history(&self, id: &str) -> Result<Vec<HistoryRecord>> {
        let id = id.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT generation, at, labels, spec FROM object_history WHERE object_id = ?1 ORDER BY generation",
            )?;
            let rows = stmt.query_map([&id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (generation, at, labels, spec) = row?;
                out.push(HistoryRecord {
                    generation: generation as u64,
                    at: parse_ts(&at)?,
                    labels: serde_json::from_str(&labels).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    spec: serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn record_metric(
        &self,
        object_id: &str,
        at: DateTime<Utc>,
        value: serde_json::Value,
    ) -> Result<()> {
        let object_id = object_id.to_string();
        self.write(move |conn| {
            let kind: Option<String> = conn
                .prepare_cached("SELECT kind FROM objects WHERE id = ?1")?
                .query_row([&object_id], |r| r.get(0))
                .optional()?;
            let kind = kind.ok_or_else(|| StoreError::NotFound {
                kind: "object".into(),
                id: object_id.clone(),
            })?;
            conn.prepare_cached(
                "INSERT INTO metrics (object_id, kind, at, value) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![object_id, kind, ts(at), json(&value)?])?;
            Ok(())
        })
        .await
    }

    async fn metrics_at(&self, kind: Kind, at: DateTime<Utc>) -> Result<Vec<MetricRecord>> {
        self.read(move |conn| {
            // The newest sample per object not after `at`; seq breaks ties of equal timestamps.
            let mut stmt = conn.prepare_cached(
                "SELECT m.object_id, m.at, m.value FROM metrics m
                 WHERE m.kind = ?1 AND m.seq = (
                    SELECT m2.seq FROM metrics m2
                    WHERE m2.object_id = m.object_id AND m2.at <= ?2
                    ORDER BY m2.at DESC, m2.seq DESC LIMIT 1)
                 ORDER BY m.object_id",
            )?;
            let rows = stmt.query_map(params![kind.as_str(), ts(at)], metric_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn metric_history(&self, object_id: &str, limit: usize) -> Result<Vec<MetricRecord>> {
        let object_id = object_id.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT object_id, at, value FROM metrics WHERE object_id = ?1
                 ORDER BY at DESC, seq DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![object_id, limit as i64], metric_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn create_tenant(&self, name: &str, display_name: &str) -> Result<TenantRecord> {
        let record = TenantRecord {
            id: new_id("tnt"),
            name: name.to_string(),
            display_name: display_name.to_string(),
            created_at: Utc::now(),
            quota: serde_json::json!({}),
        };
        self.write(move |conn| {
            let r = conn
                .prepare_cached("INSERT INTO tenants (id, name, display_name, created_at) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![record.id, record.name, record.display_name, ts(record.created_at)]);
            match r {
                Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists {
                    kind: "tenant".into(),
                    name: record.name.clone(),
                }),
                other => {
                    other?;
                    Ok(record)
                }
            }
        })
        .await
    }

    async fn find_tenant(&self, name: &str) -> Result<Option<TenantRecord>> {
        let name = name.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, name, display_name, created_at, quota FROM tenants WHERE name = ?1",
                )?
                .query_row([name], tenant_from_row)
                .optional()?)
        })
        .await
    }

    async fn list_tenants(&self) -> Result<Vec<TenantRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, name, display_name, created_at, quota FROM tenants ORDER BY name",
            )?;
            let rows = stmt.query_map([], tenant_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn set_tenant_quota(&self, name: &str, quota: serde_json::Value) -> Result<TenantRecord> {
        let name = name.to_string();
        self.write(move |conn| {
            let changed = conn
                .prepare_cached("UPDATE tenants SET quota = ?1 WHERE name = ?2")?
                .execute(params![json(&quota)?, name])?;
            if changed == 0 {
                return Err(StoreError::NotFound {
                    kind: "tenant".into(),
                    id: name.clone(),
                });
            }
            Ok(conn
                .prepare_cached(
                    "SELECT id, name, display_name, created_at, quota FROM tenants WHERE name = ?1",
                )?
                .query_row([&name], tenant_from_row)?)
        })
        .await
    }

    async fn create_user(&self, new: NewUser) -> Result<UserRecord> {
        self.write(move |conn| {
            let tenant_exists: Option<i64> = conn
                .prepare_cached("SELECT 1 FROM tenants WHERE name = ?1")?
                .query_row([&new.tenant], |r| r.get(0))
                .optional()?;
            if tenant_exists.is_none() {
                return Err(StoreError::NotFound {
                    kind: "tenant".into(),
                    id: new.tenant.clone(),
                });
            }
            let record = UserRecord {
                id: new_id("usr"),
                username: new.username.clone(),
                password_hash: new.password_hash.clone(),
                tenant: new.tenant.clone(),
                role: new.role.clone(),
                display_name: new.display_name.clone(),
                created_at: new.now,
                disabled: false,
                totp_secret: None,
                totp_pending: None,
            };
            let r = conn
                .prepare_cached(
                    "INSERT INTO users (id, username, password_hash, tenant, role, display_name, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    record.id,
                    record.username,
                    record.password_hash,
                    record.tenant,
                    record.role,
                    record.display_name,
                    ts(record.created_at)
                ]);
            match r {
                Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists {
                    kind: "user".into(),
                    name: record.username.clone(),
                }),
                other => {
                    other?;
                    Ok(record)
                }
            }
        })
        .await
    }

    async fn find_user(&self, username: &str) -> Result<Option<UserRecord>> {
        let username = username.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE username = ?1"
                ))?
                .query_row([username], user_from_row)
                .optional()?)
        })
        .await
    }

    async fn list_users(&self, tenant: Option<&str>) -> Result<Vec<UserRecord>> {
        let tenant = tenant.map(str::to_string);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE ?1 IS NULL OR tenant = ?1 ORDER BY username"
            ))?;
            let rows = stmt.query_map([tenant], user_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn create_session(&self, session: SessionRecord) -> Result<()> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, id) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                session.token_hash,
                session.user_id,
                ts(session.created_at),
                ts(session.expires_at),
                new_id("ses")
            ])?;
            Ok(())
        })
        .await
    }

    async fn session_user(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<UserRecord>> {
        let token_hash = token_hash.to_string();
        self.read(move |conn| {
            let cols = USER_COLUMNS
                .split(", ")
                .map(|c| format!("u.{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {cols} FROM sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.token_hash = ?1 AND s.revoked = 0 AND s.expires_at > ?2 AND u.disabled = 0"
                ))?
                .query_row(params![token_hash, ts(now)], user_from_row)
                .optional()?)
        })
        .await
    }

    async fn revoke_session(&self, token_hash: &str) -> Result<()> {
        let token_hash = token_hash.to_string();
        self.write(move |conn| {
            conn.prepare_cached("UPDATE sessions SET revoked = 1 WHERE token_hash = ?1")?
                .execute([token_hash])?;
            Ok(())
        })
        .await
    }

    async fn create_decision(&self, new: NewDecision) -> Result<DecisionRecord> {
        self.write(move |conn| {
            let record = DecisionRecord {
                id: new_id("dec"),
                tenant: new.tenant,
                task: new.task,
                site_id: new.site_id,
                node: new.node,
                demand: new.demand,
                body: new.body,
                created_at: new.now,
                released_at: None,
            };
            conn.prepare_cached(
                "INSERT INTO decisions (id, tenant, task, site_id, node, demand, body, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                record.id,
                record.tenant,
                record.task,
                record.site_id,
                record.node,
                json(&record.demand)?,
                json(&record.body)?,
                ts(record.created_at)
            ])?;
            Ok(record)
        })
        .await
    }

    async fn get_decision(&self, id: &str) -> Result<Option<DecisionRecord>> {
        let id = id.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {DECISION_COLUMNS} FROM decisions WHERE id = ?1"
                ))?
                .query_row([id], decision_from_row)
                .optional()?)
        })
        .await
    }

    async fn list_decisions(&self, query: DecisionQuery) -> Result<Vec<DecisionRecord>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DECISION_COLUMNS} FROM decisions
                 WHERE (?1 IS NULL OR tenant = ?1) AND (?2 = 0 OR released_at IS NULL) AND id > ?3
                 ORDER BY id LIMIT ?4"
            ))?;
            let rows = stmt.query_map(
                params![
                    query.tenant,
                    query.active_only as i64,
                    query.after.unwrap_or_default(),
                    query.limit.map(|l| l as i64).unwrap_or(-1)
                ],
                decision_from_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn release_decision(&self, id: &str, now: DateTime<Utc>) -> Result<DecisionRecord> {
        let id = id.to_string();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE decisions SET released_at = ?1 WHERE id = ?2 AND released_at IS NULL",
            )?
            .execute(params![ts(now), id])?;
            conn.prepare_cached(&format!(
                "SELECT {DECISION_COLUMNS} FROM decisions WHERE id = ?1"
            ))?
            .query_row([&id], decision_from_row)
            .optional()?
            .ok_or_else(|| StoreError::NotFound {
                kind: "decision".into(),
                id: id.clone(),
            })
        })
        .await
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])?;
            Ok(())
        })
        .await
    }
}
