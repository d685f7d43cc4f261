//! The index of the backups the controller holds: one row per backup id, the `BackupInfo`
//! record (no secret: names, times, sizes and digests). The archives themselves are files
//! (`crate::backup`). The table is created by the first write; reading before that finds none.

use super::{Result, Store, decode};
use clustermgr_proto::BackupInfo;
use prost::Message;
use redb::{ReadableTable, TableDefinition, TableError, TableHandle};

const BACKUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("backups");

impl Store {
    /// Every backup in the index, in no particular order.
    pub fn backups(&self) -> Result<Vec<BackupInfo>> {
        self.read(|txn| {
            let t = match txn.open_table(BACKUPS) {
                Ok(t) => t,
                Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for row in t.iter()? {
                let (_, v) = row?;
                out.push(decode(BACKUPS.name(), v.value())?);
            }
            Ok(out)
        })
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
