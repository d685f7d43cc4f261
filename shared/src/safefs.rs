//! File operations relative to directory handles that never follow symbolic links.
//!
//! A path is walked from a directory handle: `openat2` with `RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS`
//! where the kernel has it, otherwise (or to create what is missing, or to name the component in
//! the way) one `openat(O_DIRECTORY|O_NOFOLLOW)` per component, each relative to the handle of the
//! one before. Nothing is looked up by path twice, so a directory swapped for a symbolic link
//! between a check and a use cannot redirect anything.
//!
//! Files are read through a handle opened `O_NOFOLLOW|O_NONBLOCK` (a FIFO never blocks) and
//! checked on that handle (regular file, size cap), with the cap enforced again while reading.
//! Files are replaced through a temporary file with a random name created
//! `O_CREAT|O_EXCL|O_NOFOLLOW` in the target's directory handle; owner and mode are set on its
//! handle, then fsync, `renameat` within the directory handle, fsync of the directory.

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fsync, unlinkat};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// Why a handle-relative file operation was refused or failed. Each variant names the path
/// (relative to the directory handle it was resolved from) it is about.
#[derive(Debug, thiserror::Error)]
pub enum SafeFsError {
    #[error("{0} is a symbolic link (symbolic links are not followed)")]
    Symlink(String),
    #[error("{0} is not a directory")]
    NotDirectory(String),
    #[error("{0} is a directory")]
    IsDirectory(String),
    #[error("{0} is not a regular file")]
    NotRegular(String),
    #[error("{0}: no such file or directory")]
    NotFound(String),
    #[error("{0}: permission denied")]
    PermissionDenied(String),
    #[error("{0:?} is not a relative path of plain names")]
    BadPath(String),
    #[error("{name} is {size} bytes; the limit is {limit}")]
    TooLarge { name: String, size: u64, limit: u64 },
    #[error("cannot set owner {uid}:{gid} on {name}: {errno}")]
    Chown {
        name: String,
        uid: String,
        gid: String,
        errno: Errno,
    },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

impl SafeFsError {
    fn io(what: &Path, e: impl Into<io::Error>) -> Self {
        let source = e.into();
        let what = what.display().to_string();
        match source.raw_os_error().map(Errno::from_raw) {
            Some(Errno::ENOENT) => SafeFsError::NotFound(what),
            Some(Errno::EACCES | Errno::EPERM) => SafeFsError::PermissionDenied(what),
            _ => SafeFsError::Io { what, source },
        }
    }
}

/// Permission bits for new directories (before the umask).
const DIR_MODE: u32 = 0o755;

fn mode(bits: u32) -> Mode {
    Mode::from_bits_truncate(bits)
}

/// Opens a directory by path, following symbolic links: only for directories the program was
/// configured with (the agent's root, a daemon's own state directory), never for a path that
/// came in a request.
pub fn open_dir(path: &Path) -> Result<OwnedFd, SafeFsError> {
    openat(
        AT_FDCWD,
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SafeFsError::io(path, e))
}

/// The plain names of a relative path; anything else (absolute, `..`, `.`) is refused.
fn names(rel: &Path) -> Result<Vec<&OsStr>, SafeFsError> {
    rel.components()
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(SafeFsError::BadPath(rel.display().to_string())),
        })
        .collect()
}

/// A single plain file name (no slash, not `.` or `..`).
fn single_name(name: &OsStr) -> Result<(), SafeFsError> {
    let p = Path::new(name);
    match names(p)?.as_slice() {
        [one] if *one == name => Ok(()),
        _ => Err(SafeFsError::BadPath(p.display().to_string())),
    }
}

/// Opens the directory `rel` below `base` without following any symbolic link and without
/// leaving `base`. With `create`, missing directories are made (mode 0755 before the umask),
/// each one relative to its parent's handle.
pub fn open_dir_beneath(base: impl AsFd, rel: &Path, create: bool) -> Result<OwnedFd, SafeFsError> {
    let base = base.as_fd();
    let parts = names(rel)?;
    if parts.is_empty() {
        return base
            .try_clone_to_owned()
            .map_err(|e| SafeFsError::io(Path::new("."), e));
    }
    match openat2_dir(base, rel) {
        Some(Ok(fd)) => Ok(fd),
        // No openat2 (ENOSYS, or EPERM from a seccomp filter that does not know it), or the
        // path cannot be opened as it is: the walk creates what is missing or names the
        // component in the way, with the same guarantees.
        Some(Err(_)) | None => walk(base, &parts, create),
    }
}

/// `openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)`; None when the kernel does not have it.
fn openat2_dir(base: impl AsFd, rel: &Path) -> Option<Result<OwnedFd, Errno>> {
    use nix::fcntl::{OpenHow, ResolveFlag, openat2};
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    for _ in 0..4 {
        match openat2(base.as_fd(), rel, how) {
            // EAGAIN: a concurrent rename somewhere on the system; retry, then walk.
            Err(Errno::EAGAIN) => continue,
            Err(Errno::ENOSYS | Errno::EPERM) => return None,
            r => return Some(r),
        }
    }
    None
}

fn open_dir_at(dir: impl AsFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Turns the errno of a no-follow open of `name` in `dir` into an error naming `shown`.
fn classify(dir: impl AsFd, name: &OsStr, shown: &Path, e: Errno, want_dir: bool) -> SafeFsError {
    let what = shown.display().to_string();
    match e {
        Errno::ELOOP => SafeFsError::Symlink(what),
        Errno::ENOTDIR | Errno::EISDIR | Errno::ENXIO => {
            match fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if kind(&st) == SFlag::S_IFLNK => SafeFsError::Symlink(what),
                Ok(st) if kind(&st) == SFlag::S_IFDIR => SafeFsError::IsDirectory(what),
                _ if want_dir => SafeFsError::NotDirectory(what),
                _ => SafeFsError::NotRegular(what),
            }
        }
        e => SafeFsError::io(shown, e),
    }
}

fn walk(base: impl AsFd, parts: &[&OsStr], create: bool) -> Result<OwnedFd, SafeFsError> {
    let mut cur = base
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| SafeFsError::io(Path::new("."), e))?;
    let mut shown = PathBuf::new();
    for name in parts {
        shown.push(name);
        let next = match open_dir_at(&cur, name) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create => {
                match mkdirat(&cur, *name, mode(DIR_MODE)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(SafeFsError::io(&shown, e)),
                }
                open_dir_at(&cur, name).map_err(|e| classify(&cur, name, &shown, e, true))?
            }
            Err(e) => return Err(classify(&cur, name, &shown, e, true)),
        };
        cur = next;
    }
    Ok(cur)
}

/// The file-type bits of a stat.
pub fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// lstat of `name` in `dir` (the entry itself, never a link's target); None when it is absent.
pub fn stat_entry(dir: impl AsFd, name: &OsStr) -> Result<Option<FileStat>, SafeFsError> {
    single_name(name)?;
    match fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(SafeFsError::io(Path::new(name), e)),
    }
}

/// Refuses anything but a regular file, by the entry's own type.
fn require_regular(st: &FileStat, name: &OsStr) -> Result<(), SafeFsError> {
    let what = Path::new(name).display().to_string();
    match kind(st) {
        SFlag::S_IFREG => Ok(()),
        SFlag::S_IFLNK => Err(SafeFsError::Symlink(what)),
        SFlag::S_IFDIR => Err(SafeFsError::IsDirectory(what)),
        _ => Err(SafeFsError::NotRegular(what)),
    }
}

/// Opens the regular file `name` in `dir` for reading and returns it with the stat of the
/// handle. Refused: symbolic links, FIFOs, devices, sockets, directories. The type is checked on
/// the entry before opening (so a FIFO or a device is never even opened) and again on the handle
/// (the entry may have been swapped in between); the open itself is `O_NOFOLLOW|O_NONBLOCK`.
pub fn open_regular(dir: impl AsFd, name: &OsStr) -> Result<(File, FileStat), SafeFsError> {
    let dir = dir.as_fd();
    match stat_entry(dir, name)? {
        None => return Err(SafeFsError::NotFound(Path::new(name).display().to_string())),
        Some(st) => require_regular(&st, name)?,
    }
    let fd = openat(
        dir,
        name,
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| classify(dir, name, Path::new(name), e, false))?;
    let st = fstat(&fd).map_err(|e| SafeFsError::io(Path::new(name), e))?;
    require_regular(&st, name)?;
    Ok((File::from(fd), st))
}

/// Reads at most `limit` bytes of an open file whose handle stat is `st`: refused when the
/// handle's size is over the limit, and cut off (refused) while reading if it grows past it.
pub fn read_to_limit(
    file: File,
    st: &FileStat,
    name: &OsStr,
    limit: u64,
) -> Result<Vec<u8>, SafeFsError> {
    let too_large = |size| SafeFsError::TooLarge {
        name: Path::new(name).display().to_string(),
        size,
        limit,
    };
    let size = u64::try_from(st.st_size).unwrap_or(0);
    if size > limit {
        return Err(too_large(size));
    }
    let mut content = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut content)
        .map_err(|e| SafeFsError::io(Path::new(name), e))?;
    if content.len() as u64 > limit {
        return Err(too_large(content.len() as u64));
    }
    Ok(content)
}

/// Reads the regular file `name` in `dir` ([`open_regular`]), at most `limit` bytes
/// ([`read_to_limit`]). Returns the content and the stat of the handle that was read.
pub fn read_regular(
    dir: impl AsFd,
    name: &OsStr,
    limit: u64,
) -> Result<(Vec<u8>, FileStat), SafeFsError> {
    let (file, st) = open_regular(dir, name)?;
    let content = read_to_limit(file, &st, name, limit)?;
    Ok((content, st))
}

/// Owner, group and mode for a file written by [`replace_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilePerms {
    /// Permission bits (07777 at most; the caller decides whether setuid/setgid are allowed).
    pub mode: u32,
    /// None: the writer's own user.
    pub uid: Option<u32>,
    /// None: the writer's own group (or the directory's, when it is setgid).
    pub gid: Option<u32>,
}

/// A random name for a temporary file, hidden and recognisable.
fn temp_name() -> OsString {
    let r: [u8; 12] = rand::random();
    OsString::from(format!(".clustermgr-{}.tmp", hex::encode(r)))
}

/// Creates a temporary file with a random name in `dir`, exclusively and without following a
/// link (mode 0600 until the caller sets its own).
fn create_temp(dir: impl AsFd) -> Result<(OwnedFd, OsString), SafeFsError> {
    let dir = dir.as_fd();
    let mut last = Errno::EEXIST;
    for _ in 0..16 {
        let name = temp_name();
        match openat(
            dir,
            name.as_os_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            mode(0o600),
        ) {
            Ok(fd) => return Ok((fd, name)),
            Err(Errno::EEXIST) => last = Errno::EEXIST,
            Err(e) => return Err(SafeFsError::io(Path::new(&name), e)),
        }
    }
    Err(SafeFsError::io(Path::new("temporary file"), last))
}

/// Replaces (or creates) `name` in `dir` with `content` atomically: a crash leaves the old or
/// the new file, never a torn one; what is at `name` (a symbolic link included) is replaced by
/// the rename, never written through.
pub fn replace_file(
    dir: impl AsFd,
    name: &OsStr,
    content: &[u8],
    perms: FilePerms,
) -> Result<(), SafeFsError> {
    let dir = dir.as_fd();
    single_name(name)?;
    let shown = Path::new(name);
    let (fd, tmp) = create_temp(dir)?;
    let result = (|| {
        // Owner first: changing the owner clears setuid/setgid bits, the mode comes after.
        if perms.uid.is_some() || perms.gid.is_some() {
            fchown(
                &fd,
                perms.uid.map(Uid::from_raw),
                perms.gid.map(Gid::from_raw),
            )
            .map_err(|errno| SafeFsError::Chown {
                name: shown.display().to_string(),
                uid: perms.uid.map_or("-".into(), |u| u.to_string()),
                gid: perms.gid.map_or("-".into(), |g| g.to_string()),
                errno,
            })?;
        }
        fchmod(&fd, mode(perms.mode & 0o7777)).map_err(|e| SafeFsError::io(shown, e))?;
        let mut f = File::from(fd);
        f.write_all(content)
            .map_err(|e| SafeFsError::io(shown, e))?;
        f.sync_all().map_err(|e| SafeFsError::io(shown, e))?;
        drop(f);
        renameat(dir, tmp.as_os_str(), dir, name)
            .map_err(|e| classify(dir, name, shown, e, false))?;
        fsync(dir).map_err(|e| SafeFsError::io(Path::new("."), e))
    })();
    if result.is_err() {
        let _ = unlinkat(dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    #[test]
    fn the_walk_refuses_symlinks_and_creates_by_handle() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), d.path().join("link")).unwrap();
        let base = open_dir(d.path()).unwrap();
        for rel in ["link", "link/new", "a/../link"] {
            let parts: Vec<&OsStr> = Path::new(rel).iter().collect();
            // Both the openat2 path and the component walk.
            let e = open_dir_beneath(&base, Path::new(rel), true).unwrap_err();
            assert!(
                matches!(e, SafeFsError::Symlink(_) | SafeFsError::BadPath(_)),
                "{rel}: {e}"
            );
            if !rel.contains("..") {
                let e = walk(&base, &parts, true).unwrap_err();
                assert!(matches!(e, SafeFsError::Symlink(_)), "{rel}: {e}");
            }
        }
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        let parts: Vec<&OsStr> = Path::new("x/y/z").iter().collect();
        walk(&base, &parts, true).unwrap();
        assert!(d.path().join("x/y/z").is_dir());
        std::fs::write(d.path().join("x/f"), "").unwrap();
        let e = open_dir_beneath(&base, Path::new("x/f/g"), true).unwrap_err();
        assert!(matches!(e, SafeFsError::NotDirectory(_)), "{e}");
        let e = open_dir_beneath(&base, Path::new("nope"), false).unwrap_err();
        assert!(matches!(e, SafeFsError::NotFound(_)), "{e}");
    }

    #[test]
    fn replace_keeps_links_untouched_and_sets_perms_on_the_handle() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        symlink(&victim, d.path().join("f")).unwrap();
        let dir = open_dir(d.path()).unwrap();
        let perms = FilePerms {
            mode: 0o640,
            uid: None,
            gid: None,
        };
        replace_file(&dir, OsStr::new("f"), b"new", perms).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        let m = std::fs::symlink_metadata(d.path().join("f")).unwrap();
        assert!(m.is_file());
        assert_eq!(m.permissions().mode() & 0o7777, 0o640);
        assert_eq!(m.uid(), nix::unistd::geteuid().as_raw());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        let e = replace_file(&dir, OsStr::new("../f"), b"x", perms).unwrap_err();
        assert!(matches!(e, SafeFsError::BadPath(_)), "{e}");
    }

    #[test]
    fn reads_refuse_fifos_links_and_oversize() {
        let d = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&d.path().join("fifo"), mode(0o600)).unwrap();
        symlink("/dev/zero", d.path().join("zero")).unwrap();
        std::fs::write(d.path().join("big"), vec![b'x'; 100]).unwrap();
        let dir = open_dir(d.path()).unwrap();
        let e = read_regular(&dir, OsStr::new("fifo"), 10).unwrap_err();
        assert!(matches!(e, SafeFsError::NotRegular(_)), "{e}");
        let e = read_regular(&dir, OsStr::new("zero"), 10).unwrap_err();
        assert!(matches!(e, SafeFsError::Symlink(_)), "{e}");
        let e = read_regular(&dir, OsStr::new("big"), 99).unwrap_err();
        assert!(matches!(e, SafeFsError::TooLarge { size: 100, .. }), "{e}");
        let (c, st) = read_regular(&dir, OsStr::new("big"), 100).unwrap();
        assert_eq!(c.len(), 100);
        assert_eq!(kind(&st), SFlag::S_IFREG);
    }
}
