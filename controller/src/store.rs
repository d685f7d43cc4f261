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

mod audit;
pub use audit::MERGE_WINDOW_MS;
mod metrics;
pub use metrics::{MetricsCut, SweepStep};

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
/// Index of WORKFLOWS: the ids of the workflows that have not ended (rebuilt at every open).
const ACTIVE_WORKFLOWS: TableDefinition<&str, ()> = TableDefinition::new("workflows_active");
/// Index of WORKFLOWS: kind -> the id of its newest workflow (rebuilt at every open).
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

/// Version of the record formats in this file. A store written with other formats is refused
/// rather than misread.
const SCHEMA: u64 = 2;

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
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Redb(e.into()) }
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
        let db = Arc::new(Database::create(path)?);
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
            index_workflows(&txn)?;
            txn.open_table(KEPT)?;
            txn.open_table(PACKAGES)?;
            txn.open_table(HEALTH_EVENTS)?;
            metrics::open_tables(&txn)?;
            txn.open_table(FSREP)?;
            txn.open_table(FSREP_FILES)?;
            {
                let mut meta = txn.open_table(META)?;
                let found = meta.get("schema")?.map(|v| v.value());
                match found {
                    Some(SCHEMA) => {}
                    None if fresh => {
                        meta.insert("schema", SCHEMA)?;
                    }
                    None => return Err(StoreError::Schema { found: 1 }),
                    Some(found) => return Err(StoreError::Schema { found }),
                }
            }
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
            let t = txn.open_table(table)?;
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

    // ----- nodes -----

    pub fn node(&self, id: &str) -> Result<Option<NodeRecord>> {
        self.get_msg(NODES, id)
    }

    pub fn nodes(&self) -> Result<Vec<NodeRecord>> {
        Ok(self.all_msgs(NODES)?.into_iter().map(|(_, n)| n).collect())
    }

    /// Enrollment in one transaction: re-checks the join token (`check` gets `None` for an
    /// unknown one and must refuse it, and a used or expired one), consumes one use, creates the
    /// node and its certificate principal and writes the audit row. Returns the token as it
    /// was, or `check`'s refusal (then nothing is written).
    pub async fn enroll_node<D, C>(
        &self,
        token_id: String,
        check: C,
        node: NodeRecord,
        fingerprint: String,
        principal: PrincipalRecord,
        audit: AuditEntry,
    ) -> Result<std::result::Result<TokenRecord, D>>
    where
        C: Fn(Option<&TokenRecord>) -> std::result::Result<(), D> + Send + 'static,
        D: Send + 'static,
    {
        self.submit(move |txn| {
            let mut tokens = txn.open_table(TOKENS)?;
            let rec = get_in::<TokenRecord>(&tokens, "tokens", &token_id)?;
            if let Err(d) = check(rec.as_ref()) {
                return Ok(Err(d));
            }
            let Some(mut rec) = rec else {
                return Err(StoreError::Commit("the token vanished".into()));
            };
            let before = rec.clone();
            rec.uses_left = rec.uses_left.saturating_sub(1);
            put_in(&mut tokens, &token_id, &rec)?;
            put(txn, NODES, &node.id, &node)?;
            put(txn, PRINCIPALS, &fingerprint, &principal)?;
            append_audit_in(txn, &audit)?;
            Ok(Ok(before))
        })
        .await
    }

    /// Read-modify-write of one node (no-op, `None`, if it was removed), with an optional audit
    /// row in the same transaction.
    pub fn update_node<F>(
        &self,
        id: &str,
        f: F,
        audit: Option<AuditEntry>,
    ) -> impl Future<Output = Result<Option<NodeRecord>>> + Send + 'static
    where
        F: Fn(&mut NodeRecord) + Send + 'static,
    {
        let id = id.to_string();
        self.submit(move |txn| {
            let mut t = txn.open_table(NODES)?;
            let Some(mut n) = get_in::<NodeRecord>(&t, "nodes", &id)? else {
                return Ok(None);
            };
            f(&mut n);
            put_in(&mut t, &id, &n)?;
            drop(t);
            if let Some(a) = &audit {
                append_audit_in(txn, a)?;
            }
            Ok(Some(n))
        })
    }

    /// Removes a node and every certificate issued to it, with its audit row, in one transaction.
    pub async fn remove_node(&self, id: &str, audit: AuditEntry) -> Result<Option<NodeRecord>> {
        let id = id.to_string();
        self.submit(move |txn| {
            let removed = {
                let mut t = txn.open_table(NODES)?;
                let r = t.remove(id.as_str())?;
                match r {
                    Some(v) => Some(decode::<NodeRecord>("nodes", v.value())?),
                    None => None,
                }
            };
            if removed.is_some() {
                purge_principals(txn, PrincipalKind::Node, &id, None)?;
                // A removed node is no longer one of the cluster's servers.
                txn.open_table(SERVERS)?.remove(id.as_str())?;
                append_audit_in(txn, &audit)?;
            }
            Ok(removed)
        })
        .await
    }

    /// Certificate renewal in one transaction: the node must still exist and must not have
    /// renewed within `min_interval_ms`; the new certificate's principal is inserted and every
    /// other certificate of the node except `keep` (the one the agent is connected with) is
    /// revoked.
    pub async fn renew_node(
        &self,
        id: &str,
        fingerprint: String,
        principal: PrincipalRecord,
        keep: Option<String>,
        now_ms: u64,
        min_interval_ms: u64,
    ) -> Result<Renewal> {
        let id = id.to_string();
        self.submit(move |txn| {
            let mut nodes = txn.open_table(NODES)?;
            let Some(mut n) = get_in::<NodeRecord>(&nodes, "nodes", &id)? else {
                return Ok(Renewal::NodeGone);
            };
            let since = now_ms.saturating_sub(n.last_renewal_unix_ms);
            if n.last_renewal_unix_ms != 0 && since < min_interval_ms {
                return Ok(Renewal::TooSoon {
                    retry_in_secs: (min_interval_ms - since).div_ceil(1000),
                });
            }
            n.last_renewal_unix_ms = now_ms;
            n.certificate_not_after_unix = principal.not_after_unix;
            put_in(&mut nodes, &id, &n)?;
            drop(nodes);
            purge_principals(txn, PrincipalKind::Node, &id, keep.as_deref())?;
            put(txn, PRINCIPALS, &fingerprint, &principal)?;
            Ok(Renewal::Renewed)
        })
        .await
    }

    /// Revokes every certificate of a node but `keep` (after the agent connected with `keep`).
    pub async fn retire_node_certificates(&self, id: &str, keep: &str) -> Result<usize> {
        let (id, keep) = (id.to_string(), keep.to_string());
        self.submit(move |txn| purge_principals(txn, PrincipalKind::Node, &id, Some(&keep)))
            .await
    }

    // ----- principals -----

    /// Every issued certificate: (fingerprint, record).
    pub fn principals(&self) -> Result<Vec<(String, PrincipalRecord)>> {
        self.all_msgs(PRINCIPALS)
    }

    /// Registers one more certificate of an existing principal.
    pub async fn add_principal(&self, fingerprint: String, rec: PrincipalRecord) -> Result<()> {
        self.submit(move |txn| put(txn, PRINCIPALS, &fingerprint, &rec))
            .await
    }

    /// Creates an operator record unless one of that name exists; returns the stored one.
    pub async fn ensure_operator(&self, rec: OperatorRecord) -> Result<OperatorRecord> {
        self.submit(move |txn| {
            let mut ops = txn.open_table(OPERATORS)?;
            if let Some(existing) = get_in::<OperatorRecord>(&ops, "operators", &rec.name)? {
                return Ok(existing);
            }
            put_in(&mut ops, &rec.name, &rec)?;
            Ok(rec.clone())
        })
        .await
    }

    // ----- tokens -----

    pub fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        self.get_msg(TOKENS, id)
    }

    pub fn tokens(&self) -> Result<Vec<TokenRecord>> {
        Ok(self.all_msgs(TOKENS)?.into_iter().map(|(_, t)| t).collect())
    }

    pub async fn create_token(&self, rec: TokenRecord, audit: AuditEntry) -> Result<()> {
        self.submit(move |txn| {
            put(txn, TOKENS, &rec.id, &rec)?;
            append_audit_in(txn, &audit)
        })
        .await
    }

    /// Deletes a token; `audit` (given the removed record) is written in the same transaction.
    pub async fn revoke_token<A>(&self, id: &str, audit: A) -> Result<Option<TokenRecord>>
    where
        A: Fn(&TokenRecord) -> AuditEntry + Send + 'static,
    {
        let id = id.to_string();
        self.submit(move |txn| {
            let rec = {
                let mut t = txn.open_table(TOKENS)?;
                let r = t.remove(id.as_str())?;
                match r {
                    Some(v) => Some(decode::<TokenRecord>("tokens", v.value())?),
                    None => None,
                }
            };
            if let Some(r) = &rec {
                append_audit_in(txn, &audit(r))?;
            }
            Ok(rec)
        })
        .await
    }

    // ----- operators -----

    pub fn operator(&self, name: &str) -> Result<Option<OperatorRecord>> {
        self.get_msg(OPERATORS, name)
    }

    pub fn operators(&self) -> Result<Vec<OperatorRecord>> {
        Ok(self
            .all_msgs(OPERATORS)?
            .into_iter()
            .map(|(_, o)| o)
            .collect())
    }

    /// Creates an operator and its certificate principal in one transaction. Returns false (and
    /// writes nothing) when an operator of that name exists already.
    pub async fn create_operator(
        &self,
        rec: OperatorRecord,
        fingerprint: String,
        principal: PrincipalRecord,
        audit: Option<AuditEntry>,
    ) -> Result<bool> {
        self.submit(move |txn| {
            let mut ops = txn.open_table(OPERATORS)?;
            if ops.get(rec.name.as_str())?.is_some() {
                return Ok(false);
            }
            put_in(&mut ops, &rec.name, &rec)?;
            drop(ops);
            put(txn, PRINCIPALS, &fingerprint, &principal)?;
            if let Some(a) = &audit {
                append_audit_in(txn, a)?;
            }
            Ok(true)
        })
        .await
    }

    /// Removes an operator and every certificate issued to it, refusing to remove the last admin.
    pub async fn remove_operator<A>(&self, name: &str, audit: A) -> Result<OperatorRemoval>
    where
        A: Fn(&OperatorRecord) -> AuditEntry + Send + 'static,
    {
        let name = name.to_string();
        self.submit(move |txn| {
            let mut ops = txn.open_table(OPERATORS)?;
            let mut admins = 0;
            let mut target: Option<OperatorRecord> = None;
            for row in ops.iter()? {
                let (k, v) = row?;
                let rec: OperatorRecord = decode("operators", v.value())?;
                if rec.role() == OperatorRole::Admin {
                    admins += 1;
                }
                if k.value() == name {
                    target = Some(rec);
                }
            }
            let Some(rec) = target else {
                return Ok(OperatorRemoval::NotFound);
            };
            if rec.role() == OperatorRole::Admin && admins == 1 {
                return Ok(OperatorRemoval::LastAdmin);
            }
            ops.remove(name.as_str())?;
            drop(ops);
            purge_principals(txn, PrincipalKind::Operator, &name, None)?;
            append_audit_in(txn, &audit(&rec))?;
            Ok(OperatorRemoval::Removed(rec))
        })
        .await
    }

    // ----- jobs -----

    pub fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        self.get_msg(JOBS, id)
    }

    /// The ids of the jobs whose id starts with `prefix`, at most `max` of them.
    pub fn job_ids_with_prefix(&self, prefix: &str, max: usize) -> Result<Vec<String>> {
        self.read(|txn| {
            let t = txn.open_table(JOBS)?;
            let mut out = Vec::new();
            for row in t.range(prefix..)? {
                let (k, _) = row?;
                let id = k.value();
                if !id.starts_with(prefix) || out.len() >= max {
                    break;
                }
                out.push(id.to_string());
            }
            Ok(out)
        })
    }

    /// Most recent jobs first (job ids are time-ordered UUIDv7), optionally of one node.
    pub fn recent_jobs(&self, node_id: Option<&str>, limit: usize) -> Result<Vec<JobRecord>> {
        self.read(|txn| {
            let t = txn.open_table(JOBS)?;
            let mut out = Vec::new();
            for row in t.iter()?.rev() {
                let (_, v) = row?;
                let job: JobRecord = decode("jobs", v.value())?;
                if node_id.is_none_or(|n| job.node_id == n) {
                    out.push(job);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
    }

    /// Writes a job record (insert or replace) with an optional audit row and log lines, in one
    /// transaction. Queued at once: writes queued in order commit in order.
    pub fn put_job(
        &self,
        job: JobRecord,
        logs: Vec<(u64, String)>,
        audit: Option<AuditEntry>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        self.submit(move |txn| {
            put(txn, JOBS, &job.id, &job)?;
            if !logs.is_empty() {
                let mut t = txn.open_table(JOB_LOGS)?;
                for (seq, line) in &logs {
                    t.insert((job.id.as_str(), *seq), line.as_str())?;
                }
            }
            if let Some(a) = &audit {
                append_audit_in(txn, a)?;
            }
            Ok(())
        })
    }

    /// Appends log lines of running jobs: (job id, seq, line).
    pub fn append_job_logs(
        &self,
        lines: Vec<(String, u64, String)>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        self.submit(move |txn| {
            let mut t = txn.open_table(JOB_LOGS)?;
            for (id, seq, line) in &lines {
                t.insert((id.as_str(), *seq), line.as_str())?;
            }
            Ok(())
        })
    }

    /// Stored log lines of a job with seq > `after`, at most `limit`, in order.
    pub fn job_logs_after(&self, id: &str, after: u64, limit: usize) -> Result<Vec<(u64, String)>> {
        self.read(|txn| {
            let t = txn.open_table(JOB_LOGS)?;
            let mut out = Vec::new();
            for row in t
                .range((id, after.saturating_add(1))..=(id, u64::MAX))?
                .take(limit)
            {
                let (k, v) = row?;
                out.push((k.value().1, v.value().to_string()));
            }
            Ok(out)
        })
    }

    /// Marks every job recorded as running as interrupted (`edit` fills the details); returns
    /// how many.
    pub async fn interrupt_running_jobs<F>(&self, edit: F) -> Result<usize>
    where
        F: Fn(&mut JobRecord) + Send + 'static,
    {
        self.submit(move |txn| {
            let mut t = txn.open_table(JOBS)?;
            let mut stale = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                let job: JobRecord = decode("jobs", v.value())?;
                if job.state() == JobState::Running {
                    stale.push((k.value().to_string(), job));
                }
            }
            for (k, job) in &mut stale {
                edit(job);
                put_in(&mut t, k, job)?;
            }
            Ok(stale.len())
        })
        .await
    }

    // ----- cluster settings, servers, workflows -----

    pub fn cluster_settings(&self) -> Result<Option<ClusterSettingsRecord>> {
        self.get_msg(CLUSTER, "settings")
    }

    /// Replaces the settings; `check` sees the stored record and the servers first and may
    /// refuse (its error comes back as `Ok(Err(..))` with nothing written).
    pub async fn put_cluster_settings<C, E>(
        &self,
        rec: ClusterSettingsRecord,
        check: C,
        audit: AuditEntry,
    ) -> Result<std::result::Result<(), E>>
    where
        C: Fn(Option<&ClusterSettingsRecord>, &[ServerRecord]) -> std::result::Result<(), E>
            + Send
            + 'static,
        E: Send + 'static,
    {
        self.submit(move |txn| {
            let old: Option<ClusterSettingsRecord> = {
                let t = txn.open_table(CLUSTER)?;
                get_in(&t, "cluster", "settings")?
            };
            let servers = servers_in(txn)?;
            if let Err(e) = check(old.as_ref(), &servers) {
                return Ok(Err(e));
            }
            put(txn, CLUSTER, "settings", &rec)?;
            append_audit_in(txn, &audit)?;
            Ok(Ok(()))
        })
        .await
    }

    /// The cache the cluster should have (one record beside the settings).
    pub fn cache_record(&self) -> Result<Option<CacheRecord>> {
        self.get_msg(CLUSTER, "cache")
    }

    pub async fn put_cache_record(&self, rec: CacheRecord) -> Result<()> {
        self.submit(move |txn| put(txn, CLUSTER, "cache", &rec))
            .await
    }

    pub fn servers(&self) -> Result<Vec<ServerRecord>> {
        Ok(self
            .all_msgs(SERVERS)?
            .into_iter()
            .map(|(_, s)| s)
            .collect())
    }

    pub fn server(&self, node_id: &str) -> Result<Option<ServerRecord>> {
        self.get_msg(SERVERS, node_id)
    }

    /// Applies `change` to the servers in one transaction: it gets every server record and
    /// returns the records to write and the ids to delete, or a refusal (nothing written).
    pub async fn change_servers<C, T, E>(
        &self,
        change: C,
        audit: Option<AuditEntry>,
    ) -> Result<std::result::Result<T, E>>
    where
        C: Fn(Vec<ServerRecord>) -> std::result::Result<(Vec<ServerRecord>, Vec<String>, T), E>
            + Send
            + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        self.submit(move |txn| {
            let servers = servers_in(txn)?;
            let (write, delete, out) = match change(servers) {
                Ok(x) => x,
                Err(e) => return Ok(Err(e)),
            };
            {
                let mut t = txn.open_table(SERVERS)?;
                for s in &write {
                    put_in(&mut t, &s.node_id, s)?;
                }
                for id in &delete {
                    t.remove(id.as_str())?;
                }
            }
            if let Some(a) = &audit {
                append_audit_in(txn, a)?;
            }
            Ok(Ok(out))
        })
        .await
    }

    pub fn workflow(&self, id: &str) -> Result<Option<Workflow>> {
        self.get_msg(WORKFLOWS, id)
    }

    /// Every workflow, oldest first (ids are time-ordered UUIDv7).
    pub fn workflows(&self) -> Result<Vec<Workflow>> {
        Ok(self
            .all_msgs(WORKFLOWS)?
            .into_iter()
            .map(|(_, w)| w)
            .collect())
    }

    /// The workflows that have not ended, oldest first (from the index, not a scan).
    pub fn active_workflows(&self) -> Result<Vec<Workflow>> {
        self.read(|txn| {
            let ids = txn.open_table(ACTIVE_WORKFLOWS)?;
            let t = txn.open_table(WORKFLOWS)?;
            let mut out = Vec::new();
            for row in ids.iter()? {
                let (k, _) = row?;
                if let Some(w) = get_in(&t, WORKFLOWS.name(), k.value())? {
                    out.push(w);
                }
            }
            Ok(out)
        })
    }

    /// The newest workflow of `kind`.
    pub fn latest_workflow(&self, kind: &str) -> Result<Option<Workflow>> {
        self.read(|txn| {
            let latest = txn.open_table(LATEST_WORKFLOWS)?;
            let Some(id) = latest.get(kind)?.map(|v| v.value().to_string()) else {
                return Ok(None);
            };
            get_in(&txn.open_table(WORKFLOWS)?, WORKFLOWS.name(), &id)
        })
    }

    /// Writes a workflow record, with the server records that point at it and an audit row, in
    /// one transaction.
    pub async fn put_workflow(
        &self,
        wf: Workflow,
        servers: Vec<ServerRecord>,
        audit: Option<AuditEntry>,
    ) -> Result<()> {
        self.submit(move |txn| {
            put_workflow_in(txn, &wf)?;
            if !servers.is_empty() {
                let mut t = txn.open_table(SERVERS)?;
                for s in &servers {
                    put_in(&mut t, &s.node_id, s)?;
                }
            }
            if let Some(a) = &audit {
                append_audit_in(txn, a)?;
            }
            Ok(())
        })
        .await
    }

    /// Keeps a sealed output of a workflow's step under `key`.
    pub async fn put_kept(&self, workflow_id: &str, key: &str, sealed: Vec<u8>) -> Result<()> {
        let (w, k) = (workflow_id.to_string(), key.to_string());
        self.submit(move |txn| {
            let mut t = txn.open_table(KEPT)?;
            t.insert((w.as_str(), k.as_str()), sealed.as_slice())?;
            Ok(())
        })
        .await
    }

    /// The sealed outputs a workflow kept, by key.
    pub fn kept(&self, workflow_id: &str) -> Result<Vec<(String, Vec<u8>)>> {
        self.read(|txn| {
            let t = txn.open_table(KEPT)?;
            let mut out = Vec::new();
            for row in t.range((workflow_id, "")..)? {
                let (k, v) = row?;
                let (w, key) = k.value();
                if w != workflow_id {
                    break;
                }
                out.push((key.to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// Deletes a finished workflow's kept outputs (they hold secrets).
    pub async fn drop_kept(&self, workflow_id: &str) -> Result<usize> {
        let w = workflow_id.to_string();
        self.submit(move |txn| {
            let mut t = txn.open_table(KEPT)?;
            let keys: Vec<String> = t
                .range((w.as_str(), "")..)?
                .map(|r| r.map(|(k, _)| (k.value().0.to_string(), k.value().1.to_string())))
                .collect::<std::result::Result<Vec<_>, _>>()?
                .into_iter()
                .take_while(|(wid, _)| *wid == w)
                .map(|(_, k)| k)
                .collect();
            for k in &keys {
                t.remove((w.as_str(), k.as_str()))?;
            }
            Ok(keys.len())
        })
        .await
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

// ----- oxAuth keys -----

impl Store {
    /// The key rotation state (public data only).
    pub fn keys_record(&self) -> Result<Option<clustermgr_proto::KeysRecord>> {
        self.get_msg(CLUSTER, "keys")
    }

    /// Replaces the key rotation state, with the change's audit row when there is one.
    pub async fn put_keys_record(
        &self,
        rec: clustermgr_proto::KeysRecord,
        audit: Option<AuditEntry>,
    ) -> Result<()> {
        self.submit(move |txn| {
            put(txn, CLUSTER, "keys", &rec)?;
            if let Some(a) = &audit {
                append_audit_in(txn, a)?;
            }
            Ok(())
        })
        .await
    }

    /// Starts a workflow and records the key rotation state, keeping the workflow's sealed
    /// values, in one transaction.
    pub async fn start_keys_workflow(
        &self,
        wf: Workflow,
        rec: clustermgr_proto::KeysRecord,
        kept: Vec<(String, Vec<u8>)>,
        audit: AuditEntry,
    ) -> Result<()> {
        self.submit(move |txn| {
            put_workflow_in(txn, &wf)?;
            put(txn, CLUSTER, "keys", &rec)?;
            {
                let mut t = txn.open_table(KEPT)?;
                for (k, v) in &kept {
                    t.insert((wf.id.as_str(), k.as_str()), v.as_slice())?;
                }
            }
            append_audit_in(txn, &audit)
        })
        .await
    }
}

// ----- file replication -----

impl Store {
    pub fn fsrep_settings(&self) -> Result<Option<clustermgr_proto::FsrepSettingsRecord>> {
        self.get_msg(FSREP, "settings")
    }

    /// Replaces the file replication settings, with the change's audit row.
    pub async fn put_fsrep_settings(
        &self,
        rec: clustermgr_proto::FsrepSettingsRecord,
        audit: AuditEntry,
    ) -> Result<()> {
        self.submit(move |txn| {
            put(txn, FSREP, "settings", &rec)?;
            append_audit_in(txn, &audit)
        })
        .await
    }

    pub fn fsrep_conflicts(&self) -> Result<Option<clustermgr_proto::FsrepConflictsRecord>> {
        self.get_msg(FSREP, "conflicts")
    }

    /// The sealed state of every replicated path.
    pub fn fsrep_files(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.read(|txn| {
            let t = txn.open_table(FSREP_FILES)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// Records the new state of one path (sealed by the caller); with a conflict, the conflict
    /// list and its audit row in the same transaction. `content`: a file holding the state's
    /// content, synced to disk before the record is written (in the writer, in order).
    pub fn put_fsrep_file(
        &self,
        path: String,
        sealed: Vec<u8>,
        conflict: Option<(clustermgr_proto::FsrepConflictsRecord, AuditEntry)>,
        content: Option<std::path::PathBuf>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        self.submit(move |txn| {
            if let Some(f) = &content {
                std::fs::File::open(f)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| StoreError::Commit(format!("cannot sync {}: {e}", f.display())))?;
            }
            txn.open_table(FSREP_FILES)?
                .insert(path.as_str(), sealed.as_slice())?;
            if let Some((list, audit)) = &conflict {
                put(txn, FSREP, "conflicts", list)?;
                append_audit_in(txn, audit)?;
            }
            Ok(())
        })
    }

    /// Forgets replicated paths (tombstones every server holds).
    pub fn delete_fsrep_files(
        &self,
        paths: Vec<String>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        self.submit(move |txn| {
            let mut t = txn.open_table(FSREP_FILES)?;
            for p in &paths {
                t.remove(p.as_str())?;
            }
            Ok(())
        })
    }

    /// Records a conflict the stored state won (nothing else changes).
    pub fn put_fsrep_conflict(
        &self,
        list: clustermgr_proto::FsrepConflictsRecord,
        audit: AuditEntry,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        self.submit(move |txn| {
            put(txn, FSREP, "conflicts", &list)?;
            append_audit_in(txn, &audit)
        })
    }
}

fn sweep_in(txn: &WriteTransaction, l: &SweepLimits) -> Result<Swept> {
    // Audit: every row by age, routine rows also by count.
    let mut swept = Swept {
        audit: audit::sweep_in(txn, l)?,
        ..Default::default()
    };
    // Finished jobs and their logs.
    {
        let mut jobs = txn.open_table(JOBS)?;
        let mut doomed = Vec::new();
        for row in jobs.iter()? {
            let (k, v) = row?;
            if doomed.len() >= l.batch {
                break;
            }
            let j: JobRecord = decode("jobs", v.value())?;
            if j.state().is_finished() && j.finished_unix_ms < l.jobs_before_ms {
                doomed.push(k.value().to_string());
            }
        }
        let mut logs = txn.open_table(JOB_LOGS)?;
        for id in &doomed {
            jobs.remove(id.as_str())?;
            let seqs: Vec<u64> = logs
                .range((id.as_str(), 0)..=(id.as_str(), u64::MAX))?
                .map(|r| r.map(|(k, _)| k.value().1))
                .collect::<std::result::Result<_, _>>()?;
            for s in &seqs {
                logs.remove((id.as_str(), *s))?;
            }
            swept.job_logs += seqs.len();
        }
        swept.jobs = doomed.len();
    }
    // Expired tokens (used ones expire too: a token lives at most a week).
    {
        let mut t = txn.open_table(TOKENS)?;
        let mut doomed = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            if doomed.len() >= l.batch {
                break;
            }
            let rec: TokenRecord = decode("tokens", v.value())?;
            if rec.expires_unix < l.tokens_expired_before_unix {
                doomed.push(k.value().to_string());
            }
        }
        for k in &doomed {
            t.remove(k.as_str())?;
        }
        swept.tokens = doomed.len();
    }
    Ok(swept)
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

fn ended(w: &Workflow) -> bool {
    matches!(
        w.status(),
        clustermgr_proto::WorkflowStatus::Succeeded
            | clustermgr_proto::WorkflowStatus::Failed
            | clustermgr_proto::WorkflowStatus::Cancelled
    )
}

/// Keeps the workflow indexes in step with one workflow record.
fn index_workflow_in(
    active: &mut redb::Table<&str, ()>,
    latest: &mut redb::Table<&str, &str>,
    w: &Workflow,
) -> Result<()> {
    if ended(w) {
        active.remove(w.id.as_str())?;
    } else {
        active.insert(w.id.as_str(), ())?;
    }
    // Ids are time-ordered (UUIDv7): the greatest is the newest.
    let newer = match latest.get(w.kind.as_str())? {
        Some(id) => id.value() < w.id.as_str(),
        None => true,
    };
    if newer {
        latest.insert(w.kind.as_str(), w.id.as_str())?;
    }
    Ok(())
}

fn put_workflow_in(txn: &WriteTransaction, w: &Workflow) -> Result<()> {
    put(txn, WORKFLOWS, &w.id, w)?;
    index_workflow_in(
        &mut txn.open_table(ACTIVE_WORKFLOWS)?,
        &mut txn.open_table(LATEST_WORKFLOWS)?,
        w,
    )
}

/// Rebuilds the workflow indexes from the records (at open: a store written before they
/// existed, or by an older build, gets them right).
fn index_workflows(txn: &WriteTransaction) -> Result<()> {
    txn.delete_table(ACTIVE_WORKFLOWS)?;
    txn.delete_table(LATEST_WORKFLOWS)?;
    let mut active = txn.open_table(ACTIVE_WORKFLOWS)?;
    let mut latest = txn.open_table(LATEST_WORKFLOWS)?;
    let t = txn.open_table(WORKFLOWS)?;
    for row in t.iter()? {
        let (_, v) = row?;
        let w: Workflow = decode(WORKFLOWS.name(), v.value())?;
        index_workflow_in(&mut active, &mut latest, &w)?;
    }
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

/// Deletes the certificate fingerprints issued to a principal, except `keep`; returns how many.
fn purge_principals(
    txn: &WriteTransaction,
    kind: PrincipalKind,
    id: &str,
    keep: Option<&str>,
) -> Result<usize> {
    let mut t = txn.open_table(PRINCIPALS)?;
    let mut fps = Vec::new();
    for row in t.iter()? {
        let (k, v) = row?;
        let rec: PrincipalRecord = decode("principals", v.value())?;
        if rec.kind() == kind && rec.id == id && keep != Some(k.value()) {
            fps.push(k.value().to_string());
        }
    }
    for fp in &fps {
        t.remove(fp.as_str())?;
    }
    Ok(fps.len())
}

fn servers_in(txn: &WriteTransaction) -> Result<Vec<ServerRecord>> {
    let t = txn.open_table(SERVERS)?;
    let mut out = Vec::new();
    for row in t.iter()? {
        let (_, v) = row?;
        out.push(decode::<ServerRecord>("servers", v.value())?);
    }
    Ok(out)
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
mod tests {
    use super::*;
    use clustermgr_proto::OperatorRecord;

    fn op_rec(name: &str) -> OperatorRecord {
        OperatorRecord {
            name: name.into(),
            role: OperatorRole::Viewer as i32,
            ..Default::default()
        }
    }

    fn pr(name: &str) -> PrincipalRecord {
        PrincipalRecord {
            kind: PrincipalKind::Operator as i32,
            id: name.into(),
            not_after_unix: 1,
            ca_key_id: String::new(),
        }
    }

    fn wf(id: &str, kind: &str, status: clustermgr_proto::WorkflowStatus) -> Workflow {
        let mut w = Workflow {
            id: id.into(),
            kind: kind.into(),
            ..Default::default()
        };
        w.set_status(status);
        w
    }

    fn ids(v: Vec<Workflow>) -> Vec<String> {
        v.into_iter().map(|w| w.id).collect()
    }

    #[tokio::test]
    async fn forgotten_fsrep_paths_leave_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        for p in ["/a", "/b", "/c"] {
            store
                .put_fsrep_file(p.into(), vec![1], None, None)
                .await
                .unwrap();
        }
        store
            .delete_fsrep_files(vec!["/a".into(), "/c".into(), "/never".into()])
            .await
            .unwrap();
        let left: Vec<String> = store
            .fsrep_files()
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(left, ["/b"]);
    }

    #[tokio::test]
    async fn workflow_indexes_follow_every_write_and_are_rebuilt_at_open() {
        use clustermgr_proto::WorkflowStatus as S;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path).unwrap();
            for w in [
                wf("01-a", "lb-install", S::Succeeded),
                wf("02-b", "lb-remove", S::Running),
                wf("03-c", "lb-install", S::Pending),
                wf("04-d", "schema-add", S::Failed),
            ] {
                store.put_workflow(w, Vec::new(), None).await.unwrap();
            }
            assert_eq!(ids(store.active_workflows().unwrap()), ["02-b", "03-c"]);
            // An older record written again does not become the latest of its kind.
            store
                .put_workflow(wf("01-a", "lb-install", S::Succeeded), Vec::new(), None)
                .await
                .unwrap();
            assert_eq!(
                store.latest_workflow("lb-install").unwrap().unwrap().id,
                "03-c"
            );
            // Ending leaves the active index.
            store
                .put_workflow(wf("02-b", "lb-remove", S::Cancelled), Vec::new(), None)
                .await
                .unwrap();
            assert_eq!(ids(store.active_workflows().unwrap()), ["03-c"]);
            assert!(store.latest_workflow("hosts").unwrap().is_none());
        }
        // A store whose indexes are missing or stale (written by an older build): rebuilt.
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.delete_table(ACTIVE_WORKFLOWS).unwrap();
            {
                let mut l = txn.open_table(LATEST_WORKFLOWS).unwrap();
                l.insert("schema-add", "00-stale").unwrap();
            }
            txn.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(ids(store.active_workflows().unwrap()), ["03-c"]);
        assert_eq!(
            store.latest_workflow("schema-add").unwrap().unwrap().id,
            "04-d"
        );
        assert_eq!(store.workflows().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn grouped_writes_commit_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path).unwrap();
            let mut handles = Vec::new();
            for i in 0..50 {
                let s = store.clone();
                handles.push(tokio::spawn(async move {
                    s.create_operator(
                        op_rec(&format!("op{i:02}")),
                        format!("fp{i}"),
                        pr(&format!("op{i:02}")),
                        None,
                    )
                    .await
                }));
            }
            for h in handles {
                assert!(h.await.unwrap().unwrap());
            }
        }
        let store = Store::open(&path).unwrap();
        let all = store.operators().unwrap();
        assert_eq!(all.len(), 50);
        assert_eq!(all[7].name, "op07");
        assert_eq!(store.principals().unwrap().len(), 50);
    }

    #[test]
    fn a_failing_write_is_rolled_back_alone_and_its_group_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // Block the writer so that everything below lands in one group.
        let (gate_tx, gate_rx) = std_mpsc::channel::<()>();
        let gate = std::sync::Mutex::new(Some(gate_rx));
        let blocker = store.submit(move |_| {
            if let Some(rx) = gate.lock().unwrap().take() {
                let _ = rx.recv();
            }
            Ok(())
        });
        let good1 = store.append_audit(AuditEntry {
            action: "good1".into(),
            ..Default::default()
        });
        // Writes a row, then fails: its row must not be committed.
        let bad = store.submit(|txn| {
            append_audit_in(
                txn,
                &AuditEntry {
                    action: "bad".into(),
                    ..Default::default()
                },
            )?;
            Err::<(), _>(StoreError::Closed)
        });
        let good2 = store.append_audit(AuditEntry {
            action: "good2".into(),
            ..Default::default()
        });
        gate_tx.send(()).unwrap();
        rt.block_on(async {
            blocker.await.unwrap();
            good1.await.unwrap();
            assert!(matches!(bad.await, Err(StoreError::Closed)));
            good2.await.unwrap();
        });
        let rows: Vec<String> = store
            .audit_tail(10)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(rows, ["good1", "good2"]);
    }

    #[tokio::test]
    async fn create_operator_checks_existence_in_its_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let a = store.create_operator(op_rec("x"), "f1".into(), pr("x"), None);
        let b = store.create_operator(op_rec("x"), "f2".into(), pr("x"), None);
        let (a, b) = tokio::join!(a, b);
        assert_ne!(a.unwrap(), b.unwrap(), "exactly one create succeeds");
        assert_eq!(store.principals().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn sweep_deletes_old_rows_and_keeps_the_file_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        let limits = SweepLimits {
            audit_before_ms: 0,
            audit_max_rows: 1000,
            jobs_before_ms: 0,
            tokens_expired_before_unix: 0,
            batch: 100_000,
        };
        let mut sizes = Vec::new();
        for round in 0..6 {
            let mut futs = Vec::new();
            for i in 0..2000 {
                // Routine rows (the ones trimmed by count), each from its own source.
                futs.push(store.append_audit(AuditEntry {
                    who: crate::audit::UNAUTHENTICATED.into(),
                    action: "node.enroll".into(),
                    target: format!("10.{round}.{}.{}", i / 250, i % 250),
                    detail: format!("{round}-{i} {}", "x".repeat(200)),
                    ..Default::default()
                }));
            }
            for f in futs {
                f.await.unwrap();
            }
            store.sweep(limits).await.unwrap();
            assert_eq!(store.audit_len().unwrap(), 1000);
            sizes.push(Store::file_size(&path));
        }
        // After the first rounds the file stops growing.
        assert!(sizes[5] <= sizes[2] * 2, "{sizes:?}");
    }

    #[tokio::test]
    async fn sweep_deletes_finished_jobs_with_their_logs_and_expired_tokens_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let job = |id: &str, state: JobState, finished: u64| JobRecord {
            id: id.into(),
            state: state as i32,
            finished_unix_ms: finished,
            ..Default::default()
        };
        let logs = vec![(1, "a".to_string()), (2, "b".to_string())];
        store
            .put_job(job("old", JobState::Succeeded, 1_000), logs.clone(), None)
            .await
            .unwrap();
        store
            .put_job(job("new", JobState::Failed, 9_000), logs.clone(), None)
            .await
            .unwrap();
        store
            .put_job(job("running", JobState::Running, 0), logs, None)
            .await
            .unwrap();
        for (id, expires) in [("t-old", 10), ("t-new", 100)] {
            let rec = TokenRecord {
                id: id.into(),
                expires_unix: expires,
                ..Default::default()
            };
            store
                .create_token(rec, AuditEntry::default())
                .await
                .unwrap();
        }
        let swept = store
            .sweep(SweepLimits {
                audit_before_ms: 0,
                audit_max_rows: u64::MAX,
                jobs_before_ms: 5_000,
                tokens_expired_before_unix: 50,
                batch: 100,
            })
            .await
            .unwrap();
        assert_eq!(
            swept,
            Swept {
                audit: 0,
                jobs: 1,
                job_logs: 2,
                tokens: 1
            }
        );
        assert!(store.job("old").unwrap().is_none());
        assert!(store.job_logs_after("old", 0, 10).unwrap().is_empty());
        assert_eq!(store.job_logs_after("new", 0, 10).unwrap().len(), 2);
        assert!(store.job("running").unwrap().is_some());
        assert!(store.token("t-old").unwrap().is_none());
        assert!(store.token("t-new").unwrap().is_some());
    }

    /// The storage engine is the store's concern only (this file and `store/`).
    #[test]
    fn redb_is_used_only_in_the_store() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = Vec::new();
        let mut dirs = vec![src];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    if !p.ends_with("src/store") {
                        dirs.push(p);
                    }
                } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("src/store.rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    if text.contains("redb::") || text.contains("use redb") {
                        offenders.push(p.display().to_string());
                    }
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "redb used outside the store: {offenders:?}"
        );
    }
}
