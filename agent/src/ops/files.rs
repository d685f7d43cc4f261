//! read-file / write-file, confined to the managed allow-list under the agent's root.
//!
//! Lexical checks (absolute, no `..`, allow-listed) come first. Then every step is done on
//! handles (`clustermgr_shared::safefs`): the agent's root is opened, the managed prefix the path
//! is under is opened below it, and the file's directory below that, never following a symbolic
//! link (so a link in one managed prefix can lead neither outside nor into another prefix), and
//! with no path looked up twice. Reads take only regular files, capped at [`MAX_FILE_BYTES`].
//! Writes go through a random `O_EXCL|O_NOFOLLOW` temporary file and `renameat`, and keep the
//! replaced file's mode, owner and group unless the request sets them.

use super::ids::{self, Db};
use super::{Ctx, Log, OpError};
use clustermgr_proto::{ReadFileOutput, WriteFile, WriteFileOutput};
use clustermgr_shared::MAX_FILE_BYTES;
use clustermgr_shared::paths::{PathError, check_managed, normalize};
use clustermgr_shared::safefs::{self, FilePerms, SafeFsError};
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// setuid, setgid and sticky bits.
const SETID_BITS: u32 = 0o7000;
/// Mode of a new file when the request gives none.
const NEW_FILE_MODE: u32 = 0o644;

/// Where a requested path lives: the directory to open below the root, in two steps (the managed
/// prefix, or its parent when the prefix is a file, then the rest), and the file name.
#[derive(Debug)]
struct Location {
    root: PathBuf,
    /// Relative to the root: the managed prefix (or its parent when the path is the prefix).
    anchor: PathBuf,
    /// Relative to the anchor: the file's directory.
    below: PathBuf,
    name: OsString,
}

impl Location {
    fn new(ctx: &Ctx, path: &str) -> Result<Self, OpError> {
        let node_path = check_managed(path, &ctx.managed)?;
        // The most specific managed prefix the path is under.
        let prefix = ctx
            .managed
            .iter()
            .filter_map(|m| normalize(m).ok())
            .filter(|m| m != Path::new("/") && node_path.starts_with(m))
            .max_by_key(|m| m.components().count())
            .ok_or_else(|| PathError::NotManaged(path.into()))?;
        let name = node_path
            .file_name()
            .ok_or_else(|| OpError(format!("{path}: has no file name")))?
            .to_os_string();
        let dir = node_path
            .parent()
            .ok_or_else(|| OpError(format!("{path}: has no parent directory")))?;
        let anchor = if node_path == prefix {
            dir.to_path_buf()
        } else {
            prefix
        };
        let below = dir
            .strip_prefix(&anchor)
            .map_err(|_| PathError::NotManaged(path.into()))?
            .to_path_buf();
        let anchor = anchor
            .strip_prefix("/")
            .map_err(|_| PathError::NotAbsolute(path.into()))?
            .to_path_buf();
        Ok(Self {
            root: ctx.root().clone(),
            anchor,
            below,
            name,
        })
    }

    /// The handle of the file's directory; with `create`, missing directories are made.
    fn open_dir(&self, create: bool) -> Result<OwnedFd, SafeFsError> {
        let root = safefs::open_dir(&self.root)?;
        let anchor = safefs::open_dir_beneath(&root, &self.anchor, create)?;
        safefs::open_dir_beneath(&anchor, &self.below, create)
    }
}

fn fs_err(path: &str, e: SafeFsError) -> OpError {
    match e {
        SafeFsError::Chown {
            uid,
            gid,
            errno: nix::errno::Errno::EPERM,
            ..
        } => {
            let me = nix::unistd::geteuid();
            OpError(format!(
                "{path}: cannot set owner {uid} and group {gid}: operation not permitted \
                 (the agent runs as uid {me}{})",
                if me.is_root() { "" } else { ", not root" }
            ))
        }
        e => OpError(format!("{path}: {e}")),
    }
}

async fn blocking<T: Send + 'static>(
    path: &str,
    f: impl FnOnce() -> Result<T, OpError> + Send + 'static,
) -> Result<T, OpError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OpError(format!("{path}: {e}")))?
}

pub async fn read(ctx: &Ctx, path: &str, log: &mut Log) -> Result<ReadFileOutput, OpError> {
    let loc = Location::new(ctx, path)?;
    let p = path.to_string();
    let (content, st) = blocking(path, move || {
        let dir = loc.open_dir(false).map_err(|e| fs_err(&p, e))?;
        safefs::read_regular(&dir, &loc.name, MAX_FILE_BYTES as u64).map_err(|e| fs_err(&p, e))
    })
    .await?;
    // The digest travels next to the content only (which is never persisted); it is not logged.
    log.line(format!("read {path} ({} bytes)", content.len()));
    Ok(ReadFileOutput {
        size: content.len() as u64,
        mode: st.st_mode & 0o7777,
        sha256: hex::encode(Sha256::digest(&content)),
        content,
    })
}

/// What a write did, for the log line and the output.
struct Written {
    changed: bool,
    perms: FilePerms,
}

fn refuse_setid(path: &str, mode: u32, kept: bool) -> Result<(), OpError> {
    if mode & SETID_BITS == 0 {
        return Ok(());
    }
    Err(OpError(if kept {
        format!(
            "{path}: the existing file has mode {mode:04o} (setuid, setgid or sticky bits); \
             allow them explicitly to keep them, or give a mode without them"
        )
    } else {
        format!(
            "{path}: mode {mode:04o} has setuid, setgid or sticky bits; they are refused unless \
             allowed explicitly"
        )
    }))
}

/// What is there now, through a handle (a link, FIFO or device is refused here): its status,
/// and whether its content is `content` (read only when it could be equal, to tell whether
/// anything changes). None when nothing is there.
fn what_is_there(
    dir: &OwnedFd,
    name: &std::ffi::OsStr,
    content: &[u8],
) -> Result<Option<(bool, nix::sys::stat::FileStat)>, SafeFsError> {
    if safefs::stat_entry(dir, name)?.is_none() {
        return Ok(None);
    }
    let (file, st) = safefs::open_regular(dir, name)?;
    let size = content.len() as u64;
    let same_content = if u64::try_from(st.st_size).is_ok_and(|s| s == size) {
        match safefs::read_to_limit(file, &st, name, size) {
            Ok(c) => c == content,
            Err(SafeFsError::TooLarge { .. }) => false,
            Err(e) => return Err(e),
        }
    } else {
        false
    };
    Ok(Some((same_content, st)))
}

pub async fn write(ctx: &Ctx, req: WriteFile, log: &mut Log) -> Result<WriteFileOutput, OpError> {
    let WriteFile {
        path,
        content,
        mode,
        owner,
        group,
        allow_setid,
    } = req;
    let path = path.as_str();
    if content.len() > MAX_FILE_BYTES {
        return Err(OpError(format!(
            "content is {} bytes; the limit is {MAX_FILE_BYTES}",
            content.len()
        )));
    }
    if mode > 0o7777 {
        return Err(OpError(format!(
            "{path}: mode {mode:o} is not a permission mode (07777 at most)"
        )));
    }
    if !allow_setid {
        refuse_setid(path, mode, false)?;
    }
    let uid = ids::resolve(ctx.root(), Db::Passwd, &owner)?;
    let gid = ids::resolve(ctx.root(), Db::Group, &group)?;
    let loc = Location::new(ctx, path)?;
    let size = content.len() as u64;
    let p = path.to_string();
    let done = blocking(path, move || {
        let err = |e| fs_err(&p, e);
        let dir = loc.open_dir(true).map_err(err)?;
        let old = what_is_there(&dir, &loc.name, &content).map_err(err)?;
        let old_stat = old.as_ref().map(|(_, st)| st);
        let perms = FilePerms {
            mode: match (mode, old_stat) {
                (0, Some(st)) => st.st_mode & 0o7777,
                (0, None) => NEW_FILE_MODE,
                (m, _) => m,
            },
            uid: uid.or(old_stat.map(|st| st.st_uid)),
            gid: gid.or(old_stat.map(|st| st.st_gid)),
        };
        if !allow_setid {
            refuse_setid(&p, perms.mode, mode == 0)?;
        }
        let unchanged = old.as_ref().is_some_and(|(same_content, st)| {
            *same_content
                && st.st_mode & 0o7777 == perms.mode
                && Some(st.st_uid) == perms.uid
                && Some(st.st_gid) == perms.gid
        });
        if unchanged {
            return Ok(Written {
                changed: false,
                perms,
            });
        }
        let me = nix::unistd::geteuid();
        if let Some(u) = perms.uid.filter(|u| !me.is_root() && *u != me.as_raw()) {
            return Err(OpError(format!(
                "{p}: the file must be owned by uid {u}, and only root can give a file to \
                 another user (the agent runs as uid {me}, not root)"
            )));
        }
        safefs::replace_file(&dir, &loc.name, &content, perms).map_err(err)?;
        Ok(Written {
            changed: true,
            perms,
        })
    })
    .await?;
    let show = |id: Option<u32>| id.map_or("-".to_string(), |i| i.to_string());
    let owner = match (done.perms.uid, done.perms.gid) {
        (None, None) => String::new(),
        (u, g) => format!(", owner {}:{}", show(u), show(g)),
    };
    log.line(format!(
        "{} {path} ({size} bytes, mode {:04o}{owner})",
        if done.changed { "wrote" } else { "unchanged" },
        done.perms.mode,
    ));
    Ok(WriteFileOutput {
        size,
        changed: done.changed,
    })
}

#[cfg(test)]
mod tests;
