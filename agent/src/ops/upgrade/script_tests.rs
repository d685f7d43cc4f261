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
    let info = root.join("var/lib/dpkg/info").join("clustermgr-agent");
    let info = |ext: &str| info.with_extension(ext);
    let list = format!("/.\n/usr\n/usr/bin\n/{BINARY}\n/etc\n/etc/clustermgr-agent\n/{CONFFILE}\n");
    // The conffile's sum is the shipped one: an edited conffile is not a damaged package.
    let (agent, shipped) = (md5("the agent\n"), md5("as shipped\n"));
    // A file the package ships that dpkg left out (path-exclude): in md5sums, not listed.
    let md5sums = format!(
        "{agent}  {BINARY}\n{shipped}  {CONFFILE}\n{agent}  usr/share/doc/clustermgr-agent/x.gz\n"
    );
    let conffiles = format!("/{CONFFILE}\n");
    let calls = dir.path().join("dpkg-calls");
    let dpkg = format!(
        "#!/bin/sh\necho \"$*\" >>{}\necho '(Reading database ...'\n\
         echo 'dpkg: error: dpkg frontend lock was locked by \
         another process with pid 42' >&2\nexit 2\n",
        calls.display()
    );
    let files: [(PathBuf, &str, u32); 8] = [
        (root.join(BINARY), "the agent\n", 0o755),
        (root.join(CONFFILE), "edited by the administrator\n", 0o644),
        (info("list"), &list, 0o644),
        (info("md5sums"), &md5sums, 0o644),
        (info("conffiles"), &conffiles, 0o644),
        (info("postinst"), "#!/bin/sh\n", 0o755),
        (
            bin.join("dpkg-query"),
            "#!/bin/sh\ncase $1 in\n-W) printf 0.1.0 ;;\n-s) printf 'Package: clustermgr-agent\\n\
             Status: install ok installed\\nVersion: 0.1.0\\n' ;;\nesac\n",
            0o755,
        ),
        (
            bin.join("dpkg-deb"),
            "#!/bin/sh\ncase $1 in\n-f) exit 1 ;;\nesac\nfor a; do last=$a; done\n: >\"$last\"\n",
            0o755,
        ),
    ];
    for (p, text, mode) in files {
        write(&p, text, mode);
    }
    write(&bin.join("dpkg"), &dpkg, 0o755);
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

    /// Runs the script, which must stop before keeping or installing anything with a verdict
    /// that starts with `failed WHY`; the verdict.
    fn refused_before_anything(&self, why: &str) -> String {
        let v = self.run();
        assert!(v.starts_with(&format!("failed {why}")), "{v}");
        assert!(v.ends_with("nothing was changed\n"), "{v}");
        assert!(!self.kept(), "previous.deb was made");
        assert_eq!(self.dpkg_calls(), "", "dpkg was run");
        v
    }
}

#[test]
fn a_locked_dpkg_is_named_and_nothing_is_rolled_back() {
    let f = fake();
    let v = f.run();
    assert_eq!(v.lines().count(), 1, "{v}");
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
    f.refused_before_anything(&format!(
        "/{BINARY} (listed by the installed clustermgr-agent) is missing"
    ));
}

#[test]
fn a_changed_file_of_the_installed_package_stops_it_before_anything() {
    let f = fake();
    std::fs::write(f.root.join(BINARY), "another agent\n").expect("write");
    f.refused_before_anything(&format!("/{BINARY} differs from the installed"));
}

#[test]
fn a_maintainer_script_that_cannot_be_copied_stops_it_before_anything() {
    let f = fake();
    let cp = "#!/bin/sh\ncase \"$*\" in\n*.postinst*) exit 1 ;;\nesac\nexec /bin/cp \"$@\"\n";
    write(&f.bin.join("cp"), cp, 0o755);
    let v = f.refused_before_anything("cannot copy ");
    assert!(v.contains("clustermgr-agent.postinst"), "{v}");
}
