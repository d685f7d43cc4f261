//! Backups of the node's directory and Gluu configuration (`BackupNode`), and their restore
//! (`RestoreNode`, [`restore`]).
//!
//! Everything runs through the node's Gluu [`Layout`], as the directory toolkit does: the
//! directory's own tools inside Gluu (OpenLDAP: `slapcat -f slapd.conf -b BASE -l FILE`, which
//! reads an MDB database at one transaction while slapd serves; OpenDJ: `export-ldif -n BACKEND
//! -l FILE`, under the backend's shared lock, the commands Gluu's own upgrade scripts run), and
//! the container's `tar` for the configuration (`/etc/gluu/conf`, `/etc/certs`, owners and modes
//! kept) and for the archive. The work happens in a private staging directory inside Gluu
//! ([`STAGE`], 0700), removed when the job ends; the archive is hashed there and streamed to
//! the controller in parts (`BackupTransfer/Upload`), never whole in memory.

mod archive;
mod restore;
#[cfg(test)]
mod tests;

pub use archive::{ARCHIVE_FORMAT, FILES_PART, MANIFEST, ldif_name};
pub use restore::restore;

use super::gluu::Layout;
use super::replication::{self, BASES, Directory, OPENLDAP_ETC};
use super::{Ctx, Log, OpError, run_checked};
use crate::host::Command;
use clustermgr_proto::backup_transfer_client::BackupTransferClient;
use clustermgr_proto::{BackupChunk, BackupDirectory, BackupNode, BackupNodeOutput};
use clustermgr_shared::MAX_MESSAGE_BYTES;
use std::path::PathBuf;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// The staging directory inside Gluu (one subdirectory per job).
pub const STAGE: &str = "/opt/gluu/clustermgr-backup";
/// The configuration directories a backup holds (inside Gluu).
pub const CONFIG_PATHS: &[&str] = &["/etc/gluu/conf", "/etc/certs"];
pub const SLAPCAT: &str = "/usr/sbin/slapcat";
pub const SLAPADD: &str = "/usr/sbin/slapadd";
pub const EXPORT_LDIF: &str = "/opt/opendj/bin/export-ldif";
pub const IMPORT_LDIF: &str = "/opt/opendj/bin/import-ldif";
pub const TAR: &str = "/bin/tar";

/// slapd.conf as the tools inside Gluu see it.
fn slapd_conf(layout: &Layout) -> String {
    layout.seen(&format!("{OPENLDAP_ETC}/slapd.conf"))
}

/// OpenDJ's backend of a Gluu base (Gluu's setup: `userRoot` holds o=gluu, `site` o=site).
pub fn opendj_backend(base: &str) -> Result<&'static str, OpError> {
    match base {
        "o=gluu" => Ok("userRoot"),
        "o=site" => Ok("site"),
        other => Err(OpError(format!("no OpenDJ backend is known for {other:?}"))),
    }
}

pub fn wire(d: Directory) -> BackupDirectory {
    match d {
        Directory::OpenLdap => BackupDirectory::Openldap,
        Directory::OpenDj => BackupDirectory::Opendj,
    }
}

/// The argv writing `base` as LDIF to `file` (a path inside Gluu, as [`Layout::seen`] gives).
pub fn export_argv(
    layout: &Layout,
    dir: Directory,
    base: &str,
    file: &str,
) -> Result<Vec<String>, OpError> {
    match dir {
        Directory::OpenLdap => layout.exec(
            SLAPCAT,
            &["-f", &slapd_conf(layout), "-b", base, "-l", file],
        ),
        Directory::OpenDj => layout.exec(EXPORT_LDIF, &["-n", opendj_backend(base)?, "-l", file]),
    }
}

/// A backup's or a restore's id: it names files on the node.
pub fn check_id(id: &str) -> Result<(), OpError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(OpError(format!(
            "backup id {id:?} is not 1-64 lowercase letters, digits and dashes"
        )))
    }
}

/// A job's staging directory inside Gluu (0700), removed with everything in it on drop.
///
/// The host reaches it through a handle on [`STAGE`] opened from the machine's root without
/// following any symbolic link (`/proc/self/fd/N/<id>`): a link planted inside Gluu cannot
/// point the agent's writes or its removal at the host's own files.
pub(crate) struct Stage {
    /// Path inside Gluu.
    inside: String,
    /// Host path, through `_dir`.
    host: PathBuf,
    layout: Layout,
    /// The job's directory, opened without following links: the host path goes through it.
    _dir: std::os::fd::OwnedFd,
    /// The job's directory by its name in the open [`STAGE`] (`_parent`), to remove it.
    named: PathBuf,
    _parent: std::os::fd::OwnedFd,
}

impl Stage {
    pub(crate) fn create(layout: &Layout, id: &str) -> Result<Self, OpError> {
        use clustermgr_shared::safefs;
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::DirBuilderExt;
        check_id(id)?;
        let inside = format!("{STAGE}/{id}");
        let refused = |e: safefs::SafeFsError| OpError(format!("cannot open {STAGE}: {e}"));
        let root = safefs::open_dir(&layout.host_path("/")).map_err(refused)?;
        let parent = safefs::open_dir_beneath(&root, std::path::Path::new(&STAGE[1..]), true)
            .map_err(refused)?;
        nix::sys::stat::fchmod(&parent, nix::sys::stat::Mode::from_bits_truncate(0o700))
            .map_err(|e| OpError(format!("cannot restrict {STAGE}: {e}")))?;
        let path = PathBuf::from(format!("/proc/self/fd/{}/{id}", parent.as_raw_fd()));
        // A directory an interrupted job left is removed first (a link there: the link only).
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(_) => Ok(()),
        }
        .map_err(|e| OpError(format!("cannot clear {inside}: {e}")))?;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| OpError(format!("cannot create {inside}: {e}")))?;
        // The job's directory itself is held open too: one swapped for a link afterwards
        // leads nowhere (its files are opened without following links, [`open_staged`]).
        let dir = safefs::open_dir_beneath(&parent, std::path::Path::new(id), false)
            .map_err(|e| OpError(format!("cannot open {inside}: {e}")))?;
        Ok(Self {
            inside,
            host: PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())),
            layout: layout.clone(),
            _dir: dir,
            named: path,
            _parent: parent,
        })
    }

    /// A file in the stage as the tools inside Gluu see it.
    pub(crate) fn seen(&self, name: &str) -> String {
        self.layout.seen(&format!("{}/{name}", self.inside))
    }

    pub(crate) fn host(&self, name: &str) -> PathBuf {
        self.host.join(name)
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.named);
    }
}

/// Opens a file of the stage to read it, never through a link put in its place.
pub(crate) fn open_staged(p: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(p)
}

/// Creates a new file in the stage (nothing in its place, a link included, is reused).
pub(crate) fn create_staged(p: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
}

pub(crate) fn joined<T>(
    r: Result<Result<T, OpError>, tokio::task::JoinError>,
) -> Result<T, OpError> {
    r.map_err(|e| OpError(format!("internal task failed: {e}")))?
}

pub(crate) fn client(
    channel: tonic::transport::Channel,
) -> BackupTransferClient<tonic::transport::Channel> {
    BackupTransferClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Makes the archive in `stage` (the LDIF of every base, the configuration, the manifest) and
/// returns its host path and manifest (what the tests run without a controller).
pub(crate) async fn make_archive(
    ctx: &Ctx,
    layout: &Layout,
    stage: &Stage,
    log: &mut Log,
) -> Result<(PathBuf, clustermgr_proto::BackupManifest), OpError> {
    let dir = replication::detect(layout)?;
    log.line(format!("directory: {}", dir.name()));
    for base in BASES {
        let argv = export_argv(layout, dir, base, &stage.seen(&ldif_name(base)))?;
        run_checked(&ctx.host, &Command::new(argv), log, "the LDIF export").await?;
    }
    let present: Vec<&str> = CONFIG_PATHS
        .iter()
        .copied()
        .filter(|p| layout.host_path(p).is_dir())
        .collect();
    if present.is_empty() {
        return Err(OpError(format!(
            "none of {} exists in the Gluu Server",
            CONFIG_PATHS.join(", ")
        )));
    }
    let mut args = vec![
        "-C".to_string(),
        layout.seen("/"),
        "-cpf".into(),
        stage.seen(FILES_PART),
        "--".into(),
    ];
    args.extend(
        present
            .iter()
            .map(|p| p.trim_start_matches('/').to_string()),
    );
    tar(ctx, layout, &args, log, "tar of the configuration").await?;
    let hostname = ctx.view.hostname.clone().unwrap_or_default();
    let (l2, st) = (layout.clone(), stage.host(""));
    let paths: Vec<String> = present.iter().map(|p| p.to_string()).collect();
    let manifest = joined(
        tokio::task::spawn_blocking(move || {
            archive::write_manifest(&l2, &st, dir, hostname, paths)
        })
        .await,
    )?;
    let names = archive::member_names(&manifest);
    let mut args = vec!["-C".to_string(), stage.seen(""), "-cf".into()];
    args.push(stage.seen(archive::ARCHIVE));
    args.push("--".into());
    args.extend(names);
    tar(ctx, layout, &args, log, "tar of the archive").await?;
    Ok((stage.host(archive::ARCHIVE), manifest))
}

/// Runs the container's tar with `args` inside Gluu.
pub(crate) async fn tar(
    ctx: &Ctx,
    layout: &Layout,
    args: &[String],
    log: &mut Log,
    what: &str,
) -> Result<(), OpError> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_checked(
        &ctx.host,
        &Command::new(layout.exec(TAR, &args)?),
        log,
        what,
    )
    .await?;
    Ok(())
}

pub async fn backup(
    ctx: &Ctx,
    req: BackupNode,
    log: &mut Log,
) -> Result<BackupNodeOutput, OpError> {
    check_id(&req.backup_id)?;
    let channel = ctx
        .channel
        .clone()
        .ok_or_else(|| OpError("no session to the controller to upload the backup on".into()))?;
    let layout = Layout::detect(&ctx.host)?;
    layout.ensure_running(&ctx.host, log).await?;
    let stage = Stage::create(&layout, &req.backup_id)?;
    let (file, manifest) = make_archive(ctx, &layout, &stage, log).await?;
    let f2 = file.clone();
    let (sha256, size) = joined(
        tokio::task::spawn_blocking(move || {
            let size = std::fs::metadata(&f2)
                .map_err(|e| OpError(format!("cannot read {}: {e}", f2.display())))?
                .len();
            let sha = super::packages::sha256_file(&f2)
                .map_err(|e| OpError(format!("cannot read {}: {e}", f2.display())))?;
            Ok((sha, size))
        })
        .await,
    )?;
    log.line(format!(
        "archive: {size} bytes, sha256 {sha256}; uploading to the controller"
    ));
    let head = BackupChunk {
        backup_id: req.backup_id.clone(),
        size,
        sha256: sha256.clone(),
        data: Vec::new(),
    };
    let opened =
        open_staged(&file).map_err(|e| OpError(format!("cannot open {}: {e}", file.display())))?;
    let (tx, rx) = mpsc::channel(crate::fsrep::transfer::PARTS_AHEAD);
    let read = crate::fsrep::transfer::send_file(tx, head, opened, size, |data| BackupChunk {
        data,
        ..Default::default()
    });
    let mut c = client(channel);
    let (read, sent) = tokio::join!(read, c.upload(ReceiverStream::new(rx)));
    read.map_err(OpError)?;
    let got = sent
        .map_err(|s| {
            OpError(format!(
                "the controller refused the upload: {}",
                s.message()
            ))
        })?
        .into_inner();
    if got.sha256 != sha256 || got.size != size {
        return Err(OpError(format!(
            "the controller kept {} bytes with sha256 {}, not what was sent",
            got.size, got.sha256
        )));
    }
    log.line("the controller holds the backup");
    Ok(BackupNodeOutput {
        backup_id: req.backup_id,
        sha256,
        size,
        manifest: Some(manifest),
    })
}
