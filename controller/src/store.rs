//! The controller's embedded store. redb is this file's concern only: the rest of the controller
//! sees typed methods on [`Store`].
//!
//! Writes go through one writer thread that groups whatever is queued into a single transaction
//! (group commit): each `write` returns only after its transaction is durably committed, yet a
//! burst of writes costs one fsync. A write closure must not fail for domain reasons (return
//! them inside `T`): a storage error aborts the whole group.

use prost::Message;
use redb::{
    Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle, WriteTransaction,
};
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

pub const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
pub const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
pub const PRINCIPALS: TableDefinition<&str, &[u8]> = TableDefinition::new("principals");
pub const OPERATORS: TableDefinition<&str, &[u8]> = TableDefinition::new("operators");
pub const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
pub const JOB_LOGS: TableDefinition<(&str, u64), &str> = TableDefinition::new("job_logs");
pub const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store error: {0}")]
    Redb(#[from] redb::Error),
    #[error("corrupt record in table {table}: {msg}")]
    Decode { table: String, msg: String },
    #[error("the store is closed")]
    Closed,
    #[error("transaction aborted: another write in the same group failed")]
    GroupAborted,
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

type Finish = Box<dyn FnOnce(Result<()>) + Send>;
type WriteOp = Box<dyn FnOnce(Option<&WriteTransaction>) -> (bool, Finish) + Send>;

#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    writer: std_mpsc::Sender<WriteOp>,
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
        if let Ok(mut t) = self.thread.lock()
            && let Some(t) = t.take()
        {
            let _ = t.join();
        }
    }
}

impl Store {
    /// Opens (creating if needed) the store file and starts the writer thread.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Arc::new(Database::create(path)?);
        {
            let txn = db.begin_write()?;
            txn.open_table(NODES)?;
            txn.open_table(TOKENS)?;
            txn.open_table(PRINCIPALS)?;
            txn.open_table(OPERATORS)?;
            txn.open_table(JOBS)?;
            txn.open_table(JOB_LOGS)?;
            txn.open_table(AUDIT)?;
            txn.commit()?;
        }
        let (tx, rx) = std_mpsc::channel::<WriteOp>();
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

    /// Runs `f` in a write transaction (grouped with concurrent writes) and returns once the
    /// transaction is durably committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let op: WriteOp = Box::new(move |txn| match txn {
            None => (
                false,
                Box::new(move |r: Result<()>| {
                    let _ = tx.send(r.and(Err(StoreError::GroupAborted)));
                }),
            ),
            Some(txn) => {
                let out = f(txn);
                let ok = out.is_ok();
                (
                    ok,
                    Box::new(move |r: Result<()>| {
                        let _ = tx.send(r.and(out));
                    }),
                )
            }
        });
        self.writer.send(op).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` in a read transaction (a consistent snapshot).
    pub fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T>) -> Result<T> {
        let txn = self.db.begin_read()?;
        f(&txn)
    }

    /// Decodes one protobuf record.
    pub fn get_msg<M: Message + Default>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<M>> {
        self.read(|txn| {
            let t = txn.open_table(table)?;
            match t.get(key)? {
                Some(v) => Ok(Some(decode(table.name(), v.value())?)),
                None => Ok(None),
            }
        })
    }

    /// Decodes every record of a table, in key order.
    pub fn all_msgs<M: Message + Default>(
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

    /// Inserts one protobuf record.
    pub async fn put_msg<M: Message + 'static>(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        key: String,
        msg: M,
    ) -> Result<()> {
        self.write(move |txn| {
            txn.open_table(table)?
                .insert(key.as_str(), msg.encode_to_vec().as_slice())?;
            Ok(())
        })
        .await
    }
}

/// Deletes every certificate fingerprint issued to a principal (`kind` node|operator) inside
/// a write transaction; returns how many were removed.
pub fn purge_principals(txn: &WriteTransaction, kind: &str, id: &str) -> Result<usize> {
    let mut t = txn.open_table(PRINCIPALS)?;
    let mut fps = Vec::new();
    for row in t.iter()? {
        let (k, v) = row?;
        let rec: clustermgr_proto::PrincipalRecord = decode("principals", v.value())?;
        if rec.kind == kind && rec.id == id {
            fps.push(k.value().to_string());
        }
    }
    for fp in &fps {
        t.remove(fp.as_str())?;
    }
    Ok(fps.len())
}

pub fn decode<M: Message + Default>(table: &str, bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(|e| StoreError::Decode {
        table: table.to_string(),
        msg: e.to_string(),
    })
}

fn writer_loop(db: &Database, rx: &std_mpsc::Receiver<WriteOp>) {
    const MAX_GROUP: usize = 512;
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let txn = match db.begin_write() {
            Ok(t) => t,
            Err(e) => {
                let msg = e.to_string();
                for op in ops {
                    let (_, finish) = op(None);
                    finish(Err(StoreError::Redb(redb::Error::Io(
                        std::io::Error::other(msg.clone()),
                    ))));
                }
                continue;
            }
        };
        let mut finishes = Vec::with_capacity(ops.len());
        let mut all_ok = true;
        for op in ops {
            let (ok, finish) = op(Some(&txn));
            all_ok &= ok;
            finishes.push(finish);
        }
        let result: Result<()> = if all_ok {
            txn.commit().map_err(StoreError::from)
        } else {
            let _ = txn.abort();
            Err(StoreError::GroupAborted)
        };
        match result {
            Ok(()) => finishes.into_iter().for_each(|f| f(Ok(()))),
            Err(e) => {
                let msg = e.to_string();
                for f in finishes {
                    f(Err(StoreError::Redb(redb::Error::Io(
                        std::io::Error::other(msg.clone()),
                    ))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clustermgr_proto::OperatorRecord;

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
                    let rec = OperatorRecord {
                        name: format!("op{i}"),
                        ..Default::default()
                    };
                    s.put_msg(OPERATORS, format!("op{i:02}"), rec).await
                }));
            }
            for h in handles {
                h.await.unwrap().unwrap();
            }
        }
        let store = Store::open(&path).unwrap();
        let all: Vec<(String, OperatorRecord)> = store.all_msgs(OPERATORS).unwrap();
        assert_eq!(all.len(), 50);
        assert_eq!(all[7].1.name, "op7");
    }

    #[tokio::test]
    async fn failing_write_aborts_its_group_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let r: Result<()> = store.write(|_| Err(StoreError::Closed)).await;
        assert!(r.is_err());
        store
            .put_msg(OPERATORS, "a".into(), OperatorRecord::default())
            .await
            .unwrap();
    }
}
