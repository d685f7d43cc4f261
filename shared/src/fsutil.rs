//! Crash-safe file writes with restrictive permissions.

use crate::safefs::{self, FilePerms, SafeFsError};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn to_io(e: SafeFsError) -> io::Error {
    match e {
        SafeFsError::Io { source, .. } => source,
        SafeFsError::NotFound(_) => io::Error::new(io::ErrorKind::NotFound, e.to_string()),
        SafeFsError::PermissionDenied(_) => {
            io::Error::new(io::ErrorKind::PermissionDenied, e.to_string())
        }
        other => io::Error::other(other.to_string()),
    }
}

/// Writes `content` to `path` atomically, with permission bits `mode`: a temporary file with a
/// random name created exclusively (`O_EXCL|O_NOFOLLOW`) in the same directory, fsync, rename,
/// fsync of the directory. A crash leaves either the old or the new file, never a torn one; a
/// symbolic link planted at the target or at any temporary name is replaced, never written
/// through. The directory itself is opened by path (it is the caller's own directory).
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let handle = safefs::open_dir(dir).map_err(to_io)?;
    let perms = FilePerms {
        mode,
        uid: None,
        gid: None,
    };
    safefs::replace_file(&handle, name, content, perms).map_err(to_io)
}

/// Writes a secret file (mode 0600).
pub fn write_private(path: &Path, content: &[u8]) -> io::Result<()> {
    write_atomic(path, content, 0o600)
}

/// Creates a directory (and parents) readable by its owner only.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        write_private(&p, b"one").unwrap();
        write_private(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn a_link_planted_at_the_old_temporary_name_is_not_followed() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("shadow");
        fs::write(&victim, "root:x:0:0").unwrap();
        let victim_mode = fs::metadata(&victim).unwrap().permissions().mode();
        let p = dir.path().join("agent.toml");
        // The temporary names an attacker could predict: the former `.NAME.tmpPID` scheme.
        let planted = dir
            .path()
            .join(format!(".agent.toml.tmp{}", std::process::id()));
        symlink(&victim, &planted).unwrap();
        write_private(&p, b"mine").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "root:x:0:0");
        assert_eq!(
            fs::metadata(&victim).unwrap().permissions().mode(),
            victim_mode,
            "the victim's mode must not change"
        );
        assert_eq!(fs::read(&p).unwrap(), b"mine");
        // A link at the target itself is replaced, not written through.
        fs::remove_file(&p).unwrap();
        symlink(&victim, &p).unwrap();
        write_private(&p, b"again").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "root:x:0:0");
        assert!(fs::symlink_metadata(&p).unwrap().is_file());
    }
}
