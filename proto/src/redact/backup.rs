//! Debug of the backup messages that carry secrets (see `build.rs`'s `skip_debug`).

use super::Redacted;
use crate::v1;

impl std::fmt::Debug for v1::BackupChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupChunk")
            .field("backup_id", &self.backup_id)
            .field("size", &self.size)
            .field("sha256", &self.sha256)
            .field("data", &Redacted(self.data.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_never_prints_its_data() {
        let c = v1::BackupChunk {
            backup_id: "b".into(),
            data: b"ldapPass=hunter2".to_vec(),
            ..Default::default()
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("16 bytes"), "{shown}");
    }
}
