//! The index of the backups the controller holds: one row per backup id, the `BackupInfo`
//! record (no secret: names, times, sizes and digests). The archives themselves are files
//! (`crate::backup`). The table is created by the first write; reading before that finds none.

use super::{Result, Store};
use clustermgr_proto::BackupInfo;
use prost::Message;
use redb::TableDefinition;

const BACKUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("backups");

impl Store {
    /// Every backup in the index, in no particular order.
    pub fn backups(&self) -> Result<Vec<BackupInfo>> {
        Ok(self
            .all_msgs(BACKUPS)?
            .into_iter()
            .map(|(_, b)| b)
            .collect())
    }

    /// Adds `rec` and removes the backups `retire` names (the retention), in one transaction.
    pub async fn put_backup(&self, rec: BackupInfo, retire: Vec<String>) -> Result<()> {
        self.submit(move |txn| {
            let mut t = txn.open_table(BACKUPS)?;
            t.insert(rec.id.as_str(), rec.encode_to_vec().as_slice())?;
            for id in &retire {
                t.remove(id.as_str())?;
            }
            Ok(())
        })
        .await
    }
}
