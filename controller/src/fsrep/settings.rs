//! The operator's settings: defaults (the csync2 set-up's), their checks, and changes.

use super::{Fsrep, FsrepError};
use crate::audit::Audit;
use crate::server::Ctl;
use clustermgr_proto::fsrep_change_request::Change;
use clustermgr_proto::{FsrepAction, FsrepChangeRequest, FsrepSettings, FsrepSettingsRecord};
use clustermgr_shared::fsrep as rules;

pub fn default_settings() -> FsrepSettings {
    FsrepSettings {
        enabled: false,
        paths: rules::DEFAULT_PATHS.iter().map(|s| s.to_string()).collect(),
        excludes: rules::DEFAULT_EXCLUDES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        actions: rules::default_actions(),
        backups: rules::DEFAULT_BACKUPS,
        max_file_bytes: rules::DEFAULT_MAX_FILE_BYTES,
    }
}

/// The normalised form of a replicated directory, refused when it is `/`, holds a database
/// or lies in one.
pub fn check_dir(path: &str) -> Result<String, FsrepError> {
    let bad = |why: &str| FsrepError::BadPath {
        path: path.to_string(),
        why: why.to_string(),
    };
    let p = clustermgr_shared::paths::normalize(path).map_err(|e| bad(&e.to_string()))?;
    let s = p.display().to_string();
    if s == "/" {
        return Err(bad("the whole file system cannot be replicated"));
    }
    if rules::is_never(&s, rules::NEVER) {
        return Err(bad(
            "it is (or holds, or lies in) a directory database; databases are never replicated",
        ));
    }
    Ok(s)
}

pub(super) fn check_service(s: &str) -> Result<(), FsrepError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
        && !s.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(FsrepError::Invalid {
            what: "service name",
            why: format!("{s:?} (letters, digits, - _ . @)"),
        })
    }
}

pub(super) fn check_pattern(p: &str, what: &'static str) -> Result<(), FsrepError> {
    if p.is_empty() || p.len() > 1024 || p.contains('\0') || p.contains("/../") {
        return Err(FsrepError::Invalid {
            what,
            why: format!("{:?}", p.escape_default().to_string()),
        });
    }
    Ok(())
}

/// A per-file limit an operator may set.
pub(super) fn check_limit(n: u64) -> Result<(), FsrepError> {
    if (rules::MIN_MAX_FILE_BYTES..=rules::MAX_MAX_FILE_BYTES).contains(&n) {
        Ok(())
    } else {
        Err(FsrepError::Invalid {
            what: "per-file limit",
            why: format!(
                "{n} bytes (from {} to {} bytes)",
                rules::MIN_MAX_FILE_BYTES,
                rules::MAX_MAX_FILE_BYTES
            ),
        })
    }
}

/// The saved settings, the limit of before it could be set raised to today's default.
pub(super) fn loaded(saved: Option<FsrepSettings>) -> FsrepSettings {
    let mut s = saved.unwrap_or_else(default_settings);
    if s.max_file_bytes == rules::OLD_MAX_FILE_BYTES || s.max_file_bytes == 0 {
        s.max_file_bytes = rules::DEFAULT_MAX_FILE_BYTES;
    }
    s
}

impl Fsrep {
    /// Changes the settings (audited with the change); every node's stream restarts with the
    /// new configuration.
    pub async fn change_settings(
        &self,
        ctl: &Ctl,
        req: FsrepChangeRequest,
        audit: &Audit,
    ) -> Result<FsrepSettings, FsrepError> {
        let mut s = self.settings();
        let detail = match req.change {
            None => {
                return Err(FsrepError::Invalid {
                    what: "request",
                    why: "no change named".into(),
                });
            }
            Some(Change::Enable(on)) => {
                s.enabled = on;
                format!("enabled={on}")
            }
            Some(Change::AddPath(p)) => {
                let p = check_dir(&p)?;
                if s.paths.contains(&p) {
                    return Err(FsrepError::Exists(p));
                }
                s.paths.push(p.clone());
                format!("add path {p}")
            }
            Some(Change::RemovePath(p)) => {
                let n = check_dir(&p).unwrap_or(p.clone());
                let before = s.paths.len();
                s.paths.retain(|x| x.trim_end_matches('/') != n);
                if s.paths.len() == before {
                    return Err(FsrepError::NotFound(p));
                }
                format!("remove path {n}")
            }
            Some(Change::AddExclude(e)) => {
                check_pattern(&e, "exclude pattern")?;
                if s.excludes.contains(&e) {
                    return Err(FsrepError::Exists(e));
                }
                s.excludes.push(e.clone());
                format!("add exclude {e}")
            }
            Some(Change::RemoveExclude(e)) => {
                let before = s.excludes.len();
                s.excludes.retain(|x| *x != e);
                if s.excludes.len() == before {
                    return Err(FsrepError::NotFound(e));
                }
                format!("remove exclude {e}")
            }
            Some(Change::AddAction(a)) => {
                check_pattern(&a.pattern, "action pattern")?;
                if !a.pattern.starts_with('/') {
                    return Err(FsrepError::Invalid {
                        what: "action pattern",
                        why: "must be an absolute path glob".into(),
                    });
                }
                check_service(&a.service)?;
                if s.actions.contains(&a) {
                    return Err(FsrepError::Exists(format!(
                        "{} -> {}",
                        a.pattern, a.service
                    )));
                }
                s.actions.push(a.clone());
                format!("add action {} -> restart {}", a.pattern, a.service)
            }
            Some(Change::MaxFileBytes(n)) => {
                check_limit(n)?;
                s.max_file_bytes = n;
                format!("max_file_bytes={n}")
            }
            Some(Change::RemoveAction(a)) => {
                let before = s.actions.len();
                s.actions.retain(|x: &FsrepAction| {
                    !(x.service == a.service && (a.pattern.is_empty() || x.pattern == a.pattern))
                });
                if s.actions.len() == before {
                    return Err(FsrepError::NotFound(a.service));
                }
                format!("remove action {} {}", a.service, a.pattern)
            }
        };
        ctl.store
            .put_fsrep_settings(
                FsrepSettingsRecord {
                    settings: Some(s.clone()),
                    saved: true,
                },
                audit.ok(detail),
            )
            .await?;
        let mut st = self.lock();
        st.settings = s.clone();
        // The streams end; the agents open them again and get the new configuration.
        st.peers.clear();
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_holding_databases_are_refused() {
        for p in [
            "/",
            "/opt",
            "/opt/opendj/db/userRoot",
            "relative",
            "/a/../b",
        ] {
            assert!(check_dir(p).is_err(), "{p}");
        }
        assert_eq!(check_dir("/etc/gluu/conf/").unwrap(), "/etc/gluu/conf");
    }

    #[test]
    fn the_limit_defaults_to_256_mib_and_stays_in_its_range() {
        assert_eq!(default_settings().max_file_bytes, 256 << 20);
        // Saved before the limit could be set: the old fixed value becomes the default.
        let old = FsrepSettings {
            max_file_bytes: 8 << 20,
            ..default_settings()
        };
        assert_eq!(loaded(Some(old)).max_file_bytes, 256 << 20);
        let chosen = FsrepSettings {
            max_file_bytes: 3 << 20,
            ..default_settings()
        };
        assert_eq!(loaded(Some(chosen)).max_file_bytes, 3 << 20);
        assert_eq!(loaded(None), default_settings());
        assert!(check_limit(1 << 30).is_ok());
        assert!(check_limit(100).is_err());
        assert!(check_limit(u64::MAX).is_err());
    }
}
