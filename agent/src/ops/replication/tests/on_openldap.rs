//! OpenLDAP (the stand-in's directory) per packaging; status, probes and server lists on a
//! stopped machine.

use super::*;
use crate::ops::tests::{ctx_with, log};
use clustermgr_proto::{ReplicationProbe, ReplicationStatus, SetLdapServers, replication_probe};
use std::path::PathBuf;
use std::time::Duration;

/// slapd.conf as the stand-in writes it: the hook files included by their path inside Gluu.
fn slapd_conf(root: &Path) -> PathBuf {
    let etc = root.join("opt/gluu-server/opt/openldap/etc");
    write(
        &etc.join("slapd.conf"),
        "include /etc/ldap/schema/core.schema\n\
         include /opt/openldap/etc/replication-global.conf\n\
         database mdb\nsuffix \"o=gluu\"\n\
         include /opt/openldap/etc/replication-gluu.conf\n\
         database mdb\nsuffix \"o=site\"\n\
         include /opt/openldap/etc/replication-site.conf\n",
    );
    etc
}

/// A request without peers (no replicator to create over LDAPS) whose restart wait fails at
/// once (nothing answers there).
fn alone() -> ConfigureReplication {
    let mut r = req(&[]);
    r.host = "127.0.0.1".into();
    r.port = 9;
    r
}

fn hidden(etc: &Path) -> Vec<String> {
    std::fs::read_dir(etc)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".clustermgr"))
        .collect()
}

#[tokio::test]
async fn a_machine_checks_with_slaptest_and_restarts_its_unit_inside() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::Machine, true);
    let etc = slapd_conf(d.path());
    rec.answer(0, "running\n");
    let ctx = ctx_with(h.clone());
    let layout = Layout::detect(&ctx.host).unwrap();
    let (mut l, _rx) = log();
    let e = openldap::configure(&ctx, &layout, &alone(), Duration::from_millis(300), &mut l)
        .await
        .unwrap_err();
    assert!(e.0.contains("did not answer on LDAPS"), "{e}");
    let want = vec![
        nsenter(&[
            "/usr/sbin/slaptest",
            "-u",
            "-f",
            "/opt/openldap/etc/.clustermgr-candidate-slapd.conf",
        ]),
        nsenter(&["/bin/systemctl", "restart", "opendj"]),
    ];
    assert_eq!(rec.argvs(), after_boot(&h, want).await);
    // The hooks were installed (empty: no peer), the candidates removed.
    assert_eq!(
        std::fs::read_to_string(etc.join("replication-gluu.conf")).unwrap(),
        HEADER
    );
    assert!(hidden(&etc).is_empty(), "{:?}", hidden(&etc));
}

#[tokio::test]
async fn a_stopped_machine_is_enabled_and_started_before_slaptest() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::Machine, false);
    slapd_conf(d.path());
    // `gluu-serverd start` brings the machine's leader, as the real one does.
    let (root, proc, seen) = (d.path().to_path_buf(), h.proc.clone(), rec.clone());
    let starter = std::thread::spawn(move || {
        let started = |a: &Vec<String>| a.last().is_some_and(|v| v == "start");
        for _ in 0..1000 {
            if seen.argvs().iter().any(started) {
                start_machine(&root, &proc, PID);
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    rec.answer(0, "");
    rec.answer(0, "");
    rec.answer(0, "running\n");
    let ctx = ctx_with(h.clone());
    let layout = Layout::detect(&ctx.host).unwrap();
    let (mut l, _rx) = log();
    openldap::configure(&ctx, &layout, &alone(), Duration::from_millis(300), &mut l)
        .await
        .unwrap_err();
    starter.join().unwrap();
    let serverd = d.path().join("sbin/gluu-serverd").display().to_string();
    let mut want = vec![
        strings(&[&serverd, "enable"]),
        strings(&[&serverd, "start"]),
    ];
    // Then what a running machine's check and the operation run.
    want.extend(
        after_boot(
            &h,
            vec![
                nsenter(&[
                    "/usr/sbin/slaptest",
                    "-u",
                    "-f",
                    "/opt/openldap/etc/.clustermgr-candidate-slapd.conf",
                ]),
                nsenter(&["/bin/systemctl", "restart", "opendj"]),
            ],
        )
        .await,
    );
    assert_eq!(rec.argvs(), want);
}

#[tokio::test]
async fn an_initd_chroot_checks_and_restarts_through_chroot() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::InitdChroot, false);
    let etc = slapd_conf(d.path());
    let ctx = ctx_with(h);
    let layout = Layout::detect(&ctx.host).unwrap();
    let (mut l, _rx) = log();
    openldap::configure(&ctx, &layout, &alone(), Duration::from_millis(300), &mut l)
        .await
        .unwrap_err();
    let c = d.path().join("opt/gluu-server").display().to_string();
    assert_eq!(
        rec.argvs(),
        vec![
            strings(&[
                "chroot",
                &c,
                "/usr/sbin/slaptest",
                "-u",
                "-f",
                "/opt/openldap/etc/.clustermgr-candidate-slapd.conf"
            ]),
            strings(&["chroot", &c, "/etc/init.d/opendj", "restart"]),
        ]
    );
    assert!(hidden(&etc).is_empty());
}

#[tokio::test]
async fn a_refusing_slaptest_leaves_the_live_hooks_alone() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::Machine, true);
    let etc = slapd_conf(d.path());
    let boot = boot_check(&h).await.len();
    for _ in 0..boot {
        rec.answer(0, "running\n");
    }
    rec.answer(1, "");
    let ctx = ctx_with(h);
    let layout = Layout::detect(&ctx.host).unwrap();
    let (mut l, _rx) = log();
    let e = openldap::configure(&ctx, &layout, &alone(), Duration::from_millis(300), &mut l)
        .await
        .unwrap_err();
    assert!(e.0.contains("slaptest failed (exit code 1)"), "{e}");
    assert_eq!(rec.argvs().len(), boot + 1, "no restart");
    assert!(!etc.join("replication-gluu.conf").exists());
    assert!(hidden(&etc).is_empty());
}

#[tokio::test]
async fn a_stopped_machine_reports_its_configured_partners_without_asking_it() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::Machine, false);
    let etc = slapd_conf(d.path());
    let hooks = render_hooks(&req(&[("10.0.0.2", 2)]), "/ca.pem").unwrap();
    std::fs::write(etc.join(GLOBAL_HOOK), &hooks.global).unwrap();
    for (n, t) in &hooks.bases {
        std::fs::write(etc.join(n), t).unwrap();
    }
    let ctx = ctx_with(h);
    let (mut l, _rx) = log();
    let out = status(
        &ctx,
        ReplicationStatus {
            host: "127.0.0.1".into(),
            port: 9,
            admin_password: b"admin".to_vec(),
            bases: Vec::new(),
        },
        &mut l,
    )
    .await
    .unwrap();
    assert_eq!(out.server_id, 1);
    assert_eq!(out.bases.len(), 2);
    for b in &out.bases {
        assert!(!b.reachable);
        assert_eq!(b.error, MACHINE_STOPPED);
        assert_eq!(b.partners, ["10.0.0.2:1636"]);
    }
    // A probe cannot run there either; nothing was started.
    let e = probe(
        &ctx,
        ReplicationProbe {
            host: "127.0.0.1".into(),
            port: 9,
            admin_password: b"admin".to_vec(),
            base: "o=gluu".into(),
            marker: "m-1".into(),
            action: replication_probe::Action::Write as i32,
            within_ms: 100,
            also: Vec::new(),
        },
        &mut l,
    )
    .await
    .unwrap_err();
    assert!(e.0.contains("machine is stopped"), "{e}");
    assert!(rec.argvs().is_empty());
}

#[tokio::test]
async fn server_lists_are_written_under_the_container_and_the_machine_runs_for_the_directory() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::Machine, true);
    let props = d.path().join("opt/gluu-server").join(GLUU_LDAP_PROPERTIES);
    write(
        &props,
        "bindDN: cn=directory manager\nservers: localhost:1636\n",
    );
    rec.answer(0, "running\n");
    let (mut l, _rx) = log();
    // The directory does not answer here: the files are written, then the modify fails.
    set_ldap_servers(
        &ctx_with(h.clone()),
        SetLdapServers {
            servers: vec!["10.0.0.1:1636".into(), "10.0.0.2:1636".into()],
            host: "127.0.0.1".into(),
            port: 9,
            admin_password: b"admin".to_vec(),
        },
        &mut l,
    )
    .await
    .unwrap_err();
    assert_eq!(
        std::fs::read_to_string(&props).unwrap(),
        "bindDN: cn=directory manager\nservers: 10.0.0.1:1636,10.0.0.2:1636\n"
    );
    assert_eq!(rec.argvs(), boot_check(&h).await);
}
