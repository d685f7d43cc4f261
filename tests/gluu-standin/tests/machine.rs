//! The stand-in as a Gluu Server 4.2.3 machine: gluu-serverd's verbs, the console, what a
//! host `chroot` can and cannot do, and removing the package. Same set-up as `standin.rs`
//! (`dpkg --root` into a temporary ROOT, machines stopped by drop guards).

mod support;

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use support::{HTTPS_PORT, Node, prerequisites, run, run_ok, text};

/// Today's (pre-machine) way of driving Gluu, through a host chroot, fails against the
/// stand-in: nothing answers until the machine runs, a chroot's systemctl cannot start the
/// directory, and setup refuses to run anywhere but inside the booted machine.
#[test]
fn a_host_chroot_cannot_start_the_directory() {
    if !prerequisites(&[]) {
        return;
    }
    let node = Node::install_and_setup("127.77.0.21", false);
    let c = node.container("");
    let out = node.serverd("stop");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(node.processes(), Vec::<String>::new());
    for port in [1636, HTTPS_PORT] {
        node.refuses(port)
            .expect("nothing answers while the machine is stopped");
    }

    // systemctl inside a host chroot has no systemd to talk to.
    let out = run(Command::new("chroot")
        .arg(&c)
        .args(["systemctl", "start", "opendj"]));
    assert!(!out.status.success(), "{}", text(&out));
    for port in [1636, HTTPS_PORT] {
        node.refuses(port)
            .expect("chroot systemctl start opendj must not start the directory");
    }
    assert_eq!(node.processes(), Vec::<String>::new());
    // /etc/init.d/opendj does not exist (setup made a systemd unit).
    let out = run(Command::new("chroot")
        .arg(&c)
        .args(["/etc/init.d/opendj", "start"]));
    assert!(!out.status.success(), "{}", text(&out));
    // setup.py through a chroot, and by its host path: refused before anything is written.
    let out = run(Command::new("chroot").arg(&c).args([
        "/install/community-edition-setup/setup.py",
        "-f",
        support::PROPS_INSIDE,
        "-n",
    ]));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not in a chroot"),
        "{}",
        text(&out)
    );
    let out = run(
        Command::new(node.container("install/community-edition-setup/setup.py")).args([
            "-f",
            "/dev/null",
            "-n",
        ]),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must run inside the Gluu Server machine"),
        "{}",
        text(&out)
    );

    // Started, the machine's systemd starts the enabled units at boot.
    let out = node.serverd("start");
    assert!(out.status.success(), "{}", text(&out));
    node.wait_booted();
    assert_eq!(node.get_json("/oxauth/restv1/health-check").0, 200);
}

#[test]
fn gluu_serverd_has_the_verbs_of_4_2_3() {
    if !prerequisites(&[]) {
        return;
    }
    let node = Node::install("127.77.0.22");
    let serverd = node.path("sbin/gluu-serverd");
    let usage = format!(
        "Usage: {} {{enable|start|restart|ready|login|stop|disable|status|version}}\n",
        serverd.display()
    );
    for args in [&[][..], &["bogus"][..], &["--help"][..]] {
        let out = run(Command::new(&serverd).args(args));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), usage);
    }
    node.wait_booted();

    // Further arguments are ignored, as by 4.2.3's script (the old stand-in's --root too).
    let out = run(Command::new(&serverd).args(["status", "--root", "/elsewhere"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The console: sshd in the machine on GLUU_CONSOLE_ADDRESS:60022 with the package's key.
    let mut login = Command::new(&serverd)
        .arg("login")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gluu-serverd login");
    login
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"cat /proc/1/comm; hostname; exit\n")
        .expect("write");
    let out = login.wait_with_output().expect("login");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("systemd\ngluu-server\n"),
        "{}",
        text(&out)
    );
    let key = node.path("etc/gluu/keys/gluu-console");
    let ssh = run_ok(Command::new("ssh").arg("-i").arg(&key).args([
        "-p",
        "60022",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=QUIET",
        "root@127.77.0.22",
        "systemctl",
        "is-system-running",
    ]));
    assert_eq!(ssh.trim(), "running");

    // version: show_version.py, which setup installs.
    let out = node.setup(&[], false);
    assert!(out.status.success(), "{}", text(&out));
    let version = run_ok(Command::new(&serverd).arg("version"));
    assert!(version.contains("Version: 4.2.3.Final"), "{version}");

    // disable / enable record the enablement as systemctl does.
    let wants =
        node.path("etc/systemd/system/machines.target.wants/systemd-nspawn@gluu-server.service");
    let target = node.path("etc/systemd/system/multi-user.target.wants/machines.target");
    let out = node.serverd("disable");
    assert!(out.status.success(), "{}", text(&out));
    assert!(fs::symlink_metadata(&wants).is_err() && fs::symlink_metadata(&target).is_err());
    assert!(String::from_utf8_lossy(&node.serverd("status").stdout).contains("; disabled;"));
    let out = node.serverd("enable");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        fs::read_link(&wants).expect("enabled"),
        Path::new("/lib/systemd/system/systemd-nspawn@gluu-server.service")
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Created symlink"));
    assert!(fs::symlink_metadata(&target).is_ok());

    // start of a running machine changes nothing; stop twice is fine; login when stopped.
    let leader = node.leader().expect("leader");
    let out = node.serverd("start");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(node.leader(), Some(leader));
    assert!(node.serverd("stop").status.success());
    assert!(node.serverd("stop").status.success());
    assert_eq!(node.processes(), Vec::<String>::new());
    let out = node.serverd("login");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Gluu server is not started.\n"
    );
    assert_eq!(node.serverd("status").status.code(), Some(3));
    assert_eq!(node.serverd("ready").status.code(), Some(0));
}

#[test]
fn removing_the_package_stops_the_machine_and_keeps_the_container() {
    if !prerequisites(&[]) {
        return;
    }
    let node = Node::install_and_setup("127.77.0.23", false);
    let started = Instant::now();
    let out = run(node.dpkg().args(["-r", "gluu-server"]));
    assert!(out.status.success(), "dpkg -r: {}", text(&out));
    eprintln!("dpkg -r: {:?}", started.elapsed());
    // prerm stopped the machine, then saved the container as Gluu's package does.
    for port in [1636, HTTPS_PORT] {
        node.refuses(port).expect("removed: nothing answers");
    }
    assert!(!node.container("").exists());
    let saved = node.path("opt/gluu-server.save");
    assert!(
        saved
            .join("install/community-edition-setup/setup.properties.last.enc")
            .is_file(),
        "the node's files are kept in /opt/gluu-server.save"
    );
    assert!(
        clustermgr_procfs::find(|a| a
            .iter()
            .any(|x| x.contains(&*node.root.path().to_string_lossy())))
        .is_empty(),
        "a process of the removed machine is left"
    );
    assert!(!node.path("sbin/gluu-serverd").exists());
    assert!(
        node.path("etc/gluu/keys/gluu-console").exists(),
        "kept until purge"
    );

    let out = run(node.dpkg().args(["--purge", "gluu-server"]));
    assert!(out.status.success(), "dpkg --purge: {}", text(&out));
    for gone in [
        "etc/gluu/keys",
        "var/lib/container/gluu-server",
        "etc/systemd/system/machines.target.wants/systemd-nspawn@gluu-server.service",
        "var/log/gluu-server",
    ] {
        assert!(
            fs::symlink_metadata(node.path(gone)).is_err(),
            "{gone} is left after purge"
        );
    }

    // Installed again: a fresh container (the saved one is replaced on the next removal).
    let out = run(node.dpkg().arg("-i").arg(support::package()));
    assert!(out.status.success(), "dpkg -i again: {}", text(&out));
    node.wait_booted();
    assert!(
        !node
            .container("install/community-edition-setup/setup.properties.last.enc")
            .exists()
    );
}
