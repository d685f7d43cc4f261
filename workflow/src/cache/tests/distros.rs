//! The programs and packages of each distribution family.

use super::*;

#[test]
fn centos_and_rhel_nodes_get_their_own_programs_and_packages() {
    // (package manager, os id) of every node -> programs asked for on the cache host and on
    // the Gluu node, and the packages installed online when every program is missing.
    type Row = (
        &'static str,
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
    );
    type Installs = &'static [(&'static str, &'static str, &'static str)];
    let table: &[(Row, Installs)] = &[
        (
            (
                "dnf",
                "rhel",
                &["redis-server", "stunnel"],
                &["stunnel", "nutcracker"],
            ),
            &[
                ("c1", "install-redis", "name:redis"),
                ("g1", "install-stunnel", "name:stunnel"),
                ("c1", "install-stunnel", "name:stunnel"),
                ("g1", "install-nutcracker", "name:nutcracker"),
            ],
        ),
        (
            (
                "yum",
                "centos",
                &["redis-server", "stunnel"],
                &["stunnel", "nutcracker"],
            ),
            &[
                ("c1", "install-redis", "name:redis"),
                ("g1", "install-stunnel", "name:stunnel"),
                ("c1", "install-stunnel", "name:stunnel"),
                ("g1", "install-nutcracker", "name:nutcracker"),
            ],
        ),
        (
            // No package manager in the inventory: the distribution decides.
            (
                "",
                "centos",
                &["redis-server", "stunnel"],
                &["stunnel", "nutcracker"],
            ),
            &[
                ("c1", "install-redis", "name:redis"),
                ("g1", "install-stunnel", "name:stunnel"),
                ("c1", "install-stunnel", "name:stunnel"),
                ("g1", "install-nutcracker", "name:nutcracker"),
            ],
        ),
        (
            (
                "apt",
                "ubuntu",
                &["redis-server", "stunnel4"],
                &["stunnel4", "nutcracker"],
            ),
            &[
                ("c1", "install-redis", "name:redis-server"),
                ("g1", "install-stunnel", "name:stunnel4"),
                ("c1", "install-stunnel", "name:stunnel4"),
                ("g1", "install-nutcracker", "name:nutcracker"),
            ],
        ),
    ];
    for ((pm, os, server_programs, client_programs), installs) in table {
        let d = def(Action::Install, &["c1", "c2"], &["g1"]);
        let (mut wf, mut obs) = fixture(&d, &[]);
        on_os(&mut obs, &["c1", "c2", "g1"], os, pm);
        let missing = |n: &str| {
            // Only c1 and g1 lack their programs.
            let all: &[&str] = match n {
                "c1" => server_programs,
                "g1" => client_programs,
                _ => &[],
            };
            all.iter().map(|p| p.to_string()).collect()
        };
        let rounds = drive_missing(&d, &mut wf, &mut obs, &missing);
        assert_eq!(wf.status(), WorkflowStatus::Succeeded, "{pm} {os}");
        let mut asked = BTreeMap::new();
        for (n, step, op) in rounds.concat() {
            if step == "programs"
                && let Some(operation::Kind::CacheStatus(c)) = op.kind
            {
                asked.insert(n, c.programs);
            }
        }
        assert_eq!(asked["c1"], *server_programs, "{pm} {os}");
        assert_eq!(asked["g1"], *client_programs, "{pm} {os}");
        let want: Vec<_> = installs.iter().map(|(n, s, p)| row(n, s, p)).collect();
        assert_eq!(package_jobs(&rounds), want, "{pm} {os}");
    }
}

#[test]
fn offline_rhel_nodes_get_the_rpm_packages_and_never_a_deb() {
    let mut d = def(Action::Install, &["c1"], &["g1"]);
    d.packages = pushed(&["redis", "stunnel"]);
    let (mut wf, mut obs) = fixture(&d, &[]);
    on_os(&mut obs, &["c1", "g1"], "rhel", "dnf");
    let missing = |n: &str| match n {
        "c1" => vec!["redis-server".to_string(), "stunnel".to_string()],
        _ => Vec::new(),
    };
    let rounds = drive_missing(&d, &mut wf, &mut obs, &missing);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    assert_eq!(
        package_jobs(&rounds),
        vec![
            row("c1", "push-redis", "push:redis-sha"),
            row("c1", "install-redis", "sha:redis-sha"),
            row("c1", "push-stunnel", "push:stunnel-sha"),
            row("c1", "install-stunnel", "sha:stunnel-sha"),
        ]
    );

    // The controller's repository holds Debian's package of that name only: refused.
    let mut d = def(Action::Install, &["c1"], &["g1"]);
    let Packages::Pushed(mut repo) = pushed(&["redis", "stunnel"]) else {
        unreachable!()
    };
    repo.get_mut("stunnel").unwrap().receive.format = "deb".into();
    d.packages = Packages::Pushed(repo);
    let (mut wf, mut obs) = fixture(&d, &[]);
    on_os(&mut obs, &["c1", "g1"], "centos", "yum");
    let missing = |n: &str| match n {
        "g1" => vec!["stunnel".to_string()],
        _ => Vec::new(),
    };
    let rounds = drive_missing(&d, &mut wf, &mut obs, &missing);
    assert_eq!(wf.status(), WorkflowStatus::Failed);
    assert!(package_jobs(&rounds).iter().all(|(n, _, _)| n != "g1"));
    let g1 = wf.nodes.iter().find(|n| n.node_id == "g1").unwrap();
    let push = g1.steps.iter().find(|s| s.name == "push-stunnel").unwrap();
    assert_eq!(
        push.error,
        "the controller's stunnel package is a .deb and the node installs .rpm packages"
    );
}

#[test]
fn a_node_of_unknown_distribution_is_looked_at_but_never_given_a_package() {
    let d = def(Action::Install, &["c1"], &["g1"]);
    // Its programs present: nothing to install, the cache is set up.
    let (mut wf, mut obs) = fixture(&d, &[]);
    on_os(&mut obs, &["c1"], "arch", "");
    drive(&d, &mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    // A program missing: the node fails, naming it.
    let (mut wf, mut obs) = fixture(&d, &[]);
    on_os(&mut obs, &["c1"], "arch", "");
    let missing = |n: &str| match n {
        "c1" => vec!["stunnel4".to_string()],
        _ => Vec::new(),
    };
    let rounds = drive_missing(&d, &mut wf, &mut obs, &missing);
    assert_eq!(wf.status(), WorkflowStatus::Failed);
    assert!(package_jobs(&rounds).is_empty());
    let c1 = wf.nodes.iter().find(|n| n.node_id == "c1").unwrap();
    let failed = c1
        .steps
        .iter()
        .find(|s| s.status() == StepStatus::Failed)
        .unwrap();
    assert_eq!(failed.name, "push-stunnel");
    assert!(
        failed.error.contains("stunnel4 is missing") && failed.error.contains("unknown"),
        "{}",
        failed.error
    );
}

#[test]
fn a_workflow_recorded_with_debian_step_names_still_runs() {
    let d = def(Action::Install, &["c1"], &["g1"]);
    let (mut wf, mut obs) = fixture(&d, &[]);
    on_os(&mut obs, &["c1", "g1"], "rhel", "dnf");
    for n in &mut wf.nodes {
        for s in &mut n.steps {
            s.name = match s.name.as_str() {
                "push-redis" => "push-redis-server",
                "install-redis" => "install-redis-server",
                "push-stunnel" => "push-stunnel4",
                "install-stunnel" => "install-stunnel4",
                other => other,
            }
            .to_string();
        }
    }
    let missing = |n: &str| match n {
        "c1" => vec!["stunnel".to_string()],
        _ => Vec::new(),
    };
    let rounds = drive_missing(&d, &mut wf, &mut obs, &missing);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    assert_eq!(
        package_jobs(&rounds),
        vec![row("c1", "install-stunnel4", "name:stunnel")]
    );
}
