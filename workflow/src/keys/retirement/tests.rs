use super::*;
use crate::engine::*;
use crate::keys::tests::probed;
use clustermgr_proto::Inventory;

fn def() -> KeyRetirement {
    KeyRetirement {
        dir: Directory {
            ldap_password: "pw".into(),
            ldaps_port: 1636,
        },
        https_port: Some(8443),
        keep_kids: vec!["n_rs256".into(), "n_es256".into(), "n_enc".into()],
        probe_within_ms: 30_000,
        superseded: None,
    }
}

fn obs() -> Observed {
    let mut o = Observed {
        now_ms: 1,
        ..Default::default()
    };
    o.nodes.insert(
        "a".into(),
        NodeView {
            hostname: "a".into(),
            online: true,
            approved: true,
            inventory: Some(Inventory {
                addresses: vec!["127.0.0.11".into()],
                ..Default::default()
            }),
        },
    );
    o
}

/// A retirement on node a whose first `n` steps succeeded.
fn at(n: usize) -> Workflow {
    let mut wf = new_workflow(
        "r",
        KIND,
        "controller:schedule",
        1,
        vec![("a".into(), "a".into(), STEPS.to_vec())],
    );
    for s in wf.nodes[0].steps.iter_mut().take(n) {
        s.set_status(StepStatus::Succeeded);
    }
    wf.set_status(WorkflowStatus::Running);
    wf
}

fn op_of(d: &Decision) -> String {
    match d
        .dispatch
        .first()
        .and_then(|x| x.job.operation.kind.as_ref())
    {
        Some(operation::Kind::SetWebKeys(s)) => format!(
            "ldap add={} keep={} first={}",
            s.add_jwks.len(),
            s.keep_kids.join(","),
            s.first_kids.join(",")
        ),
        Some(operation::Kind::ProbeJwks(p)) => format!("jwks {} only={}", p.url, p.only_expected),
        Some(operation::Kind::UpdateOxauthKeystore(u)) => {
            format!(
                "keystore add={} keep={}",
                u.add.len(),
                u.keep_kids.join(",")
            )
        }
        other => format!("{other:?}"),
    }
}

#[test]
fn retirement_keeps_only_the_newest_kids_then_checks_and_cleans_the_keystore() {
    let cases = [
        (
            "retire at once: the schedule decided it is due",
            0,
            "ldap add=0 keep=n_rs256,n_es256,n_enc first=",
        ),
        (
            "retired in LDAP: the JWKS must serve only the kept kids",
            1,
            "jwks https://127.0.0.11:8443/oxauth/restv1/jwks only=true",
        ),
        (
            "then the old private keys leave the keystore",
            2,
            "keystore add=0 keep=n_rs256,n_es256,n_enc",
        ),
    ];
    for (name, done, want) in cases {
        let mut wf = at(done);
        let d = advance(&mut wf, &def(), &obs());
        assert_eq!(op_of(&d), want, "{name}");
        assert_eq!(d.dispatch[0].step, done, "{name}");
    }
    let mut nothing = def();
    nothing.keep_kids.clear();
    let mut wf = at(0);
    advance(&mut wf, &nothing, &obs());
    assert_eq!(
        wf.status(),
        WorkflowStatus::Failed,
        "never an empty keep list"
    );
}

#[test]
fn retired_is_checked_against_the_kept_kids() {
    let d = def();
    let cases = [
        ("only kept kids", vec!["n_rs256", "n_es256", "n_enc"], true),
        ("an old kid still served", vec!["old", "n_rs256"], false),
    ];
    for (name, served, ok) in cases {
        let wf = at(1);
        let o = obs();
        let ctx = StepCtx {
            workflow: &wf,
            node: &wf.nodes[0],
            index: 1,
            observed: &o,
        };
        assert_eq!(d.check(&ctx, &probed(&served)).is_ok(), ok, "{name}");
    }
}

#[test]
fn only_the_keys_records_pending_retirement_may_run() {
    // (this retirement's rotation, the rotation of the record's pending retirement, runs)
    let cases = [
        ("r1", Some("r1"), true),
        // A newer rotation replaced it: its kept kids are no longer the signing keys.
        ("r1", Some("r2"), false),
        // Nothing pending any more (the newer one already ran).
        ("r1", None, false),
        ("", Some("r2"), false),
    ];
    for (rotation, pending, runs) in cases {
        let why = superseded(rotation, pending);
        assert_eq!(why.is_none(), runs, "{rotation} {pending:?}: {why:?}");
        if let Some(why) = why {
            assert!(why.starts_with("superseded: "), "{why}");
        }
    }
}

#[test]
fn a_superseded_retirement_retried_fails_instead_of_removing_the_newer_keys() {
    let d = KeyRetirement {
        superseded: superseded("r1", Some("r2")),
        ..def()
    };
    for done in 0..STEPS.len() {
        let mut wf = at(done);
        let dec = advance(&mut wf, &d, &obs());
        assert!(dec.dispatch.is_empty(), "step {done}: {}", op_of(&dec));
        assert_eq!(wf.status(), WorkflowStatus::Failed, "step {done}");
        assert!(wf.error.contains("superseded: rotation r2"), "{}", wf.error);
    }
}
