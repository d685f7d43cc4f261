//! Rules for paths a file operation may touch on a node. The agent enforces them and then walks
//! the path on directory handles without following any symbolic link (`crate::safefs`); the
//! controller applies the lexical part early so that a bad request fails before it is
//! dispatched.

use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("path {0:?} must be absolute")]
    NotAbsolute(String),
    #[error("path {0:?} contains '..' (path traversal is refused)")]
    Traversal(String),
    #[error("path {0:?} contains a NUL byte or is too long")]
    Malformed(String),
    #[error("path {0:?} is outside the managed paths")]
    NotManaged(String),
}

/// Paths (directories or files) the agent manages by default: Gluu 4.x configuration inside and
/// outside the chroot, certificates, and the configuration of the services clustermgr runs.
pub const DEFAULT_MANAGED: &[&str] = &[
    "/etc/gluu/conf",
    "/etc/certs",
    "/opt/gluu-server/etc/gluu/conf",
    "/opt/gluu-server/etc/certs",
    "/opt/gluu-server/etc/hosts",
    "/opt/gluu-server/install/community-edition-setup/setup.properties",
    "/opt/gluu-server/opt/gluu/jetty",
    "/opt/gluu-server/opt/shibboleth-idp/conf",
    "/opt/gluu/jetty",
    "/opt/shibboleth-idp/conf",
    "/etc/nginx",
    "/etc/stunnel",
    "/etc/redis",
    "/etc/hosts",
    "/etc/clustermgr",
];

/// Lexically normalises an absolute path: rejects relative paths, `..`, NUL and overlong input;
/// drops `.` components and duplicate slashes.
pub fn normalize(path: &str) -> Result<PathBuf, PathError> {
    if path.contains('\0') || path.len() > 4096 {
        return Err(PathError::Malformed(path.escape_default().to_string()));
    }
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(PathError::NotAbsolute(path.to_string()));
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err(PathError::Traversal(path.to_string())),
            Component::Normal(n) => out.push(n),
            Component::Prefix(_) => return Err(PathError::Malformed(path.to_string())),
        }
    }
    Ok(out)
}

/// True when `path` (normalised) is one of the managed prefixes or below one.
pub fn is_managed<S: AsRef<str>>(path: &Path, managed: &[S]) -> bool {
    managed
        .iter()
        .any(|m| path.starts_with(Path::new(m.as_ref())))
}

/// Normalises and checks against the allow-list.
pub fn check_managed<S: AsRef<str>>(path: &str, managed: &[S]) -> Result<PathBuf, PathError> {
    let p = normalize(path)?;
    if p == Path::new("/") || !is_managed(&p, managed) {
        return Err(PathError::NotManaged(path.to_string()));
    }
    Ok(p)
}

/// Maps a node path to the real path under `root` ("/" for a real host).
pub fn under_root(root: &Path, node_path: &Path) -> PathBuf {
    let rel = node_path.strip_prefix("/").unwrap_or(node_path);
    root.join(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_relative_paths_are_refused() {
        let m = DEFAULT_MANAGED;
        assert_eq!(
            check_managed("/etc/gluu/conf/../../shadow", m),
            Err(PathError::Traversal("/etc/gluu/conf/../../shadow".into()))
        );
        assert!(matches!(
            check_managed("etc/hosts", m),
            Err(PathError::NotAbsolute(_))
        ));
        assert!(matches!(
            check_managed("/etc/shadow", m),
            Err(PathError::NotManaged(_))
        ));
        assert!(matches!(
            check_managed("/etc/gluu/confx", m),
            Err(PathError::NotManaged(_))
        ));
        assert!(matches!(
            check_managed("/etc/hosts\0x", m),
            Err(PathError::Malformed(_))
        ));
        assert!(matches!(
            check_managed("/", m),
            Err(PathError::NotManaged(_))
        ));
    }

    #[test]
    fn managed_paths_normalise() {
        let p = check_managed("/etc//gluu/./conf/gluu.properties", DEFAULT_MANAGED).unwrap();
        assert_eq!(p, PathBuf::from("/etc/gluu/conf/gluu.properties"));
        assert_eq!(
            under_root(Path::new("/srv/h1"), &p),
            PathBuf::from("/srv/h1/etc/gluu/conf/gluu.properties")
        );
    }
}
