//! read-file / write-file, confined to the managed allow-list under the agent's root.
//!
//! Lexical checks (absolute, no `..`, allow-listed) come first. Then every step is done on
//! handles (`clustermgr_shared::safefs`): the agent's root is opened, the managed prefix the path
//! is under is opened below it, and the file's directory below that, never following a symbolic
//! link (so a link in one managed prefix can lead neither outside nor into another prefix), and
//! with no path looked up twice. Reads take only regular files, capped at [`MAX_FILE_BYTES`].
//! Writes go through a random `O_EXCL|O_NOFOLLOW` temporary file and `renameat`, and keep the
//! replaced file's mode, owner and group unless the request sets them.

use super::ids::{self, Db};
use super::{Ctx, Log, OpError};
use clustermgr_proto::{ReadFileOutput, WriteFile, WriteFileOutput};
use clustermgr_shared::MAX_FILE_BYTES;
use clustermgr_shared::paths::{PathError, check_managed, normalize};
use clustermgr_shared::safefs::{self, FilePerms, SafeFsError};
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// setuid, setgid and sticky bits.
const SETID_BITS: u32 = 0o7000;
/// Mode of a new file when the request gives none.
const NEW_FILE_MODE: u32 = 0o644;

/// Where a requested path lives: the directory to open below the root, in two steps (the managed
/// prefix, or its parent when the prefix is a file, then the rest), and the file name.
#[derive(Debug)]
struct Location {
    root: PathBuf,
    /// Relative to the root: the managed prefix (or its parent when the path is the prefix).
    anchor: PathBuf,
    /// Relative to the anchor: the file's directory.
    below: PathBuf,
    name: OsString,
}

impl Location {
    fn new(ctx: &Ctx, path: &str) -> Result<Self, OpError> {
        let node_path = check_managed(path, &ctx.managed)?;
        // The most specific managed prefix the path is under.
        let prefix = ctx
            .managed
            .iter()
            .filter_map(|m| normalize(m).ok())
            .filter(|m| m != Path::new("/") && node_path.starts_with(m))
            .max_by_key(|m| m.components().count())
            .ok_or_else(|| PathError::NotManaged(path.into()))?;
        let name = node_path
            .file_name()
            .ok_or_else(|| OpError(format!("{path}: has no file name")))?
            .to_os_string();
        let dir = node_path
            .parent()
            .ok_or_else(|| OpError(format!("{path}: has no parent directory")))?;
        let anchor = if node_path == prefix {
            dir.to_path_buf()
        } else {
            prefix
        };
        let below = dir
            .strip_prefix(&anchor)
            .map_err(|_| PathError::NotManaged(path.into()))?
            .to_path_buf();
        let anchor = anchor
            .strip_prefix("/")
            .map_err(|_| PathError::NotAbsolute(path.into()))?
            .to_path_buf();
        Ok(Self {
            root: ctx.root().clone(),
            anchor,
            below,
            name,
        })
    }

    /// The handle of the file's directory; with `create`, missing directories are made.
    fn open_dir(&self, create: bool) -> Result<OwnedFd, SafeFsError> {
        let root = safefs::open_dir(&self.root)?;
        let anchor = safefs::open_dir_beneath(&root, &self.anchor, create)?;
        safefs::open_dir_beneath(&anchor, &self.below, create)
    }
}

fn fs_err(path: &str, e: SafeFsError) -> OpError {
    match e {
        SafeFsError::Chown {
            uid,
            gid,
            errno: nix::errno::Errno::EPERM,
            ..
        } => {
            let me = nix::unistd::geteuid();
            OpError(format!(
                "{path}: cannot set owner {uid} and group {gid}: operation not permitted \
                 (the agent runs as uid {me}{})",
                if me.is_root() { "" } else { ", not root" }
            ))
        }
        e => OpError(format!("{path}: {e}")),
    }
}

async fn blocking<T: Send + 'static>(
    path: &str,
    f: impl FnOnce() -> Result<T, OpError> + Send + 'static,
) -> Result<T, OpError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OpError(format!("{path}: {e}")))?
}

pub async fn read(ctx: &Ctx, path: &str, log: &mut Log) -> Result<ReadFileOutput, OpError> {
    let loc = Location::new(ctx, path)?;
    let p = path.to_string();
    let (content, st) = blocking(path, move || {
        let dir = loc.open_dir(false).map_err(|e| fs_err(&p, e))?;
        safefs::read_regular(&dir, &loc.name, MAX_FILE_BYTES as u64).map_err(|e| fs_err(&p, e))
    })
    .await?;
    // The digest travels next to the content only (which is never persisted); it is not logged.
    log.line(format!("read {path} ({} bytes)", content.len()));
    Ok(ReadFileOutput {
        size: content.len() as u64,
        mode: st.st_mode & 0o7777,
        sha256: hex::encode(Sha256::digest(&content)),
        content,
    })
}

/// What a write did, for the log line and the output.
struct Written {
    changed: bool,
    perms: FilePerms,
}

fn refuse_setid(path: &str, mode: u32, kept: bool) -> Result<(), OpError> {
    if mode & SETID_BITS == 0 {
        return Ok(());
    }
    Err(OpError(if kept {
        format!(
            "{path}: the existing file has mode {mode:04o} (setuid, setgid or sticky bits); \
             allow them explicitly to keep them, or give a mode without them"
        )
    } else {
        format!(
            "{path}: mode {mode:04o} has setuid, setgid or sticky bits; they are refused unless \
             allowed explicitly"
        )
    }))
}

pub async fn write(ctx: &Ctx, req: WriteFile, log: &mut Log) -> Result<WriteFileOutput, OpError> {
    let WriteFile {
        path,
        content,
        mode,
        owner,
        group,
        allow_setid,
    } = req;
    let path = path.as_str();
    if content.len() > MAX_FILE_BYTES {
        return Err(OpError(format!(
            "content is {} bytes; the limit is {MAX_FILE_BYTES}",
            content.len()
        )));
    }
    if mode > 0o7777 {
        return Err(OpError(format!(
            "{path}: mode {mode:o} is not a permission mode (07777 at most)"
        )));
    }
    if !allow_setid {
        refuse_setid(path, mode, false)?;
    }
    let uid = ids::resolve(ctx.root(), Db::Passwd, &owner)?;
    let gid = ids::resolve(ctx.root(), Db::Group, &group)?;
    let loc = Location::new(ctx, path)?;
    let size = content.len() as u64;
    let p = path.to_string();
    let done = blocking(path, move || {
        let err = |e| fs_err(&p, e);
        let dir = loc.open_dir(true).map_err(err)?;
        // What is there now, through a handle (a link, FIFO or device is refused here). Its
        // content is read only when it could be equal, to tell whether anything changes.
        let old = match safefs::stat_entry(&dir, &loc.name).map_err(err)? {
            None => None,
            Some(_) => {
                let (file, st) = safefs::open_regular(&dir, &loc.name).map_err(err)?;
                let same_content = if u64::try_from(st.st_size).is_ok_and(|s| s == size) {
                    match safefs::read_to_limit(file, &st, &loc.name, size) {
                        Ok(c) => c == content,
                        Err(SafeFsError::TooLarge { .. }) => false,
                        Err(e) => return Err(err(e)),
                    }
                } else {
                    false
                };
                Some((same_content, st))
            }
        };
        let old_stat = old.as_ref().map(|(_, st)| st);
        let perms = FilePerms {
            mode: match (mode, old_stat) {
                (0, Some(st)) => st.st_mode & 0o7777,
                (0, None) => NEW_FILE_MODE,
                (m, _) => m,
            },
            uid: uid.or(old_stat.map(|st| st.st_uid)),
            gid: gid.or(old_stat.map(|st| st.st_gid)),
        };
        if !allow_setid {
            refuse_setid(&p, perms.mode, mode == 0)?;
        }
        let unchanged = old.as_ref().is_some_and(|(same_content, st)| {
            *same_content
                && st.st_mode & 0o7777 == perms.mode
                && Some(st.st_uid) == perms.uid
                && Some(st.st_gid) == perms.gid
        });
        if unchanged {
            return Ok(Written {
                changed: false,
                perms,
            });
        }
        let me = nix::unistd::geteuid();
        if let Some(u) = perms.uid.filter(|u| !me.is_root() && *u != me.as_raw()) {
            return Err(OpError(format!(
                "{p}: the file must be owned by uid {u}, and only root can give a file to \
                 another user (the agent runs as uid {me}, not root)"
            )));
        }
        safefs::replace_file(&dir, &loc.name, &content, perms).map_err(err)?;
        Ok(Written {
            changed: true,
            perms,
        })
    })
    .await?;
    let show = |id: Option<u32>| id.map_or("-".to_string(), |i| i.to_string());
    let owner = match (done.perms.uid, done.perms.gid) {
        (None, None) => String::new(),
        (u, g) => format!(", owner {}:{}", show(u), show(g)),
    };
    log.line(format!(
        "{} {path} ({size} bytes, mode {:04o}{owner})",
        if done.changed { "wrote" } else { "unchanged" },
        done.perms.mode,
    ));
    Ok(WriteFileOutput {
        size,
        changed: done.changed,
    })
}

#[cfg(test)]
mod tests {
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
    fn within<T: Send + 'static>(
        secs: u64,
        what: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
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
                        renameat2(AT_FDCWD, &a, AT_FDCWD, &b, RenameFlags::RENAME_EXCHANGE)
                            .unwrap();
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
}
