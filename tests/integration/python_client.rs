//! A client nobody here wrote: Python `grpcio` against the operator API, with and without a
//! credential (tests/python/operator_client.py). Needs
//! `pip install grpcio grpcio-health-checking protobuf`; the test fails (never skips) without it.

use clustermgr_tests::{Agent, Controller, text};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const PIP: &str = "pip install grpcio grpcio-health-checking protobuf";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/operator_client.py")
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Fails with the install command when `import grpc` does not work.
fn require_grpcio() {
    let o = Command::new(python())
        .args([
            "-c",
            "import grpc, grpc_health.v1.health_pb2; print(grpc.__version__)",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; install Python 3.11+", python()));
    assert!(
        o.status.success(),
        "the Python gRPC modules are missing (`{}` failed: {}); install them with: {PIP}",
        python(),
        text(&o.stderr).trim()
    );
}

fn run_script(args: &[&str]) -> (Output, serde_json::Value) {
    let o = Command::new(python())
        .arg(script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run operator_client.py");
    assert_ne!(
        o.status.code(),
        Some(3),
        "operator_client.py cannot import grpc: {}; install with: {PIP}",
        text(&o.stderr)
    );
    let stdout = text(&o.stdout);
    let v = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "operator_client.py {args:?} printed no JSON ({e}): stdout {stdout:?} stderr {:?}",
            text(&o.stderr)
        )
    });
    (o, v)
}

#[test]
fn python_grpcio_client_with_and_without_credential() {
    require_grpcio();
    let mut ctl = Controller::init();
    ctl.start(&[]);

    // A node, so ListNodes has something to decode.
    let mut agent = Agent::new("py-node-1");
    agent.join(&ctl, "gluu-node");

    // Admin credential written by `clustermgr init`.
    let admin = ctl.data.join("admin.toml");
    let admin_s = admin.to_str().expect("utf-8 path");
    let (o, v) = run_script(&["--bundle", admin_s]);
    assert!(
        o.status.success(),
        "admin call failed: {v} {}",
        text(&o.stderr)
    );
    assert_eq!(v["code"], "OK", "{v}");
    assert_eq!(v["health"], "SERVING", "{v}");
    assert_eq!(v["name"], "admin", "{v}");
    assert_eq!(v["role"], "admin", "{v}");
    let nodes = v["nodes"].as_array().expect("nodes array");
    assert_eq!(nodes.len(), 1, "{v}");
    assert_eq!(nodes[0]["id"], agent.node_id.as_str(), "{v}");
    assert_eq!(nodes[0]["hostname"], "py-node-1", "{v}");
    assert_eq!(nodes[0]["role"], "gluu-node", "{v}");

    // A viewer credential issued through the CLI.
    let bob = ctl.dir.path().join("bob.toml");
    let bob_s = bob.to_str().expect("utf-8 path");
    ctl.cli_ok(&[
        "operator", "create", "bob", "--role", "viewer", "--out", bob_s,
    ]);
    let (o, v) = run_script(&["--bundle", bob_s]);
    assert!(
        o.status.success(),
        "viewer call failed: {v} {}",
        text(&o.stderr)
    );
    assert_eq!(v["name"], "bob", "{v}");
    assert_eq!(v["role"], "viewer", "{v}");
    assert_eq!(v["health"], "SERVING", "{v}");
    assert_eq!(v["nodes"].as_array().map(|n| n.len()), Some(1), "{v}");

    // No client certificate: same CA and address, every call refused. Client authentication
    // is optional at the TLS layer, so the handshake completes and the interceptor answers
    // UNAUTHENTICATED, saying what is missing. (UNAVAILABLE would mean the server dropped the
    // connection instead: not the contract.)
    let ca = ctl.data.join("ca.crt");
    let ca_s = ca.to_str().expect("utf-8 path");
    let (o, v) = run_script(&["--no-cert", "--ca", ca_s, "--controller", &ctl.addr]);
    assert!(
        o.status.success(),
        "a call without a certificate was answered: {v}"
    );
    assert_eq!(v["refused"], true, "{v}");
    for (code, details) in [
        ("code", "details"),
        ("list_nodes_code", "list_nodes_details"),
    ] {
        assert_eq!(
            v[code], "UNAUTHENTICATED",
            "unexpected status without a certificate: {v}"
        );
        assert!(
            v[details]
                .as_str()
                .unwrap_or_default()
                .contains("a client certificate issued by this cluster's CA is required"),
            "{v}"
        );
    }

    // A credential from another cluster is refused too (its CA does not verify this server).
    let other = Controller::init();
    let foreign = other.data.join("admin.toml");
    let (o, v) = run_script(&[
        "--bundle",
        foreign.to_str().expect("utf-8 path"),
        "--controller",
        &ctl.addr,
    ]);
    assert!(
        !o.status.success(),
        "a foreign credential was accepted: {v}"
    );
    assert_eq!(v["code"], "UNAVAILABLE", "{v}");
}
