//! Migrations of the store between record formats.
//!
//! The store records the version of its formats (`meta["schema"]`, [`SCHEMA`]), read without
//! writing to the file. At open, a file written with an older version that has a migration path
//! is first copied beside itself (`<file>.schema-<N>.<unix seconds>.bak`, its path logged before
//! the migration; see [`backup_if_needed`]), then each migration from N up runs in the
//! open's write transaction, which also records the new version: the file is migrated whole or
//! not at all. A newer version, or an older one without a path (the record format before
//! schema 2), is refused.

use super::{META, Result, SCHEMA, StoreError};
use redb::{
    Database, DatabaseError, ReadOnlyDatabase, ReadableDatabase, ReadableTable, TableError,
    WriteTransaction,
};
use std::path::{Path, PathBuf};

struct Migration {
    /// The version it migrates from (to the next one).
    from: u64,
    what: &'static str,
    run: fn(&WriteTransaction) -> Result<()>,
}

const MIGRATIONS: &[Migration] = &[Migration {
    from: 2,
    what: "workflow indexes (not ended; newest of each kind) built from the records; from \
           schema 3 on every change keeps them and they are no longer rebuilt at every start",
    run: super::workflows::index_workflows,
}];

fn migratable(from: u64) -> bool {
    from < SCHEMA && (from..SCHEMA).all(|v| MIGRATIONS.iter().any(|m| m.from == v))
}

/// The version recorded in a store (None: no version in it).
fn version_in(db: &impl ReadableDatabase) -> Result<Option<u64>> {
    let txn = db.begin_read()?;
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(meta.get("schema")?.map(|v| v.value()))
}

/// The version recorded in an existing store file, read without writing to it: `Ok(None)` when
/// the file was not closed cleanly (redb repairs such a file when it opens it for writing, so
/// reading it here would change it).
fn recorded(path: &Path) -> Result<Option<Option<u64>>> {
    match ReadOnlyDatabase::open(path) {
        Ok(db) => Ok(Some(version_in(&db)?)),
        Err(DatabaseError::RepairAborted) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `<store file><suffix>` beside it.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// A complete copy of the store at version `from` made by an earlier start (a copy gets its
/// final name only once it is complete and on disk): the newest one.
fn existing_backup(path: &Path, from: u64) -> Option<PathBuf> {
    let prefix = beside(path, &format!(".schema-{from}."));
    let prefix = prefix.file_name()?.to_str()?.to_string();
    std::fs::read_dir(dir_of(path))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix) && n.ends_with(".bak"))
        .max_by_key(|n| {
            n[prefix.len()..n.len() - 4]
                .parse::<u64>()
                .unwrap_or_default()
        })
        .map(|n| path.with_file_name(n))
}

/// Copies a file and flushes the copy to disk.
type CopyFn = dyn Fn(&Path, &Path) -> std::io::Result<()>;

fn copy_synced(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::copy(from, to)?;
    std::fs::File::open(to)?.sync_all()
}

/// Before the store is opened for writing: a copy of a file about to be migrated, with the
/// version it had. Nothing writes to the store file before the copy exists. The copy is made
/// under a temporary name in the store's directory, flushed, then renamed and the directory
/// flushed; a copy that fails (a full disk) is removed and the store is not opened. A complete
/// copy of the same version left by an earlier start (a service that fails and is restarted)
/// is used again rather than copied once more.
pub(super) fn backup_if_needed(path: &Path) -> Result<Option<(PathBuf, u64)>> {
    backup_with(path, &copy_synced)
}

fn backup_with(path: &Path, copy: &CopyFn) -> Result<Option<(PathBuf, u64)>> {
    if !path.exists() {
        return Ok(None);
    }
    let tmp = beside(path, ".backup.tmp");
    let failed = |error: std::io::Error| {
        let _ = std::fs::remove_file(&tmp);
        StoreError::Backup {
            path: tmp.clone(),
            error,
        }
    };
    // A partial copy of an earlier start that did not finish.
    let _ = std::fs::remove_file(&tmp);
    let from = match recorded(path)? {
        Some(v) => {
            let Some(from) = v.filter(|&v| migratable(v)) else {
                return Ok(None);
            };
            if let Some(kept) = existing_backup(path, from) {
                return Ok(Some(reused(kept, from)));
            }
            copy(path, &tmp).map_err(failed)?;
            from
        }
        None => {
            // Not closed cleanly: its version is read from the copy, which opening repairs.
            copy(path, &tmp).map_err(failed)?;
            let v = Database::open(&tmp)
                .map_err(StoreError::from)
                .and_then(|db| version_in(&db));
            let v = match v {
                Ok(v) => v,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            };
            let Some(from) = v.filter(|&v| migratable(v)) else {
                let _ = std::fs::remove_file(&tmp);
                return Ok(None);
            };
            if let Some(kept) = existing_backup(path, from) {
                let _ = std::fs::remove_file(&tmp);
                return Ok(Some(reused(kept, from)));
            }
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(failed)?;
            from
        }
    };
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let copy = beside(path, &format!(".schema-{from}.{secs}.bak"));
    std::fs::rename(&tmp, &copy)
        .and_then(|()| std::fs::File::open(dir_of(path))?.sync_all())
        .map_err(failed)?;
    tracing::warn!(
        from,
        to = SCHEMA,
        copy = %copy.display(),
        "store to be migrated; its file was copied first"
    );
    Ok(Some((copy, from)))
}

fn reused(kept: PathBuf, from: u64) -> (PathBuf, u64) {
    tracing::warn!(
        from,
        to = SCHEMA,
        copy = %kept.display(),
        "store to be migrated; the copy an earlier start made of its file is kept"
    );
    (kept, from)
}

/// Checks the recorded version in the open's transaction and migrates an older store
/// (`fresh`: the store holds nothing yet, so it gets the current version).
pub(super) fn settle(txn: &WriteTransaction, fresh: bool) -> Result<()> {
    let found = txn.open_table(META)?.get("schema")?.map(|v| v.value());
    match found {
        Some(SCHEMA) => return Ok(()),
        None if fresh => {}
        Some(v) if migratable(v) => {
            for m in MIGRATIONS.iter().filter(|m| m.from >= v) {
                tracing::info!(
                    from = m.from,
                    to = m.from + 1,
                    what = m.what,
                    "store migration"
                );
                (m.run)(txn)?;
            }
        }
        None => return Err(StoreError::Schema { found: 1 }),
        Some(found) => return Err(StoreError::Schema { found }),
    }
    txn.open_table(META)?.insert("schema", SCHEMA)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;

    /// A store file written by the release whose formats were schema 2 (two workflows, one
    /// running; an operator).
    const SCHEMA2: &[u8] = include_bytes!("fixtures/schema2.redb");

    #[test]
    fn a_schema_2_store_is_copied_then_migrated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.redb");
        std::fs::write(&path, SCHEMA2).expect("write");
        assert_eq!(recorded(&path).expect("read"), Some(Some(2)));
        let store = Store::open(&path).expect("open");
        assert_eq!(recorded_in(&store), Some(SCHEMA));
        let ids: Vec<String> = store
            .active_workflows()
            .expect("active")
            .into_iter()
            .map(|w| w.id)
            .collect();
        assert_eq!(ids, ["02-b"]);
        assert_eq!(store.workflows().expect("all").len(), 2);
        assert!(store.operator("admin").expect("operator").is_some());
        drop(store);
        let copies: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.to_string_lossy().contains(".schema-2."))
            .collect();
        assert_eq!(copies.len(), 1, "{copies:?}");
        // The copy is the store as it was: schema 2, its records there.
        assert_eq!(recorded(&copies[0]).expect("copy"), Some(Some(2)));
        // Opened again: nothing more to migrate, no second copy.
        Store::open(&path).expect("reopen");
        let n = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(n, 2);
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_copy_is_the_untouched_file_and_a_later_start_keeps_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.redb");
        std::fs::write(&path, SCHEMA2).expect("write");
        let (copy, from) = backup_if_needed(&path).expect("backup").expect("a copy");
        assert_eq!(from, 2);
        // Nothing wrote to the store before it was copied: both are the file as it was.
        assert!(
            std::fs::read(&path).expect("store") == SCHEMA2,
            "the store was written"
        );
        assert!(
            std::fs::read(&copy).expect("copy") == SCHEMA2,
            "the copy differs"
        );
        // A start whose migration fails (the service restarted after it): the file is opened
        // for writing and nothing is committed.
        {
            let db = Database::create(&path).expect("db");
            let txn = db.begin_write().expect("txn");
            txn.open_table(META).expect("meta");
            txn.abort().expect("abort");
        }
        let (again, _) = backup_if_needed(&path).expect("backup").expect("a copy");
        assert_eq!(again, copy);
        assert!(
            std::fs::read(&copy).expect("copy") == SCHEMA2,
            "copied again"
        );
        assert_eq!(files_in(dir.path()).len(), 2, "{:?}", files_in(dir.path()));
    }

    #[test]
    fn a_file_not_closed_cleanly_is_copied_before_it_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let crashed = dir.path().join("crashed.redb");
        std::fs::write(&crashed, SCHEMA2).expect("write");
        let db = Database::create(&crashed).expect("db");
        let txn = db.begin_write().expect("txn");
        txn.open_table(META)
            .expect("meta")
            .insert("crash", 1)
            .expect("insert");
        txn.commit().expect("commit");
        // The process ends without closing it (the file as a crash leaves it).
        std::mem::forget(db);
        let path = dir.path().join("store.redb");
        std::fs::copy(&crashed, &path).expect("copy");
        let unclean = std::fs::read(&path).expect("read");
        assert_eq!(recorded(&path).expect("read"), None, "closed cleanly");
        let (copy, from) = backup_if_needed(&path).expect("backup").expect("a copy");
        assert_eq!(from, 2);
        assert_eq!(
            std::fs::read(&path).expect("store"),
            unclean,
            "store written"
        );
        assert_eq!(recorded(&copy).expect("copy"), Some(Some(2)));
        assert!(!beside(&path, ".backup.tmp").exists());
    }

    #[test]
    fn a_copy_that_fails_leaves_nothing_and_the_store_is_not_migrated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.redb");
        std::fs::write(&path, SCHEMA2).expect("write");
        let disk_full = |from: &Path, to: &Path| -> std::io::Result<()> {
            let bytes = std::fs::read(from)?;
            std::fs::write(to, &bytes[..bytes.len() / 2])?;
            Err(std::io::Error::from_raw_os_error(28))
        };
        let err = backup_with(&path, &disk_full).expect_err("refused");
        assert!(matches!(err, StoreError::Backup { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("disk full") && msg.contains("not migrated"),
            "{msg}"
        );
        assert_eq!(files_in(dir.path()), ["store.redb"]);
        assert!(
            std::fs::read(&path).expect("store") == SCHEMA2,
            "the store was written"
        );
    }

    #[test]
    fn versions_without_a_path_are_refused() {
        assert!(!migratable(1));
        assert!(!migratable(SCHEMA));
        assert!(!migratable(SCHEMA + 1));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.redb");
        drop(Store::open(&path).expect("new"));
        {
            let db = Database::create(&path).expect("db");
            let txn = db.begin_write().expect("txn");
            txn.open_table(META)
                .expect("meta")
                .insert("schema", SCHEMA + 1)
                .expect("insert");
            txn.commit().expect("commit");
        }
        match Store::open(&path) {
            Err(StoreError::Schema { found }) => assert_eq!(found, SCHEMA + 1),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    fn recorded_in(store: &Store) -> Option<u64> {
        store
            .read(|txn| Ok(txn.open_table(META)?.get("schema")?.map(|v| v.value())))
            .expect("meta")
    }
}
