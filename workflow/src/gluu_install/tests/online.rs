//! Online installs: the version pinned from each node's distribution, refusals at preflight.

use super::*;

fn gluu_repository(url: &str, suite: &str) -> clustermgr_proto::PackageRepository {
    clustermgr_proto::PackageRepository {
        name: "gluu".into(),
        url: url.into(),
        suite: suite.into(),
        component: "main".into(),
        signing_key: "-----BEGIN PGP PUBLIC KEY BLOCK-----".into(),
    }
}

fn pinned_def(repository: Option<clustermgr_proto::PackageRepository>) -> GluuInstall {
    let mut d = def();
    d.package = PackageSource::Pinned {
        name: "gluu-server".into(),
        version: "4.2.3".into(),
        repository,
    };
    d
}

/// Each node's `package` job: (node, package asked for, repository suite, summary).
fn package_jobs(d: &GluuInstall, oses: &[&str]) -> Vec<(String, String, String, String)> {
    let (mut wf, mut obs) = fixture(oses, false);
    let all = drive_with(d, &mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded, "{oses:?}: {wf:?}");
    all.iter()
        .filter_map(|x| match &x.job.operation.kind {
            Some(operation::Kind::InstallPackage(i)) => Some((
                x.node_id.clone(),
                match &i.source {
                    Some(install_package::Source::Name(n)) => n.clone(),
                    other => panic!("{other:?}"),
                },
                i.repository
                    .as_ref()
                    .map(|r| r.suite.clone())
                    .unwrap_or_default(),
                x.job.summary.clone(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn an_online_install_pins_the_clusters_version_from_each_nodes_suite() {
    // (nodes' distributions, configured suite) -> per node (package, suite, summary)
    type Row = (&'static str, &'static str, &'static str, &'static str);
    let table: &[(&[&str], &str, &str, &[Row])] = &[
        (
            &["ubuntu 20.04", "ubuntu 18.04"],
            "https://repo.gluu.org/ubuntu/",
            "stable",
            &[
                (
                    "n1",
                    "gluu-server=4.2.3~focal",
                    "focal",
                    "install gluu-server=4.2.3~focal from https://repo.gluu.org/ubuntu/ focal main (signed; configured first)",
                ),
                (
                    "n2",
                    "gluu-server=4.2.3~bionic",
                    "bionic",
                    "install gluu-server=4.2.3~bionic from https://repo.gluu.org/ubuntu/ bionic main (signed; configured first)",
                ),
            ],
        ),
        (
            &["debian 10", "debian 9"],
            "https://repo.gluu.org/debian/",
            "",
            &[
                (
                    "n1",
                    "gluu-server=4.2.3~buster",
                    "buster",
                    "install gluu-server=4.2.3~buster from https://repo.gluu.org/debian/ buster main (signed; configured first)",
                ),
                (
                    "n2",
                    "gluu-server=4.2.3~stretch",
                    "stretch",
                    "install gluu-server=4.2.3~stretch from https://repo.gluu.org/debian/ stretch main (signed; configured first)",
                ),
            ],
        ),
        (
            // A suite of the node's release (Gluu's testing suite) is kept.
            &["ubuntu 20.04"],
            "https://repo.gluu.org/ubuntu/",
            "focal-testing",
            &[(
                "n1",
                "gluu-server=4.2.3~focal",
                "focal-testing",
                "install gluu-server=4.2.3~focal from https://repo.gluu.org/ubuntu/ focal-testing main (signed; configured first)",
            )],
        ),
        (
            &["centos 7", "rhel 8.4"],
            "https://repo.gluu.org/centos/7/",
            "stable",
            &[
                (
                    "n1",
                    "gluu-server=4.2.3",
                    "stable",
                    "install gluu-server-4.2.3 from https://repo.gluu.org/centos/7/ (signed; configured first)",
                ),
                (
                    "n2",
                    "gluu-server=4.2.3",
                    "stable",
                    "install gluu-server-4.2.3 from https://repo.gluu.org/centos/7/ (signed; configured first)",
                ),
            ],
        ),
    ];
    for (oses, url, suite, want) in table {
        let d = pinned_def(Some(gluu_repository(url, suite)));
        let got = package_jobs(&d, oses);
        let want: Vec<(String, String, String, String)> = want
            .iter()
            .map(|(n, p, s, m)| (n.to_string(), p.to_string(), s.to_string(), m.to_string()))
            .collect();
        assert_eq!(got, want, "{oses:?}");
    }
    // Without a repository: the nodes' own, still pinned.
    assert_eq!(
        package_jobs(&pinned_def(None), &["ubuntu 18.04"]),
        vec![(
            "n1".to_string(),
            "gluu-server=4.2.3~bionic".to_string(),
            String::new(),
            "install gluu-server=4.2.3~bionic from the node's repositories".to_string()
        )]
    );
}

#[test]
fn an_online_install_pushes_nothing() {
    let d = pinned_def(Some(gluu_repository("https://repo.gluu.org/debian/", "")));
    let (wf, obs) = fixture(&["debian 10"], false);
    let plan = dry_run(&wf, &d, &obs);
    assert!(
        plan.iter()
            .any(|p| p.step == "push" && matches!(p.what, Planned::Skip(_)))
    );
    assert!(plan.iter().any(|p| p.step == "package"
        && matches!(&p.what, Planned::Run(s) if s.contains("gluu-server=4.2.3~buster from https://repo.gluu.org/debian/ buster main"))));
}

/// The first preflight decision of a one-node online install on `os`.
fn preflight_error(d: &GluuInstall, os: &str, installed: bool) -> Option<String> {
    let (mut wf, obs) = fixture(&[os], installed);
    advance(&mut wf, d, &obs);
    let s = &wf.nodes[0].steps[0];
    (s.status() == StepStatus::Failed).then(|| s.error.clone())
}

#[test]
fn an_online_install_on_a_distribution_gluu_has_no_packages_for_fails_preflight() {
    let d = pinned_def(None);
    let supported = "online installs support Ubuntu 18.04 (bionic), Ubuntu 20.04 (focal), Debian 9 (stretch), Debian 10 (buster), CentOS 7, CentOS 8, RHEL 7, RHEL 8";
    // (distribution, refusal)
    let table: &[(&str, Option<&str>)] = &[
        (
            "debian 12",
            Some("debian 12 is not a distribution Gluu publishes"),
        ),
        ("ubuntu 22.04", Some("ubuntu 22.04 is not a distribution")),
        ("rocky 8.6", Some("rocky 8.6 is not a distribution")),
        ("plan9 4", Some("plan9 4 is not a distribution")),
        ("", Some("the node's distribution is unknown")),
        ("ubuntu 20.04", None),
        ("debian 9", None),
        ("rhel 7.9", None),
        ("centos 8", None),
    ];
    for (os, want) in table {
        let got = preflight_error(&d, os, false);
        match (want, &got) {
            (None, None) => {}
            (Some(w), Some(e)) => {
                assert!(e.contains(w), "{os}: {e}");
                assert!(e.contains(supported), "{os}: {e}");
                assert!(!e.contains("(Debian, Ubuntu"), "{os}: one message: {e}");
            }
            _ => panic!("{os}: {got:?}"),
        }
    }
    // Nothing to install (Gluu is there already): nothing to refuse.
    assert_eq!(preflight_error(&d, "debian 12", true), None);
    // Offline, the package is the operator's: Debian 12 is a Debian.
    assert_eq!(preflight_error(&def(), "debian 12", false), None);
}

#[test]
fn an_online_install_without_the_clusters_version_is_refused() {
    let mut d = def();
    d.package = PackageSource::Online {
        name: "gluu-server".into(),
        repository: None,
    };
    let e = preflight_error(&d, "ubuntu 20.04", false).unwrap();
    assert!(
        e.contains("pins gluu-server's version, and none was given"),
        "{e}"
    );
    let e = preflight_error(&d, "debian 12", false).unwrap();
    assert!(
        e.contains("none was given") && e.contains("debian 12"),
        "{e}"
    );
    assert_eq!(preflight_error(&d, "ubuntu 20.04", true), None);
}
