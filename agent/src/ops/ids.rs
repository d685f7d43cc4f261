//! Users and groups named in a write-file request.
//!
//! A numeric id is used as it is. A name is looked up in `<root>/etc/passwd` or
//! `<root>/etc/group`, the account files of the system the agent manages: the host's own files
//! when the root is `/`, the sandbox host's when it is not. NSS sources (LDAP, sssd) are not
//! consulted, so a name that exists only there must be given as a number.

use super::OpError;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Passwd,
    Group,
}

impl Db {
    fn file(self) -> &'static str {
        match self {
            Db::Passwd => "etc/passwd",
            Db::Group => "etc/group",
        }
    }
    fn what(self) -> &'static str {
        match self {
            Db::Passwd => "user",
            Db::Group => "group",
        }
    }
}

/// Resolves `spec` (empty: None, digits: that id, otherwise a name) to a numeric id.
pub fn resolve(root: &Path, db: Db, spec: &str) -> Result<Option<u32>, OpError> {
    if spec.is_empty() {
        return Ok(None);
    }
    if spec.bytes().all(|b| b.is_ascii_digit()) {
        return match spec.parse::<u32>() {
            // (uid_t)-1 means "leave unchanged" to chown(2).
            Ok(id) if id != u32::MAX => Ok(Some(id)),
            _ => Err(OpError(format!("{} id {spec} is out of range", db.what()))),
        };
    }
    if spec.len() > 256 || spec.contains([':', '\n', '\0', '/']) {
        return Err(OpError(format!(
            "{} name {:?} is not valid",
            db.what(),
            spec.escape_default().to_string()
        )));
    }
    let file = root.join(db.file());
    let text = std::fs::read_to_string(&file).map_err(|e| {
        OpError(format!(
            "cannot look up {} {spec:?}: {}: {e} (give a numeric id instead)",
            db.what(),
            file.display()
        ))
    })?;
    lookup(&text, spec).map(Some).ok_or_else(|| {
        OpError(format!(
            "no {} named {spec:?} in {} (give a numeric id instead)",
            db.what(),
            file.display()
        ))
    })
}

/// The id (third field) of the entry called `name` in passwd/group format.
fn lookup(text: &str, name: &str) -> Option<u32> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_in_the_root_and_numbers_always_work() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n# c\njetty:x:1001:1002::/opt/jetty:/bin/false\n",
        )
        .unwrap();
        std::fs::write(d.path().join("etc/group"), "root:x:0:\ngluu:x:1005:jetty\n").unwrap();
        let r = d.path();
        assert_eq!(resolve(r, Db::Passwd, "jetty").unwrap(), Some(1001));
        assert_eq!(resolve(r, Db::Group, "gluu").unwrap(), Some(1005));
        assert_eq!(resolve(r, Db::Passwd, "").unwrap(), None);
        assert_eq!(resolve(r, Db::Passwd, "4242").unwrap(), Some(4242));
        let e = resolve(r, Db::Passwd, "nobody-here").unwrap_err();
        assert!(e.0.contains("no user named"), "{e}");
        let e = resolve(r, Db::Group, "jetty").unwrap_err();
        assert!(e.0.contains("no group named"), "{e}");
        assert!(resolve(r, Db::Passwd, "4294967295").is_err());
        assert!(resolve(r, Db::Passwd, "a:b").is_err());
        let empty = tempfile::tempdir().unwrap();
        let e = resolve(empty.path(), Db::Passwd, "jetty").unwrap_err();
        assert!(e.0.contains("numeric id"), "{e}");
        assert_eq!(resolve(empty.path(), Db::Passwd, "7").unwrap(), Some(7));
    }
}
