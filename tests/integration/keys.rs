//! oxAuth key rotation end to end: the stand-in installed on two nodes and replicated, tokens
//! requested from each node's /token and their RS256 signatures verified here (ring) against
//! every node's /jwks, before, during and after `keys rotate`.

use super::gluu_cluster::{Cluster, HTTPS_PORT, Node, address};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clustermgr_tests::{eventually, text};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn installed_and_replicated(n: usize) -> Cluster {
    let c = Cluster::new(n, HTTPS_PORT);
    let out = c.ctl.cli(&["gluu", "install", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = c.ctl.cli(&["replication", "deploy", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    c
}

fn url(node: &Node, path: &str) -> String {
    format!(
        "https://{}:{HTTPS_PORT}/oxauth/restv1/{path}",
        address(node)
    )
}

fn curl(args: &[&str]) -> Result<String, String> {
    let o = Command::new("curl")
        .args(["-sk", "--fail", "--max-time", "5"])
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(text(&o.stdout))
    } else {
        Err(format!("curl {args:?}: {}", text(&o.stderr)))
    }
}

fn token(node: &Node) -> Result<String, String> {
    let body = curl(&[
        "-u",
        "client:secret",
        "-d",
        "grant_type=client_credentials",
        &url(node, "token"),
    ])?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    v["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no token: {body}"))
}

fn jwks(node: &Node) -> Result<Value, String> {
    let body = curl(&[&url(node, "jwks")])?;
    serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|k| k["kid"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn kid_of(jwt: &str) -> String {
    let header = jwt.split('.').next().unwrap();
    let h: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    h["kid"].as_str().unwrap().to_string()
}

/// Verifies an RS256 JWT against a JWKS (the key named by its kid).
fn verify(jwt: &str, jwks: &Value) -> Result<(), String> {
    let kid = kid_of(jwt);
    let key = jwks["keys"]
        .as_array()
        .and_then(|a| a.iter().find(|k| k["kid"] == kid.as_str()))
        .ok_or_else(|| format!("kid {kid} not served"))?;
    let (input, sig) = jwt.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let n = URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap();
    let e = URL_SAFE_NO_PAD.decode(key["e"].as_str().unwrap()).unwrap();
    ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            input.as_bytes(),
            &sig,
        )
        .map_err(|_| format!("bad signature for kid {kid}"))
}

fn keystore(node: &Node) -> PathBuf {
    node.agent
        .root
        .join("opt/gluu-server/etc/certs/oxauth-keys.json")
}

fn status(c: &Cluster, id: &str) -> String {
    c.workflow(id)["status"].as_str().unwrap_or("").to_string()
}

/// The key-retirement workflow a rotation left, once started.
fn retirement_of(c: &Cluster, rotation: &str) -> Option<Value> {
    c.workflows_of("key-retirement")
        .into_iter()
        .find(|w| w["inputs"]["rotation"] == rotation)
}

/// Waits for the retirement of `rotation` to succeed (it starts the overlap after the last
/// switch, on the controller's schedule).
fn wait_retired(c: &Cluster, rotation: &str) -> Value {
    eventually(
        Duration::from_secs(180),
        "the old keys retired",
        || match retirement_of(c, rotation) {
            Some(w) if w["status"] == "succeeded" => Ok(w),
            Some(w) if w["status"] == "failed" => panic!("retirement failed: {w}"),
            other => Err(format!("{other:?}")),
        },
    )
}

#[test]
fn rotation_overlaps_survives_a_controller_kill_and_a_failing_node_stops_it() {
    let mut c = installed_and_replicated(2);
    let (n1, n2) = (&c.nodes[0], &c.nodes[1]);
    c.ctl
        .cli_ok(&["keys", "configure", "--backup", "--overlap", "15s"]);

    let old = token(n1).unwrap();
    let old_kid = kid_of(&old);
    for n in [n1, n2] {
        verify(&old, &jwks(n).unwrap()).unwrap();
    }

    // A dry run plans every node's steps and changes nothing.
    let workflows_before = c.ctl.json(&["workflow", "list"]).as_array().unwrap().len();
    let plan = c.ctl.json(&["keys", "rotate", "--dry-run"]);
    let runs: Vec<String> = plan
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{} {} {}", p["hostname"], p["step"], p["action"]))
        .collect();
    for n in [n1, n2] {
        let want = format!("\"{}\" \"keystore-add\" \"run\"", n.agent.hostname);
        assert!(runs.contains(&want), "{runs:?}");
    }
    assert!(!plan.to_string().contains("PRIVATE KEY"), "{plan}");
    assert_eq!(
        c.ctl.json(&["workflow", "list"]).as_array().unwrap().len(),
        workflows_before
    );

    // --- A failing node stops the rotation before any node signs with a new key. ---
    let ks2 = keystore(n2);
    let saved = std::fs::read(&ks2).unwrap();
    let mode = std::fs::metadata(&ks2).unwrap().permissions().mode();
    std::fs::write(&ks2, "not json").unwrap();
    let out = c.ctl.cli(&["keys", "rotate"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let wfs = c.ctl.json(&["workflow", "list"]);
    let failed_id = wfs[0]["id"].as_str().unwrap().to_string();
    let wf = c.workflow(&failed_id);
    assert_eq!(wf["kind"], "key-rotation");
    assert_eq!(wf["status"], "failed", "{wf}");
    let h1 = n1.agent.hostname.as_str();
    let publish = Cluster::step(&wf, h1, "publish");
    assert_eq!(publish["status"], "failed", "{wf}");
    assert!(
        publish["error"]
            .as_str()
            .unwrap()
            .contains("signing keys unchanged"),
        "{publish}"
    );
    for n in &c.nodes {
        let s = Cluster::step(&wf, &n.agent.hostname, "switch");
        assert_ne!(s["status"], "succeeded", "{wf}");
        assert!(s["job_id"].as_str().unwrap_or("").is_empty(), "{wf}");
    }
    for n in [n1, n2] {
        assert_eq!(kid_of(&token(n).unwrap()), old_kid, "signing moved");
        verify(&old, &jwks(n).unwrap()).unwrap();
    }
    std::fs::write(&ks2, &saved).unwrap();
    std::fs::set_permissions(&ks2, std::fs::Permissions::from_mode(mode)).unwrap();

    // --- A rotation, its controller killed once a node published the new keys. ---
    let id = c
        .ctl
        .cli_ok(&["keys", "rotate", "--detach"])
        .trim()
        .to_string();
    eventually(Duration::from_secs(120), "a node published", || {
        let wf = c.workflow(&id);
        let any = c
            .nodes
            .iter()
            .any(|n| Cluster::step(&wf, &n.agent.hostname, "publish")["status"] == "succeeded");
        if any {
            Ok(())
        } else if wf["status"] == "failed" {
            panic!("rotation failed: {wf}")
        } else {
            Err(wf["status"].to_string())
        }
    });
    c.ctl.kill9();
    c.ctl.start(&[]);
    let (n1, n2) = (&c.nodes[0], &c.nodes[1]);

    // Until it ends: the old token verifies on every node while its key is published, and no
    // node signs with a key another node does not publish.
    let start = Instant::now();
    let mut new_kid = String::new();
    let mut overlap_checks = 0;
    // The rotation ends once every node's configuration signs with the new keys; the old ones
    // stay published until the retirement the controller starts after the overlap.
    let retired = |c: &Cluster| {
        status(c, &id) == "succeeded"
            && retirement_of(c, &id).is_some_and(|w| w["status"] == "succeeded")
    };
    while !retired(&c) {
        assert!(
            !["failed", "cancelled"].contains(&status(&c, &id).as_str()),
            "{}",
            c.workflow(&id)
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "rotation too long"
        );
        std::thread::sleep(Duration::from_millis(300));
        let (Ok(j1), Ok(j2)) = (jwks(n1), jwks(n2)) else {
            continue;
        };
        for n in [n1, n2] {
            if let Ok(t) = token(n) {
                let k = kid_of(&t);
                for j in [&j1, &j2] {
                    assert!(
                        kids(j).contains(&k),
                        "{} signs with {k}, not published everywhere: {:?}",
                        n.agent.hostname,
                        kids(j)
                    );
                    verify(&t, j).unwrap();
                }
                if k != old_kid {
                    new_kid = k;
                }
            }
        }
        if kids(&j1).contains(&old_kid) && kids(&j2).contains(&old_kid) && !new_kid.is_empty() {
            // The overlap: new tokens carry the new kid, the old token still verifies.
            verify(&old, &j1).unwrap();
            verify(&old, &j2).unwrap();
            overlap_checks += 1;
        }
    }
    assert_eq!(status(&c, &id), "succeeded", "{}", c.workflow(&id));
    let rotation = c.workflow(&id);
    for n in rotation["nodes"].as_array().unwrap() {
        let names: Vec<&str> = n["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["name"].as_str())
            .collect();
        assert_eq!(
            names,
            ["keystore-add", "publish", "served", "switch"],
            "{rotation}"
        );
    }
    let retirement = wait_retired(&c, &id);
    assert_eq!(
        retirement["started_by"], "controller:schedule",
        "{retirement}"
    );
    assert!(overlap_checks > 0, "the overlap was never observed");
    assert!(!new_kid.is_empty());

    // Retired: only the new keys are served; new tokens verify everywhere.
    for n in [n1, n2] {
        let j = jwks(n).unwrap();
        assert!(!kids(&j).contains(&old_kid), "{j}");
        assert_eq!(kids(&j).len(), 11, "{j}");
        let mut algs: Vec<&str> = j["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|k| k["alg"].as_str())
            .collect();
        algs.sort();
        assert_eq!(
            algs,
            [
                "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512",
                "RSA-OAEP", "RSA1_5"
            ],
            "{j}"
        );
        let es512 = j["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["alg"] == "ES512")
            .unwrap();
        assert_eq!(
            (&es512["kty"], &es512["crv"]),
            (&"EC".into(), &"P-521".into())
        );
        let t = token(n).unwrap();
        assert_eq!(kid_of(&t), new_kid);
        verify(&t, &jwks(n1).unwrap()).unwrap();
        verify(&t, &jwks(n2).unwrap()).unwrap();
        assert!(verify(&old, &j).is_err());
        let ks: Value = serde_json::from_slice(&std::fs::read(keystore(n)).unwrap()).unwrap();
        let mut in_store: Vec<String> = ks.as_object().unwrap().keys().cloned().collect();
        in_store.sort();
        let mut served = kids(&j);
        served.sort();
        assert_eq!(in_store, served, "the old private keys left the keystore");
    }

    // The backup of the previous oxAuthConfWebKeys (0600), holding the old kid.
    let backup = c.ctl.data.join(format!(
        "backup_oxAuthConfWebKeys/oxAuthConfWebKeys-{id}.json"
    ));
    eventually(Duration::from_secs(10), "the backup", || {
        std::fs::read_to_string(&backup).map_err(|e| e.to_string())
    });
    let b = std::fs::read_to_string(&backup).unwrap();
    assert!(b.contains(&old_kid));
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Status: the new keys are current, each node signs with the new RS256 key.
    eventually(Duration::from_secs(10), "the status", || {
        let s = c.ctl.json(&["keys", "status"]);
        let cur: Vec<&str> = s["current"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|k| k["kid"].as_str())
            .collect();
        if cur.contains(&new_kid.as_str())
            && s["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["signing_kid"] == new_kid.as_str())
        {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });

    // No private key in logs, job records or the audit log.
    let ks: Value = serde_json::from_slice(&std::fs::read(keystore(n1)).unwrap()).unwrap();
    let needles: Vec<String> = ks
        .as_object()
        .unwrap()
        .values()
        .map(|pem| pem.as_str().unwrap().lines().nth(1).unwrap().to_string())
        .collect();
    let mut hay = vec![
        (
            "controller log",
            std::fs::read_to_string(c.ctl.log_path()).unwrap_or_default(),
        ),
        (
            "jobs",
            c.ctl
                .cli_ok(&["--output", "json", "job", "list", "--limit", "1000"]),
        ),
        (
            "audit",
            c.ctl
                .cli_ok(&["--output", "json", "audit", "--limit", "10000"]),
        ),
        ("workflow", c.workflow(&id).to_string()),
    ];
    for n in &c.nodes {
        hay.push(("agent log", n.agent.log()));
    }
    for j in c.jobs() {
        let jid = j["id"].as_str().unwrap();
        hay.push(("job logs", c.ctl.cli_ok(&["job", "logs", jid])));
    }
    for (what, h) in &hay {
        for n in &needles {
            assert!(!h.contains(n.as_str()), "a private key in the {what}");
        }
    }
    assert!(
        c.ctl
            .cli_ok(&["--output", "json", "audit", "--limit", "100"])
            .contains("keys.rotate")
    );

    // With a long overlap, `keys rotate` returns once every node's configuration signs with the
    // new keys and says when the old ones go; they stay published meanwhile, and nothing holds
    // the nodes.
    c.ctl.cli_ok(&["keys", "configure", "--overlap", "1h"]);
    let out = c.ctl.cli(&["keys", "rotate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("every node's configuration signs with the new keys (oxAuth uses them from its next reload on the bumped oxRevision); the old keys are retired at"),
        "{err}"
    );
    let long = c.workflows_of("key-rotation")[0].clone();
    let long_id = long["id"].as_str().unwrap().to_string();
    assert_eq!(long["status"], "succeeded", "{long}");
    // The nodes' oxAuth take the switched configuration on its revision.
    let third_kid = eventually(Duration::from_secs(30), "signing with the new keys", || {
        let k = kid_of(&token(&c.nodes[0])?);
        if k != new_kid { Ok(k) } else { Err(k) }
    });
    for n in &c.nodes {
        let j = jwks(n).unwrap();
        assert!(
            kids(&j).contains(&new_kid),
            "retired before the overlap: {j}"
        );
        assert!(kids(&j).contains(&third_kid), "{j}");
    }
    let pending = eventually(Duration::from_secs(10), "the pending retirement", || {
        let s = c.ctl.json(&["keys", "status"]);
        if s["retirement"]["rotation_workflow_id"] == long_id.as_str() {
            Ok(s["retirement"].clone())
        } else {
            Err(s.to_string())
        }
    });
    let due = pending["due_unix_ms"].as_u64().unwrap();
    let switched = long["finished_unix_ms"].as_u64().unwrap();
    assert!(
        due >= switched + 3_500_000 && due <= switched + 3_600_000,
        "due the overlap after the last switch: {pending}"
    );
    assert!(pending["workflow_id"].is_null(), "{pending}");
    assert!(
        pending["retiring"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == new_kid.as_str()),
        "{pending}"
    );
    assert!(
        c.ctl
            .cli_ok(&["keys", "status"])
            .contains("retirement  11 old keys go at"),
        "{}",
        c.ctl.cli_ok(&["keys", "status"])
    );
    let out = c.ctl.cli(&["replication", "deploy", "--all", "--no-wait"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the overlap holds no node: {}",
        text(&out.stderr)
    );
    assert!(retirement_of(&c, &long_id).is_none());

    // Scheduled: once enabled, the controller rotates on the interval by itself; its
    // retirement replaces the pending one (both older key sets go after its overlap).
    let s = c.ctl.json(&[
        "keys",
        "configure",
        "--enable",
        "--interval",
        "1m",
        "--overlap",
        "15s",
    ]);
    assert_eq!(s["enabled"], true);
    let next = c.ctl.json(&["keys", "status"])["next_rotation"].clone();
    assert!(next.is_string(), "{next}");
    let scheduled = eventually(Duration::from_secs(150), "a scheduled rotation", || {
        let wfs = c.ctl.json(&["workflow", "list"]);
        wfs.as_array()
            .unwrap()
            .iter()
            .find(|w| {
                w["kind"] == "key-rotation"
                    && w["started_by"] == "controller:schedule"
                    && w["status"] == "succeeded"
            })
            .map(|w| w["id"].as_str().unwrap().to_string())
            .ok_or_else(|| "not yet".to_string())
    });
    wait_retired(&c, &scheduled);
    let j = jwks(&c.nodes[0]).unwrap();
    assert!(!kids(&j).contains(&new_kid), "{scheduled}: {j}");
    assert!(!kids(&j).contains(&third_kid), "{scheduled}: {j}");
    assert!(c.ctl.json(&["keys", "status"])["retirement"].is_null());
    let t = token(&c.nodes[1]).unwrap();
    verify(&t, &j).unwrap();
}
