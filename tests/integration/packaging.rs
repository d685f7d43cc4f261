//! The .deb (and .rpm) packages: built with packaging/build-deb and packaging/build-rpm,
//! inspected with dpkg-deb/rpm, run after extraction, and installed for real into a scratch
//! root with dpkg (maintainer scripts run chrootless against $DPKG_ROOT).
//!
//! The packages are assembled from the binaries these tests already run (`--no-build`, same
//! profile), so this module costs seconds. The release build itself (`build-deb` without
//! `--no-build`, several minutes cold on two cores) is the ignored test
//! `deb_release_build`: `cargo test -p clustermgr-tests --test integration -- --ignored
//! packaging::`.

use clustermgr_tests::text;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The cargo target directory and profile of the binaries the tests run (target/debug ->
/// (target, dev)); passing the same directory to build-deb keeps its builds cached.
fn target_and_profile() -> (PathBuf, String) {
    let bins = clustermgr_tests::bin_dir();
    let target = bins.parent().expect("target dir").to_path_buf();
    let profile = match bins.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(other) => other.to_string(),
    };
    (target, profile)
}

fn run(cmd: &mut Command) -> Output {
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}): {}{}",
        o.status,
        text(&o.stderr),
        text(&o.stdout)
    );
    o
}

fn arch() -> String {
    text(&run(Command::new("dpkg").arg("--print-architecture")).stdout)
        .trim()
        .to_string()
}

struct Debs {
    _dir: tempfile::TempDir,
    agent: PathBuf,
    controller: PathBuf,
}

/// Runs `packaging/build-deb [--no-build --profile P] --target-dir T OUTDIR`; returns the two
/// packages it made.
fn build_debs(no_build: bool) -> Debs {
    let dir = tempfile::tempdir().expect("tempdir");
    let (target, profile) = target_and_profile();
    let mut cmd = Command::new(workspace().join("packaging/build-deb"));
    if no_build {
        cmd.args(["--no-build", "--profile", &profile]);
    }
    cmd.arg("--target-dir")
        .arg(&target)
        .arg(dir.path())
        .env("CARGO", env!("CARGO"));
    let started = std::time::Instant::now();
    let o = run(&mut cmd);
    eprintln!(
        "packaging/build-deb (no_build={no_build}) took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let arch = arch();
    let agent = dir
        .path()
        .join(format!("clustermgr-agent_{VERSION}_{arch}.deb"));
    let controller = dir.path().join(format!("clustermgr_{VERSION}_{arch}.deb"));
    let listed = text(&o.stdout);
    for p in [&agent, &controller] {
        assert!(
            p.is_file(),
            "{} not built; build-deb printed {listed:?}",
            p.display()
        );
        assert!(
            listed.lines().any(|l| l == p.display().to_string()),
            "build-deb did not report {}: {listed:?}",
            p.display()
        );
    }
    Debs {
        _dir: dir,
        agent,
        controller,
    }
}

/// The packages of the tested binaries, built once for all tests in this module.
fn debs() -> &'static Debs {
    static DEBS: OnceLock<Debs> = OnceLock::new();
    DEBS.get_or_init(|| build_debs(true))
}

fn field(deb: &Path, name: &str) -> String {
    text(&run(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name)).stdout)
        .trim()
        .to_string()
}

/// `dpkg-deb --contents` as (mode, owner, path) rows, path without the leading "./".
fn contents(deb: &Path) -> Vec<(String, String, String)> {
    let out = text(&run(Command::new("dpkg-deb").arg("--contents").arg(deb)).stdout);
    out.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            if cols.len() < 6 {
                return None;
            }
            let path = cols[5].trim_start_matches("./").trim_end_matches('/');
            Some((cols[0].to_string(), cols[1].to_string(), path.to_string()))
        })
        .collect()
}

fn entry<'a>(rows: &'a [(String, String, String)], path: &str) -> &'a (String, String, String) {
    rows.iter()
        .find(|r| r.2 == path)
        .unwrap_or_else(|| panic!("{path} not in the package: {rows:#?}"))
}

#[test]
fn deb_metadata_and_contents() {
    let d = debs();
    let arch = arch();

    // Agent: metadata.
    assert_eq!(field(&d.agent, "Package"), "clustermgr-agent");
    assert_eq!(field(&d.agent, "Version"), VERSION);
    assert_eq!(field(&d.agent, "Architecture"), arch);
    assert_eq!(
        field(&d.agent, "Maintainer"),
        "clustermgr project <packaging@clustermgr.invalid>"
    );
    let depends = field(&d.agent, "Depends");
    assert!(depends.starts_with("libc6 (>= 2."), "Depends: {depends}");
    for dep in depends.split(", ") {
        let name = dep.split_whitespace().next().unwrap_or_default();
        assert!(
            ["libc6", "libgcc-s1"].contains(&name),
            "unexpected dependency {dep} in {depends}"
        );
    }
    let info = text(&run(Command::new("dpkg-deb").arg("--info").arg(&d.agent)).stdout);
    for script in ["postinst", "prerm", "postrm", "md5sums"] {
        assert!(
            info.contains(script),
            "no {script} in the agent package: {info}"
        );
    }
    assert!(
        info.contains("Description: clustermgr node agent"),
        "{info}"
    );

    // Agent: files, modes and ownership.
    let rows = contents(&d.agent);
    let bin = entry(&rows, "usr/bin/clustermgr-agent");
    assert_eq!(
        (bin.0.as_str(), bin.1.as_str()),
        ("-rwxr-xr-x", "root/root")
    );
    let unit = entry(&rows, "lib/systemd/system/clustermgr-agent.service");
    assert_eq!(
        (unit.0.as_str(), unit.1.as_str()),
        ("-rw-r--r--", "root/root")
    );
    let state = entry(&rows, "var/lib/clustermgr-agent");
    assert_eq!(
        (state.0.as_str(), state.1.as_str()),
        ("drwx------", "root/root")
    );
    entry(&rows, "usr/share/doc/clustermgr-agent/copyright");
    assert!(
        !rows
            .iter()
            .any(|r| r.2.starts_with("usr/bin/clustermgr") && r.2 != "usr/bin/clustermgr-agent"),
        "the agent package holds another binary: {rows:#?}"
    );

    // Controller: metadata and files.
    assert_eq!(field(&d.controller, "Package"), "clustermgr");
    assert_eq!(field(&d.controller, "Version"), VERSION);
    assert_eq!(field(&d.controller, "Architecture"), arch);
    let rows = contents(&d.controller);
    let bin = entry(&rows, "usr/bin/clustermgr");
    assert_eq!(
        (bin.0.as_str(), bin.1.as_str()),
        ("-rwxr-xr-x", "root/root")
    );
    entry(&rows, "lib/systemd/system/clustermgr.service");
    entry(&rows, "usr/share/bash-completion/completions/clustermgr");
    for page in [
        "clustermgr",
        "clustermgr-serve",
        "clustermgr-node",
        "clustermgr-token",
    ] {
        entry(&rows, &format!("usr/share/man/man1/{page}.1.gz"));
    }
    assert!(
        !rows.iter().any(|r| r.2 == "usr/bin/clustermgr-agent"),
        "the controller package holds the agent"
    );
}

#[test]
fn deb_extracts_to_working_binaries() {
    let d = debs();
    let root = tempfile::tempdir().expect("tempdir");
    for deb in [&d.agent, &d.controller] {
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root.path()));
    }

    let agent = root.path().join("usr/bin/clustermgr-agent");
    let v = text(&run(Command::new(&agent).arg("--version")).stdout);
    assert_eq!(v.trim(), format!("clustermgr-agent {VERSION}"));
    // A real command, not only clap: status on an empty state dir explains how to join.
    let o = Command::new(&agent)
        .arg("--state-dir")
        .arg(root.path().join("no-state"))
        .arg("status")
        .output()
        .expect("run agent status");
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("clustermgr-agent join"),
        "{}",
        text(&o.stderr)
    );

    let ctl = root.path().join("usr/bin/clustermgr");
    let v = text(&run(Command::new(&ctl).arg("--version")).stdout);
    assert_eq!(v.trim(), format!("clustermgr {VERSION}"));

    // The man page is gzipped roff for the right program; the completion is a bash function.
    let page = root.path().join("usr/share/man/man1/clustermgr-join.1.gz");
    assert!(!page.exists(), "the controller ships an agent man page");
    let man = text(
        &run(Command::new("gzip")
            .arg("-dc")
            .arg(root.path().join("usr/share/man/man1/clustermgr.1.gz")))
        .stdout,
    );
    assert!(
        man.contains(".TH clustermgr 1"),
        "{}",
        &man[..man.len().min(400)]
    );
    assert!(man.contains("serve"), "man page lacks the serve command");
    let comp = std::fs::read_to_string(
        root.path()
            .join("usr/share/bash-completion/completions/clustermgr"),
    )
    .expect("completion");
    assert!(
        comp.contains("_clustermgr()"),
        "{}",
        &comp[..comp.len().min(400)]
    );
    assert!(
        comp.contains("complete -F _clustermgr"),
        "completion registers nothing"
    );

    // The units start what the packages install.
    let unit = std::fs::read_to_string(
        root.path()
            .join("lib/systemd/system/clustermgr-agent.service"),
    )
    .expect("agent unit");
    assert!(unit.contains(
        "\nExecStart=/usr/bin/clustermgr-agent --state-dir /var/lib/clustermgr-agent run\n"
    ));
    assert!(unit.contains("\nRestart=on-failure\n") && unit.contains("\nRestartSec=5\n"));
    assert!(!unit.contains("\nUser="), "the agent must run as root");
    let unit = std::fs::read_to_string(root.path().join("lib/systemd/system/clustermgr.service"))
        .expect("controller unit");
    assert!(
        unit.contains("\nExecStart=/usr/bin/clustermgr --data-dir /var/lib/clustermgr serve\n")
    );
    assert!(unit.contains("\nUser=clustermgr\n") && unit.contains("\nProtectSystem=strict\n"));
}

/// A scratch root with an empty dpkg database (and the account files useradd edits).
fn scratch_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"] {
        std::fs::create_dir_all(root.path().join(d)).expect("mkdir");
    }
    std::fs::write(root.path().join("var/lib/dpkg/status"), "").expect("status");
    std::fs::write(
        root.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(root.path().join("etc/group"), "root:x:0:\n").expect("group");
    for f in ["etc/shadow", "etc/gshadow"] {
        std::fs::write(root.path().join(f), "").expect("shadow");
        std::fs::set_permissions(root.path().join(f), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
    }
    root
}

fn dpkg(root: &Path) -> Command {
    let mut c = Command::new("dpkg");
    // --root: the instdir and the admindir both in ROOT; chrootless: the maintainer scripts
    // run on this host with DPKG_ROOT=ROOT. libc6 is not in the scratch database.
    c.arg(format!("--root={}", root.display())).args([
        "--force-script-chrootless",
        "--force-depends",
        "--log=/dev/null",
    ]);
    c
}

fn dpkg_status(root: &Path, pkg: &str) -> String {
    let o = dpkg(root).args(["-s", pkg]).output().expect("dpkg -s");
    text(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Status: "))
        .unwrap_or("")
        .to_string()
}

#[test]
fn agent_deb_installs_and_purges_in_a_scratch_root() {
    let d = debs();
    let root = scratch_root();
    let r = root.path();

    let o = run(dpkg(r).arg("-i").arg(&d.agent));
    assert_eq!(dpkg_status(r, "clustermgr-agent"), "install ok installed");
    // The postinst only tells what to do next: it neither joins nor starts anything.
    let said = text(&o.stderr);
    assert!(
        said.contains("clustermgr-agent join --controller"),
        "{said}"
    );
    assert!(
        said.contains("systemctl enable --now clustermgr-agent"),
        "{said}"
    );

    let state = r.join("var/lib/clustermgr-agent");
    let mode = std::fs::metadata(&state)
        .expect("state dir")
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o700, "state dir mode {mode:o}");
    assert_eq!(
        std::fs::read_dir(&state).expect("read state").count(),
        0,
        "installing must not create an identity"
    );
    let v = text(&run(Command::new(r.join("usr/bin/clustermgr-agent")).arg("--version")).stdout);
    assert_eq!(v.trim(), format!("clustermgr-agent {VERSION}"));
    let listed = text(&run(dpkg(r).args(["-L", "clustermgr-agent"])).stdout);
    assert!(
        listed.lines().any(|l| l == "/usr/bin/clustermgr-agent"),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l == "/lib/systemd/system/clustermgr-agent.service"),
        "{listed}"
    );
    // No service enabled in the scratch root (nor anywhere else).
    assert!(
        !r.join("etc/systemd/system/multi-user.target.wants")
            .exists()
    );

    // Reinstalling (upgrade path) keeps the state; purge removes it with the package.
    std::fs::write(state.join("agent.toml"), "node_id = \"x\"\n").expect("fake state");
    run(dpkg(r).arg("-i").arg(&d.agent));
    assert_eq!(dpkg_status(r, "clustermgr-agent"), "install ok installed");
    assert!(state.join("agent.toml").exists(), "upgrade lost the state");
    run(dpkg(r).args(["--purge", "clustermgr-agent"]));
    assert_eq!(dpkg_status(r, "clustermgr-agent"), "");
    assert!(!r.join("usr/bin/clustermgr-agent").exists());
    assert!(!state.exists(), "purge left the state dir");
}

#[test]
fn controller_deb_installs_in_a_scratch_root() {
    let d = debs();
    let root = scratch_root();
    let r = root.path();

    let o = run(dpkg(r).arg("-i").arg(&d.controller));
    assert_eq!(dpkg_status(r, "clustermgr"), "install ok installed");
    assert!(text(&o.stderr).contains("clustermgr --data-dir /var/lib/clustermgr init"));

    // The service user exists in the scratch root (only there) and owns the data dir.
    let passwd = std::fs::read_to_string(r.join("etc/passwd")).expect("passwd");
    let user = passwd
        .lines()
        .find(|l| l.starts_with("clustermgr:"))
        .unwrap_or_else(|| panic!("no clustermgr user: {passwd}"));
    let cols: Vec<&str> = user.split(':').collect();
    assert_eq!(cols[5], "/var/lib/clustermgr", "{user}");
    assert_eq!(cols[6], "/usr/sbin/nologin", "{user}");
    let uid: u32 = cols[2].parse().expect("uid");
    assert!(uid > 0 && uid < 1000, "not a system user: {user}");
    let meta = std::fs::metadata(r.join("var/lib/clustermgr")).expect("data dir");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o700);
    assert_eq!(meta.uid(), uid);
    let man = text(&run(dpkg(r).args(["-L", "clustermgr"])).stdout);
    assert!(
        man.lines()
            .any(|l| l == "/usr/share/man/man1/clustermgr-serve.1.gz"),
        "{man}"
    );
}

/// The content of `name` in a cpio archive of the "newc" format (what rpm2cpio writes).
fn cpio_newc_file<'a>(mut a: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let pad4 = |n: usize| (4 - n % 4) % 4;
    loop {
        if a.len() < 110 || &a[..6] != b"070701" {
            return None;
        }
        let hex = |i: usize| {
            std::str::from_utf8(&a[6 + 8 * i..14 + 8 * i])
                .ok()
                .and_then(|h| usize::from_str_radix(h, 16).ok())
        };
        let (size, namesize) = (hex(6)?, hex(11)?);
        let entry = a.get(110..110 + namesize)?;
        let entry = std::str::from_utf8(entry).ok()?.trim_end_matches('\0');
        if entry == "TRAILER!!!" {
            return None;
        }
        let start = 110 + namesize + pad4(110 + namesize);
        let data = a.get(start..start + size)?;
        if entry == name {
            return Some(data);
        }
        a = a.get(start + size + pad4(size)..)?;
    }
}

#[test]
fn agent_rpm_builds_and_lists() {
    if Command::new("rpmbuild").arg("--version").output().is_err() {
        panic!(
            "rpmbuild is missing: install it (Debian/Ubuntu: apt-get install rpm; Fedora/RHEL: dnf install rpm-build)"
        );
    }
    let (target, profile) = target_and_profile();
    let out = tempfile::tempdir().expect("tempdir");
    let o = run(Command::new(workspace().join("packaging/build-rpm"))
        .args(["--no-build", "--profile", &profile])
        .arg("--target-dir")
        .arg(&target)
        .arg(out.path()));
    let rpm = PathBuf::from(text(&o.stdout).trim());
    assert!(rpm.is_file(), "build-rpm printed {:?}", text(&o.stdout));
    let name = rpm.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    assert!(
        name.starts_with(&format!("clustermgr-agent-{VERSION}-1.")) && name.ends_with(".rpm"),
        "{name}"
    );

    let q = |fmt: &str| {
        text(
            &run(Command::new("rpm")
                .args(["-qp", "--queryformat", fmt])
                .arg(&rpm))
            .stdout,
        )
    };
    assert_eq!(
        q("%{NAME} %{VERSION}"),
        format!("clustermgr-agent {VERSION}")
    );
    let files = text(&run(Command::new("rpm").arg("-qlp").arg(&rpm)).stdout);
    for f in [
        "/usr/bin/clustermgr-agent",
        "/usr/lib/systemd/system/clustermgr-agent.service",
        "/var/lib/clustermgr-agent",
    ] {
        assert!(files.lines().any(|l| l == f), "{f} not in the rpm: {files}");
    }
    let scripts = text(&run(Command::new("rpm").arg("-qp").arg("--scripts").arg(&rpm)).stdout);
    assert!(scripts.contains("postinstall scriptlet"), "{scripts}");
    assert!(scripts.contains("preuninstall scriptlet"), "{scripts}");
    // Scriptlets stop/disable on removal and reload, never enable or start.
    let commands = scripts
        .lines()
        .filter(|l| l.contains("systemctl") && !l.trim_start().starts_with("echo"));
    for line in commands {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(
            !words.contains(&"enable") && !words.contains(&"start"),
            "a scriptlet enables or starts the service: {line}"
        );
    }

    // The packaged binary runs (rpm2cpio gives the payload; no cpio tool needed).
    let x = tempfile::tempdir().expect("tempdir");
    let payload = run(Command::new("rpm2cpio").arg(&rpm)).stdout;
    let bin = cpio_newc_file(&payload, "./usr/bin/clustermgr-agent")
        .unwrap_or_else(|| panic!("no ./usr/bin/clustermgr-agent in the rpm payload"));
    let path = x.path().join("clustermgr-agent");
    std::fs::write(&path, bin).expect("write binary");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let v = text(&run(Command::new(&path).arg("--version")).stdout);
    assert_eq!(v.trim(), format!("clustermgr-agent {VERSION}"));
}

/// The whole build-deb path: `cargo build --release` into the tests' target directory, then
/// the packages. Slow cold (a release build of the workspace), cached afterwards.
#[test]
#[ignore = "release build: several minutes cold; run with --ignored"]
fn deb_release_build() {
    let d = build_debs(false);
    let (target, _) = target_and_profile();
    assert!(target.join("release/clustermgr-agent").is_file());
    let root = tempfile::tempdir().expect("tempdir");
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&d.agent)
        .arg(root.path()));
    let v = text(
        &run(Command::new(root.path().join("usr/bin/clustermgr-agent")).arg("--version")).stdout,
    );
    assert_eq!(v.trim(), format!("clustermgr-agent {VERSION}"));
    let rows = contents(&d.controller);
    entry(&rows, "usr/bin/clustermgr");
    entry(&rows, "usr/share/man/man1/clustermgr.1.gz");
}
