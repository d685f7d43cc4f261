use super::*;
use crate::host::{Recorder, Runner};
use crate::ops::tests::{ctx_with, log};
use std::sync::Arc;

fn host(root: &Path, format: PackageFormat, mode: PackageMode) -> (Host, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    (
        Host {
            root: root.to_path_buf(),
            packages: mode,
            format: Some(format),
            runner: Runner::Recording(rec.clone()),
            proc: std::path::PathBuf::from("/proc"),
        },
        rec,
    )
}

fn cache(host: &Host, content: &[u8], ext: &str) -> String {
    let sha = hex::encode(Sha256::digest(content));
    std::fs::create_dir_all(host.package_cache()).unwrap();
    std::fs::write(host.package_cache().join(format!("{sha}.{ext}")), content).unwrap();
    sha
}

fn cached(sha: &str) -> InstallPackage {
    InstallPackage {
        source: Some(install_package::Source::CachedSha256(sha.into())),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_pushed_deb_is_unpacked_under_a_sandbox_root() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = host(d.path(), PackageFormat::Deb, PackageMode::UnderRoot);
    let sha = cache(&h, b"a deb", "deb");
    rec.answer(0, "gluu-server\t4.2.3~standin1\n"); // dpkg-deb --show
    rec.answer(1, ""); // dpkg-query: not installed
    let ctx = ctx_with(h.clone());
    let (mut l, _rx) = log();
    let out = install(&ctx, cached(&sha), &mut l).await.unwrap();
    assert_eq!(out.package, "gluu-server");
    assert_eq!(out.version, "4.2.3~standin1");
    assert!(out.changed);
    let file = h
        .package_cache()
        .join(format!("{sha}.deb"))
        .display()
        .to_string();
    let root = format!("--root={}", d.path().display());
    assert_eq!(
        rec.argvs(),
        vec![
            vec![
                "dpkg-deb".to_string(),
                "--show".into(),
                "--showformat=${Package}\t${Version}\n".into(),
                file.clone()
            ],
            vec![
                "dpkg-query".to_string(),
                root.clone(),
                "-W".into(),
                "-f=${db:Status-Status}\t${Version}\n".into(),
                "gluu-server".into()
            ],
            vec![
                "dpkg".to_string(),
                root,
                "--force-script-chrootless".into(),
                "--force-not-root".into(),
                "--force-depends".into(),
                "--force-confold".into(),
                "-i".into(),
                file
            ],
        ]
    );
}

#[tokio::test]
async fn the_same_version_installed_is_left_alone_unless_forced() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = host(d.path(), PackageFormat::Deb, PackageMode::System);
    let sha = cache(&h, b"x", "deb");
    rec.answer(0, "nginx\t1.22.1-9\n");
    rec.answer(0, "installed\t1.22.1-9\n");
    let ctx = ctx_with(h.clone());
    let (mut l, _rx) = log();
    let out = install(&ctx, cached(&sha), &mut l).await.unwrap();
    assert!(!out.changed);
    assert_eq!(rec.argvs().len(), 2, "no install command ran");

    rec.answer(0, "nginx\t1.22.1-9\n");
    rec.answer(0, "installed\t1.22.1-9\n");
    let mut req = cached(&sha);
    req.force = true;
    let out = install(&ctx, req, &mut l).await.unwrap();
    assert!(out.changed);
    let last = rec.argvs().pop().unwrap();
    assert_eq!(
        &last[..4],
        ["apt-get", "install", "-y", "--no-install-recommends"]
    );
    assert_eq!(
        rec.calls.lock().unwrap().last().unwrap().env,
        vec![("DEBIAN_FRONTEND".to_string(), "noninteractive".to_string())]
    );
}

#[tokio::test]
async fn a_corrupt_or_missing_cached_package_is_never_installed() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = host(d.path(), PackageFormat::Deb, PackageMode::UnderRoot);
    let sha = cache(&h, b"good", "deb");
    // Corrupt it after it was cached.
    std::fs::write(h.package_cache().join(format!("{sha}.deb")), b"goo").unwrap();
    let ctx = ctx_with(h.clone());
    let (mut l, _rx) = log();
    let e = install(&ctx, cached(&sha), &mut l).await.unwrap_err();
    assert!(e.0.contains("is corrupt"), "{e}");
    let e = install(&ctx, cached(&"0".repeat(64)), &mut l)
        .await
        .unwrap_err();
    assert!(e.0.contains("not in this node's cache"), "{e}");
    let e = install(&ctx, cached("../../etc/passwd"), &mut l)
        .await
        .unwrap_err();
    assert!(e.0.contains("not a SHA-256"), "{e}");
    assert!(rec.argvs().is_empty(), "no command ran: {:?}", rec.argvs());
}

#[tokio::test]
async fn a_failing_install_reports_its_exit_code_and_output() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = host(d.path(), PackageFormat::Deb, PackageMode::UnderRoot);
    let sha = cache(&h, b"x", "deb");
    rec.answer(0, "gluu-server\t4.2.3\n");
    rec.answer(1, "");
    rec.answer(2, "dpkg: error processing archive\n");
    let ctx = ctx_with(h);
    let (mut l, _rx) = log();
    let e = install(&ctx, cached(&sha), &mut l).await.unwrap_err();
    assert!(e.0.contains("exit code 2"), "{e}");
    assert!(e.0.contains("dpkg: error processing archive"), "{e}");
}

#[tokio::test]
async fn rpm_installs_use_the_rpm_tools() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = host(d.path(), PackageFormat::Rpm, PackageMode::UnderRoot);
    let sha = cache(&h, b"an rpm", "rpm");
    rec.answer(0, "gluu-server\t4.2.3-1.el8\n");
    rec.answer(1, "package gluu-server is not installed\n");
    let ctx = ctx_with(h.clone());
    let (mut l, _rx) = log();
    let out = install(&ctx, cached(&sha), &mut l).await.unwrap();
    assert_eq!(out.version, "4.2.3-1.el8");
    let argvs = rec.argvs();
    assert_eq!(argvs[0][..3], ["rpm", "-qp", "--queryformat"]);
    assert_eq!(
        argvs[2][..6],
        [
            "rpm".to_string(),
            "--root".into(),
            d.path().display().to_string(),
            "--nodeps".into(),
            "--noscripts".into(),
            "-U".into()
        ]
    );
}

#[tokio::test]
async fn online_installs_configure_a_signed_https_repository_first() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = host(d.path(), PackageFormat::Deb, PackageMode::System);
    let ctx = ctx_with(h.clone());
    let (mut l, _rx) = log();
    let repo = PackageRepository {
        name: "gluu".into(),
        url: "https://repo.gluu.org/debian/".into(),
        suite: "bookworm".into(),
        component: "main".into(),
        signing_key: "-----BEGIN PGP PUBLIC KEY BLOCK-----\n...\n".into(),
    };
    let req = InstallPackage {
        source: Some(install_package::Source::Name("gluu-server".into())),
        repository: Some(repo.clone()),
        force: false,
    };
    rec.answer(1, ""); // not installed
    rec.answer(0, ""); // apt-get update
    rec.answer(0, ""); // apt-get install
    rec.answer(0, "installed\t4.2.3~bookworm\n");
    let out = install(&ctx, req.clone(), &mut l).await.unwrap();
    assert_eq!(out.version, "4.2.3~bookworm");
    let list = std::fs::read_to_string(h.path("/etc/apt/sources.list.d/gluu.list")).unwrap();
    assert_eq!(
        list,
        "deb [signed-by=/etc/apt/keyrings/gluu.asc] https://repo.gluu.org/debian/ bookworm main\n"
    );
    assert!(h.path("/etc/apt/keyrings/gluu.asc").exists());
    let argvs = rec.argvs();
    assert_eq!(argvs[1], ["apt-get", "update"]);
    assert_eq!(
        argvs[2],
        [
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            "gluu-server"
        ]
    );

    // Plain HTTP and unsigned repositories are refused before anything is written.
    let mut bad = req.clone();
    bad.repository.as_mut().unwrap().url = "http://23.1.2.3/debian".into();
    let e = install(&ctx, bad, &mut l).await.unwrap_err();
    assert!(e.0.contains("not https"), "{e}");
    let mut bad = req.clone();
    bad.repository.as_mut().unwrap().signing_key.clear();
    assert!(
        install(&ctx, bad, &mut l)
            .await
            .unwrap_err()
            .0
            .contains("signing key")
    );
    let mut bad = req;
    bad.source = Some(install_package::Source::Name("-oAPT::x=1".into()));
    assert!(
        install(&ctx, bad, &mut l)
            .await
            .unwrap_err()
            .0
            .contains("not a valid package name")
    );

    // A sandbox host cannot install online.
    let (h, _) = host(d.path(), PackageFormat::Deb, PackageMode::UnderRoot);
    let e = install(
        &ctx_with(h),
        InstallPackage {
            source: Some(install_package::Source::Name("nginx".into())),
            ..Default::default()
        },
        &mut l,
    )
    .await
    .unwrap_err();
    assert!(e.0.contains("offline mode"), "{e}");
}

fn online(spec: &str, force: bool) -> InstallPackage {
    InstallPackage {
        source: Some(install_package::Source::Name(spec.into())),
        repository: None,
        force,
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

const DPKG_QUERY: &[&str] = &[
    "dpkg-query",
    "-W",
    "-f=${db:Status-Status}\t${Version}\n",
    "gluu-server",
];
const RPM_QUERY: &[&str] = &[
    "rpm",
    "-q",
    "--queryformat",
    "installed\t%{VERSION}-%{RELEASE}\n",
    "gluu-server",
];

/// Gluu's package as the install workflow asks for it on each distribution, and the exact
/// commands the node runs.
#[tokio::test]
async fn online_installs_pin_the_version_with_each_distributions_package_manager() {
    struct Row {
        distribution: &'static str,
        format: PackageFormat,
        dnf: bool,
        spec: &'static str,
        installed: &'static str,
        install: Vec<Vec<String>>,
    }
    let apt = |pkg: &str| {
        vec![
            s(&["apt-get", "update"]),
            s(&[
                "apt-get",
                "install",
                "-y",
                "--no-install-recommends",
                "--allow-downgrades",
                pkg,
            ]),
        ]
    };
    let table = [
        Row {
            distribution: "Ubuntu 18.04",
            format: PackageFormat::Deb,
            dnf: false,
            spec: "gluu-server=4.2.3~bionic",
            installed: "4.2.3~bionic",
            install: apt("gluu-server=4.2.3~bionic"),
        },
        Row {
            distribution: "Ubuntu 20.04",
            format: PackageFormat::Deb,
            dnf: false,
            spec: "gluu-server=4.2.3~focal",
            installed: "4.2.3~focal",
            install: apt("gluu-server=4.2.3~focal"),
        },
        Row {
            distribution: "Debian 9",
            format: PackageFormat::Deb,
            dnf: false,
            spec: "gluu-server=4.2.3~stretch",
            installed: "4.2.3~stretch",
            install: apt("gluu-server=4.2.3~stretch"),
        },
        Row {
            distribution: "Debian 10",
            format: PackageFormat::Deb,
            dnf: false,
            spec: "gluu-server=4.2.3~buster",
            installed: "4.2.3~buster",
            install: apt("gluu-server=4.2.3~buster"),
        },
        Row {
            distribution: "CentOS 7 / RHEL 7",
            format: PackageFormat::Rpm,
            dnf: false,
            spec: "gluu-server=4.2.3",
            installed: "4.2.3-1.centos7",
            install: vec![s(&["yum", "install", "-y", "gluu-server-4.2.3"])],
        },
        Row {
            distribution: "CentOS 8 / RHEL 8",
            format: PackageFormat::Rpm,
            dnf: true,
            spec: "gluu-server=4.2.3",
            installed: "4.2.3-1.el8",
            install: vec![s(&["dnf", "install", "-y", "gluu-server-4.2.3"])],
        },
    ];
    for row in table {
        let d = tempfile::tempdir().unwrap();
        if row.dnf {
            std::fs::create_dir_all(d.path().join("usr/bin")).unwrap();
            std::fs::write(d.path().join("usr/bin/dnf"), "").unwrap();
        }
        let (h, rec) = host(d.path(), row.format, PackageMode::System);
        let query = match row.format {
            PackageFormat::Deb => DPKG_QUERY,
            PackageFormat::Rpm => RPM_QUERY,
        };
        rec.answer(1, ""); // not installed
        for _ in &row.install {
            rec.answer(0, "");
        }
        rec.answer(0, &format!("installed\t{}\n", row.installed));
        let (mut l, _rx) = log();
        let out = install(&ctx_with(h), online(row.spec, false), &mut l)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", row.distribution));
        assert!(out.changed, "{}", row.distribution);
        assert_eq!(out.package, "gluu-server");
        assert_eq!(out.version, row.installed, "{}", row.distribution);
        let mut want = vec![s(query)];
        want.extend(row.install);
        want.push(s(query));
        assert_eq!(rec.argvs(), want, "{}", row.distribution);
        let calls = rec.calls.lock().unwrap();
        for c in calls.iter().filter(|c| c.argv[0] == "apt-get") {
            assert_eq!(
                c.env,
                [("DEBIAN_FRONTEND".to_string(), "noninteractive".to_string())]
            );
        }
    }
}

#[tokio::test]
async fn the_pinned_version_installed_is_left_alone_and_another_one_needs_force() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = host(d.path(), PackageFormat::Deb, PackageMode::System);
    let ctx = ctx_with(h);
    let (mut l, _rx) = log();
    // The pinned version: nothing runs but the query.
    rec.answer(0, "installed\t4.2.3~focal\n");
    let out = install(&ctx, online("gluu-server=4.2.3~focal", false), &mut l)
        .await
        .unwrap();
    assert!(!out.changed);
    assert_eq!(rec.argvs(), [s(DPKG_QUERY)]);
    // Another version: refused without force, nothing installed.
    rec.answer(0, "installed\t4.2.2~focal\n");
    let e = install(&ctx, online("gluu-server=4.2.3~focal", false), &mut l)
        .await
        .unwrap_err();
    assert_eq!(
        e.0,
        "gluu-server 4.2.2~focal is installed and this install pins 4.2.3~focal: force replaces it"
    );
    assert_eq!(rec.argvs().len(), 2);
    // Forced: installed at the pin (a downgrade allowed).
    rec.answer(0, "installed\t4.2.4~focal\n");
    rec.answer(0, "");
    rec.answer(0, "");
    rec.answer(0, "installed\t4.2.3~focal\n");
    let out = install(&ctx, online("gluu-server=4.2.3~focal", true), &mut l)
        .await
        .unwrap();
    assert!(out.changed);
    assert_eq!(
        rec.argvs()[4],
        s(&[
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            "--allow-downgrades",
            "gluu-server=4.2.3~focal"
        ])
    );

    // rpm: the pin leaves the release out.
    let (h, rec) = host(d.path(), PackageFormat::Rpm, PackageMode::System);
    rec.answer(0, "installed\t4.2.3-1.el8\n");
    let out = install(&ctx_with(h), online("gluu-server=4.2.3", false), &mut l)
        .await
        .unwrap();
    assert!(!out.changed);
    assert_eq!(out.version, "4.2.3-1.el8");
    assert_eq!(rec.argvs(), [s(RPM_QUERY)]);
    for (format, installed, pin, matches) in [
        (PackageFormat::Rpm, "4.2.3-1.el8", "4.2.3", true),
        (PackageFormat::Rpm, "4.2.3-1.el8", "4.2.3-1.el8", true),
        (PackageFormat::Rpm, "4.2.30-1.el8", "4.2.3", false),
        (PackageFormat::Deb, "4.2.3~focal", "4.2.3~focal", true),
        (PackageFormat::Deb, "4.2.3~bionic", "4.2.3~focal", false),
        (PackageFormat::Deb, "4.2.3-1", "4.2.3", false),
    ] {
        assert_eq!(
            version_matches(format, installed, pin),
            matches,
            "{installed} {pin}"
        );
    }
}

#[tokio::test]
async fn a_pinned_install_ending_at_another_version_fails() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = host(d.path(), PackageFormat::Rpm, PackageMode::System);
    rec.answer(1, "package gluu-server is not installed\n");
    rec.answer(0, "");
    rec.answer(0, "installed\t4.2.2-1.el7\n");
    let (mut l, _rx) = log();
    let e = install(&ctx_with(h), online("gluu-server=4.2.3", false), &mut l)
        .await
        .unwrap_err();
    assert_eq!(
        e.0,
        "gluu-server is at \"4.2.2-1.el7\" after installing 4.2.3"
    );
}

#[test]
fn package_specs_are_a_name_and_an_optional_version() {
    for (spec, name, version) in [
        ("gluu-server", "gluu-server", None),
        (
            "gluu-server=4.2.3~focal",
            "gluu-server",
            Some("4.2.3~focal"),
        ),
        ("gluu-server=4.2.3", "gluu-server", Some("4.2.3")),
        (
            "nginx=1:1.22.1-9+deb12u1",
            "nginx",
            Some("1:1.22.1-9+deb12u1"),
        ),
    ] {
        assert_eq!(
            Spec::parse(spec).unwrap(),
            Spec {
                name: name.into(),
                version: version.map(Into::into)
            }
        );
    }
    for bad in [
        "",
        "=4.2.3",
        "-oAPT::x=1",
        "gluu-server=",
        "gluu-server=-1",
        "gluu-server=4.2.3 x",
        "gluu-server=4=2",
        "gluu-server=4.2.3;rm",
    ] {
        assert!(Spec::parse(bad).is_err(), "{bad:?}");
    }
    let pinned = Spec::parse("gluu-server=4.2.3").unwrap();
    assert_eq!(pinned.argument(PackageFormat::Deb), "gluu-server=4.2.3");
    assert_eq!(pinned.argument(PackageFormat::Rpm), "gluu-server-4.2.3");
}
