use super::*;
use crate::host::{Host, PackageFormat, PackageMode, Recorder, Runner};
use crate::ops::gluu::Flavor;
use crate::ops::gluu::layout::fixture::{install as install_gluu, nsenter, start_machine};
use crate::ops::tests::{ctx_with, log};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::PathBuf;
use std::sync::Arc;

const LEADER: u32 = 4343;
const STORE: &str = "/opt/jre/jre/lib/security/cacerts";

/// A host with a Gluu Server of `flavor` (its JRE's keytool and JRE 8 trust store), /proc a
/// fake tree under the root, commands recorded. Returns the Gluu root too.
fn gluu_host(root: &Path, flavor: Flavor) -> (Host, Arc<Recorder>, PathBuf) {
    install_gluu(root, flavor);
    let c = match flavor {
        Flavor::NoChroot => root.to_path_buf(),
        _ => root.join("opt/gluu-server"),
    };
    std::fs::create_dir_all(c.join("install/community-edition-setup/output")).unwrap();
    std::fs::create_dir_all(c.join("etc/certs")).unwrap();
    std::fs::create_dir_all(c.join("opt/jre/bin")).unwrap();
    std::fs::write(c.join("opt/jre/bin/keytool"), "").unwrap();
    std::fs::create_dir_all(c.join("opt/jre/jre/lib/security")).unwrap();
    std::fs::write(c.join("opt/jre/jre/lib/security/cacerts"), "").unwrap();
    let rec = Arc::new(Recorder::default());
    (
        Host {
            root: root.to_path_buf(),
            packages: PackageMode::System,
            format: Some(PackageFormat::Deb),
            runner: Runner::Recording(rec.clone()),
            proc: root.join("proc"),
        },
        rec,
        c,
    )
}

fn file(path: &str, content: &[u8], mode: u32) -> CertificateFile {
    CertificateFile {
        path: path.into(),
        content: content.to_vec(),
        mode,
        sha256: hex::encode(Sha256::digest(content)),
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn delete_args<'a>(alias: &'a str, store: &'a str) -> Vec<&'a str> {
    vec![
        "-delete",
        "-alias",
        alias,
        "-keystore",
        store,
        "-storepass",
        "changeit",
    ]
}

fn import_args<'a>(alias: &'a str, cert: &'a str, store: &'a str) -> Vec<&'a str> {
    vec![
        "-import",
        "-trustcacerts",
        "-alias",
        alias,
        "-file",
        cert,
        "-keystore",
        store,
        "-storepass",
        "changeit",
        "-noprompt",
    ]
}

fn request() -> InstallGluuCertificates {
    InstallGluuCertificates {
        alias_prefix: "lb.example.org".into(),
        files: vec![
            file("etc/certs/httpd.crt", b"H", 0o644),
            file("etc/certs/httpd.key", b"K", 0o600),
            file("etc/certs/opendj.crt", b"O", 0o644),
            file(
                "install/community-edition-setup/output/scim-rp.jks",
                b"J",
                0o600,
            ),
        ],
    }
}

#[tokio::test]
async fn a_machine_imports_with_its_own_keytool_through_its_leader() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec, c) = gluu_host(d.path(), Flavor::Machine);
    start_machine(d.path(), &h.proc, LEADER);
    rec.answer(0, "running\n"); // is-system-running
    // The first delete finds no alias (keytool exits 1): that is fine.
    rec.answer(
        1,
        "keytool error: java.lang.Exception: Alias <lb.example.org_httpd> does not exist",
    );
    // The node's own directory certificate: kept, whatever the set holds.
    std::fs::write(c.join("etc/certs/opendj.crt"), "OWN").unwrap();
    let (mut l, _rx) = log();
    let out = install(&ctx_with(h), request(), &mut l).await.unwrap();
    assert_eq!((out.written, out.unchanged, out.imported), (3, 0, 2));
    assert_eq!(
        std::fs::read_to_string(c.join("etc/certs/opendj.crt")).unwrap(),
        "OWN"
    );
    let kt = |args: Vec<&str>| nsenter(LEADER, KEYTOOL, &args);
    assert_eq!(
        rec.argvs(),
        [
            nsenter(LEADER, "/bin/systemctl", &["is-system-running"]),
            kt(delete_args("lb.example.org_httpd", STORE)),
            kt(import_args(
                "lb.example.org_httpd",
                "/etc/certs/httpd.crt",
                STORE
            )),
            kt(delete_args("lb.example.org_opendj", STORE)),
            kt(import_args(
                "lb.example.org_opendj",
                "/etc/certs/opendj.crt",
                STORE
            )),
        ]
    );
    // Files by their host path under the container root, modes kept.
    let key = c.join("etc/certs/httpd.key");
    assert_eq!(std::fs::read(&key).unwrap(), b"K");
    assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(
        std::fs::metadata(c.join("etc/certs/httpd.crt"))
            .unwrap()
            .mode()
            & 0o7777,
        0o644
    );
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(c.join("etc/certs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}

#[tokio::test]
async fn a_stopped_machine_is_enabled_and_started_before_keytool() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec, _c) = gluu_host(d.path(), Flavor::Machine);
    let (root, proc) = (d.path().to_path_buf(), h.proc.clone());
    rec.on(
        |argv| argv.last().is_some_and(|a| a == "start"),
        move || start_machine(&root, &proc, LEADER),
    );
    let (mut l, _rx) = log();
    let req = InstallGluuCertificates {
        alias_prefix: "lb.example.org".into(),
        files: vec![file("etc/certs/shibIDP.crt", b"S", 0o644)],
    };
    let out = install(&ctx_with(h), req, &mut l).await.unwrap();
    assert_eq!(out.imported, 1);
    let serverd = d.path().join("sbin/gluu-serverd").display().to_string();
    let kt = |args: Vec<&str>| nsenter(LEADER, KEYTOOL, &args);
    assert_eq!(
        rec.argvs(),
        [
            s(&[&serverd, "enable"]),
            s(&[&serverd, "start"]),
            nsenter(LEADER, "/bin/systemctl", &["is-system-running"]),
            kt(delete_args("lb.example.org_shibIDP", STORE)),
            kt(import_args(
                "lb.example.org_shibIDP",
                "/etc/certs/shibIDP.crt",
                STORE
            )),
        ]
    );
}

#[tokio::test]
async fn the_initd_chroot_runs_keytool_through_chroot_and_converges() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec, c) = gluu_host(d.path(), Flavor::InitdChroot);
    let cs = c.display().to_string();
    std::fs::write(c.join("etc/certs/opendj.crt"), "OWN").unwrap();
    let (mut l, _rx) = log();
    let out = install(&ctx_with(h), request(), &mut l).await.unwrap();
    assert_eq!((out.written, out.unchanged, out.imported), (3, 0, 2));
    let kt = |args: Vec<&str>| {
        let mut v = s(&["chroot", &cs, KEYTOOL]);
        v.extend(args.iter().map(|a| a.to_string()));
        v
    };
    assert_eq!(
        rec.argvs(),
        [
            kt(delete_args("lb.example.org_httpd", STORE)),
            kt(import_args(
                "lb.example.org_httpd",
                "/etc/certs/httpd.crt",
                STORE
            )),
            kt(delete_args("lb.example.org_opendj", STORE)),
            kt(import_args(
                "lb.example.org_opendj",
                "/etc/certs/opendj.crt",
                STORE
            )),
        ]
    );
    // Again: nothing written, the imports are redone (they converge).
    let (h, rec, _) = gluu_host(d.path(), Flavor::InitdChroot);
    let (mut l, _rx) = log();
    let out = install(&ctx_with(h), request(), &mut l).await.unwrap();
    assert_eq!((out.written, out.unchanged, out.imported), (0, 3, 2));
    assert_eq!(rec.argvs().len(), 4);
}

#[tokio::test]
async fn nochroot_runs_keytool_by_host_path_and_prefers_the_jre11_store() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec, c) = gluu_host(d.path(), Flavor::NoChroot);
    std::fs::create_dir_all(c.join("opt/jre/lib/security")).unwrap();
    std::fs::write(c.join("opt/jre/lib/security/cacerts"), "").unwrap();
    let (mut l, _rx) = log();
    let req = InstallGluuCertificates {
        alias_prefix: "lb.example.org".into(),
        files: vec![file("etc/certs/shibIDP.crt", b"S", 0o644)],
    };
    install(&ctx_with(h), req, &mut l).await.unwrap();
    let p = |x: &str| c.join(x).display().to_string();
    assert_eq!(
        rec.argvs()[1],
        s(&[
            &p("opt/jre/bin/keytool"),
            "-import",
            "-trustcacerts",
            "-alias",
            "lb.example.org_shibIDP",
            "-file",
            &p("etc/certs/shibIDP.crt"),
            "-keystore",
            &p("opt/jre/lib/security/cacerts"),
            "-storepass",
            "changeit",
            "-noprompt"
        ])
    );
}

#[tokio::test]
async fn a_failing_keytool_fails_the_job_with_its_exit_code() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec, _) = gluu_host(d.path(), Flavor::Machine);
    start_machine(d.path(), &h.proc, LEADER);
    rec.answer(0, "running\n");
    rec.answer(
        1,
        "keytool error: java.io.IOException: Keystore was tampered with",
    );
    let (mut l, _rx) = log();
    let req = InstallGluuCertificates {
        alias_prefix: "lb".into(),
        files: vec![file("etc/certs/httpd.crt", b"H", 0o644)],
    };
    let e = install(&ctx_with(h.clone()), req.clone(), &mut l)
        .await
        .unwrap_err();
    assert!(
        e.0.contains("keytool -delete") && e.0.contains("tampered"),
        "{e}"
    );
    assert_eq!(l.take_exit_code(), Some(1));
    rec.answer(0, "running\n");
    rec.answer(0, "");
    rec.answer(1, "keytool error: something else");
    let e = install(&ctx_with(h), req, &mut l).await.unwrap_err();
    assert!(e.0.contains("exit code 1"), "{e}");
}

#[tokio::test]
async fn bad_requests_write_nothing() {
    let d = tempfile::tempdir().unwrap();
    // A stopped machine: not even started for a request refused up front.
    let (h, rec, _) = gluu_host(d.path(), Flavor::Machine);
    let ctx = ctx_with(h);
    let good = file("etc/certs/httpd.crt", b"H", 0o644);
    let mut bad_digest = file("etc/certs/httpd.key", b"K", 0o600);
    bad_digest.sha256 = hex::encode(Sha256::digest(b"other"));
    let cases: Vec<(Vec<CertificateFile>, &str, &str)> = vec![
        (
            vec![good.clone(), bad_digest],
            "lb",
            "does not match its SHA-256",
        ),
        (vec![file("etc/passwd", b"x", 0o644)], "lb", "not part of"),
        (
            vec![file("etc/certs/../../x", b"x", 0o644)],
            "lb",
            "not part of",
        ),
        (
            vec![file("etc/certs/sub/x", b"x", 0o644)],
            "lb",
            "not part of",
        ),
        (
            vec![file("etc/certs/x", b"x", 0o4755)],
            "lb",
            "not a permission mode",
        ),
        (vec![good.clone(), good.clone()], "lb", "given twice"),
        (vec![good.clone()], "lb; rm -rf /", "not a host name"),
        (vec![good.clone()], "", "not a host name"),
    ];
    for (files, prefix, want) in cases {
        let (mut l, _rx) = log();
        let e = install(
            &ctx,
            InstallGluuCertificates {
                files,
                alias_prefix: prefix.into(),
            },
            &mut l,
        )
        .await
        .unwrap_err();
        assert!(e.0.contains(want), "{want}: {e}");
    }
    assert!(
        !d.path()
            .join("opt/gluu-server/etc/certs/httpd.crt")
            .exists(),
        "nothing was written"
    );
    assert!(rec.argvs().is_empty());
}

#[tokio::test]
async fn links_are_never_followed_reads_skip_them_and_writes_refuse_them() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec, c) = gluu_host(d.path(), Flavor::Machine);
    start_machine(d.path(), &h.proc, LEADER);
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    symlink(&victim, c.join("etc/certs/httpd.key")).unwrap();
    std::fs::write(c.join("etc/certs/httpd.crt"), "CRT").unwrap();
    for own in [
        "openldap.crt",
        "openldap.key",
        "opendj.crt",
        "opendj.pkcs12",
    ] {
        std::fs::write(c.join("etc/certs").join(own), "OWN").unwrap();
    }
    std::fs::set_permissions(
        c.join("etc/certs/httpd.crt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    nix::unistd::mkfifo(&c.join("etc/certs/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    std::fs::write(
        c.join("install/community-edition-setup/output/scim-rp.jks"),
        [0xfe, 0xed, 0xfe, 0xed, 0xff],
    )
    .unwrap();
    let ctx = ctx_with(h);
    let (mut l, _rx) = log();
    let set = read(&ctx, ReadGluuCertificates {}, &mut l).await.unwrap();
    let paths: Vec<&str> = set.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "etc/certs/httpd.crt",
            "install/community-edition-setup/output/scim-rp.jks"
        ]
    );
    assert_eq!(set.files[0].mode, 0o640);
    assert_eq!(set.files[0].sha256, hex::encode(Sha256::digest(b"CRT")));
    assert_eq!(set.files[1].content, [0xfe, 0xed, 0xfe, 0xed, 0xff]);

    // A link in etc/certs as the whole directory is refused.
    std::fs::rename(c.join("etc/certs"), c.join("etc/certs.real")).unwrap();
    symlink(c.join("etc/certs.real"), c.join("etc/certs")).unwrap();
    let (mut l, _rx) = log();
    let e = read(&ctx, ReadGluuCertificates {}, &mut l)
        .await
        .unwrap_err();
    assert!(e.0.contains("symbolic link"), "{e}");
    std::fs::remove_file(c.join("etc/certs")).unwrap();
    std::fs::rename(c.join("etc/certs.real"), c.join("etc/certs")).unwrap();

    // Installing over a link is refused; its target is untouched.
    let (mut l, _rx) = log();
    let e = install(
        &ctx,
        InstallGluuCertificates {
            alias_prefix: "lb".into(),
            files: vec![file("etc/certs/httpd.key", b"NEW", 0o600)],
        },
        &mut l,
    )
    .await
    .unwrap_err();
    assert!(e.0.contains("symbolic link"), "{e}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    assert!(
        rec.argvs().is_empty(),
        "reads and refused writes run nothing"
    );
}
