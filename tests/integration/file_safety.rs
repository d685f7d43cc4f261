//! write-file and read-file against a real agent, as an attacker who can write a managed
//! directory would try them: links planted at temporary names and targets, FIFOs, /dev/zero,
//! directories swapped for links during the operation, links from one managed prefix into
//! another; and the permissions of replaced files.
//!
//! Jobs are submitted through the Operator API directly, so every WriteFile field is reachable.

use clustermgr_proto::operator_client::OperatorClient;
use clustermgr_proto::{
    Job, NodeRef, Operation, ReadFile, SubmitJobRequest, WriteFile, operation, operation_output,
};
use clustermgr_shared::config::ClientBundle;
use clustermgr_shared::dial::{DialOptions, connect};
use clustermgr_shared::tls::{client_config, install_crypto_provider};
use clustermgr_tests::{Agent, Controller, processes_mentioning};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

struct Env {
    ctl: Controller,
    a: Agent,
    rt: tokio::runtime::Runtime,
    client: OperatorClient<Channel>,
}

fn setup() -> Env {
    install_crypto_provider();
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut a = Agent::new("files");
    a.join(&ctl, "gluu-node");
    a.start();
    ctl.wait_status(&a.node_id, "online");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bundle = ClientBundle::load(&ctl.data.join("admin.toml")).unwrap();
    let tls = client_config(&bundle.ca_pem, Some((&bundle.cert_pem, &bundle.key_pem))).unwrap();
    let ch = rt
        .block_on(connect(&ctl.addr, tls, DialOptions::default()))
        .unwrap();
    Env {
        ctl,
        a,
        rt,
        client: OperatorClient::new(ch),
    }
}

impl Env {
    /// Submits one job and waits for it: the final record and, for read-file, the content.
    fn run(&mut self, kind: operation::Kind, timeout: Duration) -> (Job, Vec<u8>) {
        let req = SubmitJobRequest {
            node: Some(NodeRef {
                node: self.a.node_id.clone(),
            }),
            operation: Some(Operation { kind: Some(kind) }),
            timeout_ms: timeout.as_millis() as u32,
            wait: true,
        };
        let r = self
            .rt
            .block_on(self.client.submit_job(req))
            .unwrap()
            .into_inner();
        (r.job.unwrap(), r.content)
    }

    fn write(&mut self, w: WriteFile) -> Job {
        self.run(operation::Kind::WriteFile(w), Duration::from_secs(20))
            .0
    }

    fn read(&mut self, path: &str) -> (Job, Vec<u8>) {
        self.run(
            operation::Kind::ReadFile(ReadFile { path: path.into() }),
            Duration::from_secs(20),
        )
    }

    fn conf(&self) -> PathBuf {
        let c = self.a.root.join("etc/gluu/conf");
        std::fs::create_dir_all(&c).unwrap();
        c
    }

    /// A file outside the agent's root that must never change.
    fn victim(&self, name: &str) -> (PathBuf, Snapshot) {
        let v = self.a.dir.path().join(name);
        std::fs::write(&v, "root:$6$secret:19000:0:99999:7:::\n").unwrap();
        std::fs::set_permissions(&v, std::fs::Permissions::from_mode(0o640)).unwrap();
        let s = Snapshot::of(&v);
        (v, s)
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    content: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
}

impl Snapshot {
    fn of(p: &Path) -> Self {
        let m = std::fs::metadata(p).unwrap();
        Self {
            content: std::fs::read(p).unwrap(),
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
        }
    }
}

fn wf(path: &str, content: &[u8], mode: u32) -> WriteFile {
    WriteFile {
        path: path.into(),
        content: content.to_vec(),
        mode,
        ..Default::default()
    }
}

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn succeeded(j: &Job) -> bool {
    j.state == "succeeded"
}

#[test]
fn links_planted_at_the_temporary_name_or_the_target_are_never_written_through() {
    let mut env = setup();
    let conf = env.conf();
    let (victim, before) = env.victim("shadow");
    // The temporary names the former scheme used (`.NAME.tmpPID`), for every process of this
    // agent; and a link as the target itself.
    let pids = processes_mentioning(&env.a.state);
    assert!(!pids.is_empty());
    for pid in &pids {
        symlink(&victim, conf.join(format!(".gluu.properties.tmp{pid}"))).unwrap();
    }
    symlink(&victim, conf.join("ox-ldap.properties")).unwrap();

    let j = env.write(wf(
        "/etc/gluu/conf/gluu.properties",
        b"persistence=ldap\n",
        0,
    ));
    assert!(succeeded(&j), "{j:?}");
    assert_eq!(
        Snapshot::of(&victim),
        before,
        "the planted link was followed"
    );
    assert_eq!(
        std::fs::read(conf.join("gluu.properties")).unwrap(),
        b"persistence=ldap\n"
    );

    let j = env.write(wf(
        "/etc/gluu/conf/ox-ldap.properties",
        b"bindDN: x\n",
        0o600,
    ));
    assert_eq!(j.state, "failed", "{j:?}");
    assert!(j.error.contains("symbolic link"), "{}", j.error);
    assert_eq!(
        Snapshot::of(&victim),
        before,
        "the target link was followed"
    );
    // Nothing but the planted links, the target link and the written file is left behind.
    let mut names: Vec<String> = std::fs::read_dir(&conf)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), pids.len() + 2, "{names:?}");
}

#[test]
fn fifos_make_reads_and_writes_fail_fast() {
    let mut env = setup();
    let conf = env.conf();
    let st = std::process::Command::new("mkfifo")
        .arg(conf.join("pipe"))
        .status()
        .unwrap();
    assert!(st.success());
    for write in [false, true] {
        let started = Instant::now();
        let j = if write {
            env.write(wf("/etc/gluu/conf/pipe", b"x", 0))
        } else {
            env.read("/etc/gluu/conf/pipe").0
        };
        assert_eq!(j.state, "failed", "write={write}: {j:?}");
        assert!(j.error.contains("not a regular file"), "{}", j.error);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "write={write} took {:?}",
            started.elapsed()
        );
    }
    // The worker is free: the next job runs at once.
    let j = env.write(wf("/etc/gluu/conf/after", b"x", 0));
    assert!(succeeded(&j), "{j:?}");
}

/// Peak resident memory of the agent process, in kB.
fn agent_peak_rss_kb(a: &Agent) -> u64 {
    let pid = processes_mentioning(&a.state)[0];
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_link_to_dev_zero_is_refused_even_when_swapped_in_during_reads() {
    let mut env = setup();
    let conf = env.conf();
    symlink("/dev/zero", conf.join("zero")).unwrap();
    let (j, content) = env.read("/etc/gluu/conf/zero");
    assert_eq!(j.state, "failed", "{j:?}");
    assert!(j.error.contains("symbolic link"), "{}", j.error);
    assert!(content.is_empty());

    // `f` keeps changing (atomically) between a small regular file and a link to /dev/zero.
    std::fs::write(conf.join("f"), "small").unwrap();
    let swapper = Swapper::start(conf.join("f"), conf.join("zero"));
    let outcomes = swapper.during(300, Duration::from_secs(2), |_| {
        let started = Instant::now();
        let (j, content) = env.run(
            operation::Kind::ReadFile(ReadFile {
                path: "/etc/gluu/conf/f".into(),
            }),
            Duration::from_secs(10),
        );
        (started.elapsed(), j, content)
    });
    assert!(swapper.stop() > 100);
    let (mut ok, mut refused) = (0, 0);
    for (took, j, content) in outcomes {
        assert!(took < Duration::from_secs(5), "a read took {took:?}: {j:?}");
        if succeeded(&j) {
            assert_eq!(content, b"small");
            ok += 1;
        } else {
            assert!(j.error.contains("symbolic link"), "{j:?}");
            refused += 1;
        }
    }
    eprintln!("reads while swapping: {ok} read, {refused} refused");
    assert!(ok > 0, "the regular file was never read");
    let peak = agent_peak_rss_kb(&env.a);
    assert!(
        peak < 200_000,
        "agent peak RSS {peak} kB: an unbounded read?"
    );
}

/// Exchanges two directory entries atomically (`renameat2(RENAME_EXCHANGE)`) in a loop on its
/// own thread, so that the first one is always there and keeps changing what it is.
struct Swapper {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Swapper {
    fn start(a: PathBuf, b: PathBuf) -> Self {
        use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, count) = (stop.clone(), count.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    renameat2(AT_FDCWD, &a, AT_FDCWD, &b, RenameFlags::RENAME_EXCHANGE).unwrap();
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        clustermgr_tests::eventually(Duration::from_secs(10), "swapping starts", || {
            (count.load(Ordering::Relaxed) >= 100)
                .then_some(())
                .ok_or_else(|| "fewer than 100 swaps".to_string())
        });
        Self {
            stop,
            count,
            thread,
        }
    }

    /// Runs `op` at least `times` times and for at least `min` while swapping.
    fn during<T>(&self, times: usize, min: Duration, mut op: impl FnMut(usize) -> T) -> Vec<T> {
        let started = Instant::now();
        let mut out = Vec::new();
        while out.len() < times || started.elapsed() < min {
            out.push(op(out.len()));
        }
        out
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.count.load(Ordering::Relaxed)
    }
}

#[test]
fn a_directory_swapped_for_a_link_during_writes_never_leads_outside() {
    let mut env = setup();
    let conf = env.conf();
    let outside = env.a.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(conf.join("sub")).unwrap();
    symlink(&outside, conf.join("sub.link")).unwrap();
    // `sub` is always there: the real directory or a link to one outside the root.
    let swapper = Swapper::start(conf.join("sub"), conf.join("sub.link"));
    let outcomes = swapper.during(300, Duration::from_secs(2), |i| {
        let j = env.write(wf(
            &format!("/etc/gluu/conf/sub/f{}", i % 3),
            format!("{i}\n").as_bytes(),
            0o600,
        ));
        if i % 10 == 0 {
            env.write(wf(&format!("/etc/gluu/conf/sub/d{i}/x"), b"x", 0));
            env.read(&format!("/etc/gluu/conf/sub/f{}", i % 3));
        }
        succeeded(&j)
    });
    assert!(swapper.stop() > 100);
    let ok = outcomes.iter().filter(|ok| **ok).count();
    eprintln!(
        "writes while swapping: {ok} written, {} refused",
        outcomes.len() - ok
    );
    let leaked: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leaked.is_empty(), "written outside the root: {leaked:?}");
}

#[test]
fn a_link_from_one_managed_prefix_into_another_is_refused() {
    let mut env = setup();
    let conf = env.conf();
    let certs = env.a.root.join("etc/certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("oxauth.key"), "PRIVATE KEY").unwrap();
    std::fs::set_permissions(
        certs.join("oxauth.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let before = Snapshot::of(&certs.join("oxauth.key"));
    symlink(&certs, conf.join("certs")).unwrap();
    let (j, content) = env.read("/etc/gluu/conf/certs/oxauth.key");
    assert_eq!(j.state, "failed", "{j:?}");
    assert!(j.error.contains("symbolic link"), "{}", j.error);
    assert!(content.is_empty());
    let j = env.write(wf("/etc/gluu/conf/certs/oxauth.key", b"EVIL", 0o644));
    assert_eq!(j.state, "failed", "{j:?}");
    assert!(j.error.contains("symbolic link"), "{}", j.error);
    assert_eq!(Snapshot::of(&certs.join("oxauth.key")), before);
    // Through its own prefix it is reachable.
    let (j, content) = env.read("/etc/certs/oxauth.key");
    assert!(succeeded(&j), "{j:?}");
    assert_eq!(content, b"PRIVATE KEY");
}

#[test]
fn permissions_are_kept_on_overwrite_and_overridden_only_explicitly() {
    let mut env = setup();
    let conf = env.conf();
    let key = conf.join("salt");
    std::fs::write(&key, "encodeSalt = old\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&key, Some(4321), Some(4322)).unwrap();

    // Mode 0: mode, owner and group of the replaced file are kept.
    let j = env.write(wf("/etc/gluu/conf/salt", b"encodeSalt = new\n", 0));
    assert!(succeeded(&j), "{j:?}");
    let m = std::fs::metadata(&key).unwrap();
    assert_eq!(std::fs::read(&key).unwrap(), b"encodeSalt = new\n");
    assert_eq!(
        (m.mode() & 0o7777, m.uid(), m.gid()),
        (0o600, 4321, 4322),
        "a 0600 file owned by 4321:4322 must stay so"
    );
    let Some(operation_output::Kind::WriteFile(out)) =
        j.output.as_ref().and_then(|o| o.kind.clone())
    else {
        panic!("no write-file output: {j:?}");
    };
    assert!(out.changed);
    assert!(
        !format!("{out:?}").contains("sha256"),
        "a digest of the content: {out:?}"
    );

    // Explicit mode, owner (a name from the root's /etc/passwd) and group (a number).
    std::fs::write(
        env.a.root.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\njetty:x:4401:4401::/opt/jetty:/bin/false\n",
    )
    .unwrap();
    let j = env.write(WriteFile {
        owner: "jetty".into(),
        group: "4402".into(),
        ..wf("/etc/gluu/conf/salt", b"encodeSalt = new\n", 0o640)
    });
    assert!(succeeded(&j), "{j:?}");
    let m = std::fs::metadata(&key).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 4401, 4402));

    // A new file: 0644, the agent's user (root here).
    let j = env.write(wf("/etc/gluu/conf/new.properties", b"a=b\n", 0));
    assert!(succeeded(&j), "{j:?}");
    let n = conf.join("new.properties");
    assert_eq!(mode_of(&n), 0o644);
    assert_eq!(std::fs::metadata(&n).unwrap().uid(), 0);

    // setuid/setgid/sticky bits only when allowed explicitly.
    let j = env.write(wf("/etc/gluu/conf/tool", b"#!/bin/sh\n", 0o4755));
    assert_eq!(j.state, "failed", "{j:?}");
    assert!(j.error.contains("setuid"), "{}", j.error);
    assert!(!conf.join("tool").exists());
    let j = env.write(WriteFile {
        allow_setid: true,
        ..wf("/etc/gluu/conf/tool", b"#!/bin/sh\n", 0o4755)
    });
    assert!(succeeded(&j), "{j:?}");
    assert_eq!(mode_of(&conf.join("tool")), 0o4755);

    // No digest of any content in the job logs.
    let (j, _) = env.read("/etc/gluu/conf/salt");
    assert!(succeeded(&j), "{j:?}");
    let logs = env.ctl.cli_ok(&["job", "logs", &j.id]);
    assert!(logs.contains("read /etc/gluu/conf/salt"), "{logs}");
    let jobs = env.ctl.json(&["job", "list", "--node", "files"]);
    for job in jobs.as_array().unwrap() {
        let id = job["id"].as_str().unwrap();
        let logs = env.ctl.cli_ok(&["job", "logs", id]);
        assert!(!logs.contains("sha256"), "{logs}");
    }
}
