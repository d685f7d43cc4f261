//! Typed jobs through the CLI: ping, facts, file read/write inside the managed allow-list, and
//! everything that must be refused with a clear error.

use clustermgr_tests::{Agent, Controller, text};

fn setup() -> (Controller, Agent) {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut a = Agent::new("worker");
    a.join(&ctl, "gluu-node");
    a.start();
    ctl.wait_status(&a.node_id, "online");
    (ctl, a)
}

#[test]
fn ping_facts_write_read_and_records() {
    let (ctl, a) = setup();
    assert!(
        ctl.cli_ok(&["job", "run", "worker", "ping"])
            .contains("pong from worker")
    );
    let facts = ctl.json(&["job", "run", "worker", "facts"]);
    assert_eq!(facts["state"], "succeeded");
    assert_eq!(facts["output"]["hostname"], "worker");

    let src = a.dir.path().join("local.properties");
    std::fs::write(&src, "servers: a:1636,b:1636\n").unwrap();
    let w = ctl.json(&[
        "job",
        "run",
        "worker",
        "write-file",
        "/etc/gluu/conf/gluu-ldap.properties",
        "--from",
        src.to_str().unwrap(),
        "--mode",
        "600",
    ]);
    assert_eq!(w["state"], "succeeded", "{w}");
    assert_eq!(w["output"]["changed"], true);
    let on_node = a.root.join("etc/gluu/conf/gluu-ldap.properties");
    assert_eq!(
        std::fs::read_to_string(&on_node).unwrap(),
        "servers: a:1636,b:1636\n"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&on_node).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let read = ctl.cli_ok(&[
        "job",
        "run",
        "worker",
        "read-file",
        "/etc/gluu/conf/gluu-ldap.properties",
    ]);
    assert_eq!(read, "servers: a:1636,b:1636\n");

    // The job record has the facts of the run but never the file content.
    let jobs = ctl.json(&["job", "list", "--node", "worker"]);
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 4);
    assert!(jobs.iter().all(|j| j["state"] == "succeeded"));
    let read_job = &jobs[0];
    assert_eq!(read_job["kind"], "read-file");
    assert!(!read_job.to_string().contains("1636"), "{read_job}");
    let id = read_job["id"].as_str().unwrap();
    let logs = ctl.cli_ok(&["job", "logs", id]);
    assert!(
        logs.contains("read /etc/gluu/conf/gluu-ldap.properties"),
        "{logs}"
    );
    let follow = ctl.cli_ok(&["job", "logs", "--follow", id]);
    assert_eq!(follow, logs);
    let shown = ctl.json(&["job", "show", id]);
    assert_eq!(shown["node"], "worker");
    assert!(shown["duration_ms"].as_u64().is_some());
}

#[test]
fn traversal_symlink_escape_oversize_and_unmanaged_paths_are_refused() {
    let (ctl, a) = setup();
    // Path traversal: refused before dispatch.
    let o = ctl.cli(&[
        "job",
        "run",
        "worker",
        "read-file",
        "/etc/gluu/conf/../../../etc/passwd",
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("path traversal"),
        "{}",
        text(&o.stderr)
    );
    let o = ctl.cli(&["job", "run", "worker", "read-file", "relative/path"]);
    assert!(
        text(&o.stderr).contains("must be absolute"),
        "{}",
        text(&o.stderr)
    );

    // Outside the allow-list: refused by the agent.
    let o = ctl.cli(&["job", "run", "worker", "read-file", "/etc/passwd"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("outside the managed paths"),
        "{}",
        text(&o.stderr)
    );

    // A symlink inside a managed directory that points outside the root.
    let outside = a.dir.path().join("outside-secret");
    std::fs::write(&outside, "top secret").unwrap();
    std::fs::create_dir_all(a.root.join("etc/gluu/conf")).unwrap();
    std::os::unix::fs::symlink(&outside, a.root.join("etc/gluu/conf/evil")).unwrap();
    let o = ctl.cli(&["job", "run", "worker", "read-file", "/etc/gluu/conf/evil"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("symbolic link"),
        "{}",
        text(&o.stderr)
    );
    assert!(!text(&o.stdout).contains("top secret"));
    let src = a.dir.path().join("payload");
    std::fs::write(&src, "overwritten").unwrap();
    let o = ctl.cli(&[
        "job",
        "run",
        "worker",
        "write-file",
        "/etc/gluu/conf/evil",
        "--from",
        src.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "top secret");

    // Oversized upload: refused with the limit named, nothing written.
    let big = a.dir.path().join("big");
    std::fs::write(&big, vec![b'x'; 9 * 1024 * 1024]).unwrap();
    let o = ctl.cli(&[
        "job",
        "run",
        "worker",
        "write-file",
        "/etc/gluu/conf/big",
        "--from",
        big.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("bytes can be written"),
        "{}",
        text(&o.stderr)
    );
    assert!(!a.root.join("etc/gluu/conf/big").exists());

    // Unknown node and unknown job: clear errors.
    let o = ctl.cli(&["job", "run", "nosuchnode", "ping"]);
    assert!(
        text(&o.stderr).contains("no node with id or hostname"),
        "{}",
        text(&o.stderr)
    );
    let o = ctl.cli(&["job", "show", "nosuchjob"]);
    assert!(text(&o.stderr).contains("no job"), "{}", text(&o.stderr));
}
