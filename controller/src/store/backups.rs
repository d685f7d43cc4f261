//! The index of the backups the controller holds: one row per backup id, the `BackupInfo`
//! record (no secret: names, times, sizes and digests). The archives themselves are files
//! (`crate::backup`). A second table holds the archives received whose workflow has not
//! recorded them yet (id, node, digest, size, time of receipt), so that a restart between an
//! upload and its workflow's end loses nothing. The tables are created by their first write;
//! reading before that finds none.

use super::{Result, Store};
use clustermgr_proto::BackupInfo;
use prost::Message;
use redb::TableDefinition;

const BACKUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("backups");
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("backup_uploads");

impl Store {
    /// Every backup in the index, in no particular order.
    pub fn backups(&self) -> Result<Vec<BackupInfo>> {
        Ok(self
            .all_msgs(BACKUPS)?
            .into_iter()
            .map(|(_, b)| b)
            .collect())
    }

    /// Every archive received and not recorded yet, in no particular order.
    pub fn backup_uploads(&self) -> Result<Vec<BackupInfo>> {
        Ok(self
            .all_msgs(UPLOADS)?
            .into_iter()
            .map(|(_, b)| b)
            .collect())
    }

    /// Notes an archive received (replacing an earlier upload of the same id).
    pub async fn put_backup_upload(&self, rec: BackupInfo) -> Result<()> {
        self.submit(move |txn| {
            let mut t = txn.open_table(UPLOADS)?;
            t.insert(rec.id.as_str(), rec.encode_to_vec().as_slice())?;
            Ok(())
        })
        .await
    }

    /// Forgets received archives that will not be recorded.
    pub async fn forget_backup_uploads(&self, ids: Vec<String>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.submit(move |txn| {
            let mut t = txn.open_table(UPLOADS)?;
            for id in &ids {
                t.remove(id.as_str())?;
            }
            Ok(())
        })
        .await
    }

    /// Adds `rec` to the index, forgets its upload, and removes the backups `retire` names
    /// (the retention), in one transaction.
    pub async fn put_backup(&self, rec: BackupInfo, retire: Vec<String>) -> Result<()> {
        self.submit(move |txn| {
            let mut t = txn.open_table(BACKUPS)?;
            t.insert(rec.id.as_str(), rec.encode_to_vec().as_slice())?;
            for id in &retire {
                t.remove(id.as_str())?;
            }
            txn.open_table(UPLOADS)?.remove(rec.id.as_str())?;
            Ok(())
        })
        .await
    }
}
