//! From observed-state fixtures to decisions, for the cache workflows.

use super::*;
use crate::engine::*;
use clustermgr_proto::{
    CacheStatusOutput, ConfigureNutcrackerOutput, ConfigureStunnelOutput, GluuInstallation,
    Inventory, Operation, OperationOutput, configure_stunnel, install_package, operation_output,
    set_cache_configuration,
};

const PW: &str = "r3dis Pw!";

fn def(action: Action, servers: &[&str], clients: &[&str]) -> Cache {
    Cache {
        action,
        servers: servers.iter().map(|s| s.to_string()).collect(),
        clients: clients.iter().map(|s| s.to_string()).collect(),
        password: PW.into(),
        admin_password: "Adm1n pw".into(),
        https_port: Some(8443),
        primary: clients.first().map(|s| s.to_string()).unwrap_or_default(),
        probe_within_ms: 1000,
        packages: Packages::Online,
        balancer: Default::default(),
    }
}

/// The nodes run `os_id` with `package_manager`.
fn on_os(obs: &mut Observed, nodes: &[&str], os_id: &str, package_manager: &str) {
    for n in nodes {
        let inv = obs.nodes.get_mut(*n).unwrap().inventory.as_mut().unwrap();
        inv.os_id = os_id.into();
        inv.package_manager = package_manager.into();
    }
}

/// Nodes `c*` are cache hosts, `g*` Gluu nodes (Gluu installed unless listed in `bare`).
fn fixture(d: &Cache, bare: &[&str]) -> (Workflow, Observed) {
    let mut nodes = Vec::new();
    let mut obs = Observed::default();
    for (i, n) in d.servers.iter().chain(d.clients.iter()).enumerate() {
        let server = d.servers.contains(n);
        nodes.push((n.clone(), n.clone(), d.action.steps(server)));
        obs.nodes.insert(
            n.clone(),
            NodeView {
                hostname: n.clone(),
                online: true,
                approved: true,
                inventory: Some(Inventory {
                    addresses: vec![format!("10.0.0.{}", i + 1)],
                    os_id: "debian".into(),
                    package_manager: "apt".into(),
                    gluu: Some(GluuInstallation {
                        installed: !server && !bare.contains(&n.as_str()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
        );
    }
    let mut wf = new_workflow("w", d.action.kind(), "operator:a", 1, nodes);
    let inputs = Inputs {
        servers: d.servers.clone(),
        clients: d.clients.clone(),
        primary: d.primary.clone(),
        password: (d.action == Action::Password).then_some(PasswordChange::Set),
    };
    wf.inputs = inputs.encode().into_iter().collect();
    (wf, obs)
}

/// Answers every job with success until nothing is dispatched; returns the rounds, each a list
/// of (node, step, operation).
fn drive(
    d: &Cache,
    wf: &mut Workflow,
    obs: &mut Observed,
) -> Vec<Vec<(String, String, Operation)>> {
    drive_missing(d, wf, obs, &|_| Vec::new())
}

/// The `programs` step's answer: these are absent.
fn programs_output(missing: Vec<String>) -> operation_output::Kind {
    operation_output::Kind::CacheStatus(CacheStatusOutput {
        missing_programs: missing,
        ..Default::default()
    })
}

/// As `drive`, the nodes lacking the programs `missing(node)` names.
fn drive_missing(
    d: &Cache,
    wf: &mut Workflow,
    obs: &mut Observed,
    missing: &dyn Fn(&str) -> Vec<String>,
) -> Vec<Vec<(String, String, Operation)>> {
    let mut rounds = Vec::new();
    let mut n = 0;
    for _ in 0..100 {
        let dec = advance(wf, d, obs);
        if dec.dispatch.is_empty() {
            break;
        }
        let mut round = Vec::new();
        for disp in dec.dispatch {
            n += 1;
            let id = format!("j{n}");
            bind_job(wf, &disp, &id);
            let node = wf.nodes.iter().find(|x| x.node_id == disp.node_id).unwrap();
            let step = node.steps[disp.step].name.clone();
            let ip = obs.nodes[&disp.node_id]
                .inventory
                .as_ref()
                .unwrap()
                .addresses[0]
                .clone();
            let output = match step.as_str() {
                "programs" => Some(programs_output(missing(&disp.node_id))),
                "stunnel-client" => Some(operation_output::Kind::ConfigureStunnel(
                    ConfigureStunnelOutput {
                        accepts: vec![format!("{ip}:6379")],
                        running: true,
                    },
                )),
                "nutcracker" => Some(operation_output::Kind::ConfigureNutcracker(
                    ConfigureNutcrackerOutput {
                        listen: format!("{ip}:2222"),
                        running: true,
                    },
                )),
                _ => None,
            };
            obs.jobs.insert(
                id,
                JobView {
                    state: JobState::Succeeded,
                    exit_code: 0,
                    error: String::new(),
                    output: Some(OperationOutput { kind: output }),
                },
            );
            round.push((disp.node_id.clone(), step, disp.job.operation.clone()));
        }
        rounds.push(round);
    }
    rounds
}

fn steps_of(rounds: &[Vec<(String, String, Operation)>]) -> Vec<Vec<String>> {
    rounds
        .iter()
        .map(|r| r.iter().map(|(n, s, _)| format!("{n}:{s}")).collect())
        .collect()
}

#[test]
fn install_with_one_server_checks_redis_then_pings_then_rolls_gluu() {
    let d = def(Action::Install, &["c1"], &["g1", "g2"]);
    let (mut wf, mut obs) = fixture(&d, &[]);
    let rounds = drive(&d, &mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded, "{wf:?}");
    let flat: Vec<String> = steps_of(&rounds).concat();
    let at = |s: &str| {
        flat.iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("{s} not run: {flat:?}"))
    };
    // Redis checked before any ping; every ping before the first configure; rolling.
    assert!(at("c1:check") < at("g1:ping") && at("c1:check") < at("g2:ping"));
    assert!(at("g2:ping") < at("g1:configure") && at("g1:ping") < at("g1:configure"));
    assert!(at("g1:web-ready") < at("g2:configure"));
    assert!(
        !flat.iter().any(|s| s.ends_with(":nutcracker")),
        "one server: no twemproxy"
    );
    // The stunnel clients start at once with the cache host's Redis.
    // Every node looks for its programs first (all present here: nothing installed).
    assert_eq!(
        steps_of(&rounds)[0],
        vec!["c1:programs", "g1:programs", "g2:programs"]
    );
    assert!(steps_of(&rounds)[1].contains(&"g1:stunnel-client".to_string()));
    assert!(steps_of(&rounds)[1].contains(&"c1:redis".to_string()));
    for (node, step, op) in rounds.concat() {
        match (node.as_str(), step.as_str(), op.kind.unwrap()) {
            ("c1", "stunnel-server", operation::Kind::ConfigureStunnel(s)) => {
                assert_eq!(s.mode(), configure_stunnel::Mode::Server);
                assert_eq!(s.services[0].accept_host, "10.0.0.1");
                assert_eq!(s.services[0].accept_port, STUNNEL_PORT);
                assert_eq!(s.services[0].connect_port, REDIS_PORT);
            }
            (_, "stunnel-client", operation::Kind::ConfigureStunnel(s)) => {
                assert_eq!(s.mode(), configure_stunnel::Mode::Client);
                assert_eq!(s.services.len(), 1);
                assert_eq!(s.services[0].connect_host, "10.0.0.1");
                assert_eq!(s.services[0].accept_port, REDIS_PORT);
            }
            ("c1", "redis", operation::Kind::ConfigureRedis(r)) => {
                assert_eq!(r.password, PW.as_bytes());
                assert!(!r.remove);
            }
            ("g2", "configure", operation::Kind::SetCacheConfiguration(c)) => {
                assert!(c.provider() == set_cache_configuration::Provider::Redis);
                assert_eq!(
                    c.servers, "10.0.0.2:6379",
                    "one value for the replicated tree: the first node's local end"
                );
                assert_eq!(c.redis_password, PW.as_bytes());
                assert_eq!(c.host, "10.0.0.3");
            }
            _ => {}
        }
    }
}

#[test]
fn summaries_never_hold_the_passwords() {
    for action in [Action::Install, Action::Remove, Action::Password] {
        let d = def(action, &["c1", "c2"], &["g1", "g2"]);
        let (wf, obs) = fixture(&d, &[]);
        for p in dry_run(&wf, &d, &obs) {
            let (Planned::Run(s) | Planned::Skip(s) | Planned::Blocked(s) | Planned::Fail(s)) =
                p.what;
            assert!(!s.contains(PW) && !s.contains("Adm1n"), "{s}");
        }
    }
}

#[test]
fn several_servers_get_one_stunnel_client_each_behind_twemproxy() {
    let d = def(Action::Install, &["c1", "c2"], &["g1"]);
    let (mut wf, mut obs) = fixture(&d, &[]);
    let rounds = drive(&d, &mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    let ops = rounds.concat();
    let op = |step: &str| {
        ops.iter()
            .find(|(n, s, _)| n == "g1" && s == step)
            .and_then(|(_, _, o)| o.kind.clone())
            .unwrap_or_else(|| panic!("no {step}"))
    };
    let operation::Kind::ConfigureStunnel(s) = op("stunnel-client") else {
        panic!()
    };
    let ports: Vec<u32> = s.services.iter().map(|s| s.accept_port).collect();
    assert_eq!(ports, vec![SHARD_BASE_PORT, SHARD_BASE_PORT + 1]);
    let hosts: Vec<&str> = s.services.iter().map(|s| s.connect_host.as_str()).collect();
    assert_eq!(hosts, vec!["10.0.0.1", "10.0.0.2"]);
    let operation::Kind::ConfigureNutcracker(n) = op("nutcracker") else {
        panic!()
    };
    assert_eq!(n.server_ports, ports);
    assert_eq!(n.listen_port, NUTCRACKER_PORT);
    let operation::Kind::CacheStatus(p) = op("ping") else {
        panic!()
    };
    assert_eq!(p.ping_port, NUTCRACKER_PORT);
    let operation::Kind::SetCacheConfiguration(c) = op("configure") else {
        panic!()
    };
    assert_eq!(c.servers, "10.0.0.3:2222", "Gluu uses twemproxy");
}

#[test]
fn a_node_without_gluu_gets_stunnel_and_skips_the_gluu_steps() {
    let d = def(Action::Install, &["c1"], &["g1"]);
    let (mut wf, mut obs) = fixture(&d, &["g1"]);
    let flat = steps_of(&drive(&d, &mut wf, &mut obs)).concat();
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    assert!(flat.contains(&"g1:stunnel-client".to_string()));
    assert!(flat.contains(&"g1:ping".to_string()));
    for s in ["configure", "restart", "web-ready"] {
        assert!(!flat.contains(&format!("g1:{s}")), "{flat:?}");
    }
}

#[test]
fn remove_rolls_gluu_back_to_the_directory_before_stunnel_and_redis_go() {
    let d = def(Action::Remove, &["c1"], &["g1", "g2"]);
    let (mut wf, mut obs) = fixture(&d, &[]);
    let rounds = drive(&d, &mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    let flat = steps_of(&rounds).concat();
    let at = |s: &str| flat.iter().position(|x| x == s).unwrap();
    assert!(at("g1:web-ready") < at("g2:configure"));
    assert!(at("g2:web-ready") < at("g1:stunnel-client"));
    assert!(at("g1:stunnel-client") < at("c1:stunnel-server"));
    assert!(at("g2:stunnel-client") < at("c1:stunnel-server"));
    assert!(at("c1:stunnel-server") < at("c1:redis"));
    for (_, step, op) in rounds.concat() {
        match op.kind.unwrap() {
            operation::Kind::SetCacheConfiguration(c) => {
                assert!(c.provider() == set_cache_configuration::Provider::NativePersistence)
            }
            operation::Kind::ConfigureRedis(r) => assert!(r.remove),
            operation::Kind::ConfigureStunnel(s) => assert!(s.remove, "{step}"),
            _ => {}
        }
    }
}

#[test]
fn a_password_change_reaches_redis_before_gluu() {
    let mut d = def(Action::Password, &["c1"], &["g1", "g2"]);
    d.password.clear();
    let (mut wf, mut obs) = fixture(&d, &[]);
    let rounds = drive(&d, &mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    let flat = steps_of(&rounds).concat();
    let at = |s: &str| flat.iter().position(|x| x == s).unwrap();
    assert!(at("c1:redis") < at("g1:configure"));
    assert!(at("g1:web-ready") < at("g2:configure"));
    for (_, _, op) in rounds.concat() {
        match op.kind.unwrap() {
            operation::Kind::SetCacheConfiguration(c) => {
                assert!(c.redis_password.is_empty(), "cleared");
                assert!(c.servers.is_empty(), "the servers are kept");
                assert!(c.provider() == set_cache_configuration::Provider::Redis);
            }
            operation::Kind::ConfigureRedis(r) => assert!(r.password.is_empty() && !r.remove),
            _ => {}
        }
    }
}

/// No node meets a password Redis refuses: Redis accepts the new password beside the old one
/// (`keep_accepting`) before any Gluu node is touched, and retires the old one only once every
/// Gluu node is back; with several Redis servers each node's twemproxy changes inside its
/// drain.
#[test]
fn a_password_roll_keeps_the_old_password_until_every_node_is_back() {
    let mut d = def(Action::Password, &["c1", "c2"], &["g1", "g2"]);
    let names = ["g1", "g2"].map(|n| (n, format!("{n}.example.org")));
    d.balancer = crate::drain::testing::balancer("lb", names);
    let (mut wf, mut obs) = fixture(&d, &[]);
    crate::drain::testing::lb_online(&mut obs, "lb");
    let rounds = drive(&d, &mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    let flat = steps_of(&rounds).concat();
    let at = |s: &str| {
        flat.iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("{s} in {flat:?}"))
    };
    for c in ["c1", "c2"] {
        assert!(at(&format!("{c}:redis")) < at("g1:nutcracker"));
        for g in ["g1", "g2"] {
            assert!(at(&format!("{c}:{RETIRE_PASSWORD}")) > at(&format!("{g}:web-ready")));
        }
    }
    for g in ["g1", "g2"] {
        assert!(at(&format!("{g}:drain")) < at(&format!("{g}:nutcracker")));
        assert!(at(&format!("{g}:nutcracker")) < at(&format!("{g}:rejoin")));
    }
    let mut keeps = Vec::new();
    for (n, step, op) in rounds.concat() {
        if let Some(operation::Kind::ConfigureRedis(r)) = op.kind {
            assert_eq!(r.password, d.password.as_bytes(), "{n}");
            keeps.push((n, step, r.keep_accepting));
        }
    }
    keeps.sort();
    let want = |n: &str| {
        [
            (n.to_string(), "redis".to_string(), true),
            (n.to_string(), RETIRE_PASSWORD.to_string(), false),
        ]
    };
    assert_eq!(keeps, [want("c1"), want("c2")].concat());
}

#[test]
fn a_failed_ping_stops_the_node_before_gluu_is_touched() {
    let d = def(Action::Install, &["c1"], &["g1"]);
    let (mut wf, mut obs) = fixture(&d, &[]);
    for _ in 0..20 {
        let dec = advance(&mut wf, &d, &obs);
        if dec.dispatch.is_empty() {
            break;
        }
        for (k, disp) in dec.dispatch.iter().enumerate() {
            let id = format!("{}-{k}-{}", disp.node_id, disp.step);
            bind_job(&mut wf, disp, &id);
            let step = wf
                .nodes
                .iter()
                .find(|n| n.node_id == disp.node_id)
                .unwrap()
                .steps[disp.step]
                .name
                .clone();
            let failed = step == "ping";
            obs.jobs.insert(
                id,
                JobView {
                    state: if failed {
                        JobState::Failed
                    } else {
                        JobState::Succeeded
                    },
                    exit_code: 0,
                    error: if failed {
                        "PING: connection refused".into()
                    } else {
                        String::new()
                    },
                    output: Some(OperationOutput {
                        kind: match step.as_str() {
                            "stunnel-client" => Some(operation_output::Kind::ConfigureStunnel(
                                ConfigureStunnelOutput {
                                    accepts: vec!["10.0.0.2:6379".into()],
                                    running: true,
                                },
                            )),
                            "programs" => Some(programs_output(Vec::new())),
                            _ => None,
                        },
                    }),
                },
            );
        }
    }
    assert_eq!(wf.status(), WorkflowStatus::Failed);
    let g1 = wf.nodes.iter().find(|n| n.node_id == "g1").unwrap();
    let configure = g1.steps.iter().find(|s| s.name == "configure").unwrap();
    assert_eq!(configure.status(), StepStatus::Pending);
    assert!(configure.job_id.is_empty());
}

#[test]
fn a_server_added_later_gets_its_client_without_touching_the_cache_hosts() {
    let d = def(Action::Install, &["c1"], &["g3"]);
    let (_, mut obs) = fixture(&d, &[]);
    // Only the new node is in the workflow; the cache host is observed, not run.
    let mut wf = new_workflow(
        "w",
        INSTALL,
        "operator:a",
        1,
        vec![("g3".into(), "g3".into(), Action::Install.steps(false))],
    );
    let flat = steps_of(&drive(&d, &mut wf, &mut obs)).concat();
    assert_eq!(wf.status(), WorkflowStatus::Succeeded, "{flat:?}");
    assert!(flat.iter().all(|s| s.starts_with("g3:")), "{flat:?}");
    assert!(flat.contains(&"g3:configure".to_string()));
}

#[test]
fn a_removed_server_loses_twemproxy_and_stunnel_and_gluu_is_not_touched() {
    let d = def(Action::Detach, &["c1", "c2"], &["g2"]);
    let (_, mut obs) = fixture(&d, &[]);
    let mut wf = new_workflow(
        "w",
        DETACH,
        "operator:a",
        1,
        vec![("g2".into(), "g2".into(), Action::Detach.steps(false))],
    );
    let rounds = drive(&d, &mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded, "{rounds:?}");
    assert_eq!(
        steps_of(&rounds).concat(),
        vec!["g2:nutcracker", "g2:stunnel-client"]
    );
    for (_, step, op) in rounds.concat() {
        match op.kind.unwrap() {
            operation::Kind::ConfigureNutcracker(n) => assert!(n.remove, "{step}"),
            operation::Kind::ConfigureStunnel(s) => {
                assert!(s.remove, "{step}");
                assert_eq!(s.mode(), configure_stunnel::Mode::Client);
            }
            other => panic!("{step}: {other:?}"),
        }
    }
    assert_eq!(Action::from_kind(DETACH), Some(Action::Detach));
    assert!(Action::Detach.steps(true).is_empty());
}

/// The package jobs each node ran: (node, step, package source), in order.
fn package_jobs(rounds: &[Vec<(String, String, Operation)>]) -> Vec<(String, String, String)> {
    rounds
        .concat()
        .into_iter()
        .filter_map(|(n, step, op)| match op.kind? {
            operation::Kind::InstallPackage(i) => Some((
                n,
                step,
                match i.source? {
                    install_package::Source::Name(x) => format!("name:{x}"),
                    install_package::Source::CachedSha256(x) => format!("sha:{x}"),
                },
            )),
            operation::Kind::ReceivePackage(r) => Some((n, step, format!("push:{}", r.sha256))),
            _ => None,
        })
        .collect()
}

fn pushed(names: &[&str]) -> Packages {
    Packages::Pushed(
        names
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    PushedPackage {
                        sha256: format!("{n}-sha"),
                        summary: format!("{n}_1.0_amd64"),
                        receive: ReceivePackage {
                            sha256: format!("{n}-sha"),
                            size: 10,
                            format: if ["redis", "stunnel"].contains(n) {
                                "rpm"
                            } else {
                                "deb"
                            }
                            .into(),
                            ..Default::default()
                        },
                    },
                )
            })
            .collect(),
    )
}

fn row(n: &str, step: &str, src: &str) -> (String, String, String) {
    (n.into(), step.into(), src.into())
}

#[test]
fn programs_present_install_no_package() {
    for packages in [Packages::Online, pushed(&["redis-server", "stunnel4"])] {
        let mut d = def(Action::Install, &["c1", "c2"], &["g1"]);
        d.packages = packages;
        let (mut wf, mut obs) = fixture(&d, &[]);
        let rounds = drive(&d, &mut wf, &mut obs);
        assert_eq!(wf.status(), WorkflowStatus::Succeeded);
        assert!(package_jobs(&rounds).is_empty(), "{rounds:?}");
        // Each node asks for the programs of its role.
        for (n, step, op) in rounds.concat() {
            if step == "programs" {
                let Some(operation::Kind::CacheStatus(c)) = op.kind else {
                    panic!()
                };
                let want: &[&str] = if n.starts_with('c') {
                    &["redis-server", "stunnel4"]
                } else {
                    &["stunnel4", "nutcracker"]
                };
                assert_eq!(c.programs, want, "{n}");
                assert!(c.ping_port == 0 && !c.require_healthy);
            }
        }
    }
}

#[test]
fn online_a_missing_program_is_installed_from_the_nodes_repositories() {
    let d = def(Action::Install, &["c1", "c2"], &["g1", "g2"]);
    let (mut wf, mut obs) = fixture(&d, &[]);
    let missing = |n: &str| match n {
        "c1" => vec!["redis-server".to_string(), "stunnel4".to_string()],
        "g2" => vec!["nutcracker".to_string()],
        _ => Vec::new(),
    };
    let rounds = drive_missing(&d, &mut wf, &mut obs, &missing);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    assert_eq!(
        package_jobs(&rounds),
        vec![
            row("c1", "install-redis", "name:redis-server"),
            row("g2", "install-nutcracker", "name:nutcracker"),
            row("c1", "install-stunnel", "name:stunnel4"),
        ]
    );
    // Installed before the program is configured.
    let flat = steps_of(&rounds).concat();
    let at = |s: &str| flat.iter().position(|x| x == s).unwrap();
    assert!(at("c1:install-stunnel") < at("c1:redis"));
    assert!(at("g2:install-nutcracker") < at("g2:stunnel-client"));
}

#[test]
fn offline_a_missing_program_is_pushed_then_installed_from_the_controllers_repository() {
    let mut d = def(Action::Install, &["c1"], &["g1"]);
    d.packages = pushed(&["redis-server", "stunnel4", "nutcracker"]);
    let (mut wf, mut obs) = fixture(&d, &[]);
    let missing = |n: &str| match n {
        "c1" => vec!["redis-server".to_string()],
        // One Redis server: nutcracker is not needed even when absent.
        "g1" => vec!["stunnel4".to_string(), "nutcracker".to_string()],
        _ => Vec::new(),
    };
    let rounds = drive_missing(&d, &mut wf, &mut obs, &missing);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    assert_eq!(
        package_jobs(&rounds),
        vec![
            row("c1", "push-redis", "push:redis-server-sha"),
            row("g1", "push-stunnel", "push:stunnel4-sha"),
            row("c1", "install-redis", "sha:redis-server-sha"),
            row("g1", "install-stunnel", "sha:stunnel4-sha"),
        ]
    );
}

#[test]
fn offline_a_missing_program_absent_from_the_repository_fails_the_node_naming_it() {
    let mut d = def(Action::Install, &["c1"], &["g1"]);
    d.packages = pushed(&["stunnel4"]);
    let (mut wf, mut obs) = fixture(&d, &[]);
    let missing = |n: &str| match n {
        "c1" => vec!["redis-server".to_string()],
        _ => Vec::new(),
    };
    let rounds = drive_missing(&d, &mut wf, &mut obs, &missing);
    assert_eq!(wf.status(), WorkflowStatus::Failed);
    let c1 = wf.nodes.iter().find(|n| n.node_id == "c1").unwrap();
    let push = c1.steps.iter().find(|s| s.name == "push-redis").unwrap();
    assert_eq!(push.status(), StepStatus::Failed);
    assert!(
        push.error.contains("redis-server") && push.error.contains("package add"),
        "{}",
        push.error
    );
    assert!(
        !steps_of(&rounds).concat().contains(&"c1:redis".to_string()),
        "Redis configured without its program"
    );
}

mod distros;

#[test]
fn with_a_load_balancer_each_gluu_restart_is_drained_and_rejoined_one_node_at_a_time() {
    for action in [Action::Install, Action::Password, Action::Remove] {
        let mut d = def(action, &["c1"], &["g1", "g2", "g3"]);
        let names = ["g1", "g2", "g3"].map(|n| (n, format!("{n}.example.org")));
        d.balancer = crate::drain::testing::balancer("lb", names);
        let (mut wf, mut obs) = fixture(&d, &[]);
        crate::drain::testing::lb_online(&mut obs, "lb");
        let rounds = drive(&d, &mut wf, &mut obs);
        assert_eq!(wf.status(), WorkflowStatus::Succeeded, "{action:?}");
        // The Gluu-side sequence, in the order the jobs were sent.
        let seq: Vec<(String, String)> = rounds
            .iter()
            .flatten()
            .filter(|(_, s, _)| ["drain", "restart", "web-ready", "rejoin"].contains(&s.as_str()))
            .map(|(n, s, _)| (n.clone(), s.clone()))
            .collect();
        let want: Vec<(String, String)> = ["g1", "g2", "g3"]
            .iter()
            .flat_map(|n| {
                ["drain", "restart", "web-ready", "rejoin"].map(|s| (n.to_string(), s.to_string()))
            })
            .collect();
        assert_eq!(seq, want, "{action:?}");
        for (_, step, op) in rounds.iter().flatten() {
            let rotation = matches!(op.kind, Some(operation::Kind::SetBackendRotation(_)));
            assert_eq!(rotation, step == "drain" || step == "rejoin", "{step}");
        }
    }
}

/// A queued `cache password set` takes its nodes when it starts: a cache host a cache install
/// ahead of it added gets the new password too (its steps added, its id in the inputs); a
/// workflow whose steps ran (a retry), or another kind, keeps its nodes.
#[test]
fn a_queued_password_change_takes_the_cache_hosts_of_when_it_starts() {
    let d = def(Action::Password, &["c1"], &["g1", "g2"]);
    let (mut wf, _) = fixture(&d, &[]);
    let named = |ids: &[&str]| -> Vec<(String, String)> {
        ids.iter()
            .map(|i| (i.to_string(), format!("{i}.example.org")))
            .collect()
    };
    // Unchanged: nothing to do.
    assert!(!retake_nodes(
        &mut wf,
        &named(&["c1"]),
        &named(&["g1", "g2"])
    ));
    assert!(retake_nodes(
        &mut wf,
        &named(&["c1", "c2"]),
        &named(&["g1", "g2"])
    ));
    let nodes: Vec<(&str, Vec<&str>)> = wf
        .nodes
        .iter()
        .map(|n| {
            (
                n.node_id.as_str(),
                n.steps.iter().map(|s| s.name.as_str()).collect(),
            )
        })
        .collect();
    let server = Action::Password.steps(true);
    let client = Action::Password.steps(false);
    assert_eq!(
        nodes,
        vec![
            ("c1", server.clone()),
            ("c2", server),
            ("g1", client.clone()),
            ("g2", client)
        ]
    );
    let inputs = Inputs::decode(&wf.inputs).unwrap();
    assert_eq!(inputs.servers, ["c1", "c2"]);
    assert_eq!(inputs.clients, ["g1", "g2"]);
    assert_eq!(wf.nodes[1].hostname, "c2.example.org");
    // Once a step has run (a retry), the nodes stay.
    wf.nodes[0].steps[0].job_id = "j1".into();
    assert!(!retake_nodes(&mut wf, &named(&["c1"]), &named(&["g1"])));
    assert_eq!(wf.nodes.len(), 4);
    // Another kind keeps its nodes.
    let i = def(Action::Install, &["c1"], &["g1"]);
    let (mut wf, _) = fixture(&i, &[]);
    assert!(!retake_nodes(
        &mut wf,
        &named(&["c1", "c2"]),
        &named(&["g1"])
    ));
}
