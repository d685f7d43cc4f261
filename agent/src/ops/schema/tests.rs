use super::render::checked;
use super::*;
use crate::host::{Host, PackageFormat, PackageMode, Recorder, Runner};
use crate::ops::gluu::Flavor;
use crate::ops::gluu::layout::fixture::{install, start_machine};
use crate::ops::tests::{ctx_with, log};
use clustermgr_proto::{SchemaElement, SchemaElementKind};
use std::path::Path;
use std::sync::Arc;

/// The fake leader PID of a started test machine.
const PID: u32 = 4242;

/// What the layout runs to be sure the started test machine runs, as it records it (its
/// first command answered "running", as the tests script their recorders).
async fn boot_check(host: &Host) -> Vec<Vec<String>> {
    let rec = Arc::new(Recorder::default());
    rec.answer(0, "running\n");
    let mut h = host.clone();
    h.runner = Runner::Recording(rec.clone());
    let (mut l, _rx) = log();
    Layout::detect(&h)
        .unwrap()
        .ensure_running(&h, &mut l)
        .await
        .unwrap();
    rec.argvs()
}

/// argv of `inside` run in the started test machine.
fn nsenter(inside: &[&str]) -> Vec<String> {
    let pid = PID.to_string();
    [
        "nsenter",
        "--target",
        pid.as_str(),
        "--all",
        "-r",
        "-w",
        "--",
    ]
    .iter()
    .chain(inside)
    .map(|s| s.to_string())
    .collect()
}

fn element(kind: SchemaElementKind, oid: &str, name: &str, rest: &str) -> SchemaElement {
    SchemaElement {
        kind: kind as i32,
        oid: oid.into(),
        names: vec![name.into()],
        description: format!("( {oid} NAME '{name}' {rest})"),
        syntax: if kind == SchemaElementKind::AttributeType {
            "1.3.6.1.4.1.1466.115.121.1.15".into()
        } else {
            String::new()
        },
        single_value: false,
        user_modifiable: true,
    }
}

fn schema(sup: &str) -> CustomSchema {
    CustomSchema {
        name: "acme".into(),
        elements: vec![
            element(
                SchemaElementKind::AttributeType,
                "1.3.6.1.4.1.99999.1.1",
                "acmeBadge",
                &format!("EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 {sup}"),
            ),
            element(
                SchemaElementKind::ObjectClass,
                "1.3.6.1.4.1.99999.2.1",
                "acmePerson",
                "SUP top AUXILIARY MAY ( acmeBadge ) ",
            ),
        ],
        source_sha256: "ab".into(),
        source_file: "acme.schema".into(),
    }
}

#[test]
fn the_include_goes_after_the_last_schema_include() {
    let conf = "include /etc/ldap/schema/core.schema\ninclude /x/gluu.schema\n\nmodulepath /m\ninclude /x/replication-global.conf\n";
    let out = with_include(conf, "/x/clustermgr-acme.schema").unwrap();
    assert_eq!(
        out,
        "include /etc/ldap/schema/core.schema\ninclude /x/gluu.schema\ninclude /x/clustermgr-acme.schema\n\nmodulepath /m\ninclude /x/replication-global.conf\n"
    );
    // Twice changes nothing.
    assert_eq!(
        with_include(&out, "/x/clustermgr-acme.schema").unwrap(),
        out
    );
    assert!(with_include("modulepath /m\n", "/x/a.schema").is_err());
}

#[test]
fn both_forms_render_every_element() {
    let s = schema("");
    let ol = render_openldap(&s).unwrap();
    assert!(
        ol.contains("\nattributetype ( 1.3.6.1.4.1.99999.1.1 NAME 'acmeBadge'"),
        "{ol}"
    );
    assert!(
        ol.contains("\nobjectclass ( 1.3.6.1.4.1.99999.2.1 NAME 'acmePerson'"),
        "{ol}"
    );
    let dj = render_opendj(&s).unwrap();
    assert!(dj.contains("\ndn: cn=schema\nobjectClass: top\n"), "{dj}");
    assert!(
        dj.contains("\nattributeTypes: ( 1.3.6.1.4.1.99999.1.1 "),
        "{dj}"
    );
    assert!(
        dj.contains("\nobjectClasses: ( 1.3.6.1.4.1.99999.2.1 "),
        "{dj}"
    );
    // An operator's file name with a line break stays inside the header comment.
    let mut odd = s.clone();
    odd.source_file = "x\npidfile /etc/passwd\n#.schema".into();
    odd.source_sha256 = "ab\ninclude /x".into();
    for text in [render_openldap(&odd).unwrap(), render_opendj(&odd).unwrap()] {
        assert!(
            text.lines()
                .all(|l| !l.starts_with("pidfile") && !l.starts_with("include")),
            "{text}"
        );
        assert_eq!(text.lines().next().unwrap().matches("pidfile").count(), 1);
    }
    // What the controller should never send is refused here too.
    let mut bad = s.clone();
    bad.name = "../x".into();
    assert!(checked(&bad).is_err());
    let mut bad = s.clone();
    bad.elements[0].description = "( 1.2 NAME 'a'\ninclude /etc/passwd )".into();
    assert!(checked(&bad).is_err());
    let mut bad = s.clone();
    bad.elements[0].oid = "1.2; rm".into();
    assert!(checked(&bad).is_err());
    assert!(checked_all(&[]).is_err());
    assert!(checked_all(&[s.clone(), s]).is_err());
}

#[test]
fn example_values_cover_common_syntaxes() {
    assert_eq!(
        example_value("1.3.6.1.4.1.1466.115.121.1.15{256}"),
        Some("clustermgr schema check")
    );
    assert_eq!(example_value("1.3.6.1.4.1.1466.115.121.1.27"), Some("42"));
    assert_eq!(example_value("1.3.6.1.4.1.1466.115.121.1.5"), None);
    assert_eq!(example_value(""), None);
}

/// A nochroot Gluu root with an OpenLDAP slapd.conf including one local schema file (by its
/// host path, as programs run on the host see it).
fn openldap_root(d: &Path) -> String {
    install(d, Flavor::NoChroot);
    let etc = d.join("opt/openldap/etc");
    std::fs::create_dir_all(etc.join("schema")).unwrap();
    std::fs::write(
        etc.join("schema/gluu.schema"),
        "attributetype ( 1.3.6.1.4.1.99998.1 NAME 'gluuThing' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )\n",
    )
    .unwrap();
    let conf = format!(
        "include /etc/ldap/schema/core.schema\ninclude {}\n\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n",
        etc.join("schema/gluu.schema").display()
    );
    std::fs::write(etc.join("slapd.conf"), &conf).unwrap();
    conf
}

fn host(root: &Path, runner: Runner) -> Host {
    let proc = root.join("proc");
    std::fs::create_dir_all(&proc).unwrap();
    Host {
        root: root.to_path_buf(),
        packages: PackageMode::System,
        format: Some(PackageFormat::Deb),
        runner,
        proc,
    }
}

/// A started Gluu machine under `root` whose directory is OpenLDAP (slapd.conf including
/// Gluu's schema by its path inside the machine).
fn machine_openldap(root: &Path) -> (String, std::path::PathBuf) {
    install(root, Flavor::Machine);
    let proc = root.join("proc");
    std::fs::create_dir_all(&proc).unwrap();
    start_machine(root, &proc, PID);
    let etc = root.join("opt/gluu-server/opt/openldap/etc");
    std::fs::create_dir_all(etc.join("schema")).unwrap();
    std::fs::write(etc.join("schema/gluu.schema"), "# gluu\n").unwrap();
    let conf = "include /etc/ldap/schema/core.schema\ninclude /opt/openldap/etc/schema/gluu.schema\n\nmoduleload back_mdb\n";
    std::fs::write(etc.join("slapd.conf"), conf).unwrap();
    (conf.to_string(), etc)
}

/// A Gluu root of `flavor` under `root` whose directory is OpenDJ (its schema directory).
fn opendj_gluu(root: &Path, flavor: Flavor) -> std::path::PathBuf {
    install(root, flavor);
    let c = root.join("opt/gluu-server");
    std::fs::create_dir_all(c.join("opt/opendj/bin")).unwrap();
    std::fs::write(c.join("opt/opendj/bin/dsreplication"), "").unwrap();
    std::fs::create_dir_all(c.join("opt/opendj/config/schema")).unwrap();
    c.join("opt/opendj/config/schema")
}

fn req(s: CustomSchema, check_only: bool) -> ApplyLdapSchema {
    ApplyLdapSchema {
        schemas: vec![s],
        check_only,
        // Nothing listens there: the wait after a restart fails quickly.
        host: "127.0.0.1".into(),
        port: 9,
        admin_password: b"dm secret pw".to_vec(),
        within_ms: 300,
        only_missing: false,
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_check_runs_the_real_slaptest_and_changes_nothing() {
    if !Path::new("/usr/sbin/slaptest").exists()
        || !Path::new("/etc/ldap/schema/core.schema").exists()
    {
        crate::ops::tests::missing_prerequisite("slapd (slaptest, core.schema) is not installed");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let conf = openldap_root(d.path());
    let etc = d.path().join("opt/openldap/etc");
    let before = (names_in(&etc), names_in(&etc.join("schema")));
    // A nochroot install runs the host's slaptest (under this test's root).
    std::fs::create_dir_all(d.path().join("usr/sbin")).unwrap();
    std::os::unix::fs::symlink("/usr/sbin/slaptest", d.path().join("usr/sbin/slaptest")).unwrap();
    let ctx = ctx_with(host(d.path(), Runner::Real));

    let (mut l, _rx) = log();
    let out = apply(&ctx, req(schema(""), true), &mut l).await.unwrap();
    assert!(!out.changed && !out.restarted);
    assert_eq!(out.directory, "openldap");

    // Two schemas at once, the second deriving from the first: one candidate configuration
    // includes both, in order.
    let mut second = schema("");
    second.name = "acme-more".into();
    second.elements = vec![element(
        SchemaElementKind::AttributeType,
        "1.3.6.1.4.1.99999.1.9",
        "acmeBadgeAlias",
        "SUP acmeBadge ",
    )];
    let mut two = req(schema(""), true);
    two.schemas.push(second.clone());
    let (mut l, _rx) = log();
    let out = apply(&ctx, two.clone(), &mut l).await.unwrap();
    assert_eq!(out.files.len(), 2);
    // In the other order, acmeBadge is not defined yet when acmeBadgeAlias is read.
    two.schemas.reverse();
    let (mut l, _rx) = log();
    assert!(apply(&ctx, two, &mut l).await.is_err());

    // An attribute type whose SUP is unknown to the directory: slapd refuses it.
    let (mut l, _rx) = log();
    let e = apply(&ctx, req(schema("SUP noSuchAttribute "), true), &mut l)
        .await
        .unwrap_err();
    assert!(e.0.contains("refuses"), "{e}");
    // Nor does an install get past the check.
    let (mut l, _rx) = log();
    apply(&ctx, req(schema("SUP noSuchAttribute "), false), &mut l)
        .await
        .unwrap_err();

    assert_eq!(
        std::fs::read_to_string(etc.join("slapd.conf")).unwrap(),
        conf
    );
    assert_eq!((names_in(&etc), names_in(&etc.join("schema"))), before);
}

#[tokio::test]
async fn an_install_that_does_not_come_back_is_rolled_back() {
    let d = tempfile::tempdir().unwrap();
    let conf = openldap_root(d.path());
    let etc = d.path().join("opt/openldap/etc");
    let rec = Arc::new(Recorder::default());
    let ctx = ctx_with(host(d.path(), Runner::Recording(rec.clone())));
    let (mut l, mut rx) = log();
    let e = apply(&ctx, req(schema(""), false), &mut l)
        .await
        .unwrap_err();
    assert!(e.0.contains("did not answer on LDAPS"), "{e}");
    // slaptest on the candidate, the restart, the restart of the rollback: a nochroot install
    // runs the host's programs and units.
    let candidate = etc.join(".clustermgr-candidate-slapd.conf");
    let restart = ["systemctl", "restart", "opendj"]
        .map(String::from)
        .to_vec();
    assert_eq!(
        rec.argvs(),
        vec![
            vec![
                d.path().join("usr/sbin/slaptest").display().to_string(),
                "-u".into(),
                "-f".into(),
                candidate.display().to_string(),
            ],
            restart.clone(),
            restart,
        ]
    );
    // Everything is as before, except the kept previous slapd.conf.
    assert_eq!(
        std::fs::read_to_string(etc.join("slapd.conf")).unwrap(),
        conf
    );
    assert!(!etc.join("schema/clustermgr-acme.schema").exists());
    assert_eq!(
        names_in(&etc.join("schema")),
        vec!["gluu.schema".to_string()]
    );
    assert_eq!(
        std::fs::read_to_string(etc.join(PREVIOUS_CONF)).unwrap(),
        conf
    );
    while let Ok((_, line)) = rx.try_recv() {
        assert!(!line.contains("dm secret pw"), "{line}");
    }
}

#[tokio::test]
async fn a_refused_check_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let conf = openldap_root(d.path());
    let etc = d.path().join("opt/openldap/etc");
    let rec = Arc::new(Recorder::default());
    rec.answer(1, "");
    let ctx = ctx_with(host(d.path(), Runner::Recording(rec.clone())));
    let (mut l, _rx) = log();
    apply(&ctx, req(schema(""), false), &mut l)
        .await
        .unwrap_err();
    assert_eq!(rec.argvs().len(), 1);
    assert_eq!(
        std::fs::read_to_string(etc.join("slapd.conf")).unwrap(),
        conf
    );
    assert_eq!(
        names_in(&etc.join("schema")),
        vec!["gluu.schema".to_string()]
    );
    assert!(!etc.join(PREVIOUS_CONF).exists());
}

#[tokio::test]
async fn opendj_in_a_machine_gets_an_ldif_and_its_unit_restarted_inside() {
    let d = tempfile::tempdir().unwrap();
    let dir = opendj_gluu(d.path(), Flavor::Machine);
    let proc = d.path().join("proc");
    std::fs::create_dir_all(&proc).unwrap();
    start_machine(d.path(), &proc, PID);
    let file = dir.join("999-clustermgr-acme.ldif");
    let rec = Arc::new(Recorder::default());
    let ctx = ctx_with(host(d.path(), Runner::Recording(rec.clone())));
    let mut want = boot_check(&ctx.host).await;

    // A check runs nothing: OpenDJ reads its schema when it starts.
    let (mut l, _rx) = log();
    let out = apply(&ctx, req(schema(""), true), &mut l).await.unwrap();
    assert_eq!(out.directory, "opendj");
    assert!(!file.exists() && rec.argvs().is_empty());

    // The previous version of the file comes back when the directory does not.
    std::fs::write(&file, "previous").unwrap();
    rec.answer(0, "running\n");
    let (mut l, _rx) = log();
    let e = apply(&ctx, req(schema(""), false), &mut l)
        .await
        .unwrap_err();
    assert!(e.0.contains("the rollback did not bring"), "{e}");
    let restart = nsenter(&["/bin/systemctl", "restart", "opendj"]);
    want.extend([restart.clone(), restart]);
    assert_eq!(rec.argvs(), want);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "previous");
}

#[tokio::test]
async fn openldap_in_a_machine_is_checked_and_restarted_inside() {
    let d = tempfile::tempdir().unwrap();
    let (conf, etc) = machine_openldap(d.path());
    let rec = Arc::new(Recorder::default());
    rec.answer(0, "running\n");
    let ctx = ctx_with(host(d.path(), Runner::Recording(rec.clone())));
    let mut want = boot_check(&ctx.host).await;
    let (mut l, _rx) = log();
    apply(&ctx, req(schema(""), false), &mut l)
        .await
        .unwrap_err();
    let restart = nsenter(&["/bin/systemctl", "restart", "opendj"]);
    want.extend([
        nsenter(&[
            "/usr/sbin/slaptest",
            "-u",
            "-f",
            "/opt/openldap/etc/.clustermgr-candidate-slapd.conf",
        ]),
        restart.clone(),
        restart,
    ]);
    assert_eq!(rec.argvs(), want);
    // Rolled back; the kept previous slapd.conf names the schema by its path inside.
    assert_eq!(
        std::fs::read_to_string(etc.join("slapd.conf")).unwrap(),
        conf
    );
    assert!(!etc.join("schema/clustermgr-acme.schema").exists());
    assert_eq!(
        std::fs::read_to_string(etc.join(PREVIOUS_CONF)).unwrap(),
        conf
    );
    assert_eq!(
        names_in(&etc.join("schema")),
        vec!["gluu.schema".to_string()]
    );
}

#[tokio::test]
async fn opendj_in_an_initd_chroot_is_restarted_by_its_init_script() {
    let d = tempfile::tempdir().unwrap();
    let dir = opendj_gluu(d.path(), Flavor::InitdChroot);
    let file = dir.join("999-clustermgr-acme.ldif");
    std::fs::write(&file, "previous").unwrap();
    let rec = Arc::new(Recorder::default());
    let ctx = ctx_with(host(d.path(), Runner::Recording(rec.clone())));
    let (mut l, _rx) = log();
    apply(&ctx, req(schema(""), false), &mut l)
        .await
        .unwrap_err();
    let c = d.path().join("opt/gluu-server").display().to_string();
    let restart = ["chroot", c.as_str(), "/etc/init.d/opendj", "restart"]
        .map(String::from)
        .to_vec();
    // The restart, then the rollback's restart.
    assert_eq!(rec.argvs(), vec![restart.clone(), restart]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "previous");
}

#[tokio::test]
async fn only_missing_keeps_a_schema_the_node_holds_in_another_version() {
    let d = tempfile::tempdir().unwrap();
    openldap_root(d.path());
    let schema_dir = d.path().join("opt/openldap/etc/schema");
    // The node holds acme already, in another version, and slapd.conf includes it.
    let held = "# an older acme\n";
    std::fs::write(schema_dir.join("clustermgr-acme.schema"), held).unwrap();
    let conf_path = d.path().join("opt/openldap/etc/slapd.conf");
    let conf = with_include(
        &std::fs::read_to_string(&conf_path).unwrap(),
        &schema_dir
            .join("clustermgr-acme.schema")
            .display()
            .to_string(),
    )
    .unwrap();
    std::fs::write(&conf_path, &conf).unwrap();
    let rec = Arc::new(Recorder::default());
    let ctx = ctx_with(host(d.path(), Runner::Recording(rec.clone())));
    let mut r = req(schema(""), false);
    r.only_missing = true;
    let (mut l, _rx) = log();
    let out = apply(&ctx, r.clone(), &mut l).await.unwrap();
    assert!(!out.changed && !out.restarted);
    assert!(
        rec.argvs().is_empty(),
        "nothing to check, nothing restarted"
    );
    assert_eq!(
        std::fs::read_to_string(schema_dir.join("clustermgr-acme.schema")).unwrap(),
        held
    );
    // Without the flag the node's version is replaced (and the directory restarted: here the
    // wait fails and everything is put back).
    r.only_missing = false;
    let (mut l, _rx) = log();
    apply(&ctx, r, &mut l).await.unwrap_err();
    assert_eq!(rec.argvs().len(), 3);
    assert_eq!(
        std::fs::read_to_string(schema_dir.join("clustermgr-acme.schema")).unwrap(),
        held
    );
}
