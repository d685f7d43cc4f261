//! File system replication: real agents on sandbox roots, real files, real inotify. The
//! replicated paths are Gluu's, inside its container root (`ROOT/opt/gluu-server`). A change on
//! one node shows on the others; excluded files and links leading outside stay local; a file of
//! tens of MB is streamed and arrives byte-identical; a file over the limit is refused and
//! reported; a node that was stopped catches up (deletes included); concurrent edits end with
//! one winner everywhere and a reported conflict; a node without Gluu says so and starts once
//! Gluu is there; actions restart the unit of the node's running Gluu machine once per burst.

use clustermgr_tests::{Agent, Controller, eventually, text};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Gluu's container root under a host's root (the 4.2.3 nspawn machine packaging).
const CONTAINER: &str = "opt/gluu-server";
const CONF: &str = "etc/gluu/conf";
const IDP: &str = "opt/gluu/jetty/identity/conf/shibboleth3/idp";
const METADATA: &str = "opt/shibboleth-idp/metadata";
const WAIT: Duration = Duration::from_secs(20);

mod gluu;
mod hostile;
mod large;

/// Makes `root` look like a node with Gluu 4.2.3 installed and set up as an nspawn machine (the
/// package's unit, setup.py and the record setup leaves), without booting it: replication needs
/// only the files.
fn gluu_installed(root: &Path) {
    let units = root.join("lib/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(units.join("systemd-nspawn@gluu-server.service"), "").unwrap();
    set_up(root);
}

/// What setup.py leaves in the container: its record of the install.
fn set_up(root: &Path) {
    let setup = root.join(CONTAINER).join("install/community-edition-setup");
    std::fs::create_dir_all(&setup).unwrap();
    if !setup.join("setup.py").exists() {
        std::fs::write(setup.join("setup.py"), "").unwrap();
    }
    std::fs::write(setup.join("setup.properties.last.enc"), "").unwrap();
}

struct Cluster {
    ctl: Controller,
    nodes: Vec<Agent>,
}

impl Cluster {
    /// `n` Gluu servers with replication enabled, each stream up.
    fn new(n: usize, tag: &str) -> Self {
        let mut ctl = Controller::init();
        ctl.start(&[]);
        let mut nodes = Vec::new();
        for i in 1..=n {
            let mut a = Agent::new(&format!("gluu{i}.{tag}.test"));
            gluu_installed(&a.root);
            std::fs::create_dir_all(a.root.join(CONTAINER).join(CONF)).unwrap();
            a.join(&ctl, "gluu-node");
            a.start();
            nodes.push(a);
        }
        for a in &nodes {
            ctl.wait_status(&a.node_id, "online");
            ctl.cli_ok(&["server", "add", &a.hostname]);
        }
        ctl.cli_ok(&["fsrep", "enable"]);
        let c = Self { ctl, nodes };
        c.wait_connected(n);
        c
    }

    fn status(&self) -> serde_json::Value {
        self.ctl.json(&["fsrep", "status"])
    }

    fn wait_connected(&self, n: usize) {
        eventually(WAIT, "every node's replication stream up", || {
            let s = self.status();
            let up = s["nodes"]
                .as_array()
                .map_or(0, |a| a.iter().filter(|n| n["connected"] == true).count());
            if up == n { Ok(()) } else { Err(s.to_string()) }
        });
    }

    /// The host path of `rel` inside node `i`'s Gluu.
    fn path(&self, i: usize, rel: &str) -> PathBuf {
        self.nodes[i].root.join(CONTAINER).join(rel)
    }

    /// Node `i`'s entry in `fsrep status`.
    fn node_status(&self, i: usize) -> serde_json::Value {
        let s = self.status();
        s["nodes"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|n| n["hostname"] == self.nodes[i].hostname)
                    .cloned()
            })
            .unwrap_or_default()
    }
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// Waits until `rel` has `want` (None: absent) on every node in `on`.
fn wait_content(c: &Cluster, on: &[usize], rel: &str, want: Option<&str>) {
    for &i in on {
        let p = c.path(i, rel);
        eventually(WAIT, &format!("{rel} on node {}", i + 1), || {
            let got = read(&p);
            if got.as_deref() == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        });
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn changes_on_one_node_show_on_the_others() {
    let c = Cluster::new(3, "fsrep");
    let others = [1, 2];
    let a = format!("{CONF}/a.properties");
    // Create.
    std::fs::write(c.path(0, &a), "one\n").unwrap();
    wait_content(&c, &others, &a, Some("one\n"));
    // Modify (an editor-style save: a new file renamed over the old one).
    std::fs::write(c.path(0, &format!("{CONF}/.a.swp")), "two\n").unwrap();
    std::fs::rename(c.path(0, &format!("{CONF}/.a.swp")), c.path(0, &a)).unwrap();
    wait_content(&c, &others, &a, Some("two\n"));
    // The overwritten content is kept as a backup generation on the receivers.
    let backup = c.nodes[1]
        .root
        .join("var/lib/clustermgr/fsrep-backups")
        .join(&a);
    assert_eq!(
        read(&PathBuf::from(format!("{}.1", backup.display()))).as_deref(),
        Some("one\n")
    );
    // chmod.
    std::fs::set_permissions(c.path(0, &a), std::fs::Permissions::from_mode(0o600)).unwrap();
    for &i in &others {
        let p = c.path(i, &a);
        eventually(WAIT, "mode replicated", || {
            if mode(&p) == 0o600 {
                Ok(())
            } else {
                Err(format!("{:o}", mode(&p)))
            }
        });
    }
    // A new file in a new directory; then a rename.
    std::fs::create_dir_all(c.path(1, &format!("{CONF}/sub"))).unwrap();
    std::fs::write(c.path(1, &format!("{CONF}/sub/x.json")), "{}").unwrap();
    wait_content(&c, &[0, 2], &format!("{CONF}/sub/x.json"), Some("{}"));
    std::fs::rename(c.path(0, &a), c.path(0, &format!("{CONF}/b.properties"))).unwrap();
    wait_content(&c, &others, &format!("{CONF}/b.properties"), Some("two\n"));
    wait_content(&c, &others, &a, None);
    // Delete.
    std::fs::remove_file(c.path(0, &format!("{CONF}/b.properties"))).unwrap();
    wait_content(&c, &others, &format!("{CONF}/b.properties"), None);

    // Excluded (node-specific, editor backups), a link leading outside: all stay local. The
    // marker written after them shows they had their chance.
    let outside = c.nodes[0].dir.path().join("outside-secret");
    std::fs::write(&outside, "not for the others").unwrap();
    std::os::unix::fs::symlink(&outside, c.path(0, &format!("{CONF}/link"))).unwrap();
    std::fs::write(c.path(0, &format!("{CONF}/salt")), "node-1 salt").unwrap();
    std::fs::write(c.path(0, &format!("{CONF}/c.properties~")), "backup").unwrap();
    std::fs::write(c.path(0, &format!("{CONF}/marker")), "m").unwrap();
    wait_content(&c, &others, &format!("{CONF}/marker"), Some("m"));
    for &i in &others {
        for name in ["link", "salt", "c.properties~"] {
            assert!(
                std::fs::symlink_metadata(c.path(i, &format!("{CONF}/{name}"))).is_err(),
                "{name} must stay on node 1"
            );
        }
    }
    // Nothing was written on the host's own /etc/gluu/conf: Gluu's paths are the container's.
    for i in 0..3 {
        assert!(!c.nodes[i].root.join(CONF).exists(), "node {}", i + 1);
    }
    // Each node says where it replicates.
    let n1 = c.node_status(0);
    assert_eq!(n1["flavor"], "nspawn-machine", "{n1}");
    assert_eq!(
        n1["base"],
        c.nodes[0].root.join(CONTAINER).display().to_string(),
        "{n1}"
    );
    // A link on a receiver is replaced, never written through.
    let victim = c.nodes[1].dir.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    std::os::unix::fs::symlink(&victim, c.path(1, &format!("{CONF}/d.properties"))).unwrap();
    std::fs::write(c.path(0, &format!("{CONF}/d.properties")), "dee").unwrap();
    wait_content(&c, &[2], &format!("{CONF}/d.properties"), Some("dee"));
    eventually(WAIT, "the link replaced on node 2", || {
        let m = std::fs::symlink_metadata(c.path(1, &format!("{CONF}/d.properties")))
            .map_err(|e| e.to_string())?;
        if m.is_file() {
            Ok(())
        } else {
            Err("still a link".into())
        }
    });
    assert_eq!(read(&victim).as_deref(), Some("keep"));

    // The status: every node connected, nothing behind, latency measured.
    eventually(WAIT, "nothing queued or behind", || {
        let s = c.status();
        let ok = s["nodes"].as_array().is_some_and(|a| {
            a.len() == 3
                && a.iter()
                    .all(|n| n["connected"] == true && n["queued"] == 0 && n["behind"] == 0)
        });
        if ok
            && s["latency_ms"]["counts"]
                .as_array()
                .is_some_and(|c| c.iter().any(|x| x != 0))
        {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    // Reads for viewers, changes audited.
    let audit = c.ctl.cli_ok(&["audit"]);
    assert!(audit.contains("fsrep.enable"), "{audit}");
}

#[test]
fn a_stopped_node_catches_up_and_deletes_are_not_resurrected() {
    let mut c = Cluster::new(3, "fsrepcu");
    for (name, body) in [("keep", "k"), ("gone", "g"), ("edit", "e1")] {
        std::fs::write(c.path(0, &format!("{CONF}/{name}")), body).unwrap();
    }
    for name in ["keep", "gone", "edit"] {
        let want = read(&c.path(0, &format!("{CONF}/{name}"))).unwrap();
        wait_content(&c, &[1, 2], &format!("{CONF}/{name}"), Some(&want));
    }
    c.nodes[2].stop();
    std::fs::remove_file(c.path(0, &format!("{CONF}/gone"))).unwrap();
    std::fs::write(
        c.path(0, &format!("{CONF}/edit")),
        "the second edit of the file",
    )
    .unwrap();
    std::fs::write(c.path(0, &format!("{CONF}/new")), "n").unwrap();
    wait_content(&c, &[1], &format!("{CONF}/new"), Some("n"));
    // Meanwhile the stopped node's own file (created while it was away).
    std::fs::write(c.path(2, &format!("{CONF}/offline")), "o").unwrap();
    c.nodes[2].start();
    wait_content(&c, &[2], &format!("{CONF}/new"), Some("n"));
    wait_content(
        &c,
        &[2],
        &format!("{CONF}/edit"),
        Some("the second edit of the file"),
    );
    wait_content(&c, &[2], &format!("{CONF}/gone"), None);
    wait_content(&c, &[0, 1], &format!("{CONF}/offline"), Some("o"));
    // Not brought back anywhere.
    std::fs::write(c.path(1, &format!("{CONF}/marker")), "m").unwrap();
    wait_content(&c, &[0, 2], &format!("{CONF}/marker"), Some("m"));
    for i in 0..3 {
        assert!(
            read(&c.path(i, &format!("{CONF}/gone"))).is_none(),
            "node {}",
            i + 1
        );
    }
    // A controller restart keeps everything (sealed in the store).
    c.ctl.stop();
    c.ctl.start(&[]);
    c.wait_connected(3);
    let s = c.status();
    assert_eq!(s["tombstones"], 1, "{s}");
    // A node that stops being a server stops replicating at once (it is not sent anything).
    c.ctl.cli_ok(&["server", "remove", &c.nodes[2].hostname]);
    eventually(WAIT, "node 3's replication off", || {
        let s = c.status();
        let n3 = s["nodes"].as_array().and_then(|a| {
            a.iter()
                .find(|n| n["hostname"] == c.nodes[2].hostname)
                .cloned()
        });
        match n3 {
            Some(n) if n["connected"] == true => Err(s.to_string()),
            _ => Ok(()),
        }
    });
    std::fs::write(c.path(0, &format!("{CONF}/after-removal")), "a").unwrap();
    wait_content(&c, &[1], &format!("{CONF}/after-removal"), Some("a"));
    assert!(read(&c.path(2, &format!("{CONF}/after-removal"))).is_none());
    // Disabled: every stream off.
    c.ctl.cli_ok(&["fsrep", "disable"]);
    eventually(WAIT, "every stream off", || {
        let s = c.status();
        let on = s["nodes"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|n| n["connected"] == true).count());
        if s["enabled"] == false && on == 0 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    assert!(
        !text(&std::fs::read(c.ctl.data.join("state.redb")).unwrap_or_default())
            .contains("the second edit"),
        "file contents are sealed at rest"
    );
}

#[test]
fn concurrent_edits_have_one_winner_everywhere_and_a_reported_conflict() {
    let mut c = Cluster::new(3, "fsrepcf");
    let f = format!("{CONF}/shared.xml");
    std::fs::write(c.path(0, &f), "base").unwrap();
    wait_content(&c, &[1, 2], &f, Some("base"));
    // Node 2 edits while cut off; node 1 edits too; neither saw the other's edit.
    c.nodes[1].stop();
    std::fs::write(c.path(0, &f), "from node 1").unwrap();
    wait_content(&c, &[2], &f, Some("from node 1"));
    std::fs::write(c.path(1, &f), "from node 2").unwrap();
    c.nodes[1].start();
    // One winner everywhere (the later edit: node 2's clock is ahead), the loser kept.
    wait_content(&c, &[0, 1, 2], &f, Some("from node 2"));
    let s = eventually(WAIT, "the conflict reported", || {
        let s = c.status();
        let cf = s["conflicts"].as_array().cloned().unwrap_or_default();
        if cf.len() == 1 && cf[0]["path"] == "/etc/gluu/conf/shared.xml" {
            Ok(s)
        } else {
            Err(s.to_string())
        }
    });
    assert_eq!(s["conflicts"][0]["winner"], "gluu2.fsrepcf.test", "{s}");
    assert_eq!(s["conflicts"][0]["loser"], "gluu1.fsrepcf.test", "{s}");
    let backup = c.nodes[0]
        .root
        .join("var/lib/clustermgr/fsrep-backups")
        .join(format!("{f}.1"));
    assert_eq!(
        read(&backup).as_deref(),
        Some("from node 1"),
        "the loser is kept"
    );
    let audit = c.ctl.cli_ok(&["audit"]);
    assert!(audit.contains("fsrep.conflict"), "{audit}");
}

#[test]
fn settings_are_checked_and_audited() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let out = ctl.cli(&["fsrep", "paths", "add", "/opt/opendj/db"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("database"),
        "{}",
        text(&out.stderr)
    );
    let out = ctl.cli(&["fsrep", "paths", "add", "/opt/../etc"]);
    assert_eq!(out.status.code(), Some(2));
    // System directories need an admin's --force (audited as forced).
    for p in [
        "/etc",
        "/var/lib/clustermgr-agent",
        "/usr/lib",
        "/lib64",
        "/proc",
    ] {
        let out = ctl.cli(&["fsrep", "paths", "add", p]);
        assert_eq!(out.status.code(), Some(2), "{p}");
        assert!(
            text(&out.stderr).contains("--force"),
            "{}",
            text(&out.stderr)
        );
    }
    let op = ctl.dir.path().join("olga.json");
    let op = op.to_str().unwrap();
    ctl.cli_ok(&[
        "operator", "create", "olga", "--role", "operator", "--out", op,
    ]);
    let out = ctl.cli(&[
        "--config",
        op,
        "fsrep",
        "paths",
        "add",
        "/usr/share/gluu",
        "--force",
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("admin"), "{}", text(&out.stderr));
    let paths = ctl.cli_ok(&["fsrep", "paths", "add", "/usr/share/gluu", "--force"]);
    assert!(paths.contains("/usr/share/gluu\n"), "{paths}");
    let paths = ctl.cli_ok(&["fsrep", "paths", "add", "/opt/gluu/jetty/casa/custom/"]);
    assert!(paths.contains("/opt/gluu/jetty/casa/custom\n"), "{paths}");
    assert!(paths.contains("/opt/shibboleth-idp/conf"), "{paths}");
    let ex = ctl.cli_ok(&["fsrep", "excludes"]);
    assert!(
        ex.contains("gluu-ldap.properties") && ex.contains("*~"),
        "{ex}"
    );
    let j = ctl.json(&["fsrep", "actions"]);
    assert_eq!(j.as_array().map(Vec::len), Some(2), "{j}");
    ctl.cli_ok(&["fsrep", "actions", "remove", "identity"]);
    let j = ctl.json(&["fsrep", "actions"]);
    assert_eq!(j.as_array().map(Vec::len), Some(1), "{j}");
    // The per-file limit: 256 MiB by default, settable within its range.
    let j = ctl.json(&["fsrep", "max-file-size"]);
    assert_eq!(j["max_file_bytes"], 256u64 << 20, "{j}");
    let out = ctl.cli_ok(&["fsrep", "max-file-size", "1G"]);
    assert!(out.contains("1 GiB (1073741824 bytes)"), "{out}");
    for bad in ["12", "100GiB", "lots"] {
        let out = ctl.cli(&["fsrep", "max-file-size", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }
    assert_eq!(ctl.json(&["fsrep", "status"])["max_file_bytes"], 1u64 << 30);
    let audit = ctl.cli_ok(&["audit"]);
    assert!(audit.contains("fsrep.paths.add"), "{audit}");
    assert!(audit.contains("fsrep.actions.remove"), "{audit}");
    assert!(audit.contains("fsrep.max_file_bytes"), "{audit}");
    assert!(audit.contains("fsrep.paths.add.forced"), "{audit}");
    // The limits: documented defaults, changed one at a time, checked.
    let l = ctl.json(&["fsrep", "limits"]);
    assert_eq!(l["max_files"], 20_000, "{l}");
    assert_eq!(l["action_interval_ms"], 60_000, "{l}");
    let l = ctl.json(&["fsrep", "limits", "--action-interval", "5m"]);
    assert_eq!(l["action_interval_ms"], 300_000, "{l}");
    assert_eq!(l["changes_per_second"], 100, "{l}");
    let out = ctl.cli(&["fsrep", "limits", "--max-files", "3"]);
    assert_eq!(out.status.code(), Some(2));
    // Owners a relayed file may be given.
    let o = ctl.cli_ok(&["fsrep", "owners", "add", "jetty"]);
    assert!(o.contains("jetty"), "{o}");
    let out = ctl.cli(&["fsrep", "owners", "add", "../root"]);
    assert_eq!(out.status.code(), Some(2));
}
