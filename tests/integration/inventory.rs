//! The inventory an agent reports for a host with the Gluu Server (stand-in) package: found by
//! the package database and the chroot layout, and "installed" once setup has run.

use clustermgr_tests::{Agent, Controller, free_port, standin_deb, text};
use std::process::Command;

fn dpkg_in(root: &std::path::Path) -> Command {
    let mut c = Command::new("dpkg");
    c.arg(format!("--root={}", root.display())).args([
        "--force-script-chrootless",
        "--force-depends",
        "--force-not-root",
    ]);
    c
}

#[test]
fn inventory_reports_the_gluu_installation_before_and_after_setup() {
    let deb = standin_deb();
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut a = Agent::new("gluu-a.example.test");
    // Install the package into the host's root with the real dpkg, so its database knows it.
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(a.root.join(d)).unwrap();
    }
    std::fs::write(a.root.join("var/lib/dpkg/status"), "").unwrap();
    let o = dpkg_in(&a.root).arg("-i").arg(&deb).output().unwrap();
    assert!(
        o.status.success(),
        "dpkg -i: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );

    a.join(&ctl, "gluu-node");
    a.start();
    ctl.wait_status(&a.node_id, "online");
    let n = ctl.json(&["node", "show", "gluu-a.example.test"]);
    let g = &n["gluu"];
    assert_eq!(g["present"], true, "{n}");
    assert_eq!(g["chroot"], true);
    assert_eq!(g["installed"], false, "setup has not run yet");
    assert_eq!(g["version"], "4.2.3~standin1");
    let comps: Vec<&str> = g["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        comps.contains(&"oxauth") && comps.contains(&"oxtrust"),
        "{comps:?}"
    );

    // Run setup the way Gluu's is run, on the host's own address.
    let props = a.dir.path().join("setup.properties");
    std::fs::write(
        &props,
        format!(
            "hostname=lb.example.test\nip={}\nldapPass=Adm1n!pass\norgName=Example\ncountryCode=US\n\
             city=Austin\nstate=TX\nadmin_email=admin@example.test\ninstallOxAuth=True\n\
             installOxTrust=True\nhttps_port={}\n",
            a.address,
            free_port()
        ),
    )
    .unwrap();
    let setup = a
        .root
        .join("opt/gluu-server/install/community-edition-setup/setup.py");
    let o = Command::new(&setup)
        .arg("-f")
        .arg(&props)
        .args(["-n", "--listen_all_interfaces", "-c", "--root"])
        .arg(&a.root)
        .output()
        .unwrap();
    let stop = || {
        Command::new(a.root.join("sbin/gluu-serverd"))
            .args(["stop", "--root"])
            .arg(&a.root)
            .output()
    };
    if !o.status.success() {
        let _ = stop();
        panic!("setup failed: {}{}", text(&o.stdout), text(&o.stderr));
    }
    let facts = ctl.json(&["job", "run", "gluu-a.example.test", "facts"]);
    let conf = ctl.cli(&[
        "job",
        "run",
        "gluu-a.example.test",
        "read-file",
        "/opt/gluu-server/etc/gluu/conf/gluu-ldap.properties",
    ]);
    let stopped = stop().unwrap();
    assert!(
        stopped.status.success(),
        "gluu-serverd stop: {}",
        text(&stopped.stderr)
    );
    assert_eq!(facts["output"]["gluu"]["installed"], true, "{facts}");
    assert!(
        text(&conf.stdout).contains("servers:"),
        "{}",
        text(&conf.stderr)
    );
    // The setup password never shows up in what the controller recorded.
    let jobs = ctl.cli_ok(&["--output", "json", "job", "list"]);
    assert!(!jobs.contains("Adm1n!pass"));
}
