//! What a relayed state may set on this node. The sender is another node: its owner, group and
//! mode are requests, not orders.
//! - Owner and group: the one the node's file already has, or a name the operator allowed
//!   (`fsrep owners`); anything else keeps the file's own (a new file: its directory's).
//! - Mode: setuid, setgid and sticky only where the node's file already had them; writable by
//!   others only where it already was (a new file: neither).

use super::local::Local;
use clustermgr_proto::FsrepFile;
use clustermgr_shared::safefs::FilePerms;
use nix::sys::stat::FileStat;
use std::os::fd::OwnedFd;

const SPECIAL: u32 = 0o7000;
const OTHERS_WRITE: u32 = 0o002;

/// The mode a relayed `wire` mode gives a file whose mode here is `orig` (None: a new file).
pub(super) fn safe_mode(wire: u32, orig: Option<u32>) -> u32 {
    let orig = orig.unwrap_or(0);
    let mut mode = (wire & 0o777) | (wire & orig & SPECIAL);
    if orig & OTHERS_WRITE == 0 {
        mode &= !OTHERS_WRITE;
    }
    mode
}

impl Local {
    /// The permissions to write `f` with: `existing` is the node's file (if a regular one is
    /// there), `dir` the directory it goes in.
    pub(super) fn safe_perms(
        &self,
        f: &FsrepFile,
        dir: &OwnedFd,
        existing: Option<&FileStat>,
    ) -> Result<FilePerms, String> {
        let mode = safe_mode(f.mode, existing.map(|s| s.st_mode & 0o7777));
        if !self.privileged {
            return Ok(FilePerms {
                mode,
                uid: None,
                gid: None,
            });
        }
        let (uid, gid) = match existing {
            Some(s) => (s.st_uid, s.st_gid),
            None => {
                let d = nix::sys::stat::fstat(dir).map_err(|e| e.to_string())?;
                (d.st_uid, d.st_gid)
            }
        };
        let allowed = |wire: &str, own: String| -> bool {
            !wire.is_empty()
                && ((existing.is_some() && wire == own)
                    || self.cfg.owners.iter().any(|o| o == wire))
        };
        let resolve = |db, spec: &str| -> Option<u32> {
            crate::ops::ids::resolve(&self.base, db, spec)
                .ok()
                .flatten()
        };
        let uid = if allowed(&f.owner, self.name_of_user(uid)) {
            resolve(crate::ops::ids::Db::Passwd, &f.owner).unwrap_or(uid)
        } else {
            uid
        };
        let gid = if allowed(&f.group, self.name_of_group(gid)) {
            resolve(crate::ops::ids::Db::Group, &f.group).unwrap_or(gid)
        } else {
            gid
        };
        Ok(FilePerms {
            mode,
            uid: Some(uid),
            gid: Some(gid),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_bits_and_writable_by_others_only_where_the_file_had_them() {
        // The attack: 01777 from the wire.
        assert_eq!(safe_mode(0o1777, None), 0o775);
        assert_eq!(safe_mode(0o1777, Some(0o640)), 0o775);
        assert_eq!(safe_mode(0o6755, Some(0o755)), 0o755);
        // What the node's file had stays possible.
        assert_eq!(safe_mode(0o1777, Some(0o1777)), 0o1777);
        assert_eq!(safe_mode(0o4755, Some(0o4755)), 0o4755);
        assert_eq!(safe_mode(0o666, Some(0o666)), 0o666);
        // Ordinary modes pass.
        assert_eq!(safe_mode(0o640, Some(0o644)), 0o640);
        assert_eq!(safe_mode(0o600, None), 0o600);
    }
}
