//! The controller's embedded store. redb is the concern of this file and `store/` (the metrics
//! tables) only: the rest of the controller sees typed methods on [`Store`], one per record kind
//! and one per multi-record change, and never a table or a transaction (a unit test below fails
//! when `redb::` appears elsewhere).
//!
//! Writes go through one writer thread that groups whatever is queued into a single transaction
//! (group commit): each write returns only after its transaction is durably committed, yet a
//! burst of writes costs one fsync. A write that fails is taken out of its group and the rest of
//! the group is run again in a fresh transaction, so one failure never costs others their rows.
//! Domain refusals (unknown token, last admin, ...) are decided before a write changes anything
//! and come back as values, not errors.

use clustermgr_proto::{
    AuditEntry, CacheRecord, ClusterSettingsRecord, JobRecord, JobState, NodeRecord,
    OperatorRecord, OperatorRole, PackageRecord, PrincipalKind, PrincipalRecord, ServerRecord,
    TokenRecord, Workflow,
};
use prost::Message;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
    WriteTransaction,
};
use std::future::Future;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

mod sweep;
use sweep::sweep_in;
mod audit;
pub use audit::MERGE_WINDOW_MS;
mod backups;
pub use audit::{UNAUTHENTICATED, routine_key};
mod jobs;
mod metrics;
mod migrate;
pub use metrics::{MetricsCut, SweepStep};
mod nodes;
mod web;
pub use web::{WebUserAdd, WebUserRecord, WebUserRemoval};
mod workflows;

const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
const PRINCIPALS: TableDefinition<&str, &[u8]> = TableDefinition::new("principals");
const OPERATORS: TableDefinition<&str, &[u8]> = TableDefinition::new("operators");
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
const JOB_LOGS: TableDefinition<(&str, u64), &str> = TableDefinition::new("job_logs");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const CLUSTER: TableDefinition<&str, &[u8]> = TableDefinition::new("cluster");
const SERVERS: TableDefinition<&str, &[u8]> = TableDefinition::new("servers");
const WORKFLOWS: TableDefinition<&str, &[u8]> = TableDefinition::new("workflows");
/// Index of WORKFLOWS: the ids of the workflows that have not ended.
const ACTIVE_WORKFLOWS: TableDefinition<&str, ()> = TableDefinition::new("workflows_active");
/// Index of WORKFLOWS: kind -> the id of its newest workflow.
const LATEST_WORKFLOWS: TableDefinition<&str, &str> = TableDefinition::new("workflows_latest");
/// Sealed outputs a workflow keeps for later steps: (workflow id, key) -> sealed bytes.
const KEPT: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kept");
/// Package files in the repository, by SHA-256.
const PACKAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("packages");
/// Service health events (health.proto `HealthEvent`), by a sequence number.
const HEALTH_EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("health_events");
/// File replication: its settings and recent conflicts (by key), and the current state of each
/// replicated path (sealed: contents may hold secrets).
const FSREP: TableDefinition<&str, &[u8]> = TableDefinition::new("fsrep");
const FSREP_FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("fsrep_files");

/// Memory redb may keep for pages it read or wrote (its default, 1 GiB, let the controller's RSS
/// grow with the store file under metrics ingest: 138 to 442 MiB in a minute at 10,000 agents'
/// load). The operating system's page cache still holds the file.
pub const CACHE_BYTES: usize = 64 << 20;

/// Version of the record formats in this file. An older store is migrated at open (after a copy
/// of its file; store/migrate.rs), a newer one refused rather than misread.
const SCHEMA: u64 = 3;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store error: {0}")]
    Redb(#[from] redb::Error),
    #[error("corrupt record in table {table}: {msg}")]
    Decode { table: String, msg: String },
    #[error("the store is closed")]
    Closed,
    #[error(
        "the store was written by another version of clustermgr (record format {found}, this \
         version reads {SCHEMA}); use the matching clustermgr version or start a new data directory"
    )]
    Schema { found: u64 },
    #[error("the write could not be committed: {0}")]
    Commit(String),
    #[error(
        "cannot copy the store to {} before migrating it: {error} (is the disk full?); the store \
         was not migrated: make room and start again", path.display()
    )]
    Backup {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Redb(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError
);

pub type Result<T> = std::result::Result<T, StoreError>;

/// One queued write. `run` may be called more than once (its group is re-run without a failed
/// member), each time against a fresh transaction.
trait Op: Send {
    /// Applies the write; false if it failed (its group is then rolled back and re-run without it).
    fn run(&mut self, txn: &WriteTransaction) -> bool;
    /// Reports the outcome: `Ok` when committed (or, for a failed op, to report its own error).
    fn finish(self: Box<Self>, commit: Result<()>);
}

struct TypedOp<F, T> {
    f: F,
    out: Option<Result<T>>,
    tx: oneshot::Sender<Result<T>>,
}

impl<F, T> Op for TypedOp<F, T>
where
    F: FnMut(&WriteTransaction) -> Result<T> + Send,
    T: Send,
{
    fn run(&mut self, txn: &WriteTransaction) -> bool {
        let r = (self.f)(txn);
        let ok = r.is_ok();
        self.out = Some(r);
        ok
    }
    fn finish(self: Box<Self>, commit: Result<()>) {
        let r = match (commit, self.out) {
            (Ok(()), Some(r)) => r,
            (Ok(()), None) => Err(StoreError::Closed),
            (Err(e), _) => Err(e),
        };
        let _ = self.tx.send(r);
    }
}

#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    writer: std_mpsc::Sender<Box<dyn Op>>,
    _closer: Arc<Closer>,
}

/// Joins the writer thread when the last handle goes away, so that the database file is closed
/// (and its lock released) by the time the store is dropped.
/// (Fields drop in declaration order: a handle's sender goes before its closer.)
struct Closer {
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Closer {
    fn drop(&mut self) {
        let mut guard = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = guard.take() {
            let _ = t.join();
        }
    }
}

/// What removing an operator came to.
#[derive(Debug)]
pub enum OperatorRemoval {
    Removed(OperatorRecord),
    NotFound,
    LastAdmin,
}

/// What a renewal came to.
#[derive(Debug)]
pub enum Renewal {
    Renewed,
    NodeGone,
    /// The node renewed less than the minimum interval ago.
    TooSoon {
        retry_in_secs: u64,
    },
}

/// What adding a package record came to.
#[derive(Debug)]
pub enum PackageAdd {
    Added,
    /// The same file (same SHA-256) is stored already: nothing was written.
    Exists(PackageRecord),
    /// Another file has the same name, version, architecture and format.
    Conflict(PackageRecord),
}

/// How many records a retention sweep deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub audit: usize,
    pub jobs: usize,
    pub job_logs: usize,
    pub tokens: usize,
}

/// The limits a retention sweep applies (times in ms / s since the epoch).
#[derive(Debug, Clone, Copy)]
pub struct SweepLimits {
    /// Audit rows written before this are deleted.
    pub audit_before_ms: u64,
    /// At most this many routine audit rows are kept (the oldest go first); other rows go by
    /// age alone.
    pub audit_max_rows: u64,
    /// Finished jobs (and their logs) that finished before this are deleted.
    pub jobs_before_ms: u64,
    /// Tokens that expired before this are deleted.
    pub tokens_expired_before_unix: u64,
    /// Upper bound of records deleted per transaction.
    pub batch: usize,
}

impl Store {
    /// Opens (creating if needed) the store file and starts the writer thread.
    pub fn open(path: &Path) -> Result<Self> {
        // The copy's path is logged when it is made, before the migration.
        migrate::backup_if_needed(path)?;
        let db = Arc::new(
            Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(path)?,
        );
        {
            let txn = db.begin_write()?;
            let mut fresh = true;
            fresh &= txn.open_table(NODES)?.is_empty()?;
            fresh &= txn.open_table(TOKENS)?.is_empty()?;
            fresh &= txn.open_table(PRINCIPALS)?.is_empty()?;
            fresh &= txn.open_table(OPERATORS)?.is_empty()?;
            fresh &= txn.open_table(JOBS)?.is_empty()?;
            txn.open_table(JOB_LOGS)?;
            audit::open_tables(&txn)?;
            txn.open_table(CLUSTER)?;
            txn.open_table(SERVERS)?;
            txn.open_table(WORKFLOWS)?;
            txn.open_table(ACTIVE_WORKFLOWS)?;
            txn.open_table(LATEST_WORKFLOWS)?;
            txn.open_table(KEPT)?;
            txn.open_table(PACKAGES)?;
            txn.open_table(HEALTH_EVENTS)?;
            metrics::open_tables(&txn)?;
            txn.open_table(FSREP)?;
            txn.open_table(FSREP_FILES)?;
            migrate::settle(&txn, fresh)?;
            txn.commit()?;
        }
        let (tx, rx) = std_mpsc::channel::<Box<dyn Op>>();
        let wdb = db.clone();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(&wdb, &rx))
            .map_err(|e| StoreError::Redb(redb::Error::Io(e)))?;
        // The writer thread ends when every sender is gone: the handles' clones and this one.
        let closer = Closer {
            thread: Mutex::new(Some(thread)),
        };
        Ok(Self {
            db,
            writer: tx,
            _closer: Arc::new(closer),
        })
    }

    /// Queues `f` at once (so writes queued in order commit in order) and returns a future that
    /// resolves when its transaction is durably committed.
    fn submit<T, F>(&self, f: F) -> impl Future<Output = Result<T>> + Send + 'static
    where
        F: FnMut(&WriteTransaction) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let op: Box<dyn Op> = Box::new(TypedOp { f, out: None, tx });
        let sent = self.writer.send(op).is_ok();
        async move {
            if !sent {
                return Err(StoreError::Closed);
            }
            rx.await.unwrap_or(Err(StoreError::Closed))
        }
    }

    fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T>) -> Result<T> {
        let txn = self.db.begin_read()?;
        f(&txn)
    }

    fn get_msg<M: Message + Default>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<M>> {
        self.read(|txn| {
            let t = txn.open_table(table)?;
            get_in(&t, table.name(), key)
        })
    }

    fn all_msgs<M: Message + Default>(
        &self,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<(String, M)>> {
        self.read(|txn| {
            // A table made by its first write (backups) holds nothing before it.
            let t = match txn.open_table(table) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.push((k.value().to_string(), decode(table.name(), v.value())?));
            }
            Ok(out)
        })
    }

    // ----- audit -----

    /// Appends one audit row in its own transaction.
    pub fn append_audit(&self, entry: AuditEntry) -> impl Future<Output = Result<()>> + Send {
        self.submit(move |txn| append_audit_in(txn, &entry))
    }

    /// The newest `limit` audit rows, oldest first.
    pub fn audit_tail(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        self.read(|txn| {
            let t = txn.open_table(AUDIT)?;
            let mut out = Vec::new();
            for row in t.iter()?.rev().take(limit) {
                let (_, v) = row?;
                out.push(decode::<AuditEntry>("audit", v.value())?);
            }
            out.reverse();
            Ok(out)
        })
    }

    pub fn audit_len(&self) -> Result<u64> {
        self.read(|txn| Ok(txn.open_table(AUDIT)?.len()?))
    }

    // ----- health events -----

    /// Appends events (in one transaction), keeping the newest `keep`.
    pub async fn append_health_events(
        &self,
        events: Vec<clustermgr_proto::HealthEvent>,
        keep: usize,
    ) -> Result<()> {
        self.submit(move |txn| {
            let mut t = txn.open_table(HEALTH_EVENTS)?;
            let mut next = t.last()?.map_or(0, |(k, _)| k.value() + 1);
            for e in &events {
                t.insert(next, e.encode_to_vec().as_slice())?;
                next += 1;
            }
            let len = t.len()? as usize;
            if len > keep {
                let cut = next - (keep as u64);
                t.retain_in(..cut, |_, _| false)?;
            }
            Ok(())
        })
        .await
    }

    /// The newest `limit` events, oldest first.
    pub fn health_events_tail(&self, limit: usize) -> Result<Vec<clustermgr_proto::HealthEvent>> {
        self.read(|txn| {
            let t = txn.open_table(HEALTH_EVENTS)?;
            let mut out = Vec::new();
            for row in t.iter()?.rev().take(limit) {
                let (_, v) = row?;
                out.push(decode::<clustermgr_proto::HealthEvent>(
                    "health event",
                    v.value(),
                )?);
            }
            out.reverse();
            Ok(out)
        })
    }

    // ----- retention -----

    /// Deletes what the retention limits allow, at most `limits.batch` records of each kind per
    /// call (call again while it returns a full batch). redb reuses the freed pages, so the
    /// file stops growing once old records go as fast as new ones come.
    pub async fn sweep(&self, limits: SweepLimits) -> Result<Swept> {
        self.submit(move |txn| sweep_in(txn, &limits)).await
    }

    /// The store file's size in bytes.
    pub fn file_size(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    // ----- packages -----

    pub fn package(&self, sha256: &str) -> Result<Option<PackageRecord>> {
        self.get_msg(PACKAGES, sha256)
    }

    pub fn packages(&self) -> Result<Vec<PackageRecord>> {
        Ok(self
            .all_msgs(PACKAGES)?
            .into_iter()
            .map(|(_, p)| p)
            .collect())
    }

    /// Records a package file with its audit row, unless the same file or another file with the
    /// same name, version, architecture and format is recorded (then nothing is written).
    pub async fn add_package(&self, rec: PackageRecord, audit: AuditEntry) -> Result<PackageAdd> {
        self.submit(move |txn| {
            let mut t = txn.open_table(PACKAGES)?;
            if let Some(existing) = get_in::<PackageRecord>(&t, "packages", &rec.sha256)? {
                return Ok(PackageAdd::Exists(existing));
            }
            for row in t.iter()? {
                let (_, v) = row?;
                let p: PackageRecord = decode("packages", v.value())?;
                if p.name == rec.name
                    && p.version == rec.version
                    && p.arch == rec.arch
                    && p.format == rec.format
                {
                    return Ok(PackageAdd::Conflict(p));
                }
            }
            put_in(&mut t, &rec.sha256, &rec)?;
            drop(t);
            append_audit_in(txn, &audit)?;
            Ok(PackageAdd::Added)
        })
        .await
    }

    /// Deletes a package record with its audit row; None if it was not there.
    pub async fn remove_package(
        &self,
        sha256: &str,
        audit: AuditEntry,
    ) -> Result<Option<PackageRecord>> {
        let sha = sha256.to_string();
        self.submit(move |txn| {
            let removed = {
                let mut t = txn.open_table(PACKAGES)?;
                let r = t.remove(sha.as_str())?;
                match r {
                    Some(v) => Some(decode::<PackageRecord>("packages", v.value())?),
                    None => None,
                }
            };
            if removed.is_some() {
                append_audit_in(txn, &audit)?;
            }
            Ok(removed)
        })
        .await
    }
}

fn get_in<M: Message + Default>(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    table: &str,
    key: &str,
) -> Result<Option<M>> {
    match t.get(key)? {
        Some(v) => Ok(Some(decode(table, v.value())?)),
        None => Ok(None),
    }
}

fn put_in<M: Message>(
    t: &mut redb::Table<&'static str, &'static [u8]>,
    key: &str,
    msg: &M,
) -> Result<()> {
    t.insert(key, msg.encode_to_vec().as_slice())?;
    Ok(())
}

fn put<M: Message>(
    txn: &WriteTransaction,
    table: TableDefinition<&'static str, &'static [u8]>,
    key: &str,
    msg: &M,
) -> Result<()> {
    put_in(&mut txn.open_table(table)?, key, msg)
}

fn append_audit_in(txn: &WriteTransaction, entry: &AuditEntry) -> Result<()> {
    audit::append_in(txn, entry)
}

fn decode<M: Message + Default>(table: &str, bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(|e| StoreError::Decode {
        table: table.to_string(),
        msg: e.to_string(),
    })
}

fn writer_loop(db: &Database, rx: &std_mpsc::Receiver<Box<dyn Op>>) {
    const MAX_GROUP: usize = 512;
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        run_group(db, ops);
    }
}

/// Runs a group in one transaction. A member that fails is reported and taken out, and the
/// others run again in a fresh transaction (each round removes at least one member).
fn run_group(db: &Database, mut ops: Vec<Box<dyn Op>>) {
    while !ops.is_empty() {
        let txn = match db.begin_write() {
            Ok(t) => t,
            Err(e) => {
                let msg = e.to_string();
                for op in ops {
                    op.finish(Err(StoreError::Commit(msg.clone())));
                }
                return;
            }
        };
        let mut failed = Vec::new();
        for (i, op) in ops.iter_mut().enumerate() {
            if !op.run(&txn) {
                failed.push(i);
            }
        }
        if failed.is_empty() {
            match txn.commit() {
                Ok(()) => ops.into_iter().for_each(|op| op.finish(Ok(()))),
                Err(e) => {
                    let msg = e.to_string();
                    for op in ops {
                        op.finish(Err(StoreError::Commit(msg.clone())));
                    }
                }
            }
            return;
        }
        let _ = txn.abort();
        for i in failed.into_iter().rev() {
            // Its own error is in its output.
            ops.remove(i).finish(Ok(()));
        }
    }
}

#[cfg(test)]
mod tests;
