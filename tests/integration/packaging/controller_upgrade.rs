//! Upgrading the controller's package in a booted systemd machine, as an operator does: this
//! build's .deb installed, initialised and run as the enabled service with a node enrolled, an
//! operator credential issued and audit rows written; then `apt-get install ./new.deb` of the
//! same package repacked with a bumped version. The upgrade restarts the enabled service
//! (prerm stops it, the postinst starts it again), which answers from the same store: the node
//! listed and back online, the credential accepted, the earlier audit rows kept, the data
//! directory's files with their owners and modes, and no backup copy (the store's format is
//! current; the copy and migration from an older format are covered by
//! `store::migrate::tests::a_schema_2_store_is_copied_then_migrated` on a schema-2 file).

use super::machine::{
    Served, controller_ok, controller_served, host_agent_online, main_pid, wait_node, wait_serving,
};
use clustermgr_tests::booted::{Machine, repack};
use clustermgr_tests::text;
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Instant;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every file under `dir` (relative path) with its owner, group and mode (octal).
fn owners_and_modes(dir: &Path) -> BTreeMap<String, (u32, u32, String)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("entry").path();
            let md = std::fs::symlink_metadata(&p).expect("metadata");
            if md.is_dir() {
                todo.push(p.clone());
            }
            let rel = p
                .strip_prefix(dir)
                .expect("under dir")
                .display()
                .to_string();
            out.insert(
                rel,
                (
                    md.uid(),
                    md.gid(),
                    format!("{:04o}", md.permissions().mode() & 0o7777),
                ),
            );
        }
    }
    let md = std::fs::metadata(dir).expect("data dir");
    out.insert(
        ".".to_string(),
        (
            md.uid(),
            md.gid(),
            format!("{:04o}", md.permissions().mode() & 0o7777),
        ),
    );
    out
}

/// The audit log as the admin sees it, without what a routine row merged with later ones
/// changes (its count and latest time).
fn audit(m: &Machine) -> Vec<Value> {
    let out = controller_ok(m, &["--output", "json", "audit", "--limit", "10000"]);
    let rows: Vec<Value> =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("audit printed {out}: {e}"));
    rows.into_iter()
        .map(|mut r| {
            if let Some(o) = r.as_object_mut() {
                o.remove("count");
                o.remove("last");
            }
            r
        })
        .collect()
}

/// `whoami` with the operator credential `cred` (a file in the machine), as root: not the
/// data directory's admin credential.
fn whoami_with(m: &Machine, cred: &str) -> Result<String, String> {
    let o = m.exec(&["clustermgr", "--config", cred, "--output", "json", "whoami"])?;
    if o.status.success() {
        Ok(text(&o.stdout))
    } else {
        Err(text(&o.stderr))
    }
}

#[test]
fn controller_package_upgrade_keeps_the_store_and_restarts_the_enabled_service() {
    let Served {
        debs,
        m,
        uid,
        addr,
        pin,
    } = controller_served("cmcup");
    let (_agent, node) = host_agent_online(&m, &addr, &pin);
    let cred = "/root/ops1.toml";
    controller_ok(
        &m,
        &[
            "operator",
            "create",
            "ops1",
            "--role",
            "operator",
            "--out",
            "/tmp/ops1.toml",
        ],
    );
    m.ok(&["install", "-m", "0600", "/tmp/ops1.toml", cred]);
    let me = whoami_with(&m, cred).unwrap_or_else(|e| panic!("whoami as ops1: {e}"));
    assert!(me.contains("ops1"), "whoami as ops1 printed {me}");

    let data = m.path("/var/lib/clustermgr");
    let files_before = owners_and_modes(&data);
    let (owner, _, mode) = &files_before["."];
    assert_eq!((*owner, mode.as_str()), (uid, "0700"));
    assert!(files_before.contains_key("state.redb"), "{files_before:?}");
    let audit_before = audit(&m);
    assert!(
        audit_before.iter().any(|r| r.to_string().contains("ops1")),
        "no audit row of the operator's creation: {audit_before:?}"
    );
    assert_eq!(
        m.ok(&["systemctl", "is-enabled", "clustermgr"]).trim(),
        "enabled"
    );
    let pid_before = main_pid(&m, "clustermgr");

    // The new package: this build repacked with a bumped version, installed as operators do.
    let new_version = format!("{VERSION}+up1");
    repack(
        &debs.controller,
        &m.path("/root/clustermgr-new.deb"),
        &new_version,
        false,
    );
    let started = Instant::now();
    m.ok(&["apt-get", "install", "-y", "-q", "/root/clustermgr-new.deb"]);
    wait_serving(&m);
    eprintln!(
        "timing: apt-get install of the new controller package to serving in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        m.ok(&["dpkg-query", "-W", "-f=${Version} ${Status}", "clustermgr"]),
        format!("{new_version} install ok installed")
    );
    // The upgrade restarted the enabled service (nothing else did).
    let pid_after = main_pid(&m, "clustermgr");
    assert!(
        pid_after != "0" && pid_after != pid_before,
        "MainPID {pid_before} before the upgrade, {pid_after} after"
    );
    assert_eq!(
        m.ok(&["systemctl", "is-enabled", "clustermgr"]).trim(),
        "enabled"
    );
    let user = m.ok(&["ps", "-o", "user=", "-p", &pid_after]);
    assert_eq!(user.trim(), "clustermgr");

    // The store kept its records: the node (its agent reconnects), the operator's credential,
    // the audit rows written before.
    wait_node(&m, &node, "online");
    let me = whoami_with(&m, cred).unwrap_or_else(|e| panic!("whoami as ops1 after: {e}"));
    assert!(me.contains("ops1"), "whoami as ops1 printed {me}");
    let audit_after = audit(&m);
    let lost: Vec<&Value> = audit_before
        .iter()
        .filter(|r| !audit_after.contains(r))
        .collect();
    assert!(lost.is_empty(), "audit rows lost by the upgrade: {lost:?}");

    // The data directory as it was: the same files, owners and modes; no backup copy of a
    // store whose format is current, and no migration logged.
    let files_after = owners_and_modes(&data);
    assert_eq!(files_after, files_before, "the data directory changed");
    let journal = m.ok(&["journalctl", "--no-pager", "-u", "clustermgr"]);
    assert!(
        !journal.contains("store migration") && !journal.contains(".bak"),
        "a current store was migrated or copied: {journal}"
    );
}
