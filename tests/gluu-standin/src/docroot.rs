//! Gluu's Apache document root: 4.2.3's `https_gluu.conf` sets `DocumentRoot "/var/www/html/"`,
//! so a file there that no `<Location>` proxies is served as is (e.g. the health mark
//! clustermgr's external-balancer hook writes, `/clustermgr-health`). The stand-in's web tier
//! serves the same: a regular file under `/var/www/html` of the container, by its path, or
//! nothing (404). No directory listing, no `..`, no hidden files, no symbolic links.

use std::path::Path;

/// Inside the container.
pub const DOCUMENT_ROOT: &str = "var/www/html";

/// The content of the file the request path names under `chroot`'s document root, if it is a
/// regular file there.
pub fn file(chroot: &Path, path: &str) -> Option<Vec<u8>> {
    let rel = path.strip_prefix('/')?;
    let parts: Vec<&str> = rel.split('/').collect();
    let plain = |p: &&str| !p.is_empty() && !p.starts_with('.') && !p.contains('\\');
    if parts.is_empty() || !parts.iter().all(plain) {
        return None;
    }
    let mut full = chroot.join(DOCUMENT_ROOT);
    for p in &parts {
        full.push(p);
        // Never through a symbolic link (the root's own ancestors are the container's).
        if std::fs::symlink_metadata(&full)
            .ok()?
            .file_type()
            .is_symlink()
        {
            return None;
        }
    }
    if !std::fs::metadata(&full).ok()?.is_file() {
        return None;
    }
    std::fs::read(&full).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_the_document_root_is_served_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join(DOCUMENT_ROOT);
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("clustermgr-health"), "ok\n").unwrap();
        std::fs::write(root.join("sub/x.txt"), "x").unwrap();
        std::fs::write(root.join(".hidden"), "h").unwrap();
        std::fs::write(d.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), root.join("link")).unwrap();
        assert_eq!(
            file(d.path(), "/clustermgr-health").as_deref(),
            Some(&b"ok\n"[..])
        );
        assert_eq!(file(d.path(), "/sub/x.txt").as_deref(), Some(&b"x"[..]));
        for p in [
            "/",
            "/sub",
            "/sub/",
            "/.hidden",
            "/../secret",
            "/link",
            "/missing",
            "x",
        ] {
            assert_eq!(file(d.path(), p), None, "{p}");
        }
        std::fs::remove_file(root.join("clustermgr-health")).unwrap();
        assert_eq!(file(d.path(), "/clustermgr-health"), None);
    }
}
