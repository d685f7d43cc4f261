//! read-file / write-file, confined to the managed allow-list under the agent's root.
//!
//! Lexical checks (absolute, no `..`, allow-listed) come first; then the real path is resolved
//! with symlinks followed and must still lie inside a managed prefix under the root; a write
//! never goes through a symlink (it replaces the target by rename).

use super::{Ctx, Log, OpError};
use clustermgr_proto::{ReadFileOutput, WriteFileOutput};
use clustermgr_shared::MAX_FILE_BYTES;
use clustermgr_shared::paths::{PathError, check_managed, under_root};
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The real path with symlinks resolved as far as the path exists; the part that does not exist
/// yet is appended as it is (it cannot contain a symlink).
fn resolve_existing(path: &Path) -> Option<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        match std::fs::canonicalize(&existing) {
            Ok(c) => {
                let mut out = c;
                for part in rest.iter().rev() {
                    out.push(part);
                }
                return Some(out);
            }
            Err(_) => {
                rest.push(existing.file_name()?.to_os_string());
                existing = existing.parent()?.to_path_buf();
            }
        }
    }
}

/// Real paths of the managed prefixes under the root.
fn allowed_real_prefixes(ctx: &Ctx) -> Vec<PathBuf> {
    ctx.managed
        .iter()
        .filter_map(|m| resolve_existing(&under_root(ctx.root(), Path::new(m))))
        .collect()
}

fn inside(real: &Path, prefixes: &[PathBuf]) -> bool {
    prefixes.iter().any(|p| real.starts_with(p))
}

fn io_err(path: &str, e: std::io::Error) -> OpError {
    match e.kind() {
        std::io::ErrorKind::NotFound => OpError(format!("{path}: no such file")),
        std::io::ErrorKind::PermissionDenied => OpError(format!("{path}: permission denied")),
        _ => OpError(format!("{path}: {e}")),
    }
}

pub async fn read(ctx: &Ctx, path: &str, log: &mut Log) -> Result<ReadFileOutput, OpError> {
    let node_path = check_managed(path, &ctx.managed)?;
    let real = under_root(ctx.root(), &node_path);
    let canonical = std::fs::canonicalize(&real).map_err(|e| io_err(path, e))?;
    if !inside(&canonical, &allowed_real_prefixes(ctx)) {
        return Err(PathError::SymlinkEscape(path.into()).into());
    }
    let meta = std::fs::metadata(&canonical).map_err(|e| io_err(path, e))?;
    if !meta.is_file() {
        return Err(OpError(format!("{path}: not a regular file")));
    }
    if meta.len() > MAX_FILE_BYTES as u64 {
        return Err(OpError(format!(
            "{path}: file is {} bytes; the limit is {MAX_FILE_BYTES}",
            meta.len()
        )));
    }
    let content = tokio::fs::read(&canonical)
        .await
        .map_err(|e| io_err(path, e))?;
    let sha = hex::encode(Sha256::digest(&content));
    log.line(format!(
        "read {path} ({} bytes, sha256 {sha})",
        content.len()
    ));
    Ok(ReadFileOutput {
        size: content.len() as u64,
        mode: meta.permissions().mode() & 0o7777,
        sha256: sha,
        content,
    })
}

pub async fn write(
    ctx: &Ctx,
    path: &str,
    content: Vec<u8>,
    mode: u32,
    log: &mut Log,
) -> Result<WriteFileOutput, OpError> {
    if content.len() > MAX_FILE_BYTES {
        return Err(OpError(format!(
            "content is {} bytes; the limit is {MAX_FILE_BYTES}",
            content.len()
        )));
    }
    let mode = if mode == 0 { 0o644 } else { mode & 0o7777 };
    let node_path = check_managed(path, &ctx.managed)?;
    let real = under_root(ctx.root(), &node_path);
    let parent = real
        .parent()
        .ok_or_else(|| OpError(format!("{path}: has no parent directory")))?;
    let prefixes = allowed_real_prefixes(ctx);
    let file_name = real
        .file_name()
        .ok_or_else(|| OpError(format!("{path}: has no file name")))?;
    // Check before creating directories, so that a symlinked directory cannot make us create
    // anything outside; check again after, on the real directory.
    let planned = resolve_existing(parent).map(|p| p.join(file_name));
    if !planned.is_some_and(|p| inside(&p, &prefixes)) {
        return Err(PathError::SymlinkEscape(path.into()).into());
    }
    std::fs::create_dir_all(parent).map_err(|e| io_err(path, e))?;
    let canonical_parent = std::fs::canonicalize(parent).map_err(|e| io_err(path, e))?;
    let target = canonical_parent.join(file_name);
    if !inside(&target, &prefixes) {
        return Err(PathError::SymlinkEscape(path.into()).into());
    }
    if let Ok(m) = std::fs::symlink_metadata(&target) {
        if m.file_type().is_symlink() {
            return Err(OpError(format!(
                "{path}: is a symbolic link; refusing to write through it"
            )));
        }
        if m.is_dir() {
            return Err(OpError(format!("{path}: is a directory")));
        }
    }
    let sha = hex::encode(Sha256::digest(&content));
    let unchanged = std::fs::read(&target)
        .map(|old| old == content)
        .unwrap_or(false)
        && std::fs::metadata(&target)
            .map(|m| m.permissions().mode() & 0o7777 == mode)
            .unwrap_or(false);
    if !unchanged {
        let target2 = target.clone();
        let body = content.clone();
        tokio::task::spawn_blocking(move || {
            clustermgr_shared::fsutil::write_atomic(&target2, &body, mode)
        })
        .await
        .map_err(|e| OpError(format!("{path}: {e}")))?
        .map_err(|e| io_err(path, e))?;
    }
    log.line(format!(
        "{} {path} ({} bytes, mode {mode:o}, sha256 {sha})",
        if unchanged { "unchanged" } else { "wrote" },
        content.len()
    ));
    Ok(WriteFileOutput {
        size: content.len() as u64,
        sha256: sha,
        changed: !unchanged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::HostView;
    use tokio::sync::mpsc;

    fn ctx(root: &Path) -> Ctx {
        Ctx {
            view: HostView {
                root: root.to_path_buf(),
                hostname: None,
                address: None,
            },
            managed: vec!["/etc/gluu/conf".into()],
            host: crate::host::Host::detect(root),
        }
    }

    #[tokio::test]
    async fn write_then_read_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let c = ctx(d.path());
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut log = Log::new(tx);
        let w = write(
            &c,
            "/etc/gluu/conf/a.properties",
            b"x=1".to_vec(),
            0o600,
            &mut log,
        )
        .await
        .unwrap();
        assert!(w.changed);
        let again = write(
            &c,
            "/etc/gluu/conf/a.properties",
            b"x=1".to_vec(),
            0o600,
            &mut log,
        )
        .await
        .unwrap();
        assert!(!again.changed);
        let r = read(&c, "/etc/gluu/conf/a.properties", &mut log)
            .await
            .unwrap();
        assert_eq!(r.content, b"x=1");
        assert_eq!(r.mode, 0o600);
        assert!(d.path().join("etc/gluu/conf/a.properties").exists());
    }

    #[tokio::test]
    async fn managed_files_and_new_directories_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let mut c = ctx(d.path());
        c.managed.push("/etc/hosts".into());
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut log = Log::new(tx);
        write(&c, "/etc/hosts", b"127.0.0.1 a".to_vec(), 0, &mut log)
            .await
            .unwrap();
        assert!(d.path().join("etc/hosts").exists());
        write(&c, "/etc/gluu/conf/deep/new/f", b"x".to_vec(), 0, &mut log)
            .await
            .unwrap();
        assert!(d.path().join("etc/gluu/conf/deep/new/f").exists());
        let e = write(&c, "/etc/hostsx", b"x".to_vec(), 0, &mut log)
            .await
            .unwrap_err();
        assert!(e.0.contains("outside the managed paths"), "{e}");
    }

    #[tokio::test]
    async fn symlink_escapes_and_traversal_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::fs::create_dir_all(d.path().join("etc/gluu/conf")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret"),
            d.path().join("etc/gluu/conf/link"),
        )
        .unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("etc/gluu/conf/dir")).unwrap();
        let c = ctx(d.path());
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut log = Log::new(tx);
        let e = read(&c, "/etc/gluu/conf/link", &mut log).await.unwrap_err();
        assert!(e.0.contains("symbolic link"), "{e}");
        let e = write(&c, "/etc/gluu/conf/dir/x", b"y".to_vec(), 0, &mut log)
            .await
            .unwrap_err();
        assert!(e.0.contains("symbolic link"), "{e}");
        let e = write(&c, "/etc/gluu/conf/link", b"y".to_vec(), 0, &mut log)
            .await
            .unwrap_err();
        assert!(e.0.contains("symbolic link"), "{e}");
        assert_eq!(
            std::fs::read_to_string(outside.path().join("secret")).unwrap(),
            "s"
        );
        let e = write(
            &c,
            "/etc/gluu/conf/dir/newdir/x",
            b"y".to_vec(),
            0,
            &mut log,
        )
        .await
        .unwrap_err();
        assert!(e.0.contains("symbolic link"), "{e}");
        assert!(
            !outside.path().join("newdir").exists(),
            "created a directory outside"
        );
        let e = read(&c, "/etc/gluu/conf/../../../etc/passwd", &mut log)
            .await
            .unwrap_err();
        assert!(e.0.contains(".."), "{e}");
        let e = write(&c, "/etc/passwd", b"y".to_vec(), 0, &mut log)
            .await
            .unwrap_err();
        assert!(e.0.contains("outside the managed paths"), "{e}");
        let big = vec![0u8; MAX_FILE_BYTES + 1];
        let e = write(&c, "/etc/gluu/conf/big", big, 0, &mut log)
            .await
            .unwrap_err();
        assert!(e.0.contains("limit"), "{e}");
    }
}
