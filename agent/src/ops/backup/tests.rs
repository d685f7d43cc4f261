use super::archive::{ARCHIVE, MANIFEST};
use super::restore::{from_archive, mdb_directories, refuse_running};
use super::*;
use crate::host::{Host, PackageFormat, PackageMode, Recorder, Runner};
use crate::ops::gluu::Flavor;
use crate::ops::gluu::layout::fixture::{install, start_machine};
use crate::ops::tests::{ctx_with, log, missing_prerequisite};
use clustermgr_proto::{BackupPartKind, RestoreNode};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

const SECRET: &str = "bindPassword: Sup3r-s3cret-backup-pw";

fn host(root: &Path, runner: Runner) -> Host {
    let proc = root.join("proc");
    std::fs::create_dir_all(&proc).unwrap();
    Host {
        root: root.to_path_buf(),
        packages: PackageMode::System,
        format: Some(PackageFormat::Deb),
        runner,
        proc,
    }
}

/// A nochroot Gluu root whose directory is a real OpenLDAP configuration (two MDB databases,
/// the host's slapd tools linked in where the agent runs them), with a configuration holding a
/// secret.
fn openldap_root(root: &Path) -> String {
    install(root, Flavor::NoChroot);
    let etc = root.join("opt/openldap/etc");
    std::fs::create_dir_all(&etc).unwrap();
    let mut conf = String::new();
    for s in ["core", "cosine", "inetorgperson"] {
        conf.push_str(&format!("include /etc/ldap/schema/{s}.schema\n"));
    }
    conf.push_str("modulepath /usr/lib/ldap\nmoduleload back_mdb\n");
    for base in ["gluu", "site"] {
        let data = root.join(format!("opt/gluu/data/{base}"));
        std::fs::create_dir_all(&data).unwrap();
        conf.push_str(&format!(
            "\ndatabase mdb\nsuffix \"o={base}\"\nrootdn \"cn=directory manager,o={base}\"\ndirectory {}\nmaxsize 16777216\n",
            data.display()
        ));
    }
    std::fs::write(etc.join("slapd.conf"), &conf).unwrap();
    for (dir, tool) in [
        ("usr/sbin", "slapcat"),
        ("usr/sbin", "slapadd"),
        ("usr/sbin", "slapd"),
        ("bin", "tar"),
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
        std::os::unix::fs::symlink(format!("/{dir}/{tool}"), root.join(dir).join(tool)).unwrap();
    }
    let gluu_conf = root.join("etc/gluu/conf");
    std::fs::create_dir_all(&gluu_conf).unwrap();
    std::fs::write(
        gluu_conf.join("gluu-ldap.properties"),
        format!("{SECRET}\n"),
    )
    .unwrap();
    let certs = root.join("etc/certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("openldap.key"), "-----BEGIN PRIVATE KEY-----\n").unwrap();
    etc.join("slapd.conf").display().to_string()
}

fn ldif(base: &str, people: usize) -> String {
    let name = base.trim_start_matches("o=");
    let mut s = format!("dn: {base}\nobjectClass: top\nobjectClass: organization\no: {name}\n\n");
    for i in 0..people {
        s.push_str(&format!(
            "dn: uid=p{i},{base}\nobjectClass: inetOrgPerson\nuid: p{i}\ncn: Person {i}\nsn: {i}\n\n"
        ));
    }
    s
}

/// Loads LDIF with the real slapadd (test set-up, outside the code under test).
fn slapadd(conf: &str, base: &str, text: &str) {
    let mut c = std::process::Command::new("/usr/sbin/slapadd")
        .args(["-q", "-f", conf, "-b", base])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success());
}

fn prerequisites() -> bool {
    let need = [
        "/usr/sbin/slapcat",
        "/usr/sbin/slapadd",
        "/usr/sbin/slapd",
        "/usr/lib/ldap/back_mdb.so",
        "/etc/ldap/schema/inetorgperson.schema",
        "/bin/tar",
    ];
    if let Some(m) = need.iter().find(|p| !Path::new(p).exists()) {
        missing_prerequisite(&format!("{m} (the slapd and tar packages) is missing"));
        return false;
    }
    true
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// slapd serving the configuration on `port` until dropped.
struct Slapd(std::process::Child);

impl Slapd {
    fn start(conf: &str, port: u16) -> Self {
        let slapd = Self(
            std::process::Command::new("/usr/sbin/slapd")
                .args([
                    "-f",
                    conf,
                    "-h",
                    &format!("ldap://127.0.0.1:{port}/"),
                    "-d",
                    "0",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        // Wait (bounded: 10 s) for it to listen; dropped (stopped and waited for) otherwise.
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return slapd;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("slapd did not listen on {port}");
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

fn restore_req(port: u16) -> RestoreNode {
    RestoreNode {
        backup_id: "b1".into(),
        sha256: "0".repeat(64),
        size: 1,
        directory_host: "127.0.0.1".into(),
        directory_port: port.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_of_a_serving_openldap_restores_onto_the_stopped_directory_and_is_searched() {
    if !prerequisites() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let conf = openldap_root(d.path());
    slapadd(&conf, "o=gluu", &ldif("o=gluu", 3));
    slapadd(&conf, "o=site", &ldif("o=site", 1));
    let ctx = ctx_with(host(d.path(), Runner::Real));
    let layout = Layout::detect(&ctx.host).unwrap();

    // Online: slapd serves while slapcat reads.
    let port = free_port();
    let slapd = Slapd::start(&conf, port);
    let stage = Stage::create(&layout, "b1").unwrap();
    let (l, _rx) = log();
    let mut l = l;
    let (archive, manifest) = make_archive(&ctx, &layout, &stage, &mut l).await.unwrap();
    assert_eq!(manifest.directory, BackupDirectory::Openldap as i32);
    let counts: Vec<(String, u64)> = manifest
        .parts
        .iter()
        .map(|p| (p.name.clone(), p.entries))
        .collect();
    assert_eq!(
        counts,
        [
            ("o=gluu.ldif".to_string(), 4),
            ("o=site.ldif".to_string(), 2),
            ("files.tar".to_string(), 2)
        ]
    );
    assert_eq!(manifest.paths, ["/etc/gluu/conf", "/etc/certs"]);
    assert!(
        manifest
            .parts
            .iter()
            .all(|p| p.sha256.len() == 64 && p.size > 0)
    );
    let bytes = std::fs::read(&archive).unwrap();
    assert!(
        bytes
            .windows(MANIFEST.len())
            .any(|w| w == MANIFEST.as_bytes())
    );

    // A restore is refused while the directory answers.
    let e = refuse_running(&restore_req(port)).await.unwrap_err();
    assert!(e.0.contains("still answers"), "{e}");
    drop(slapd);
    refuse_running(&restore_req(port)).await.unwrap();

    // Changes after the backup: an entry more, the configuration edited.
    slapadd(
        &conf,
        "o=gluu",
        "dn: uid=late,o=gluu\nobjectClass: inetOrgPerson\nuid: late\ncn: Late\nsn: L\n\n",
    );
    let props = d.path().join("etc/gluu/conf/gluu-ldap.properties");
    std::fs::write(&props, "bindPassword: changed\n").unwrap();

    let rstage = Stage::create(&layout, "restore-b1").unwrap();
    std::fs::copy(&archive, rstage.host(ARCHIVE)).unwrap();
    drop(stage);
    let (mut l, _rx) = log();
    let dir = replication::detect(&layout).unwrap();
    let out = from_archive(&ctx, &layout, dir, &rstage, "b1", &mut l)
        .await
        .unwrap();
    assert_eq!(out.files, 2);
    let found: Vec<(String, u64, u64, bool)> = out
        .bases
        .iter()
        .map(|b| (b.base.clone(), b.expected_entries, b.entries, b.base_entry))
        .collect();
    assert_eq!(
        found,
        [
            ("o=gluu".to_string(), 4, 4, true),
            ("o=site".to_string(), 2, 2, true)
        ]
    );
    assert_eq!(
        std::fs::read_to_string(&props).unwrap(),
        format!("{SECRET}\n")
    );
    // Nothing moved aside is left, and the restored directory serves again.
    let data = d.path().join("opt/gluu/data/gluu");
    let mut names: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["data.mdb", "lock.mdb"]);
    let _slapd = Slapd::start(&conf, port);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_whose_part_changed_restores_nothing() {
    if !prerequisites() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let conf = openldap_root(d.path());
    slapadd(&conf, "o=gluu", &ldif("o=gluu", 1));
    slapadd(&conf, "o=site", &ldif("o=site", 0));
    let ctx = ctx_with(host(d.path(), Runner::Real));
    let layout = Layout::detect(&ctx.host).unwrap();
    let stage = Stage::create(&layout, "b2").unwrap();
    let (mut l, _rx) = log();
    make_archive(&ctx, &layout, &stage, &mut l).await.unwrap();
    // A part altered after the manifest was written (the archive made again around it).
    std::fs::write(stage.host("o=gluu.ldif"), ldif("o=gluu", 5)).unwrap();
    std::fs::remove_file(stage.host(ARCHIVE)).unwrap();
    let status = std::process::Command::new("/bin/tar")
        .current_dir(stage.host(""))
        .args([
            "-cf",
            ARCHIVE,
            MANIFEST,
            "o=gluu.ldif",
            "o=site.ldif",
            "files.tar",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let before = std::fs::read(d.path().join("opt/gluu/data/gluu/data.mdb")).unwrap();
    let dir = replication::detect(&layout).unwrap();
    let (mut l, _rx) = log();
    let e = from_archive(&ctx, &layout, dir, &stage, "b2", &mut l)
        .await
        .unwrap_err();
    assert!(e.0.contains("not what its manifest says"), "{e}");
    assert_eq!(
        std::fs::read(d.path().join("opt/gluu/data/gluu/data.mdb")).unwrap(),
        before
    );
}

#[test]
fn the_tools_run_inside_the_machine_by_argv() {
    let d = tempfile::tempdir().unwrap();
    install(d.path(), Flavor::Machine);
    let proc = d.path().join("proc");
    std::fs::create_dir_all(&proc).unwrap();
    start_machine(d.path(), &proc, 4242);
    let rec = Arc::new(Recorder::default());
    let h = host(d.path(), Runner::Recording(rec));
    let layout = Layout::detect(&h).unwrap();
    let nsenter =
        |args: &[&str]| crate::ops::gluu::layout::fixture::nsenter(4242, args[0], &args[1..]);
    assert_eq!(
        export_argv(&layout, Directory::OpenLdap, "o=site", "/x/o=site.ldif").unwrap(),
        nsenter(&[
            SLAPCAT,
            "-f",
            "/opt/openldap/etc/slapd.conf",
            "-b",
            "o=site",
            "-l",
            "/x/o=site.ldif"
        ])
    );
    assert_eq!(
        export_argv(&layout, Directory::OpenDj, "o=gluu", "/x/o=gluu.ldif").unwrap(),
        nsenter(&[EXPORT_LDIF, "-n", "userRoot", "-l", "/x/o=gluu.ldif"])
    );
    assert!(export_argv(&layout, Directory::OpenDj, "o=metric", "/x").is_err());
    let stage = Stage::create(&layout, "b3").unwrap();
    assert_eq!(stage.seen("a"), "/opt/gluu/clustermgr-backup/b3/a");
    assert!(
        d.path()
            .join("opt/gluu-server/opt/gluu/clustermgr-backup/b3")
            .is_dir()
    );
    drop(stage);
    assert!(
        !d.path()
            .join("opt/gluu-server/opt/gluu/clustermgr-backup/b3")
            .exists()
    );
    // Inside a machine, slapd.conf's directories are under the container.
    let dirs = mdb_directories(
        &layout,
        "database mdb\nsuffix \"o=gluu\"\ndirectory /opt/gluu/data/gluu\ndatabase mdb\nsuffix o=site\ndirectory /opt/gluu/data/site\n",
    );
    assert_eq!(
        dirs,
        [
            (
                "o=gluu".to_string(),
                d.path().join("opt/gluu-server/opt/gluu/data/gluu")
            ),
            (
                "o=site".to_string(),
                d.path().join("opt/gluu-server/opt/gluu/data/site")
            )
        ]
    );
    for bad in ["", "../x", "B1", &"a".repeat(65)] {
        assert!(check_id(bad).is_err(), "{bad}");
    }
    let _ = BackupPartKind::Ldif;
}

/// The controller's side of the transfer, in memory: what was uploaded, served back to a fetch.
#[derive(Default, Clone)]
struct FakeController {
    held: Arc<std::sync::Mutex<Vec<u8>>>,
    parts: Arc<std::sync::atomic::AtomicUsize>,
}

#[tonic::async_trait]
impl clustermgr_proto::backup_transfer_server::BackupTransfer for FakeController {
    async fn upload(
        &self,
        req: tonic::Request<tonic::Streaming<clustermgr_proto::BackupChunk>>,
    ) -> Result<tonic::Response<clustermgr_proto::BackupUploaded>, tonic::Status> {
        use sha2::Digest as _;
        let mut parts = req.into_inner();
        let head = parts.message().await?.unwrap();
        let mut data = Vec::new();
        while let Some(p) = parts.message().await? {
            assert!(p.data.len() <= clustermgr_shared::fsrep::CHUNK_BYTES);
            self.parts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            data.extend(p.data);
        }
        let sha = hex::encode(sha2::Sha256::digest(&data));
        if sha != head.sha256 || data.len() as u64 != head.size {
            return Err(tonic::Status::data_loss("does not add up"));
        }
        *self.held.lock().unwrap() = data;
        Ok(tonic::Response::new(clustermgr_proto::BackupUploaded {
            sha256: sha,
            size: head.size,
        }))
    }

    type FetchStream = tokio_stream::Iter<std::vec::IntoIter<Result<BackupChunk, tonic::Status>>>;

    async fn fetch(
        &self,
        _req: tonic::Request<clustermgr_proto::BackupFetchRequest>,
    ) -> Result<tonic::Response<Self::FetchStream>, tonic::Status> {
        let held = self.held.lock().unwrap().clone();
        let parts: Vec<Result<BackupChunk, tonic::Status>> = held
            .chunks(100_000)
            .map(|c| {
                Ok(BackupChunk {
                    data: c.to_vec(),
                    ..Default::default()
                })
            })
            .collect();
        Ok(tonic::Response::new(tokio_stream::iter(parts)))
    }
}

/// Serves `fake` on a loopback port; the channel the agent's operations use.
async fn serve(fake: FakeController) -> tonic::transport::Channel {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(clustermgr_proto::backup_transfer_server::BackupTransferServer::new(fake))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_archive_goes_up_in_parts_and_comes_back_for_the_restore() {
    if !prerequisites() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let conf = openldap_root(d.path());
    slapadd(&conf, "o=gluu", &ldif("o=gluu", 2));
    slapadd(&conf, "o=site", &ldif("o=site", 0));
    // A configuration of several parts' size (the archive travels in parts of 1 MiB).
    let big: Vec<u8> = (0..5u32 << 19).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(d.path().join("etc/certs/big.jks"), &big).unwrap();
    let fake = FakeController::default();
    let mut ctx = ctx_with(host(d.path(), Runner::Real));
    ctx.channel = Some(serve(fake.clone()).await);

    let (mut l, _rx) = log();
    let out = backup(
        &ctx,
        BackupNode {
            backup_id: "b9".into(),
        },
        &mut l,
    )
    .await
    .unwrap();
    let held = fake.held.lock().unwrap().clone();
    use sha2::Digest as _;
    assert_eq!(out.sha256, hex::encode(sha2::Sha256::digest(&held)));
    assert_eq!(out.size, held.len() as u64);
    assert_eq!(out.manifest.unwrap().parts.len(), 3);
    assert_eq!(
        fake.parts.load(std::sync::atomic::Ordering::Relaxed),
        held.len().div_ceil(clustermgr_shared::fsrep::CHUNK_BYTES)
    );
    assert!(held.len() > 2 * clustermgr_shared::fsrep::CHUNK_BYTES);
    // The stage is gone once the job ends.
    assert!(!d.path().join("opt/gluu/clustermgr-backup/b9").exists());

    slapadd(
        &conf,
        "o=gluu",
        "dn: uid=late,o=gluu\nobjectClass: inetOrgPerson\nuid: late\ncn: Late\nsn: L\n\n",
    );
    let req = |sha256: String| RestoreNode {
        backup_id: "b9".into(),
        sha256,
        size: out.size,
        directory_host: "127.0.0.1".into(),
        directory_port: free_port().into(),
    };
    // Not the archive asked for: nothing restored.
    let (mut l, _rx) = log();
    let e = restore(&ctx, req("f".repeat(64)), &mut l)
        .await
        .unwrap_err();
    assert!(e.0.contains("not the backup asked for"), "{e}");
    let (mut l, _rx) = log();
    let back = restore(&ctx, req(out.sha256.clone()), &mut l)
        .await
        .unwrap();
    assert_eq!(
        back.bases
            .iter()
            .map(|b| (b.base.as_str(), b.entries))
            .collect::<Vec<_>>(),
        [("o=gluu", 3), ("o=site", 1)]
    );
    assert_eq!(
        std::fs::read(d.path().join("etc/certs/big.jks")).unwrap(),
        big
    );
}

#[tokio::test]
async fn a_restore_on_a_stopped_machine_starts_nothing() {
    // Starting the machine would start its directory with it.
    let d = tempfile::tempdir().unwrap();
    install(d.path(), Flavor::Machine);
    let etc = d.path().join("opt/gluu-server/opt/openldap/etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("slapd.conf"), "database mdb\n").unwrap();
    let rec = Arc::new(Recorder::default());
    let ctx = ctx_with(host(d.path(), Runner::Recording(rec.clone())));
    let mut req = restore_req(free_port());
    req.sha256 = "a".repeat(64);
    let (mut l, _rx) = log();
    let e = restore(&ctx, req, &mut l).await.unwrap_err();
    assert!(e.0.contains("machine is stopped"), "{e}");
    assert!(rec.argvs().is_empty());
}

/// tar's own verbose listing, parsed; members a restore must not write are refused.
#[test]
fn listings_are_read_and_only_plain_members_pass() {
    let listing = "-rw-r--r-- root/root       812 2026-12-07 21:00 manifest.pb\n\
                   -rw------- root/root   1048576 2026-12-07 21:00 o=gluu.ldif\n\
                   drwxr-xr-x root/root         0 2026-12-07 21:00 etc/gluu/conf/\n\
                   -rw-r----- 1000/1000        64 2026-12-07 21:00 etc/gluu/conf/my file\n\
                   lrwxrwxrwx root/root         0 2026-12-07 21:00 verify-o=gluu.ldif -> /etc/shadow\n";
    let m = archive::listed(listing).unwrap();
    assert_eq!(m[0], ('-', "manifest.pb".to_string()));
    assert_eq!(m[3], ('-', "etc/gluu/conf/my file".to_string()));
    assert_eq!(m[4].0, 'l');
    assert!(archive::outer_member_ok('-', "o=gluu.ldif"));
    assert!(!archive::outer_member_ok('l', "verify-o=gluu.ldif"));
    assert!(!archive::outer_member_ok('-', "etc/passwd"));
    assert!(!archive::outer_member_ok('h', "files.tar"));
    assert!(archive::files_member_ok('d', "etc/gluu/conf/"));
    assert!(archive::files_member_ok('-', "etc/certs/httpd.crt"));
    for (k, n) in [
        ('-', "etc/cron.d/x"),
        ('-', "root/.ssh/authorized_keys"),
        ('-', "/etc/gluu/conf/x"),
        ('-', "etc/gluu/conf/../../etc/shadow"),
        ('l', "etc/gluu/conf/link"),
        ('h', "etc/certs/h"),
        ('c', "etc/certs/dev"),
        ('-', "etc/gluu/confx"),
    ] {
        assert!(!archive::files_member_ok(k, n), "{k} {n}");
    }
    assert!(archive::listed("-rw-r--r-- root/root 1 2026-12-07 21:00 a\\nb\n").is_err());
}

/// A link planted where the stage goes (inside Gluu, pointing at a host directory) is refused:
/// nothing is created, cleared or removed through it.
#[test]
fn the_stage_does_not_follow_a_link_planted_inside_gluu() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    install(&root, Flavor::NoChroot);
    let h = host(&root, Runner::Recording(Arc::new(Recorder::default())));
    let layout = Layout::detect(&h).unwrap();
    let victim = d.path().join("victim");
    std::fs::create_dir_all(victim.join("b1")).unwrap();
    std::fs::write(victim.join("b1/keep"), "host file").unwrap();
    // The stage's directory a link to a host directory: followed, the job's directory would
    // be victim/b1 (cleared first, then removed).
    let stage = root.join(&STAGE[1..]);
    std::fs::create_dir_all(stage.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&victim, &stage).unwrap();
    let e = Stage::create(&layout, "b1")
        .err()
        .expect("a link was followed");
    assert!(e.0.contains("symbolic link"), "{}", e.0);
    assert_eq!(
        std::fs::read_to_string(victim.join("b1/keep")).unwrap(),
        "host file"
    );
    // The stage's directory is real, but the job's own name is a link: only the link goes.
    std::fs::remove_file(&stage).unwrap();
    std::fs::create_dir(&stage).unwrap();
    std::os::unix::fs::symlink(victim.join("b1"), stage.join("b1")).unwrap();
    let s = Stage::create(&layout, "b1").unwrap();
    std::fs::write(s.host("x"), "staged").unwrap();
    assert!(stage.join("b1/x").is_file());
    assert!(!victim.join("b1/x").exists());
    // A link planted in the job's directory is neither read nor written through.
    std::os::unix::fs::symlink(victim.join("b1/keep"), stage.join("b1/manifest")).unwrap();
    assert!(open_staged(&s.host("manifest")).is_err());
    assert!(create_staged(&s.host("manifest")).is_err());
    // The job's directory swapped for a link after it was made: the stage still writes into
    // the directory it made.
    std::fs::rename(stage.join("b1"), stage.join("moved")).unwrap();
    std::os::unix::fs::symlink(&victim, stage.join("b1")).unwrap();
    create_staged(&s.host("y")).unwrap();
    assert!(stage.join("moved/y").is_file());
    assert!(!victim.join("y").exists());
    std::fs::remove_file(stage.join("b1")).unwrap();
    std::fs::rename(stage.join("moved"), stage.join("b1")).unwrap();
    drop(s);
    assert!(!stage.join("b1").exists());
    assert_eq!(
        std::fs::read_to_string(victim.join("b1/keep")).unwrap(),
        "host file"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&stage).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);
}
