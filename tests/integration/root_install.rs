//! An agent running as root on `/` installs packages pushed by the controller through the real
//! system code path (`PackageMode::System`: `apt-get install FILE.deb`, i.e. dpkg on the live
//! package database), isolated from the host by `tests/run-in-namespace.sh`.
//!
//! Layout: the test re-runs its own binary (this one test, `ROOT_INSTALL_INNER` set) inside the
//! namespace: mount, network, UTS, IPC and PID namespaces, overlays over /etc /opt /usr /var /tmp
//! whose upper layers live in a tmpfs, `/` read-only, only `lo`. The controller, the agent and
//! every CLI call run in there, talking over the namespace's own loopback: with only `lo`, the
//! host's network is unreachable, and running everything inside keeps the network namespace
//! (no veth pair, no host-side listener the node could reach). Inside, the controller adds both
//! packages (the Gluu stand-in and a real Debian package), pushes them to the node and installs
//! them with `job run NODE install-package --sha256 SHA`; the checks look at the job record,
//! its log (the apt-get argv, dpkg's own output, exit code 0), `dpkg-query` and the installed
//! files. Outside, after the namespace is gone, the test checks that nothing of it is left on
//! the host: the packages are not installed there, the cache files and the temporary
//! directories do not exist, and no process of the run is alive.
//!
//! The real package is `hello` from the Debian archive, fetched once with `apt-get download`
//! into the target directory (reused by later runs); when it cannot be downloaded (no apt
//! index, no network) or is installed on the host already, a package built here with dpkg-deb
//! stands in, and the test says which one it used.
//!
//! Skipped (with the reason printed) only when not running as root, or when `unshare` or the
//! overlay file system is missing or cannot make a namespace here; under CI (`CI=true`) any of
//! these fails the test instead.

use clustermgr_tests::{Agent, Controller, bin_dir, processes_mentioning, standin_deb, text};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TEST_NAME: &str = "root_install::agent_as_root_installs_pushed_packages_in_namespaces";
const INNER_ENV: &str = "ROOT_INSTALL_INNER";
const NS_HOSTNAME: &str = "clustermgr-ns-node";
const CACHE: &str = "/var/cache/clustermgr/packages";
/// Bound of the whole namespace run (the script kills it after this).
const NS_TIMEOUT_SECS: u64 = 300;

/// The real package fetched from the archive.
const REAL_PACKAGE: &str = "hello";
/// The locally built fallback.
const LOCAL_PACKAGE: &str = "clustermgr-ns-probe";

fn sh(cmd: &mut Command) -> std::process::Output {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

fn sha256(p: &Path) -> String {
    let o = sh(Command::new("sha256sum").arg(p));
    assert!(o.status.success(), "sha256sum {}", p.display());
    text(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn deb_field(deb: &Path, field: &str) -> String {
    let o = sh(Command::new("dpkg-deb").arg("-f").arg(deb).arg(field));
    assert!(
        o.status.success(),
        "dpkg-deb -f {}: {}",
        deb.display(),
        text(&o.stderr)
    );
    text(&o.stdout).trim().to_string()
}

/// `dpkg-query` status and version of a package, None when dpkg does not know it.
fn dpkg_status(name: &str) -> Option<String> {
    let o = sh(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status} ${Version}", name]));
    o.status
        .success()
        .then(|| text(&o.stdout).trim().to_string())
}

/// Why the namespace cannot be made here, or None when it can.
fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root (dpkg on / and unshare need it)".into());
    }
    for tool in ["unshare", "ip", "dpkg-query", "apt-get"] {
        let found = sh(Command::new("sh").args(["-c", &format!("command -v {tool}")]));
        if !found.status.success() {
            return Some(format!("{tool} is not installed"));
        }
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        return Some("the kernel has no overlay file system".into());
    }
    // A container may refuse new namespaces even to root.
    let probe = sh(Command::new("timeout").args([
        "20", "unshare", "--mount", "--net", "--uts", "--ipc", "--pid", "--fork", "true",
    ]));
    if !probe.status.success() {
        return Some(format!(
            "unshare cannot create namespaces here: {}",
            text(&probe.stderr).trim()
        ));
    }
    None
}

/// A package file with what the checks need to know of it.
struct Deb {
    path: PathBuf,
    name: String,
    version: String,
}

impl Deb {
    fn read(path: PathBuf) -> Deb {
        Deb {
            name: deb_field(&path, "Package"),
            version: deb_field(&path, "Version"),
            path,
        }
    }
}

/// The real Debian package, downloaded once into the target directory; or, when that is not
/// possible, a package built here. Says which on stderr.
fn real_deb() -> Deb {
    let cache = bin_dir().join("root-install-cache");
    std::fs::create_dir_all(&cache).expect("cache dir");
    if let Some(reason) = dpkg_status(REAL_PACKAGE)
        .filter(|s| s.starts_with("installed "))
        .map(|s| format!("{REAL_PACKAGE} is installed on this host ({s})"))
    {
        eprintln!("root_install: {reason}: using a locally built package instead");
        return local_deb(&cache);
    }
    let cached = |dir: &Path| {
        std::fs::read_dir(dir).ok().and_then(|entries| {
            entries.flatten().map(|e| e.path()).find(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with(&format!("{REAL_PACKAGE}_")) && n.ends_with(".deb")
                })
            })
        })
    };
    if let Some(deb) = cached(&cache) {
        eprintln!(
            "root_install: real package {REAL_PACKAGE} from the cache: {}",
            deb.display()
        );
        return Deb::read(deb);
    }
    // Into a directory of its own, then renamed: a partial download never looks cached.
    let part = tempfile::tempdir_in(&cache).expect("download dir");
    let o = sh(Command::new("timeout")
        .args([
            "120",
            "apt-get",
            "download",
            "-q",
            "-o",
            "APT::Sandbox::User=root",
        ])
        .arg(REAL_PACKAGE)
        .current_dir(part.path()));
    match cached(part.path()) {
        Some(deb) if o.status.success() => {
            let name = deb.file_name().expect("file name").to_owned();
            let dest = cache.join(name);
            std::fs::rename(&deb, &dest).expect("keep the download");
            eprintln!(
                "root_install: real package {REAL_PACKAGE} downloaded with apt-get: {}",
                dest.display()
            );
            Deb::read(dest)
        }
        _ => {
            eprintln!(
                "root_install: apt-get download {REAL_PACKAGE} failed ({}): {}{}; using a \
                 locally built package instead",
                o.status,
                text(&o.stdout).trim(),
                text(&o.stderr).trim()
            );
            local_deb(&cache)
        }
    }
}

/// A small package built with dpkg-deb: one file under /usr/share, no dependencies.
fn local_deb(cache: &Path) -> Deb {
    let deb = cache.join(format!("{LOCAL_PACKAGE}_1.0_all.deb"));
    if !deb.is_file() {
        let tree = tempfile::tempdir_in(cache).expect("tree");
        let t = tree.path();
        std::fs::create_dir_all(t.join("DEBIAN")).expect("DEBIAN");
        std::fs::write(
            t.join("DEBIAN/control"),
            format!(
                "Package: {LOCAL_PACKAGE}\nVersion: 1.0\nArchitecture: all\n\
                 Maintainer: clustermgr tests <root@localhost>\n\
                 Description: probe package for the root install test\n"
            ),
        )
        .expect("control");
        let share = t.join("usr/share").join(LOCAL_PACKAGE);
        std::fs::create_dir_all(&share).expect("share");
        std::fs::write(share.join("marker"), "installed by clustermgr\n").expect("marker");
        let built = t.join("out.deb");
        let o = sh(Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(t)
            .arg(&built));
        assert!(o.status.success(), "dpkg-deb --build: {}", text(&o.stderr));
        std::fs::rename(&built, &deb).expect("keep the package");
    }
    eprintln!(
        "root_install: locally built package {LOCAL_PACKAGE}: {}",
        deb.display()
    );
    Deb::read(deb)
}

#[test]
fn agent_as_root_installs_pushed_packages_in_namespaces() {
    if std::env::var_os(INNER_ENV).is_some() {
        inner();
        return;
    }
    if let Some(reason) = skip_reason() {
        // CI runs as root with every tool installed: there a missing one is a failure.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "root_install cannot run: {reason}"
        );
        eprintln!("SKIPPED root_install: {reason}");
        return;
    }
    let standin = Deb::read(standin_deb());
    let real = real_deb();
    // The host before: what must be the same afterwards.
    let host_before: Vec<(String, Option<String>)> = [&standin.name, &real.name]
        .into_iter()
        .map(|n| (n.clone(), dpkg_status(n)))
        .collect();
    assert!(
        !host_before[1]
            .1
            .as_deref()
            .is_some_and(|s| s.starts_with("installed ")),
        "{} is installed on the host: the test could not tell the namespace's install apart",
        real.name
    );
    let cache_files: Vec<PathBuf> = [&standin.path, &real.path]
        .into_iter()
        .map(|p| Path::new(CACHE).join(format!("{}.deb", sha256(p))))
        .collect();
    let cache_before: Vec<bool> = cache_files.iter().map(|p| p.exists()).collect();
    let gluu_before = Path::new("/opt/gluu-server").exists();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("run-in-namespace.sh");
    let exe = std::env::current_exe().expect("test binary");
    let started = std::time::Instant::now();
    let o = sh(Command::new("bash")
        .arg(&script)
        .args(["--hostname", NS_HOSTNAME, "--"])
        .arg(&exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads", "1"])
        .env(INNER_ENV, "1")
        .env("ROOT_INSTALL_STANDIN", &standin.path)
        .env("ROOT_INSTALL_REAL", &real.path)
        .env("RUST_BACKTRACE", "1")
        .env("RUN_IN_NAMESPACE_TIMEOUT", NS_TIMEOUT_SECS.to_string()));
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    eprintln!(
        "root_install: namespace run took {:.1}s\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        o.status.success(),
        "the run inside the namespace failed ({})",
        o.status
    );
    assert!(
        stderr.contains("run-in-namespace: ready:") && stderr.contains(NS_HOSTNAME),
        "the namespace was not set up"
    );
    // libtest exits 0 when the filter matches nothing: the inner test must have said so.
    assert!(
        stdout.contains("root_install: inner ok"),
        "the inner test did not run to its end"
    );
    let marked = |key: &str| -> PathBuf {
        let prefix = format!("root_install: {key} ");
        stdout
            .lines()
            // libtest may print "test NAME ... " on the same line first.
            .find_map(|l| l.find(&prefix).map(|i| &l[i + prefix.len()..]))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("the inner test printed no {key}"))
    };
    let ctl_dir = marked("controller-dir");
    let agent_dir = marked("agent-dir");

    // Nothing of the namespace is left on the host.
    let host_after: Vec<(String, Option<String>)> = host_before
        .iter()
        .map(|(n, _)| (n.clone(), dpkg_status(n)))
        .collect();
    assert_eq!(
        host_after, host_before,
        "the host's package database changed"
    );
    assert!(
        dpkg_status(&real.name).is_none_or(|s| !s.starts_with("installed ")),
        "{} is installed on the host",
        real.name
    );
    for (file, before) in cache_files.iter().zip(&cache_before) {
        assert_eq!(file.exists(), *before, "{} on the host", file.display());
    }
    assert_eq!(Path::new("/opt/gluu-server").exists(), gluu_before);
    for dir in [&ctl_dir, &agent_dir] {
        assert!(!dir.exists(), "{} is left on the host", dir.display());
        let left = processes_mentioning(dir);
        assert!(left.is_empty(), "processes of the namespace left: {left:?}");
    }
    let left = processes_mentioning(&script);
    assert!(left.is_empty(), "namespace processes left: {left:?}");
}

// ---------------------------------------------------------------- inside the namespace

fn inner_env(key: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(key).unwrap_or_else(|| panic!("{key} is not set")))
}

fn inner() {
    // The isolation this test relies on, checked from inside.
    let host = sh(&mut Command::new("hostname"));
    assert_eq!(
        text(&host.stdout).trim(),
        NS_HOSTNAME,
        "not in the namespace"
    );
    assert!(
        std::fs::write("/.root-install-probe", b"x").is_err(),
        "/ is writable inside the namespace"
    );
    let standin = Deb::read(inner_env("ROOT_INSTALL_STANDIN"));
    let real = Deb::read(inner_env("ROOT_INSTALL_REAL"));
    for d in [&standin, &real] {
        assert!(
            dpkg_status(&d.name).is_none_or(|s| !s.starts_with("installed ")),
            "{} is installed before the test",
            d.name
        );
    }

    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut agent = Agent::new(NS_HOSTNAME);
    agent.root = PathBuf::from("/");
    agent.join(&ctl, "gluu-node");
    agent.start();
    ctl.wait_status(&agent.node_id, "online");
    println!("root_install: controller-dir {}", ctl.dir.path().display());
    println!("root_install: agent-dir {}", agent.dir.path().display());

    for d in [&standin, &real] {
        let sha = sha256(&d.path);
        let added = ctl.json(&["package", "add", d.path.to_str().expect("utf-8 path")]);
        assert_eq!(added["name"], d.name.as_str(), "{added}");
        assert_eq!(added["version"], d.version.as_str(), "{added}");
        assert_eq!(added["sha256"], sha.as_str(), "{added}");

        let spec = format!("{}={}", d.name, d.version);
        let pushed = ctl.json(&["package", "push", &spec, NS_HOSTNAME]);
        let pushed = pushed.as_array().expect("push results");
        assert_eq!(pushed.len(), 1, "{pushed:?}");
        assert_eq!(pushed[0]["state"], "succeeded", "{}", pushed[0]);
        assert_eq!(pushed[0]["kind"], "receive-package", "{}", pushed[0]);
        let cached = Path::new(CACHE).join(format!("{sha}.deb"));
        assert_eq!(sha256(&cached), sha, "{}", cached.display());

        // The real code path: agent as root on /, PackageMode::System.
        let job = ctl.json(&[
            "job",
            "run",
            NS_HOSTNAME,
            "install-package",
            "--sha256",
            &sha,
            "--timeout",
            "180s",
        ]);
        assert_eq!(job["state"], "succeeded", "{job}");
        assert_eq!(job["kind"], "install-package", "{job}");
        assert_eq!(job["exit_code"], 0, "{job}");
        assert_eq!(job["output"]["package"], d.name.as_str(), "{job}");
        assert_eq!(job["output"]["version"], d.version.as_str(), "{job}");
        assert_eq!(job["output"]["changed"], true, "{job}");

        let id = job["id"].as_str().expect("job id");
        // `job logs --output json`: one JSON object per line.
        let logs = ctl.cli_ok(&["--output", "json", "job", "logs", id]);
        let lines: Vec<String> = logs
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("a JSON log line");
                v["line"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let argv = format!(
            "$ apt-get install -y --no-install-recommends --allow-downgrades {}",
            cached.display()
        );
        assert!(lines.contains(&argv.as_str()), "no {argv:?} in {lines:#?}");
        // dpkg's own words, passed on by apt-get.
        let setting_up = format!("Setting up {} ({})", d.name, d.version);
        assert!(
            lines.iter().any(|l| l.starts_with(&setting_up)),
            "no {setting_up:?} in {lines:#?}"
        );
        let done = format!("installed {} {}", d.name, d.version);
        assert!(lines.contains(&done.as_str()), "no {done:?} in {lines:#?}");

        assert_eq!(
            dpkg_status(&d.name).as_deref(),
            Some(format!("installed {}", d.version).as_str()),
            "dpkg-query -W {}",
            d.name
        );
        // Every regular file dpkg lists for the package is on disk.
        let listed = sh(Command::new("dpkg-query").args(["-L", &d.name]));
        assert!(listed.status.success(), "dpkg-query -L {}", d.name);
        let files: Vec<PathBuf> = text(&listed.stdout)
            .lines()
            .map(PathBuf::from)
            .filter(|p| p.is_file())
            .collect();
        assert!(!files.is_empty(), "dpkg lists no files for {}", d.name);
        println!(
            "root_install: {} {} installed, {} files",
            d.name,
            d.version,
            files.len()
        );

        // Installing again is a no-op.
        let again = ctl.json(&[
            "job",
            "run",
            NS_HOSTNAME,
            "install-package",
            "--sha256",
            &sha,
        ]);
        assert_eq!(again["state"], "succeeded", "{again}");
        assert_eq!(again["output"]["changed"], false, "{again}");
    }

    // Both packages are installed at once, as dpkg-query -W lists them.
    let o = sh(Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Status}\n"])
        .args([&standin.name, &real.name]));
    assert!(o.status.success(), "dpkg-query -W: {}", text(&o.stderr));
    let both = text(&o.stdout);
    for d in [&standin, &real] {
        assert!(
            both.lines().any(|l| l == format!("{} installed", d.name)),
            "{both}"
        );
    }
    // The stand-in's files.
    for f in [
        "/sbin/gluu-serverd",
        "/opt/gluu-server/opt/gluu/bin/gluu-standin",
        "/opt/gluu-server/install/community-edition-setup/setup.py",
    ] {
        assert!(Path::new(f).is_file(), "{f} is missing after the install");
    }
    if real.name == REAL_PACKAGE {
        let hello = sh(&mut Command::new("/usr/bin/hello"));
        assert_eq!(text(&hello.stdout).trim(), "Hello, world!");
    }

    agent.stop();
    ctl.stop();
    println!("root_install: inner ok");
}
