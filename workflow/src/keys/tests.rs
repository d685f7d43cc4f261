use super::*;
use crate::engine::*;
use clustermgr_proto::{Inventory, ProbeJwksOutput, operation_output};

const T0: u64 = 1_000_000;

fn def() -> KeyRotation {
    KeyRotation {
        dir: Directory {
            ldap_password: "pw".into(),
            ldaps_port: 1636,
        },
        https_port: Some(8443),
        new_kids: vec!["n_rs256".into(), "n_es256".into(), "n_enc".into()],
        signing_kids: vec!["n_rs256".into(), "n_es256".into()],
        probe_within_ms: 30_000,
    }
}

fn keys() -> Vec<u8> {
    NewOxauthKeys {
        jwks: vec![r#"{"kid":"n_rs256"}"#.into()],
        private: vec![OxauthPrivateKey {
            kid: "n_rs256".into(),
            pkcs8_pem: b"PEM".to_vec(),
            certificate_pem: String::new(),
        }],
    }
    .encode_to_vec()
}

/// A workflow on nodes a and b where each node's first steps are done (Succeeded, or the
/// status given for the last one), switch steps finishing at T0.
fn at(done: &[(&str, usize, Option<StepStatus>)]) -> Workflow {
    let mut wf = new_workflow(
        "w",
        KIND,
        "operator:a",
        1,
        vec![
            ("a".into(), "a".into(), STEPS.to_vec()),
            ("b".into(), "b".into(), STEPS.to_vec()),
        ],
    );
    for (node, n, last) in done {
        let ns = wf.nodes.iter_mut().find(|x| x.node_id == *node).unwrap();
        for (i, s) in ns.steps.iter_mut().enumerate().take(*n) {
            let st = if i + 1 == *n {
                last.unwrap_or(StepStatus::Succeeded)
            } else {
                StepStatus::Succeeded
            };
            s.status = st as i32;
            s.finished_unix_ms = T0;
        }
    }
    wf.status = WorkflowStatus::Running as i32;
    wf
}

fn obs(now: u64, kept: bool) -> Observed {
    let mut o = Observed {
        now_ms: now,
        ..Default::default()
    };
    for (n, ip) in [("a", "127.0.0.11"), ("b", "127.0.0.12")] {
        o.nodes.insert(
            n.into(),
            NodeView {
                hostname: n.into(),
                online: true,
                approved: true,
                inventory: Some(Inventory {
                    addresses: vec![ip.into()],
                    ..Default::default()
                }),
            },
        );
    }
    if kept {
        o.kept.insert(KEPT_KEYS.into(), keys());
    }
    o
}

/// What happens to each node's next step: (node, step, "run:<op>" | "wait" | "fail").
fn decide(wf: &mut Workflow, o: &Observed) -> Vec<(String, String, String)> {
    let dec = advance(wf, &def(), o);
    let mut out = Vec::new();
    for d in &dec.dispatch {
        let op = match &d.job.operation.kind {
            Some(operation::Kind::UpdateOxauthKeystore(u)) => {
                format!(
                    "keystore add={} keep={}",
                    u.add.len(),
                    u.keep_kids.join(",")
                )
            }
            Some(operation::Kind::SetWebKeys(s)) => format!(
                "ldap add={} keep={} first={}",
                s.add_jwks.len(),
                s.keep_kids.join(","),
                s.first_kids.join(",")
            ),
            Some(operation::Kind::ProbeJwks(p)) => {
                format!("jwks {} only={}", p.url, p.only_expected)
            }
            other => format!("{other:?}"),
        };
        let step = STEPS[d.step].to_string();
        out.push((d.node_id.clone(), step, format!("run:{op}")));
    }
    for n in &wf.nodes {
        for s in &n.steps {
            match s.status() {
                StepStatus::Pending if !s.waiting_for.is_empty() => {
                    out.push((n.node_id.clone(), s.name.clone(), "wait".into()))
                }
                StepStatus::Failed if s.job_id.is_empty() && s.exit_code == 0 => out.push((
                    n.node_id.clone(),
                    s.name.clone(),
                    format!("fail:{}", s.error),
                )),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// A succeeded JWKS probe that saw `served`.
pub(super) fn probed(served: &[&str]) -> JobView {
    JobView {
        state: JobState::Succeeded,
        exit_code: 0,
        error: String::new(),
        output: Some(clustermgr_proto::OperationOutput {
            kind: Some(operation_output::Kind::ProbeJwks(ProbeJwksOutput {
                served_kids: served.iter().map(|s| s.to_string()).collect(),
                attempts: 1,
            })),
        }),
    }
}

fn has(out: &[(String, String, String)], node: &str, step: &str, what: &str) -> bool {
    out.iter()
        .any(|(n, s, w)| n == node && s == step && w.starts_with(what))
}

#[test]
fn rotation_phases_are_gated_on_every_node() {
    // (case, done per node, now, kept, expectations (node, step, prefix), refused (node, step, prefix))
    type Exp = &'static [(&'static str, &'static str, &'static str)];
    let cases: Vec<(&str, Workflow, u64, bool, Exp, Exp)> = vec![
        (
            "start: every node gets the new keys at once, the old ones kept",
            at(&[]),
            T0,
            true,
            &[
                ("a", "keystore-add", "run:keystore add=1 keep="),
                ("b", "keystore-add", "run:keystore add=1 keep="),
            ],
            &[],
        ),
        (
            "the keys are not kept (lost): nothing is written",
            at(&[]),
            T0,
            false,
            &[
                ("a", "keystore-add", "fail:"),
                ("b", "keystore-add", "fail:"),
            ],
            &[("a", "keystore-add", "run:")],
        ),
        (
            "LDAP waits until every node has the keystore",
            at(&[("a", 1, None), ("b", 1, Some(StepStatus::Running))]),
            T0,
            true,
            &[("a", "publish", "wait")],
            &[("a", "publish", "run:")],
        ),
        (
            "every node has the keystore: publish beside the current keys, no reorder",
            at(&[("a", 1, None), ("b", 1, None)]),
            T0,
            true,
            &[
                ("a", "publish", "run:ldap add=1 keep= first="),
                ("b", "publish", "run:ldap add=1 keep= first="),
            ],
            &[],
        ),
        (
            "published: each node's own JWKS is probed",
            at(&[("a", 2, None), ("b", 2, None)]),
            T0,
            true,
            &[
                (
                    "a",
                    "served",
                    "run:jwks https://127.0.0.11:8443/oxauth/restv1/jwks only=false",
                ),
                (
                    "b",
                    "served",
                    "run:jwks https://127.0.0.12:8443/oxauth/restv1/jwks only=false",
                ),
            ],
            &[],
        ),
        (
            "a serves them, b not yet: no switch",
            at(&[("a", 3, None), ("b", 3, Some(StepStatus::Running))]),
            T0,
            true,
            &[("a", "switch", "wait")],
            &[("a", "switch", "run:")],
        ),
        (
            "b's probe failed: a's switch fails, signing never moves",
            at(&[("a", 3, None), ("b", 3, Some(StepStatus::Failed))]),
            T0,
            true,
            &[("a", "switch", "fail:b: served failed")],
            &[("a", "switch", "run:"), ("b", "switch", "run:")],
        ),
        (
            "b's keystore failed: a never publishes",
            at(&[("a", 1, None), ("b", 1, Some(StepStatus::Failed))]),
            T0,
            true,
            &[("a", "publish", "fail:b: keystore-add failed")],
            &[("a", "publish", "run:")],
        ),
        (
            "every node serves the new keys: new signing kids first",
            at(&[("a", 3, None), ("b", 3, None)]),
            T0,
            true,
            &[
                ("a", "switch", "run:ldap add=0 keep= first=n_rs256,n_es256"),
                ("b", "switch", "run:ldap add=0 keep= first=n_rs256,n_es256"),
            ],
            &[],
        ),
        (
            "every node switched: the rotation ends (retirement is the controller's schedule)",
            at(&[("a", 4, None), ("b", 4, None)]),
            T0,
            false,
            &[],
            &[("a", "retire", "run:"), ("a", "keystore-add", "run:")],
        ),
    ];
    for (name, mut wf, now, kept, want, refused) in cases {
        let out = decide(&mut wf, &obs(now, kept));
        for (n, s, w) in want {
            assert!(has(&out, n, s, w), "{name}: want {n} {s} {w}, got {out:?}");
        }
        for (n, s, w) in refused {
            assert!(
                !has(&out, n, s, w),
                "{name}: {n} {s} {w} must not happen: {out:?}"
            );
        }
    }
}

#[test]
fn probes_are_checked_against_the_new_kids() {
    let d = def();
    let cases: Vec<(&str, usize, Vec<&str>, bool)> = vec![
        (
            "served: all new kids",
            2,
            vec!["old", "n_rs256", "n_es256", "n_enc"],
            true,
        ),
        (
            "served: one missing",
            2,
            vec!["old", "n_rs256", "n_enc"],
            false,
        ),
    ];
    for (name, idx, served, ok) in cases {
        let wf = at(&[]);
        let o = obs(T0, true);
        let ctx = StepCtx {
            workflow: &wf,
            node: &wf.nodes[0],
            index: idx,
            observed: &o,
        };
        assert_eq!(d.check(&ctx, &probed(&served)).is_ok(), ok, "{name}");
    }
}

#[test]
fn kept_keys_never_print_the_private_key() {
    let k = NewOxauthKeys::decode(keys().as_slice()).unwrap();
    let dbg = format!("{k:?}");
    assert!(!dbg.contains("PEM\""), "{dbg}");
    assert!(dbg.contains("n_rs256"));
}

#[test]
fn keystore_steps_let_the_node_detect_its_keystore_and_read_its_password() {
    let d = def();
    let wf = at(&[]);
    let o = obs(T0, true);
    // (node index, step index, the node's address, new keys added, kids kept)
    let cases = [(0, 0, "127.0.0.11", 1, ""), (1, 0, "127.0.0.12", 1, "")];
    for (node, idx, ip, added, kept) in cases {
        let ctx = StepCtx {
            workflow: &wf,
            node: &wf.nodes[node],
            index: idx,
            observed: &o,
        };
        let what = format!("{} {}", wf.nodes[node].node_id, STEPS[idx]);
        let StepPlan::Run(job) = d.plan_step(&ctx) else {
            panic!("{what}: not run");
        };
        let Some(operation::Kind::UpdateOxauthKeystore(u)) = job.operation.kind else {
            panic!("{what}: {:?}", job.operation.kind);
        };
        assert_eq!(u.kind(), KeystoreKind::Detect, "{what}");
        assert_eq!(u.host, ip, "{what}: the node's own directory");
        assert_eq!(u.port, 1636, "{what}");
        assert_eq!(
            u.password, b"pw",
            "{what}: the directory manager's password"
        );
        assert!(
            u.keystore_password.is_empty(),
            "{what}: the node reads keyStoreSecret itself"
        );
        assert_eq!(u.add.len(), added, "{what}");
        assert_eq!(u.keep_kids.join(","), kept, "{what}");
    }
}

#[test]
fn the_old_keys_are_due_the_overlap_after_the_last_switch() {
    let inputs = Inputs {
        overlap_ms: 60_000,
        ..Default::default()
    };
    let mut wf = at(&[("a", 4, None), ("b", 3, None)]);
    wf.inputs.extend(inputs.encode());
    assert_eq!(KeyRotation::retirement_due(&wf), None, "b has not switched");
    let mut wf = at(&[("a", 4, None), ("b", 4, None)]);
    assert_eq!(KeyRotation::retirement_due(&wf), None, "no overlap input");
    wf.inputs.extend(inputs.encode());
    wf.nodes[1].steps[3].finished_unix_ms = T0 + 5;
    assert_eq!(KeyRotation::retirement_due(&wf), Some(T0 + 5 + 60_000));
}
