use super::*;
use crate::facts::HostView;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::time::Duration;
use tokio::sync::mpsc;

fn ctx(root: &Path) -> Ctx {
    Ctx {
        view: HostView {
            root: root.to_path_buf(),
            hostname: None,
            address: None,
        },
        managed: vec!["/etc/gluu/conf".into()],
        host: crate::host::Host::detect(root),
        channel: None,
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

fn log() -> (Log, mpsc::UnboundedReceiver<(u64, String)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Log::new(tx), rx)
}

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Runs an operation on its own thread and runtime; panics if it does not finish in time
/// (an operation that blocks a worker must fail the test, not hang it).
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("{what}: did not finish within {secs} s"))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn write_blocking(c: &Ctx, req: WriteFile) -> Result<WriteFileOutput, OpError> {
    let (mut l, _rx) = log();
    rt().block_on(write(c, req, &mut l))
}

fn read_blocking(c: &Ctx, path: &str) -> Result<ReadFileOutput, OpError> {
    let (mut l, _rx) = log();
    rt().block_on(read(c, path, &mut l))
}

#[tokio::test]
async fn write_then_read_inside_the_root() {
    let d = tempfile::tempdir().unwrap();
    let c = ctx(d.path());
    let (mut log, mut rx) = log();
    let p = "/etc/gluu/conf/a.properties";
    let w = write(&c, wf(p, b"x=1", 0o600), &mut log).await.unwrap();
    assert!(w.changed);
    let again = write(&c, wf(p, b"x=1", 0o600), &mut log).await.unwrap();
    assert!(!again.changed);
    let kept = write(&c, wf(p, b"x=1", 0), &mut log).await.unwrap();
    assert!(!kept.changed, "mode 0 keeps the mode: nothing changes");
    let other = write(&c, wf(p, b"x=2", 0), &mut log).await.unwrap();
    assert!(other.changed);
    let r = read(&c, p, &mut log).await.unwrap();
    assert_eq!(r.content, b"x=2");
    assert_eq!(r.mode, 0o600);
    assert_eq!(r.sha256, hex::encode(Sha256::digest(b"x=2")));
    assert!(d.path().join("etc/gluu/conf/a.properties").exists());
    // No digest of the content in any log line (the write output has no field for one).
    drop(log);
    let mut lines = Vec::new();
    while let Some((_, l)) = rx.recv().await {
        lines.push(l);
    }
    assert_eq!(lines.len(), 5, "{lines:?}");
    for l in &lines {
        assert!(!l.contains("sha256"), "{l}");
        assert!(!l.contains(&hex::encode(Sha256::digest(b"x=2"))), "{l}");
    }
}

#[tokio::test]
async fn managed_files_and_new_directories_inside_the_root() {
    let d = tempfile::tempdir().unwrap();
    let mut c = ctx(d.path());
    c.managed.push("/etc/hosts".into());
    let (mut log, _rx) = log();
    write(&c, wf("/etc/hosts", b"127.0.0.1 a", 0), &mut log)
        .await
        .unwrap();
    let hosts = d.path().join("etc/hosts");
    assert_eq!(mode_of(&hosts), 0o644, "a new file is 0644");
    assert_eq!(
        std::fs::metadata(&hosts).unwrap().uid(),
        nix::unistd::geteuid().as_raw()
    );
    write(&c, wf("/etc/gluu/conf/deep/new/f", b"x", 0), &mut log)
        .await
        .unwrap();
    assert!(d.path().join("etc/gluu/conf/deep/new/f").exists());
    let e = write(&c, wf("/etc/hostsx", b"x", 0), &mut log)
        .await
        .unwrap_err();
    assert!(e.0.contains("outside the managed paths"), "{e}");
    // An existing file over the read limit can still be replaced.
    std::fs::write(&hosts, vec![b'x'; MAX_FILE_BYTES + 10]).unwrap();
    let w = write(&c, wf("/etc/hosts", b"small", 0), &mut log)
        .await
        .unwrap();
    assert!(w.changed);
    assert_eq!(std::fs::read(&hosts).unwrap(), b"small");
}

#[tokio::test]
async fn symlink_escapes_and_traversal_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "s").unwrap();
    std::fs::create_dir_all(d.path().join("etc/gluu/conf")).unwrap();
    symlink(
        outside.path().join("secret"),
        d.path().join("etc/gluu/conf/link"),
    )
    .unwrap();
    symlink(outside.path(), d.path().join("etc/gluu/conf/dir")).unwrap();
    let c = ctx(d.path());
    let (mut log, _rx) = log();
    let e = read(&c, "/etc/gluu/conf/link", &mut log).await.unwrap_err();
    assert!(e.0.contains("symbolic link"), "{e}");
    let e = write(&c, wf("/etc/gluu/conf/dir/x", b"y", 0), &mut log)
        .await
        .unwrap_err();
    assert!(e.0.contains("symbolic link"), "{e}");
    let e = write(&c, wf("/etc/gluu/conf/link", b"y", 0), &mut log)
        .await
        .unwrap_err();
    assert!(e.0.contains("symbolic link"), "{e}");
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret")).unwrap(),
        "s"
    );
    let e = write(&c, wf("/etc/gluu/conf/dir/newdir/x", b"y", 0), &mut log)
        .await
        .unwrap_err();
    assert!(e.0.contains("symbolic link"), "{e}");
    assert!(
        !outside.path().join("newdir").exists(),
        "created a directory outside"
    );
    let e = read(&c, "/etc/gluu/conf/../../../etc/passwd", &mut log)
        .await
        .unwrap_err();
    assert!(e.0.contains(".."), "{e}");
    let e = write(&c, wf("/etc/passwd", b"y", 0), &mut log)
        .await
        .unwrap_err();
    assert!(e.0.contains("outside the managed paths"), "{e}");
    let big = vec![0u8; MAX_FILE_BYTES + 1];
    let e = write(&c, wf("/etc/gluu/conf/big", &big, 0), &mut log)
        .await
        .unwrap_err();
    assert!(e.0.contains("limit"), "{e}");
}

#[test]
fn a_link_planted_at_the_temporary_name_is_never_written_through() {
    let d = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("shadow");
    std::fs::write(&victim, "root:secret").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o640)).unwrap();
    let conf = d.path().join("etc/gluu/conf");
    std::fs::create_dir_all(&conf).unwrap();
    // Every temporary name the former scheme could use (`.NAME.tmpPID`), for this process.
    symlink(
        &victim,
        conf.join(format!(".a.properties.tmp{}", std::process::id())),
    )
    .unwrap();
    let c = ctx(d.path());
    let w = write_blocking(&c, wf("/etc/gluu/conf/a.properties", b"x=1", 0o644)).unwrap();
    assert!(w.changed);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root:secret");
    assert_eq!(mode_of(&victim), 0o640);
    assert_eq!(
        std::fs::read(conf.join("a.properties")).unwrap(),
        b"x=1".to_vec()
    );
}

#[test]
fn fifos_fail_fast_for_read_and_write() {
    let d = tempfile::tempdir().unwrap();
    let conf = d.path().join("etc/gluu/conf");
    std::fs::create_dir_all(&conf).unwrap();
    nix::unistd::mkfifo(
        &conf.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let c = ctx(d.path());
    let c2 = c.clone();
    let e = within(5, "read of a FIFO", move || {
        read_blocking(&c2, "/etc/gluu/conf/pipe")
    })
    .unwrap_err();
    assert!(e.0.contains("not a regular file"), "{e}");
    let c2 = c.clone();
    let e = within(5, "write over a FIFO", move || {
        write_blocking(&c2, wf("/etc/gluu/conf/pipe", b"x", 0))
    })
    .unwrap_err();
    assert!(e.0.contains("not a regular file"), "{e}");
    assert!(
        std::fs::symlink_metadata(conf.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

/// Exchanges two directory entries atomically (`renameat2(RENAME_EXCHANGE)`) in a loop on
/// its own thread, so that the first one is always there and keeps changing what it is.
struct Swapper {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Swapper {
    fn start(a: PathBuf, b: PathBuf) -> Self {
        use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
        use std::sync::atomic::Ordering::Relaxed;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let thread = {
            let (stop, count) = (stop.clone(), count.clone());
            std::thread::spawn(move || {
                while !stop.load(Relaxed) {
                    renameat2(AT_FDCWD, &a, AT_FDCWD, &b, RenameFlags::RENAME_EXCHANGE).unwrap();
                    count.fetch_add(1, Relaxed);
                }
            })
        };
        let s = Self {
            stop,
            count,
            thread,
        };
        while s.swaps() < 100 {
            std::thread::yield_now();
        }
        s
    }

    fn swaps(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `op` at least `times` times and for at least `min` while swapping.
    fn during<T>(&self, times: usize, min: Duration, mut op: impl FnMut(usize) -> T) -> Vec<T> {
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        while out.len() < times || started.elapsed() < min {
            out.push(op(out.len()));
        }
        out
    }

    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.thread.join();
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[test]
fn a_link_to_dev_zero_is_refused_even_when_swapped_in_during_the_read() {
    let d = tempfile::tempdir().unwrap();
    let conf = d.path().join("etc/gluu/conf");
    std::fs::create_dir_all(&conf).unwrap();
    symlink("/dev/zero", conf.join("zero")).unwrap();
    let c = ctx(d.path());
    let e = read_blocking(&c, "/etc/gluu/conf/zero").unwrap_err();
    assert!(e.0.contains("symbolic link"), "{e}");

    // `f` keeps changing between a small regular file and a link to /dev/zero.
    std::fs::write(conf.join("f"), "small").unwrap();
    let outcomes = within(60, "reads while /dev/zero is swapped in", move || {
        let swapper = Swapper::start(conf.join("f"), conf.join("zero"));
        let rt = rt();
        let (mut l, _rx) = log();
        let out = swapper.during(500, Duration::from_secs(1), |_| {
            rt.block_on(read(&c, "/etc/gluu/conf/f", &mut l))
        });
        assert!(swapper.stop() > 100);
        out
    });
    let mut read = 0;
    for o in outcomes {
        match o {
            Ok(r) => {
                assert_eq!(r.content, b"small");
                read += 1;
            }
            Err(e) => assert!(e.0.contains("symbolic link"), "{e}"),
        }
    }
    assert!(read > 0, "never read the regular file");
}

#[test]
fn a_directory_swapped_for_a_link_during_writes_never_leads_outside() {
    let d = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let conf = d.path().join("etc/gluu/conf");
    std::fs::create_dir_all(conf.join("sub")).unwrap();
    symlink(outside.path(), conf.join("sub.link")).unwrap();
    let c = ctx(d.path());
    let outcomes = within(120, "writes while a directory is swapped", move || {
        // `sub` is always there: the real directory or a link to one outside.
        let swapper = Swapper::start(conf.join("sub"), conf.join("sub.link"));
        let rt = rt();
        let (mut l, _rx) = log();
        let out = swapper.during(300, Duration::from_secs(1), |i| {
            let p = format!("/etc/gluu/conf/sub/f{}", i % 3);
            let w = rt.block_on(write(&c, wf(&p, format!("{i}").as_bytes(), 0o600), &mut l));
            let _ = rt.block_on(read(&c, &p, &mut l));
            let _ = rt.block_on(write(
                &c,
                wf(&format!("/etc/gluu/conf/sub/new{i}/x"), b"n", 0),
                &mut l,
            ));
            w.is_ok()
        });
        assert!(swapper.stop() > 100);
        out
    });
    let leaked: Vec<_> = std::fs::read_dir(outside.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leaked.is_empty(), "written outside the prefix: {leaked:?}");
    assert!(outcomes.iter().any(|ok| *ok), "no write ever succeeded");
}

#[tokio::test]
async fn a_link_from_one_managed_prefix_into_another_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut c = ctx(d.path());
    c.managed.push("/etc/certs".into());
    let conf = d.path().join("etc/gluu/conf");
    let certs = d.path().join("etc/certs");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("key.pem"), "KEY").unwrap();
    symlink(&certs, conf.join("certs")).unwrap();
    symlink(certs.join("key.pem"), conf.join("key.pem")).unwrap();
    let (mut log, _rx) = log();
    for p in ["/etc/gluu/conf/certs/key.pem", "/etc/gluu/conf/key.pem"] {
        let e = read(&c, p, &mut log).await.unwrap_err();
        assert!(e.0.contains("symbolic link"), "{p}: {e}");
        let e = write(&c, wf(p, b"EVIL", 0), &mut log).await.unwrap_err();
        assert!(e.0.contains("symbolic link"), "{p}: {e}");
    }
    assert_eq!(
        std::fs::read_to_string(certs.join("key.pem")).unwrap(),
        "KEY"
    );
    // Through its own prefix the file is reachable.
    let r = read(&c, "/etc/certs/key.pem", &mut log).await.unwrap();
    assert_eq!(r.content, b"KEY");
}

#[tokio::test]
async fn mode_owner_and_group_are_kept_on_overwrite() {
    let d = tempfile::tempdir().unwrap();
    let c = ctx(d.path());
    let conf = d.path().join("etc/gluu/conf");
    std::fs::create_dir_all(&conf).unwrap();
    let key = conf.join("key.pem");
    std::fs::write(&key, "old").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let root = nix::unistd::geteuid().is_root();
    if root {
        std::os::unix::fs::chown(&key, Some(4321), Some(4322)).unwrap();
    }
    let (mut log, _rx) = log();
    let w = write(&c, wf("/etc/gluu/conf/key.pem", b"new", 0), &mut log)
        .await
        .unwrap();
    assert!(w.changed);
    assert_eq!(std::fs::read(&key).unwrap(), b"new");
    assert_eq!(mode_of(&key), 0o600, "0600 stays 0600");
    if root {
        let m = std::fs::metadata(&key).unwrap();
        assert_eq!((m.uid(), m.gid()), (4321, 4322), "owner and group kept");
    }
}

#[tokio::test]
async fn explicit_mode_owner_and_group_override() {
    let d = tempfile::tempdir().unwrap();
    let c = ctx(d.path());
    std::fs::create_dir_all(d.path().join("etc/gluu/conf")).unwrap();
    std::fs::write(
        d.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\njetty:x:4401:4401::/opt/jetty:/bin/false\n",
    )
    .unwrap();
    std::fs::write(d.path().join("etc/group"), "root:x:0:\ngluu:x:4402:\n").unwrap();
    let f = d.path().join("etc/gluu/conf/f");
    std::fs::write(&f, "old").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (mut log, _rx) = log();
    write(&c, wf("/etc/gluu/conf/f", b"old", 0o640), &mut log)
        .await
        .unwrap();
    assert_eq!(mode_of(&f), 0o640);
    if !nix::unistd::geteuid().is_root() {
        let e = write(
            &c,
            WriteFile {
                owner: "jetty".into(),
                ..wf("/etc/gluu/conf/f", b"x", 0)
            },
            &mut log,
        )
        .await
        .unwrap_err();
        assert!(e.0.contains("not root"), "{e}");
        return;
    }
    let w = write(
        &c,
        WriteFile {
            owner: "jetty".into(),
            group: "gluu".into(),
            ..wf("/etc/gluu/conf/f", b"old", 0)
        },
        &mut log,
    )
    .await
    .unwrap();
    assert!(w.changed, "only the owner changed, which is a change");
    let m = std::fs::metadata(&f).unwrap();
    assert_eq!((m.uid(), m.gid(), mode_of(&f)), (4401, 4402, 0o640));
    write(
        &c,
        WriteFile {
            owner: "77".into(),
            group: "78".into(),
            ..wf("/etc/gluu/conf/new", b"n", 0)
        },
        &mut log,
    )
    .await
    .unwrap();
    let n = d.path().join("etc/gluu/conf/new");
    let m = std::fs::metadata(&n).unwrap();
    assert_eq!((m.uid(), m.gid(), mode_of(&n)), (77, 78, 0o644));
    let e = write(
        &c,
        WriteFile {
            owner: "nosuchuser".into(),
            ..wf("/etc/gluu/conf/new", b"n", 0)
        },
        &mut log,
    )
    .await
    .unwrap_err();
    assert!(e.0.contains("no user named"), "{e}");
}

/// As a non-root agent, giving a file to another user (or keeping another user's ownership
/// on overwrite) fails with a clear error. The checks run in [`as_nobody`], in a child
/// process of this test binary running as uid/gid 65534.
#[test]
fn a_non_root_agent_cannot_give_files_away() {
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        // Cannot switch user; `as_nobody` covers this case when run directly.
        crate::ops::tests::missing_prerequisite("root (to run the checks as uid 65534)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let conf = d.path().join("etc/gluu/conf");
    std::fs::create_dir_all(&conf).unwrap();
    for p in [
        d.path(),
        &d.path().join("etc"),
        &d.path().join("etc/gluu"),
        &conf,
    ] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let theirs = conf.join("theirs");
    std::fs::write(&theirs, "root's").unwrap();
    // The test binary may live under a private directory (a checkout in a 0700 home or
    // `mktemp -d`) that uid 65534 cannot traverse: it runs from a world-readable place.
    let exe_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(exe_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = exe_dir.path().join("agent-tests");
    let me = std::env::current_exe().unwrap();
    if std::fs::hard_link(&me, &exe).is_err() {
        std::fs::copy(&me, &exe).unwrap();
    }
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(&exe)
        .current_dir("/")
        .args([
            "--exact",
            "ops::files::tests::as_nobody",
            "--ignored",
            "--nocapture",
        ])
        .env("CLUSTERMGR_TEST_NOBODY_ROOT", d.path())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
    assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "root's");
    assert_eq!(std::fs::metadata(&theirs).unwrap().uid(), 0);
}

#[test]
#[ignore = "run by a_non_root_agent_cannot_give_files_away, as another user"]
fn as_nobody() {
    let root = std::env::var("CLUSTERMGR_TEST_NOBODY_ROOT").unwrap();
    assert!(!nix::unistd::geteuid().is_root());
    let c = ctx(Path::new(&root));
    let e = write_blocking(
        &c,
        WriteFile {
            owner: "4321".into(),
            ..wf("/etc/gluu/conf/new", b"x", 0)
        },
    )
    .unwrap_err();
    assert!(
        e.0.contains("only root can give a file to another user"),
        "{e}"
    );
    let e = write_blocking(&c, wf("/etc/gluu/conf/theirs", b"x", 0)).unwrap_err();
    assert!(e.0.contains("must be owned by uid 0"), "{e}");
    let e = write_blocking(
        &c,
        WriteFile {
            group: "4322".into(),
            ..wf("/etc/gluu/conf/new", b"x", 0)
        },
    )
    .unwrap_err();
    assert!(e.0.contains("operation not permitted"), "{e}");
    assert!(e.0.contains("not root"), "{e}");
    // Its own files it can write, and nothing was left behind by the refusals.
    write_blocking(&c, wf("/etc/gluu/conf/mine", b"x", 0)).unwrap();
    let conf = Path::new(&root).join("etc/gluu/conf");
    let mut names: Vec<_> = std::fs::read_dir(&conf)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["mine", "theirs"]);
}

#[tokio::test]
async fn setuid_setgid_and_sticky_bits_need_an_explicit_allowance() {
    let d = tempfile::tempdir().unwrap();
    let c = ctx(d.path());
    let (mut log, _rx) = log();
    let f = d.path().join("etc/gluu/conf/tool");
    for m in [0o4755, 0o2755, 0o1755] {
        let e = write(&c, wf("/etc/gluu/conf/tool", b"#!", m), &mut log)
            .await
            .unwrap_err();
        assert!(e.0.contains("setuid"), "{e}");
        assert!(!f.exists());
    }
    let e = write(&c, wf("/etc/gluu/conf/tool", b"#!", 0o10644), &mut log)
        .await
        .unwrap_err();
    assert!(e.0.contains("07777"), "{e}");
    write(
        &c,
        WriteFile {
            allow_setid: true,
            ..wf("/etc/gluu/conf/tool", b"#!", 0o4755)
        },
        &mut log,
    )
    .await
    .unwrap();
    assert_eq!(mode_of(&f), 0o4755);
    // Keeping an existing setuid mode on new content needs the allowance too.
    let e = write(&c, wf("/etc/gluu/conf/tool", b"#!new", 0), &mut log)
        .await
        .unwrap_err();
    assert!(e.0.contains("setuid"), "{e}");
    assert_eq!(std::fs::read(&f).unwrap(), b"#!");
    write(
        &c,
        WriteFile {
            allow_setid: true,
            ..wf("/etc/gluu/conf/tool", b"#!new", 0)
        },
        &mut log,
    )
    .await
    .unwrap();
    assert_eq!(mode_of(&f), 0o4755);
}
