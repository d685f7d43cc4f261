//! `RestoreNode`: a backup the controller holds, put back onto this node's stopped directory.
//!
//! Refused while anything answers on the directory's LDAPS port (the workflow stops the
//! directory first). The archive is fetched on the session's connection into the stage and
//! checked (size, SHA-256), extracted with the container's `tar`, and every part checked against
//! the manifest, before anything is touched. Then each base is replaced from its LDIF —
//! OpenLDAP: the base's MDB files moved aside, `slapadd -q -f slapd.conf -b BASE -l FILE`,
//! given the previous files' owner, the old files put back when slapadd fails; OpenDJ:
//! `import-ldif -n BACKEND -l FILE -R REJECTS` (an offline import replaces the backend) — the
//! configuration files are written back (`tar -xpf` at the container's root), and each
//! restored database is searched (exported again and its entries counted, the base entry
//! first): a count that differs from the backup's fails the job.

use super::archive::{self, ARCHIVE, FILES_PART, count_entries, ldif_name};
use super::{
    IMPORT_LDIF, SLAPADD, Stage, check_id, client, export_argv, joined, opendj_backend, slapd_conf,
    tar, wire,
};
use crate::host::Command;
use crate::ops::gluu::{Flavor, Layout};
use crate::ops::replication::{self, Directory, OPENLDAP_ETC};
use crate::ops::{Ctx, Log, OpError, run_checked};
use clustermgr_proto::{
    BackupFetchRequest, BackupPartKind, RestoreNode, RestoreNodeOutput, RestoredBase,
};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEFAULT_PORT: u16 = 1636;
/// The name the previous MDB files take while slapadd runs.
const ASIDE: &str = ".clustermgr-before-restore";
const MDB_FILES: &[&str] = &["data.mdb", "lock.mdb"];

/// Refuses while the directory answers on `host:port`.
pub(crate) async fn refuse_running(req: &RestoreNode) -> Result<(), OpError> {
    let port = match req.directory_port {
        0 => DEFAULT_PORT,
        p => u16::try_from(p).map_err(|_| OpError(format!("port {p} is not a TCP port")))?,
    };
    let host = if req.directory_host.is_empty() {
        "127.0.0.1"
    } else {
        req.directory_host.as_str()
    };
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let tried = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(addr.as_str()),
    )
    .await;
    if let Ok(Ok(_)) = tried {
        return Err(OpError(format!(
            "the directory still answers on {addr}: a restore needs it stopped \
             (the backup-restore workflow stops it first)"
        )));
    }
    Ok(())
}

/// Receives the archive into `dest`, checking its size and SHA-256.
async fn fetch(ctx: &Ctx, req: &RestoreNode, dest: &Path) -> Result<(), OpError> {
    let channel = ctx
        .channel
        .clone()
        .ok_or_else(|| OpError("no session to the controller to fetch the backup on".into()))?;
    let broke = |s: tonic::Status| OpError(format!("the transfer broke: {}", s.message()));
    let mut parts = client(channel)
        .fetch(BackupFetchRequest {
            backup_id: req.backup_id.clone(),
        })
        .await
        .map_err(broke)?
        .into_inner();
    let mut out = super::create_staged(dest)
        .map_err(|e| OpError(format!("cannot create {}: {e}", dest.display())))?;
    let mut hash = Sha256::new();
    let mut got = 0u64;
    while let Some(p) = parts.message().await.map_err(broke)? {
        got += p.data.len() as u64;
        if got > req.size {
            return Err(OpError(format!(
                "the controller sent more than the {} bytes announced",
                req.size
            )));
        }
        hash.update(&p.data);
        tokio::task::block_in_place(|| out.write_all(&p.data))
            .map_err(|e| OpError(format!("cannot write {}: {e}", dest.display())))?;
    }
    tokio::task::block_in_place(|| out.sync_all())
        .map_err(|e| OpError(format!("cannot write {}: {e}", dest.display())))?;
    if got != req.size || hex::encode(hash.finalize()) != req.sha256 {
        return Err(OpError(
            "the received archive is not the backup asked for (size or SHA-256); nothing was \
             restored"
                .into(),
        ));
    }
    Ok(())
}

/// The MDB directory (host path) of each suffix in slapd.conf.
pub fn mdb_directories(layout: &Layout, conf: &str) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut suffix: Option<String> = None;
    for line in conf.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("database") => suffix = None,
            Some("suffix") => {
                suffix = Some(
                    words
                        .collect::<Vec<_>>()
                        .join(" ")
                        .trim_matches('"')
                        .to_string(),
                );
            }
            Some("directory") => {
                if let (Some(s), Some(d)) = (suffix.clone(), words.next()) {
                    let d = d.trim_matches('"');
                    // A nochroot install's paths are host paths already.
                    let host = if layout.flavor == Flavor::NoChroot
                        && Path::new(d).starts_with(&layout.base)
                    {
                        PathBuf::from(d)
                    } else {
                        layout.host_path(d)
                    };
                    out.push((s.to_ascii_lowercase(), host));
                }
            }
            _ => {}
        }
    }
    out
}

/// The previous MDB files of a base, moved aside while slapadd runs; put back on drop unless
/// the load succeeded.
struct Aside {
    dir: PathBuf,
    moved: Vec<&'static str>,
    owner: Option<(u32, u32)>,
    done: bool,
}

impl Aside {
    fn take(dir: &Path) -> Result<Self, OpError> {
        use std::os::unix::fs::MetadataExt;
        let mut a = Self {
            dir: dir.to_path_buf(),
            moved: Vec::new(),
            owner: None,
            done: false,
        };
        for f in MDB_FILES {
            let p = dir.join(f);
            if let Ok(md) = std::fs::symlink_metadata(&p) {
                a.owner.get_or_insert((md.uid(), md.gid()));
                std::fs::rename(&p, dir.join(format!("{f}{ASIDE}")))
                    .map_err(|e| OpError(format!("cannot move {} aside: {e}", p.display())))?;
                a.moved.push(f);
            }
        }
        Ok(a)
    }

    /// The load succeeded: the new files get the old owner, the old files go.
    fn commit(mut self) -> Result<(), OpError> {
        if let Some((uid, gid)) = self.owner
            && nix::unistd::geteuid().is_root()
        {
            for f in MDB_FILES {
                let p = self.dir.join(f);
                if p.exists() {
                    std::os::unix::fs::chown(&p, Some(uid), Some(gid))
                        .map_err(|e| OpError(format!("cannot chown {}: {e}", p.display())))?;
                }
            }
        }
        for f in &self.moved {
            let _ = std::fs::remove_file(self.dir.join(format!("{f}{ASIDE}")));
        }
        self.done = true;
        Ok(())
    }
}

impl Drop for Aside {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        for f in MDB_FILES {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
        for f in &self.moved {
            let _ = std::fs::rename(self.dir.join(format!("{f}{ASIDE}")), self.dir.join(f));
        }
    }
}

/// Replaces `base`'s database from the LDIF `file` (inside Gluu).
async fn load(
    ctx: &Ctx,
    layout: &Layout,
    dir: Directory,
    base: &str,
    stage: &Stage,
    log: &mut Log,
) -> Result<(), OpError> {
    let file = stage.seen(&ldif_name(base));
    match dir {
        Directory::OpenLdap => {
            let conf_path = layout.host_path(&format!("{OPENLDAP_ETC}/slapd.conf"));
            let conf = std::fs::read_to_string(&conf_path)
                .map_err(|e| OpError(format!("cannot read {}: {e}", conf_path.display())))?;
            let (_, db) = mdb_directories(layout, &conf)
                .into_iter()
                .find(|(s, _)| s.eq_ignore_ascii_case(base))
                .ok_or_else(|| OpError(format!("slapd.conf has no database for {base}")))?;
            let aside = Aside::take(&db)?;
            let argv = layout.exec(
                SLAPADD,
                &["-q", "-f", &slapd_conf(layout), "-b", base, "-l", &file],
            )?;
            run_checked(&ctx.host, &Command::new(argv), log, "slapadd").await?;
            aside.commit()
        }
        Directory::OpenDj => {
            let rejects = stage.seen(&format!("{base}.rejects"));
            let argv = layout.exec(
                IMPORT_LDIF,
                &["-n", opendj_backend(base)?, "-l", &file, "-R", &rejects],
            )?;
            run_checked(&ctx.host, &Command::new(argv), log, "import-ldif").await?;
            Ok(())
        }
    }
}

pub async fn restore(
    ctx: &Ctx,
    req: RestoreNode,
    log: &mut Log,
) -> Result<RestoreNodeOutput, OpError> {
    check_id(&req.backup_id)?;
    if !crate::ops::push::is_sha256(&req.sha256) {
        return Err(OpError(format!("{:?} is not a SHA-256", req.sha256)));
    }
    let layout = Layout::detect(&ctx.host)?;
    let dir = replication::detect(&layout)?;
    // Starting a stopped machine would start its directory too: the machine must run, with
    // the directory alone stopped.
    if replication::machine_stopped(&layout) {
        return Err(OpError(format!(
            "{}; a restore needs it running with its directory stopped",
            replication::MACHINE_STOPPED
        )));
    }
    refuse_running(&req).await?;
    let stage = Stage::create(&layout, &format!("restore-{}", req.backup_id))?;
    log.line(format!(
        "fetching backup {} ({} bytes)",
        req.backup_id, req.size
    ));
    fetch(ctx, &req, &stage.host(ARCHIVE)).await?;
    from_archive(ctx, &layout, dir, &stage, &req.backup_id, log).await
}

/// The restore of the archive fetched into `stage` ([`ARCHIVE`]): extracted, every part checked
/// against the manifest, then restored.
pub(crate) async fn from_archive(
    ctx: &Ctx,
    layout: &Layout,
    dir: Directory,
    stage: &Stage,
    backup_id: &str,
    log: &mut Log,
) -> Result<RestoreNodeOutput, OpError> {
    // Listed by tar first: only plain regular files are extracted (a link named like a part,
    // or like a file a later step writes, would redirect that write).
    members_checked(ctx, layout, stage, ARCHIVE, log, archive::outer_member_ok).await?;
    let args = ["-C", &stage.seen(""), "-xf", &stage.seen(ARCHIVE)].map(String::from);
    tar(ctx, layout, &args, log, "tar of the archive").await?;
    let st = stage.host("");
    let manifest = joined(tokio::task::spawn_blocking(move || archive::read_checked(&st)).await)?;
    restore_checked(ctx, layout, dir, stage, manifest, backup_id, log).await
}

/// The restore once the archive is extracted in `stage` and its manifest checked.
async fn restore_checked(
    ctx: &Ctx,
    layout: &Layout,
    dir: Directory,
    stage: &Stage,
    manifest: clustermgr_proto::BackupManifest,
    backup_id: &str,
    log: &mut Log,
) -> Result<RestoreNodeOutput, OpError> {
    if manifest.directory != wire(dir) as i32 {
        return Err(OpError(format!(
            "the backup was made from another directory server than this node's {}",
            dir.name()
        )));
    }
    let ldifs: Vec<_> = manifest
        .parts
        .iter()
        .filter(|p| p.kind == BackupPartKind::Ldif as i32)
        .cloned()
        .collect();
    if ldifs.is_empty() {
        return Err(OpError("the backup holds no LDIF".into()));
    }
    for p in &ldifs {
        if p.name != ldif_name(&p.base) {
            return Err(OpError(format!(
                "the manifest names {:?} for {}",
                p.name, p.base
            )));
        }
        log.line(format!("restoring {} ({} entries)", p.base, p.entries));
        load(ctx, layout, dir, &p.base, stage, log).await?;
    }
    let files = write_back_files(ctx, layout, stage, &manifest, log).await?;
    let bases = verify_bases(ctx, layout, dir, stage, &ldifs, log).await?;
    Ok(RestoreNodeOutput {
        backup_id: backup_id.to_string(),
        directory: wire(dir) as i32,
        bases,
        files,
    })
}

/// Writes the configuration files of the archive back (their listing checked first); returns
/// how many the manifest counts (0: the archive holds none).
async fn write_back_files(
    ctx: &Ctx,
    layout: &Layout,
    stage: &Stage,
    manifest: &clustermgr_proto::BackupManifest,
    log: &mut Log,
) -> Result<u64, OpError> {
    let mut files = 0;
    if let Some(f) = manifest
        .parts
        .iter()
        .find(|p| p.kind == BackupPartKind::Files as i32)
    {
        if f.name != FILES_PART {
            return Err(OpError(format!(
                "the manifest names {:?} for the files",
                f.name
            )));
        }
        // Only regular files and directories under the two configuration directories: an
        // archive from a compromised node writes nothing else on this one.
        members_checked(
            ctx,
            layout,
            stage,
            FILES_PART,
            log,
            archive::files_member_ok,
        )
        .await?;
        let args = ["-C", &layout.seen("/"), "-xpf", &stage.seen(FILES_PART)].map(String::from);
        tar(ctx, layout, &args, log, "tar of the configuration").await?;
        files = f.entries;
        log.line(format!(
            "wrote back {files} files of {}",
            manifest.paths.join(", ")
        ));
    }
    Ok(files)
}

/// The search: each restored base read back from the database, its entries counted against
/// the backup's.
async fn verify_bases(
    ctx: &Ctx,
    layout: &Layout,
    dir: Directory,
    stage: &Stage,
    ldifs: &[clustermgr_proto::BackupPartInfo],
    log: &mut Log,
) -> Result<Vec<RestoredBase>, OpError> {
    let mut bases = Vec::new();
    for p in ldifs {
        let name = format!("verify-{}", ldif_name(&p.base));
        let argv = export_argv(layout, dir, &p.base, &stage.seen(&name))?;
        run_checked(
            &ctx.host,
            &Command::new(argv),
            log,
            "the search of the restored base",
        )
        .await?;
        let (file, base) = (stage.host(&name), p.base.clone());
        let (entries, base_entry) =
            joined(tokio::task::spawn_blocking(move || count_entries(&file, &base)).await)?;
        log.line(format!(
            "{}: {entries} entries found (the backup holds {}), base entry {}",
            p.base,
            p.entries,
            if base_entry { "present" } else { "MISSING" }
        ));
        if entries != p.entries || !base_entry {
            return Err(OpError(format!(
                "the restored {} holds {entries} entries{}, the backup {}",
                p.base,
                if base_entry {
                    ""
                } else {
                    " without its base entry"
                },
                p.entries
            )));
        }
        bases.push(RestoredBase {
            base: p.base.clone(),
            expected_entries: p.entries,
            entries,
            base_entry,
        });
    }
    Ok(bases)
}

/// Lists `name` (a tar in the stage) with tar itself into a file of the stage, and refuses the
/// restore if any member fails `ok` (before anything is extracted from it).
async fn members_checked(
    ctx: &Ctx,
    layout: &Layout,
    stage: &Stage,
    name: &str,
    log: &mut Log,
    ok: fn(char, &str) -> bool,
) -> Result<(), OpError> {
    let listing = format!("{name}.members");
    let args = [
        "--index-file",
        &stage.seen(&listing),
        "-tvf",
        &stage.seen(name),
    ]
    .map(String::from);
    tar(ctx, layout, &args, log, "the listing of the archive").await?;
    let path = stage.host(&listing);
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut super::open_staged(&path)
            .map_err(|e| OpError(format!("cannot read {}: {e}", path.display())))?,
        &mut text,
    )
    .map_err(|e| OpError(format!("cannot read {}: {e}", path.display())))?;
    for (kind, member) in archive::listed(&text)? {
        if !ok(kind, &member) {
            return Err(OpError(format!(
                "{name} holds {member:?} (type {kind:?}), which a restore does not write: refused, nothing changed"
            )));
        }
    }
    Ok(())
}
