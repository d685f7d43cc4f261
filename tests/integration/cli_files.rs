//! Files the CLI writes for the operator (`job run ... read-file --out`, `operator create --out`)
//! hold secrets: they are private (0600) whatever the umask, and whatever mode a file already at
//! that path had.

use clustermgr_tests::{Agent, Controller, clustermgr_bin, text};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs the CLI against `ctl` under `umask 000`, so that anything not created private explicitly
/// comes out world-readable and writable.
fn cli_with_open_umask(ctl: &Controller, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$@\"")
        .arg("sh")
        .arg(clustermgr_bin())
        .arg("--data-dir")
        .arg(&ctl.data)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run clustermgr under sh")
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({:?}): {}{}",
        o.status.code(),
        text(&o.stderr),
        text(&o.stdout)
    );
    text(&o.stdout)
}

#[test]
fn out_files_are_private_whatever_the_umask() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut a = Agent::new("keeper");
    a.join(&ctl, "gluu-node");
    a.start();
    ctl.wait_status(&a.node_id, "online");

    let secret = "bindPassword: hunter2\n";
    let on_node = a.root.join("etc/gluu/conf/ox-ldap.properties");
    std::fs::create_dir_all(on_node.parent().unwrap()).unwrap();
    std::fs::write(&on_node, secret).unwrap();
    let remote = "/etc/gluu/conf/ox-ldap.properties";

    // A new file.
    let out = ctl.dir.path().join("read.properties");
    let o = cli_with_open_umask(
        &ctl,
        &[
            "job",
            "run",
            "keeper",
            "read-file",
            remote,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let stdout = ok(&o, "read-file --out");
    assert!(!stdout.contains("hunter2"), "content went to stdout too");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), secret);
    assert_eq!(mode_of(&out), 0o600, "read-file --out under umask 000");

    // A file already there with open permissions is replaced by a private one.
    let existing = ctl.dir.path().join("existing.properties");
    std::fs::write(&existing, "old\n").unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = cli_with_open_umask(
        &ctl,
        &[
            "job",
            "run",
            "keeper",
            "read-file",
            remote,
            "--out",
            existing.to_str().unwrap(),
        ],
    );
    ok(&o, "read-file --out over an existing file");
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), secret);
    assert_eq!(
        mode_of(&existing),
        0o600,
        "read-file --out over a 0666 file"
    );

    // With --output json the record is printed and the file still written, privately.
    let json_out = ctl.dir.path().join("json.properties");
    let o = cli_with_open_umask(
        &ctl,
        &[
            "--output",
            "json",
            "job",
            "run",
            "keeper",
            "read-file",
            remote,
            "--out",
            json_out.to_str().unwrap(),
        ],
    );
    let record: serde_json::Value =
        serde_json::from_str(&ok(&o, "read-file --out -o json")).expect("job record as JSON");
    assert_eq!(record["state"], "succeeded", "{record}");
    assert!(!record.to_string().contains("hunter2"), "{record}");
    assert_eq!(std::fs::read_to_string(&json_out).unwrap(), secret);
    assert_eq!(mode_of(&json_out), 0o600);

    // An operator credential (it holds a private key).
    let bundle = ctl.dir.path().join("carol.toml");
    let o = cli_with_open_umask(
        &ctl,
        &[
            "operator",
            "create",
            "carol",
            "--role",
            "viewer",
            "--out",
            bundle.to_str().unwrap(),
        ],
    );
    ok(&o, "operator create --out");
    assert_eq!(
        mode_of(&bundle),
        0o600,
        "operator create --out under umask 000"
    );
    assert!(
        ctl.cli_ok(&["--config", bundle.to_str().unwrap(), "whoami"])
            .contains("carol (viewer)")
    );

    // No temporary file is left beside the outputs.
    let names: Vec<String> = std::fs::read_dir(ctl.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains(".tmp")),
        "temporary files left: {names:?}"
    );
}

/// A reader that stops reading (`| head -1`, `| sed ...;q`) is no error: the command exits 0
/// without a word on stderr; a real failure still exits 2.
#[test]
fn output_to_a_closed_pipe_is_not_an_error() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut child = Command::new(clustermgr_bin())
        .arg("--data-dir")
        .arg(&ctl.data)
        .args(["audit", "--output", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run clustermgr");
    // Closed before the command writes anything: its first write fails with EPIPE.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    let out = ctl.cli(&["workflow", "show", "no-such-workflow"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
