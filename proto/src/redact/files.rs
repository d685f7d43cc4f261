//! Redacted Debug for file contents: files written to, replicated to and read from a node
//! (their content, and the digest of a read one, may be secret).

use super::Redacted;
use crate::v1;

impl std::fmt::Debug for v1::WriteFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteFile")
            .field("path", &self.path)
            .field("content", &Redacted(self.content.len()))
            .field("mode", &self.mode)
            .field("owner", &self.owner)
            .field("group", &self.group)
            .field("allow_setid", &self.allow_setid)
            .finish()
    }
}

impl std::fmt::Debug for v1::FsrepFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsrepFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("deleted", &self.deleted)
            .field("mode", &self.mode)
            .field("owner", &self.owner)
            .field("group", &self.group)
            .field("sha256", &Redacted(self.sha256.len()))
            .field("size", &self.size)
            .field("content", &Redacted(self.content.len()))
            .finish()
    }
}

impl std::fmt::Debug for v1::ReadFileOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadFileOutput")
            .field("content", &Redacted(self.content.len()))
            .field("mode", &self.mode)
            .field("size", &self.size)
            .field("sha256", &Redacted(self.sha256.len()))
            .finish()
    }
}

impl std::fmt::Debug for v1::SubmitJobResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmitJobResponse")
            .field("job", &self.job)
            .field("content", &Redacted(self.content.len()))
            .finish()
    }
}
