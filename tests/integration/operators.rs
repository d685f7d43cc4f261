//! Operators: roles, the audit log (without secrets), and the CLI's errors when the controller
//! is unreachable or the credential is wrong.

use clustermgr_tests::{Agent, Controller, text};

#[test]
fn a_viewer_reads_but_cannot_mutate_and_refusals_are_audited() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut a = Agent::new("observed");
    a.join(&ctl, "gluu-node");
    a.start();
    ctl.wait_status(&a.node_id, "online");
    let bundle = ctl.dir.path().join("bob.toml");
    let b = bundle.to_str().unwrap();
    ctl.cli_ok(&["operator", "create", "bob", "--role", "viewer", "--out", b]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&bundle).unwrap().permissions().mode() & 0o777,
        0o600
    );

    assert!(
        ctl.cli_ok(&["--config", b, "whoami"])
            .contains("bob (viewer)")
    );
    assert!(
        ctl.cli_ok(&["--config", b, "node", "list"])
            .contains("observed")
    );
    ctl.cli_ok(&["--config", b, "job", "list"]);
    ctl.cli_ok(&["--config", b, "audit"]);
    // Where a refused `operator create` would have written its credential: this test's own
    // directory, so nothing another test (or an earlier run) left behind can hide a write.
    let mallory = ctl.dir.path().join("mallory.toml");
    let mallory_s = mallory.to_str().unwrap();
    for args in [
        vec!["token", "create", "--role", "lb"],
        vec!["job", "run", "observed", "ping"],
        vec!["node", "approve", "observed"],
        vec!["node", "remove", "observed"],
        vec![
            "operator", "create", "mallory", "--role", "admin", "--out", mallory_s,
        ],
    ] {
        let mut full = vec!["--config", b];
        full.extend(args.iter().copied());
        let o = ctl.cli(&full);
        assert!(!o.status.success(), "{args:?} succeeded for a viewer");
        assert!(
            text(&o.stderr).contains("permission denied"),
            "{args:?}: {}",
            text(&o.stderr)
        );
    }
    assert!(
        !mallory.exists(),
        "a refused operator create wrote {}",
        mallory.display()
    );
    // Still there, still online.
    ctl.wait_status(&a.node_id, "online");
    let audit = ctl.json(&["audit"]);
    let denied: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["who"] == "operator:bob")
        .collect();
    assert_eq!(denied.len(), 5, "{audit}");
    assert!(
        denied
            .iter()
            .all(|e| e["result"].as_str().unwrap().starts_with("error: "))
    );

    // An operator may run jobs and create tokens but not operators.
    let ob = ctl.dir.path().join("olga.toml");
    let o = ob.to_str().unwrap();
    ctl.cli_ok(&[
        "operator", "create", "olga", "--role", "operator", "--out", o,
    ]);
    ctl.cli_ok(&["--config", o, "job", "run", "observed", "ping"]);
    ctl.cli_ok(&["--config", o, "token", "create", "--role", "cache"]);
    let x = ctl.dir.path().join("x.toml");
    let r = ctl.cli(&[
        "--config",
        o,
        "operator",
        "create",
        "x",
        "--role",
        "viewer",
        "--out",
        x.to_str().unwrap(),
    ]);
    assert!(!r.status.success());
    assert!(
        text(&r.stderr).contains("permission denied"),
        "{}",
        text(&r.stderr)
    );
    assert!(
        !x.exists(),
        "a refused operator create wrote {}",
        x.display()
    );
    let ops = ctl.cli_ok(&["operator", "list"]);
    assert!(
        ops.contains("bob") && ops.contains("olga") && ops.contains("admin"),
        "{ops}"
    );
    assert!(!ops.contains("mallory"), "{ops}");
}

#[test]
fn the_audit_log_and_logs_never_hold_secrets() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let token = ctl.token("gluu-node");
    let secret = token.split_once('.').unwrap().1.to_string();
    let mut a = Agent::new("secretive");
    let o = a.join_output(&ctl.addr, &token, &ctl.pin, &[]);
    assert!(o.status.success());
    a.node_id = text(&o.stdout).trim().into();
    a.start();
    ctl.wait_status(&a.node_id, "online");
    let src = a.dir.path().join("pw");
    std::fs::write(&src, "ldapPass=S3cr3t!'$x").unwrap();
    ctl.cli_ok(&[
        "job",
        "run",
        "secretive",
        "write-file",
        "/etc/gluu/conf/pw",
        "--from",
        src.to_str().unwrap(),
    ]);
    ctl.cli_ok(&["job", "run", "secretive", "read-file", "/etc/gluu/conf/pw"]);
    let bundle = ctl.dir.path().join("carol.toml");
    ctl.cli_ok(&[
        "operator",
        "create",
        "carol",
        "--role",
        "admin",
        "--out",
        bundle.to_str().unwrap(),
    ]);
    let carol_key = {
        let b = std::fs::read_to_string(&bundle).unwrap();
        let start = b.find("-----BEGIN PRIVATE KEY-----").unwrap() + 28;
        b[start..start + 40].to_string()
    };

    let audit = ctl.cli_ok(&["--output", "json", "audit"]);
    let table = ctl.cli_ok(&["audit"]);
    let jobs = ctl.cli_ok(&["--output", "json", "job", "list"]);
    let ctl_log = std::fs::read_to_string(ctl.log_path()).unwrap();
    let agent_log = a.log();
    for (name, hay) in [
        ("audit json", &audit),
        ("audit table", &table),
        ("job records", &jobs),
        ("controller log", &ctl_log),
        ("agent log", &agent_log),
    ] {
        assert!(!hay.contains(&secret), "{name} holds the join token secret");
        assert!(!hay.contains("S3cr3t"), "{name} holds file content");
        assert!(!hay.contains(&carol_key), "{name} holds a private key");
    }
    // ...but it does say who did what.
    for action in [
        "token.create",
        "node.enroll",
        "job.submit",
        "operator.create",
    ] {
        assert!(audit.contains(action), "audit lacks {action}: {audit}");
    }
    assert!(audit.contains("operator:admin"));
}

#[test]
fn clear_errors_for_unreachable_controller_and_foreign_credentials() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let other = Controller::init();
    // A credential from another cluster is refused.
    let foreign = other.data.join("admin.toml");
    let o = ctl.cli(&[
        "--config",
        foreign.to_str().unwrap(),
        "--controller",
        &ctl.addr,
        "node",
        "list",
    ]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("credential") || err.contains("refused"),
        "unhelpful error: {err}"
    );
    // A missing credential says what to do.
    let o = ctl.cli(&["--config", "/nonexistent/cred.toml", "node", "list"]);
    assert!(
        text(&o.stderr).contains("clustermgr init"),
        "{}",
        text(&o.stderr)
    );
    // Controller down.
    ctl.stop();
    let o = ctl.cli(&["node", "list"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("cannot reach the controller"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definition() {
    let ctl = Controller::init();
    let bash = ctl.cli_ok(&["completions", "bash"]);
    assert!(bash.contains("sandbox") && bash.contains("operator"));
    let man = ctl.cli_ok(&["man"]);
    assert!(
        man.contains(".TH clustermgr"),
        "{}",
        &man[..man.len().min(200)]
    );
    let dir = ctl.dir.path().join("man");
    ctl.cli_ok(&["man", "--dir", dir.to_str().unwrap()]);
    assert!(dir.join("clustermgr-node-list.1").exists());
}

#[test]
fn an_expired_operator_credential_gets_a_clear_error() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let path = ctl.dir.path().join("temp.toml");
    let p = path.to_str().unwrap();
    ctl.cli_ok(&[
        "operator", "create", "temp", "--role", "viewer", "--out", p, "--ttl", "1s",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let o = ctl.cli(&["--config", p, "node", "list"]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("expired") && err.contains("operator create"),
        "{err}"
    );
}

#[test]
fn removing_an_operator_revokes_its_credential_at_once() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let path = ctl.dir.path().join("dave.toml");
    let p = path.to_str().unwrap();
    ctl.cli_ok(&[
        "operator", "create", "dave", "--role", "operator", "--out", p,
    ]);
    assert!(ctl.cli_ok(&["--config", p, "whoami"]).contains("dave"));
    ctl.cli_ok(&["operator", "remove", "dave"]);
    let o = ctl.cli(&["--config", p, "whoami"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("revoked"), "{}", text(&o.stderr));
    // Still refused after a restart.
    ctl.stop();
    ctl.start(&[]);
    assert!(!ctl.cli(&["--config", p, "whoami"]).status.success());
    // The last admin stays.
    let o = ctl.cli(&["operator", "remove", "admin"]);
    assert!(
        text(&o.stderr).contains("last admin"),
        "{}",
        text(&o.stderr)
    );
    assert!(ctl.cli_ok(&["operator", "list"]).contains("admin"));
}

#[test]
fn key_generating_dry_runs_and_credential_renewals_are_limited_per_operator_and_audited() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let bundle = ctl.dir.path().join("vera.toml");
    let v = bundle.to_str().unwrap();
    ctl.cli_ok(&["operator", "create", "vera", "--role", "viewer", "--out", v]);
    // Ten dry runs a minute (refused here for want of Gluu servers, but counted), then no more.
    for i in 0..10 {
        let o = ctl.cli(&["--config", v, "keys", "rotate", "--dry-run"]);
        assert!(
            !text(&o.stderr).contains("too many"),
            "run {i}: {}",
            text(&o.stderr)
        );
    }
    let o = ctl.cli(&["--config", v, "keys", "rotate", "--dry-run"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("too many key rotation dry runs by operator:vera"),
        "{}",
        text(&o.stderr)
    );
    let audit = ctl.json(&["audit"]);
    let dry: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["who"] == "operator:vera" && e["action"] == "keys.rotate")
        .collect();
    assert_eq!(dry.len(), 11, "{audit}");

    // Five renewals an hour.
    for i in 0..5 {
        let out = ctl.dir.path().join(format!("vera-{i}.toml"));
        ctl.cli_ok(&[
            "--config",
            v,
            "operator",
            "renew",
            "--out",
            out.to_str().unwrap(),
        ]);
    }
    let out = ctl.dir.path().join("vera-5.toml");
    let o = ctl.cli(&[
        "--config",
        v,
        "operator",
        "renew",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("renewed its credential 5 times"),
        "{}",
        text(&o.stderr)
    );
    assert!(!out.exists());
    let audit = ctl.json(&["audit"]).to_string();
    assert_eq!(audit.matches("\"operator.renew\"").count(), 6, "{audit}");
}
