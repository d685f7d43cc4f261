//! From observed-state fixtures to decisions, for the cache workflows.

use super::*;
use crate::engine::*;
use clustermgr_proto::{
    ConfigureNutcrackerOutput, ConfigureStunnelOutput, GluuInstallation, Inventory, OperationOutput,
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
                    gluu: Some(GluuInstallation {
                        installed: !server && !bare.contains(&n.as_str()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
        );
    }
    (
        new_workflow("w", d.action.kind(), "operator:a", 1, nodes),
        obs,
    )
}

/// Answers every job with success until nothing is dispatched; returns the rounds, each a list
/// of (node, step, operation).
fn drive(
    d: &Cache,
    wf: &mut Workflow,
    obs: &mut Observed,
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
    assert!(steps_of(&rounds)[0].contains(&"g1:stunnel-client".to_string()));
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
                        kind: (step == "stunnel-client").then(|| {
                            operation_output::Kind::ConfigureStunnel(ConfigureStunnelOutput {
                                accepts: vec!["10.0.0.2:6379".into()],
                                running: true,
                            })
                        }),
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
