//! Joining: the happy path, token misuse, CA pin mismatch, approval mode, re-joining.

use clustermgr_tests::{Agent, Controller, text};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

#[test]
fn join_run_and_inventory_shows() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut a = Agent::new("gluu1.example.test");
    a.join(&ctl, "gluu-node");

    // Key and certificate are private to the node.
    let mode = std::fs::metadata(a.state.join("identity.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "identity.pem mode {mode:o}");
    assert!(a.identity_pem().contains("PRIVATE KEY"));
    assert_eq!(
        std::fs::metadata(&a.state).unwrap().permissions().mode() & 0o777,
        0o700
    );

    a.start();
    ctl.wait_status(&a.node_id, "online");
    let node = ctl.json(&["node", "show", "gluu1.example.test"]);
    assert_eq!(node["id"], a.node_id);
    assert_eq!(node["role"], "gluu-node");
    assert_eq!(node["status"], "online");
    assert_eq!(node["addresses"][0], a.address.as_str());
    assert!(
        !node["os"].as_str().unwrap().is_empty(),
        "os missing: {node}"
    );
    assert!(!node["kernel"].as_str().unwrap().is_empty());
    assert_eq!(node["agent_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(node["gluu"]["present"], false);
    // The controller saw the connection come from the node's own address.
    assert!(
        node["remote_address"]
            .as_str()
            .unwrap()
            .starts_with(&a.address),
        "{node}"
    );
    let list = ctl.json(&["node", "list"]);
    let row = &list.as_array().unwrap()[0];
    for key in ["id", "hostname", "role", "status", "os"] {
        assert!(row.get(key).is_some(), "node list JSON lacks {key}: {row}");
    }
    // Table output names the node too, with its agent's version.
    let table = ctl.cli_ok(&["node", "list"]);
    assert!(table.contains("gluu1.example.test"), "{table}");
    assert!(
        table.contains("AGENT") && table.contains(env!("CARGO_PKG_VERSION")),
        "{table}"
    );
}

#[test]
fn token_reuse_expiry_and_unknown_tokens_issue_nothing() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let token = ctl.token("cache");
    let mut first = Agent::new("cache1");
    let o = first.join_output(&ctl.addr, &token, &ctl.pin, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    first.node_id = text(&o.stdout).trim().into();

    let second = Agent::new("cache2");
    let o = second.join_output(&ctl.addr, &token, &ctl.pin, &[]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("already been used"),
        "{}",
        text(&o.stderr)
    );
    assert!(!second.state.join("identity.pem").exists());

    let short = ctl
        .cli_ok(&["token", "create", "--role", "lb", "--ttl", "1s"])
        .trim()
        .to_string();
    std::thread::sleep(Duration::from_millis(2100));
    let o = second.join_output(&ctl.addr, &short, &ctl.pin, &[]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("expired"), "{}", text(&o.stderr));

    let o = second.join_output(
        &ctl.addr,
        "0123456789.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &ctl.pin,
        &[],
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("unknown join token"),
        "{}",
        text(&o.stderr)
    );

    let o = second.join_output(&ctl.addr, "not-a-token", &ctl.pin, &[]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("malformed"), "{}", text(&o.stderr));
    assert!(!second.state.join("identity.pem").exists());

    // Only the first join created a node.
    let nodes = ctl.json(&["node", "list"]);
    assert_eq!(nodes.as_array().unwrap().len(), 1, "{nodes}");
    assert_eq!(nodes[0]["id"], first.node_id);
    // The enrollment is in the audit log, by token id only; failed attempts are audited as one
    // row per source address when the rate-limit window ends (hardening.rs).
    let audit = ctl.cli_ok(&["--output", "json", "audit"]);
    assert_eq!(audit.matches("\"node.enroll\"").count(), 1, "{audit}");
    let secret = token.split_once('.').unwrap().1;
    assert!(!audit.contains(secret));
}

#[test]
fn ca_pin_mismatch_is_refused_and_consumes_nothing() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let token = ctl.token("gluu-node");
    let mut a = Agent::new("pinned");
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let o = a.join_output(&ctl.addr, &token, &wrong, &[]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("does not match --ca-pin"), "{err}");
    assert!(
        err.contains(&ctl.pin),
        "the message names what was presented: {err}"
    );
    assert!(!a.state.join("identity.pem").exists());

    let o = a.join_output(&ctl.addr, &token, "sha256:1234", &[]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("invalid CA pin"),
        "{}",
        text(&o.stderr)
    );

    // The token was never presented, so it still works with the right pin.
    let o = a.join_output(&ctl.addr, &token, &ctl.pin, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    a.node_id = text(&o.stdout).trim().into();
    a.start();
    ctl.wait_status(&a.node_id, "online");
}

#[test]
fn approval_mode_keeps_new_nodes_pending_until_approved() {
    let mut ctl = Controller::init();
    ctl.start(&["--require-approval"]);
    let mut a = Agent::new("needs-approval");
    let token = ctl.token("gluu-node");
    let o = a.join_output(&ctl.addr, &token, &ctl.pin, &[]);
    assert!(o.status.success());
    assert!(
        text(&o.stderr).contains("requires approval"),
        "{}",
        text(&o.stderr)
    );
    a.node_id = text(&o.stdout).trim().into();
    a.start();
    ctl.wait_status(&a.node_id, "pending");
    // Inventory is visible to help the decision, but no job runs.
    let n = ctl.json(&["node", "show", &a.node_id]);
    assert_eq!(n["hostname"], "needs-approval");
    let o = ctl.cli(&["job", "run", &a.node_id, "ping"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("pending approval"),
        "{}",
        text(&o.stderr)
    );

    ctl.cli_ok(&["node", "approve", "needs-approval"]);
    ctl.wait_status(&a.node_id, "online");
    let out = ctl.cli_ok(&["job", "run", &a.node_id, "ping"]);
    assert!(out.contains("pong from needs-approval"), "{out}");
}

#[test]
fn rejoin_needs_force_and_gets_a_new_identity() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut a = Agent::new("rejoin");
    a.join(&ctl, "lb");
    let old = a.node_id.clone();
    let token = ctl.token("lb");
    let o = a.join_output(&ctl.addr, &token, &ctl.pin, &[]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("--force"), "{}", text(&o.stderr));
    let o = a.join_output(&ctl.addr, &token, &ctl.pin, &["--force"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let new = text(&o.stdout).trim().to_string();
    assert_ne!(new, old);
}

#[test]
fn tokens_are_listed_without_secrets_and_revoked_tokens_are_refused() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let keep = ctl.token("gluu-node");
    let leaked = ctl.token("lb");
    let (leaked_id, leaked_secret) = leaked.split_once('.').unwrap();
    let listed = ctl.json(&["token", "list"]);
    let listed_text = listed.to_string();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert!(
        !listed_text.contains(leaked_secret)
            && !listed_text.contains(keep.split_once('.').unwrap().1)
    );
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "active")
    );

    ctl.cli_ok(&["token", "revoke", leaked_id]);
    let a = Agent::new("intruder");
    let o = a.join_output(&ctl.addr, &leaked, &ctl.pin, &[]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("unknown join token"),
        "{}",
        text(&o.stderr)
    );
    let o = ctl.cli(&["token", "revoke", leaked_id]);
    assert!(
        text(&o.stderr).contains("no join token"),
        "{}",
        text(&o.stderr)
    );

    // A used token shows as used.
    let b = Agent::new("legit");
    assert!(
        b.join_output(&ctl.addr, &keep, &ctl.pin, &[])
            .status
            .success()
    );
    let listed = ctl.json(&["token", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["state"], "used");
    let audit = ctl.cli_ok(&["--output", "json", "audit"]);
    assert!(audit.contains("token.revoke") && !audit.contains(leaked_secret));
}
