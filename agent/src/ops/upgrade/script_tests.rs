//! `upgrade.sh` run against a fake installed package: a directory holding the package's dpkg
//! files and the files it lists, and stand-ins for dpkg, dpkg-query and dpkg-deb (this dpkg
//! is always locked by another process, so nothing is ever installed).

use super::SCRIPT;
use std::path::{Path, PathBuf};

struct Fake {
    _dir: tempfile::TempDir,
    root: PathBuf,
    bin: PathBuf,
    work: PathBuf,
}

const BINARY: &str = "usr/bin/clustermgr-agent";
const CONFFILE: &str = "etc/clustermgr-agent/agent.toml";

fn write(p: &Path, s: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, s).expect("write");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn md5(s: &str) -> String {
    let mut c = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("md5sum");
    std::io::Write::write_all(&mut c.stdin.take().expect("stdin"), s.as_bytes()).expect("in");
    let o = c.wait_with_output().expect("md5sum");
    String::from_utf8_lossy(&o.stdout)[..32].to_string()
}

fn fake() -> Fake {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let bin = dir.path().join("bin");
    let work = dir.path().join("upgrade");
    std::fs::create_dir_all(&work).expect("work");
    let info = root.join("var/lib/dpkg/info");
    write(&root.join(BINARY), "the agent\n", 0o755);
    write(&root.join(CONFFILE), "edited by the administrator\n", 0o644);
    write(
        &info.join("clustermgr-agent.list"),
        &format!("/.\n/usr\n/usr/bin\n/{BINARY}\n/etc\n/etc/clustermgr-agent\n/{CONFFILE}\n"),
        0o644,
    );
    // The conffile's sum is the shipped one: an edited conffile is not a damaged package.
    write(
        &info.join("clustermgr-agent.md5sums"),
        &format!(
            "{}  {BINARY}\n{}  {CONFFILE}\n",
            md5("the agent\n"),
            md5("as shipped\n")
        ),
        0o644,
    );
    write(
        &info.join("clustermgr-agent.conffiles"),
        &format!("/{CONFFILE}\n"),
        0o644,
    );
    write(
        &info.join("clustermgr-agent.postinst"),
        "#!/bin/sh\n",
        0o755,
    );
    let calls = dir.path().join("dpkg-calls");
    write(
        &bin.join("dpkg-query"),
        "#!/bin/sh\ncase $1 in\n-W) printf 0.1.0 ;;\n-s) printf 'Package: clustermgr-agent\\n\
         Status: install ok installed\\nVersion: 0.1.0\\n' ;;\nesac\n",
        0o755,
    );
    write(
        &bin.join("dpkg-deb"),
        "#!/bin/sh\ncase $1 in\n-f) exit 1 ;;\nesac\nfor a; do last=$a; done\n\
         : >\"$last\"\n",
        0o755,
    );
    write(
        &bin.join("dpkg"),
        &format!(
            "#!/bin/sh\necho \"$*\" >>{}\necho 'dpkg: error: dpkg frontend lock was locked by \
             another process with pid 42' >&2\nexit 2\n",
            calls.display()
        ),
        0o755,
    );
    write(&work.join("upgrade.sh"), SCRIPT, 0o700);
    Fake {
        _dir: dir,
        root,
        bin,
        work,
    }
}

impl Fake {
    /// Runs the script; its verdict.
    fn run(&self) -> String {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let result = self.work.join("x.result");
        let o = std::process::Command::new("sh")
            .arg(self.work.join("upgrade.sh"))
            .arg(&self.work)
            .arg(self.work.join("new.deb"))
            .arg("0.2.0")
            .arg("5")
            .arg(&result)
            .env("PATH", path)
            .env("UPGRADE_ROOT", &self.root)
            .output()
            .expect("sh");
        assert!(!o.status.success());
        std::fs::read_to_string(&result).unwrap_or_else(|e| {
            panic!(
                "no verdict ({e}): {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
    }

    fn dpkg_calls(&self) -> String {
        std::fs::read_to_string(self.work.with_file_name("dpkg-calls")).unwrap_or_default()
    }

    fn kept(&self) -> bool {
        self.work.join("previous.deb").exists()
    }
}

#[test]
fn a_locked_dpkg_is_named_and_nothing_is_rolled_back() {
    let f = fake();
    let v = f.run();
    assert!(
        v.starts_with("failed dpkg is locked by another process (dpkg: error: dpkg frontend lock")
            && v.contains("0.1.0 is still installed; nothing was changed"),
        "{v}"
    );
    assert!(f.kept(), "previous.deb was not kept");
    // One install tried; no reinstall of the kept package.
    assert_eq!(f.dpkg_calls().lines().count(), 1, "{}", f.dpkg_calls());
}

#[test]
fn a_missing_file_of_the_installed_package_stops_it_before_anything() {
    let f = fake();
    std::fs::remove_file(f.root.join(BINARY)).expect("rm");
    let v = f.run();
    assert!(
        v.starts_with(&format!(
            "failed /{BINARY} (listed by the installed clustermgr-agent) is missing"
        )) && v.ends_with("nothing was changed\n"),
        "{v}"
    );
    assert!(!f.kept());
    assert_eq!(f.dpkg_calls(), "");
}

#[test]
fn a_changed_file_of_the_installed_package_stops_it_before_anything() {
    let f = fake();
    std::fs::write(f.root.join(BINARY), "another agent\n").expect("write");
    let v = f.run();
    assert!(
        v.starts_with(&format!("failed /{BINARY} differs from the installed")),
        "{v}"
    );
    assert!(!f.kept());
    assert_eq!(f.dpkg_calls(), "");
}

#[test]
fn a_maintainer_script_that_cannot_be_copied_stops_it_before_anything() {
    let f = fake();
    write(
        &f.bin.join("cp"),
        "#!/bin/sh\ncase \"$*\" in\n*.postinst*) exit 1 ;;\nesac\nexec /bin/cp \"$@\"\n",
        0o755,
    );
    let v = f.run();
    assert!(
        v.starts_with("failed cannot copy ") && v.contains("clustermgr-agent.postinst"),
        "{v}"
    );
    assert!(!f.kept());
    assert_eq!(f.dpkg_calls(), "");
}
