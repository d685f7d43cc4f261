//! `clustermgr backup` end to end on the stand-in (real slapd in its nspawn machine): a backup
//! of one installed server kept sealed by the controller (the Gluu salt is not in its bytes),
//! then a person added and a configuration file changed, then `backup restore`: the person is
//! gone and the file is back; retention keeps the newest `--keep`; a dry run and an unknown id
//! change nothing.

use super::gluu_cluster::{Cluster, HTTPS_PORT, Node};
use super::replication::ldap;
use clustermgr_tests::text;
use serde_json::Value;

const HOST: &str = "gluu1.cluster.test";

fn people(node: &Node, uid: &str) -> String {
    ldap(
        "ldapsearch",
        node,
        &["-LLL", "-b", "o=gluu", &format!("(uid={uid})"), "uid"],
        None,
    )
    .unwrap_or_else(|e| panic!("search {uid}: {e}"))
}

fn list(c: &Cluster) -> Vec<Value> {
    c.ctl.json(&["backup", "list"]).as_array().cloned().unwrap()
}

fn archives(c: &Cluster) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(c.ctl.data.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

#[test]
fn a_backup_is_kept_sealed_and_its_restore_undoes_later_changes() {
    let c = Cluster::new(1, HTTPS_PORT);
    let node = &c.nodes[0];
    let out = c.ctl.cli(&["gluu", "install", HOST]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // Keeping fewer than the default deletes backups: an operator may not, an admin may.
    let op = c.ctl.dir.path().join("olga.json");
    let op = op.to_str().unwrap();
    c.ctl.cli_ok(&[
        "operator", "create", "olga", "--role", "operator", "--out", op,
    ]);
    let out = c
        .ctl
        .cli(&["--config", op, "backup", "--node", HOST, "--keep", "2"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("admin"), "{}", text(&out.stderr));
    assert!(list(&c).is_empty());
    let out = c.ctl.cli(&["backup", "--node", HOST, "--keep", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let held = list(&c);
    assert_eq!(held.len(), 1, "{held:?}");
    let b = &held[0];
    assert_eq!(b["hostname"], HOST);
    assert_eq!(b["directory"], "openldap");
    let entries: u64 = b["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["entries"].as_u64().unwrap_or(0))
        .sum();
    assert!(entries > 0, "{b}");
    let id = b["id"].as_str().unwrap().to_string();

    // Sealed at rest: the node's salt (in /etc/gluu/conf, inside the archive) is not in the
    // stored bytes.
    let salt = std::fs::read_to_string(node.inside("etc/gluu/conf/salt")).unwrap();
    let salt = salt.trim().trim_start_matches("encodeSalt = ").to_string();
    assert!(salt.len() >= 16, "{salt}");
    let stored = archives(&c);
    assert_eq!(stored.len(), 1, "{stored:?}");
    let bytes = std::fs::read(&stored[0]).unwrap();
    assert!(bytes.len() > 1000);
    assert!(
        !String::from_utf8_lossy(&bytes).contains(&salt),
        "the archive is stored in the clear"
    );

    // Changes after the backup...
    let ldif = "dn: uid=after-backup,ou=people,o=gluu\nobjectClass: top\nobjectClass: inetOrgPerson\nuid: after-backup\ncn: after\nsn: backup\n";
    ldap("ldapadd", node, &[], Some(ldif)).unwrap();
    assert!(people(node, "after-backup").contains("uid: after-backup"));
    let conf = node.inside("etc/gluu/conf/salt");
    let before = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, "encodeSalt = changed\n").unwrap();

    // ...a dry run changes nothing, an unknown backup is refused...
    let dry = c
        .ctl
        .cli(&["backup", "restore", &id, "--node", HOST, "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry.stderr));
    assert!(c.workflows_of("backup-restore").is_empty());
    let unknown = c
        .ctl
        .cli(&["backup", "restore", "no-such-backup", "--node", HOST]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown.stderr));
    assert!(
        text(&unknown.stderr).contains("no backup"),
        "{}",
        text(&unknown.stderr)
    );

    // ...and the restore undoes them.
    let out = c.ctl.cli(&["backup", "restore", &id, "--node", HOST]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    node.wait_services_active();
    assert_eq!(
        people(node, "after-backup").trim(),
        "",
        "the person is still there"
    );
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), before);
    let wf = &c.workflows_of("backup-restore")[0];
    let wf = c.workflow(wf["id"].as_str().unwrap());
    for step in ["stop-directory", "restore", "start", "verify"] {
        assert_eq!(
            Cluster::step(&wf, HOST, step)["status"],
            "succeeded",
            "{wf}"
        );
    }

    // Retention: two more backups, two kept (files too).
    for _ in 0..2 {
        let out = c.ctl.cli(&["backup", "--node", HOST, "--keep", "2"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let held = list(&c);
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(held.iter().all(|b| b["id"] != id.as_str()), "{held:?}");
    assert_eq!(archives(&c).len(), 2);
}
