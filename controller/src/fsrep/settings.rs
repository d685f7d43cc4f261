//! The operator's settings: defaults (the csync2 set-up's), their checks, and changes.

use super::{Fsrep, FsrepError};
use crate::audit::Audit;
use crate::auth::Role;
use crate::ctl::Ctl;
use clustermgr_proto::fsrep_change_request::Change;
use clustermgr_proto::{
    FsrepAction, FsrepChangeRequest, FsrepLimits, FsrepSettings, FsrepSettingsRecord,
};
use clustermgr_shared::fsrep as rules;

/// System directories never replicated unless an admin forces it (`fsrep paths add --force`):
/// `SYSTEM_WHOLE` the directory itself, `SYSTEM_TREES` it and everything below it. A name
/// ending in `*` matches any name that starts with the rest (`/var/lib/clustermgr*`: the
/// controller's and the agent's state).
const SYSTEM_WHOLE: &[&str] = &[
    "/", "/etc", "/var", "/var/lib", "/opt", "/home", "/srv", "/tmp", "/var/tmp", "/mnt",
];
const SYSTEM_TREES: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/boot",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/root",
    "/var/lib/clustermgr*",
    "/etc/clustermgr*",
    "/var/log",
    "/var/run",
    "/var/lib/dpkg",
    "/var/lib/rpm",
    "/var/lib/systemd",
    "/etc/ssh",
    "/etc/sudoers*",
    "/etc/pam.d",
    "/etc/security",
    "/etc/systemd",
    "/etc/cron*",
    "/etc/ld.so*",
    "/etc/profile.d",
    "/etc/ssl",
    "/etc/pki",
    "/etc/apt",
    "/etc/yum*",
];

/// Why `path` (normalised) is a system directory, or None.
pub(super) fn system_path(path: &str) -> Option<String> {
    if SYSTEM_WHOLE.contains(&path) {
        return Some(format!("{path} is a system directory"));
    }
    SYSTEM_TREES.iter().find_map(|t| {
        let hit = match t.strip_suffix('*') {
            // The component at the star's depth starts with the prefix.
            Some(prefix) => {
                let depth = prefix.matches('/').count();
                let comp: String = path
                    .split('/')
                    .take(depth + 1)
                    .collect::<Vec<_>>()
                    .join("/");
                comp.starts_with(prefix) && path.split('/').count() > depth
            }
            None => rules::under(path, t),
        };
        hit.then(|| format!("{path} is (or lies in) the system directory {t}"))
    })
}

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
        owners: Vec::new(),
        limits: Some(default_limits()),
    }
}

pub fn default_limits() -> FsrepLimits {
    FsrepLimits {
        max_files: rules::DEFAULT_MAX_FILES,
        max_total_bytes: rules::DEFAULT_MAX_TOTAL_BYTES,
        changes_per_second: rules::DEFAULT_CHANGES_PER_SECOND,
        action_interval_ms: rules::DEFAULT_ACTION_INTERVAL_MS,
        backup_bytes: rules::DEFAULT_BACKUP_BYTES,
    }
}

/// `base` with the non-zero fields of `change` (0: unchanged, or the default when unset).
pub(super) fn merged(base: &FsrepLimits, change: &FsrepLimits) -> FsrepLimits {
    let pick = |c: u64, b: u64| if c == 0 { b } else { c };
    FsrepLimits {
        max_files: pick(change.max_files, base.max_files),
        max_total_bytes: pick(change.max_total_bytes, base.max_total_bytes),
        changes_per_second: if change.changes_per_second == 0 {
            base.changes_per_second
        } else {
            change.changes_per_second
        },
        action_interval_ms: pick(change.action_interval_ms, base.action_interval_ms),
        backup_bytes: pick(change.backup_bytes, base.backup_bytes),
    }
}

/// The limits in force: the saved ones, the default for each one not set.
pub fn limits(s: &FsrepSettings) -> FsrepLimits {
    merged(&default_limits(), &s.limits.unwrap_or_default())
}

fn check_limits(l: &FsrepLimits) -> Result<(), FsrepError> {
    let bad = |why: String| FsrepError::Invalid { what: "limit", why };
    if !(10..=10_000_000).contains(&l.max_files) {
        return Err(bad(format!("max files {} (10 to 10000000)", l.max_files)));
    }
    if l.max_total_bytes < 1 << 20 {
        return Err(bad(format!(
            "total bytes {} (at least 1 MiB)",
            l.max_total_bytes
        )));
    }
    if !(1..=100_000).contains(&l.changes_per_second) {
        return Err(bad(format!(
            "changes per second {} (1 to 100000)",
            l.changes_per_second
        )));
    }
    if l.action_interval_ms > 24 * 3600 * 1000 {
        return Err(bad("action interval over a day".into()));
    }
    Ok(())
}

/// An owner or group name an operator may allow (a POSIX user or group name).
fn check_owner(n: &str) -> Result<(), FsrepError> {
    let ok = !n.is_empty()
        && n.len() <= 32
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !n.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(FsrepError::Invalid {
            what: "owner name",
            why: format!(
                "{:?} (letters, digits, - _ .)",
                n.escape_default().to_string()
            ),
        })
    }
}

/// The normalised form of a replicated directory, refused when it is `/`, holds a database,
/// lies in one, or (unless `force`) is a system directory.
pub fn check_dir(path: &str, force: bool) -> Result<String, FsrepError> {
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
    if !force && let Some(why) = system_path(&s) {
        return Err(bad(&format!(
            "{why}; an admin can replicate it anyway with --force"
        )));
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
    s.limits = Some(limits(&s));
    s
}

/// A change's audit action and target, and the role it needs: replicating a system directory
/// (`force`) is an admin's decision, every other change an operator's.
pub fn change_audit(r: &FsrepChangeRequest) -> (&'static str, String, Role) {
    let (action, target) = match &r.change {
        Some(Change::Enable(true)) => ("fsrep.enable", String::new()),
        Some(Change::Enable(false)) => ("fsrep.disable", String::new()),
        Some(Change::AddPath(x)) if r.force => ("fsrep.paths.add.forced", x.clone()),
        Some(Change::AddPath(x)) => ("fsrep.paths.add", x.clone()),
        Some(Change::RemovePath(x)) => ("fsrep.paths.remove", x.clone()),
        Some(Change::AddExclude(x)) => ("fsrep.excludes.add", x.clone()),
        Some(Change::RemoveExclude(x)) => ("fsrep.excludes.remove", x.clone()),
        Some(Change::AddAction(a)) => ("fsrep.actions.add", a.service.clone()),
        Some(Change::RemoveAction(a)) => ("fsrep.actions.remove", a.service.clone()),
        Some(Change::MaxFileBytes(n)) => ("fsrep.max_file_bytes", n.to_string()),
        Some(Change::Limits(_)) => ("fsrep.limits", String::new()),
        Some(Change::AddOwner(x)) => ("fsrep.owners.add", x.clone()),
        Some(Change::RemoveOwner(x)) => ("fsrep.owners.remove", x.clone()),
        None => ("fsrep.change", String::new()),
    };
    let forced = r.force && matches!(r.change, Some(Change::AddPath(_)));
    (
        action,
        target,
        if forced { Role::Admin } else { Role::Operator },
    )
}

/// Applies one change to the settings; returns the audit row's detail.
fn apply_change(
    s: &mut FsrepSettings,
    change: Option<Change>,
    force: bool,
) -> Result<String, FsrepError> {
    Ok(match change {
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
            let p = check_dir(&p, force)?;
            push_new(&mut s.paths, p.clone(), || p.clone())?;
            match system_path(&p) {
                Some(why) => format!("add path {p} (forced: {why})"),
                None => format!("add path {p}"),
            }
        }
        Some(Change::RemovePath(p)) => {
            let n = check_dir(&p, true).unwrap_or(p.clone());
            remove_where(&mut s.paths, |x| x.trim_end_matches('/') == n, p)?;
            format!("remove path {n}")
        }
        Some(Change::AddExclude(e)) => {
            check_pattern(&e, "exclude pattern")?;
            push_new(&mut s.excludes, e.clone(), || e.clone())?;
            format!("add exclude {e}")
        }
        Some(Change::RemoveExclude(e)) => {
            remove_where(&mut s.excludes, |x| *x == e, e.clone())?;
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
            push_new(&mut s.actions, a.clone(), || {
                format!("{} -> {}", a.pattern, a.service)
            })?;
            format!("add action {} -> restart {}", a.pattern, a.service)
        }
        Some(Change::MaxFileBytes(n)) => {
            check_limit(n)?;
            s.max_file_bytes = n;
            format!("max_file_bytes={n}")
        }
        Some(Change::Limits(l)) => {
            let new = merged(&limits(s), &l);
            check_limits(&new)?;
            s.limits = Some(new);
            format!(
                "limits max_files={} max_total_bytes={} changes_per_second={} \
                 action_interval_ms={} backup_bytes={}",
                new.max_files,
                new.max_total_bytes,
                new.changes_per_second,
                new.action_interval_ms,
                new.backup_bytes
            )
        }
        Some(Change::AddOwner(n)) => {
            check_owner(&n)?;
            push_new(&mut s.owners, n.clone(), || n.clone())?;
            format!("add owner {n}")
        }
        Some(Change::RemoveOwner(n)) => {
            remove_where(&mut s.owners, |x| *x == n, n.clone())?;
            format!("remove owner {n}")
        }
        Some(Change::RemoveAction(a)) => {
            remove_where(
                &mut s.actions,
                |x: &FsrepAction| {
                    x.service == a.service && (a.pattern.is_empty() || x.pattern == a.pattern)
                },
                a.service.clone(),
            )?;
            format!("remove action {} {}", a.service, a.pattern)
        }
    })
}

/// Adds `v` to a list that must not hold it yet (`name` names it in the error).
fn push_new<T: PartialEq>(
    list: &mut Vec<T>,
    v: T,
    name: impl FnOnce() -> String,
) -> Result<(), FsrepError> {
    if list.contains(&v) {
        return Err(FsrepError::Exists(name()));
    }
    list.push(v);
    Ok(())
}

/// Removes what `gone` matches from a list; at least one must go (`name` names it in the error).
fn remove_where<T>(
    list: &mut Vec<T>,
    mut gone: impl FnMut(&T) -> bool,
    name: String,
) -> Result<(), FsrepError> {
    let before = list.len();
    list.retain(|x| !gone(x));
    if list.len() == before {
        return Err(FsrepError::NotFound(name));
    }
    Ok(())
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
        let detail = apply_change(&mut s, req.change, req.force)?;
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

/// File replication's actions for Shibboleth's configuration (the csync2 set-up's: restart
/// `idp` and `identity` when it changes) follow the components: present with saml, and
/// without it no action restarts `idp`, which is not installed. Changed through the settings
/// (audited) only when they differ, so an operator's other actions stay.
pub async fn follow_components(
    ctl: &Ctl,
    fsrep: &Fsrep,
    components: &clustermgr_workflow::gluu_install::Components,
    audit: &Audit,
) {
    let saml = components.contains(clustermgr_workflow::gluu_install::Component::Saml);
    let settings = fsrep.settings();
    for action in clustermgr_shared::fsrep::default_actions() {
        let has = settings.actions.contains(&action);
        let (change, what) = if saml && !has {
            (Change::AddAction(action.clone()), "fsrep.actions.add")
        } else if !saml && has && action.service == "idp" {
            (Change::RemoveAction(action.clone()), "fsrep.actions.remove")
        } else {
            continue;
        };
        let req = FsrepChangeRequest {
            change: Some(change),
            ..Default::default()
        };
        let audit = Audit::new(audit.who.clone(), what, action.service);
        if let Err(e) = fsrep.change_settings(ctl, req, &audit).await {
            tracing::warn!(error = %e, "file replication's Shibboleth actions do not follow the components");
        }
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
            assert!(check_dir(p, false).is_err(), "{p}");
        }
        assert_eq!(
            check_dir("/etc/gluu/conf/", false).unwrap(),
            "/etc/gluu/conf"
        );
    }

    #[test]
    fn system_directories_need_force() {
        for p in [
            "/etc",
            "/etc/",
            "/usr",
            "/usr/local/bin",
            "/proc/self",
            "/sys",
            "/dev/shm",
            "/boot",
            "/bin",
            "/sbin",
            "/lib",
            "/lib64/security",
            "/libx32",
            "/var/lib/clustermgr",
            "/var/lib/clustermgr-agent",
            "/var/lib/clustermgr-agent/fsrep",
            "/etc/ssh",
            "/etc/sudoers.d",
            "/root/.ssh",
            "/var/log/gluu",
        ] {
            let e = check_dir(p, false).unwrap_err().to_string();
            assert!(e.contains("--force"), "{p}: {e}");
            assert!(check_dir(p, true).is_ok(), "{p}");
        }
        // The root and the databases stay refused even when forced.
        assert!(check_dir("/", true).is_err());
        assert!(check_dir("/opt/opendj/db", true).is_err());
        for p in rules::DEFAULT_PATHS {
            assert!(check_dir(p, false).is_ok(), "{p}");
        }
        for p in [
            "/etc/gluu",
            "/opt/gluu/jetty",
            "/var/lib/gluu",
            "/library",
            "/usrx",
        ] {
            assert!(system_path(p).is_none(), "{p}");
        }
    }

    #[test]
    fn limits_default_and_change_field_by_field() {
        let s = loaded(None);
        assert_eq!(limits(&s), default_limits());
        let l = merged(
            &default_limits(),
            &FsrepLimits {
                max_files: 50,
                ..Default::default()
            },
        );
        assert_eq!(l.max_files, 50);
        assert_eq!(l.max_total_bytes, rules::DEFAULT_MAX_TOTAL_BYTES);
        assert!(check_limits(&l).is_ok());
        assert!(check_limits(&FsrepLimits { max_files: 1, ..l }).is_err());
        assert!(check_owner("jetty").is_ok());
        assert!(check_owner("../x").is_err() && check_owner("").is_err());
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
