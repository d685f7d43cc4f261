//! The package repository: .deb and .rpm files kept by content under `DATA_DIR/packages/
//! <sha256>.<deb|rpm>`, with name, version and architecture read from the file itself, and the
//! offline push of one to nodes (one receive-package job per node; the agents fetch the file over
//! their own connection, chunk by chunk, each chunk checked against its SHA-256).
//!
//! An upload is streamed to a temporary file in the repository directory while it is hashed
//! (never whole in memory), checked (magic bytes, the package tool reads its metadata, then the
//! whole archive is verified by `package_check`) and renamed to its content name. The record and its audit row are committed together.

mod repository;
pub use repository::{Format, Meta, Repository, Upload, read_meta};

use crate::audit::Audit;
use crate::ctl::Ctl;
use crate::error::{Classify, Kind};
use crate::jobs::{JobError, JobSpec};
use crate::nodes::NodeError;
use crate::store::{PackageAdd, Store, StoreError};
use clustermgr_proto::{
    Job, NodeRecord, Operation, PackageInfo, PackageRecord, ReceivePackage, operation,
};
use clustermgr_shared::util::now_ms;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Chunk size of a push: the unit an agent verifies and resumes from.
pub const CHUNK_SIZE: u32 = 1 << 20;
/// Largest package file accepted by default.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;
/// A push's per-node job timeout unless the caller gives one.
pub const DEFAULT_PUSH_TIMEOUT: Duration = Duration::from_secs(3600);

const DEB_MAGIC: &[u8] = b"!<arch>\n";
const RPM_LEAD: &[u8] = &[0xed, 0xab, 0xee, 0xdb];
/// The ar magic plus the first member header (60 bytes) whose name starts the file name field.
const HEAD_LEN: usize = 8 + 60;

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error(
        "{0} is neither a .deb (an ar archive starting with debian-binary) nor an .rpm (RPM lead \
         ed ab ee db); only package files can be added"
    )]
    NotAPackage(String),
    #[error("the package is {size} bytes; the limit is {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("the upload announced {declared} bytes but sent {received}")]
    SizeMismatch { declared: u64, received: u64 },
    #[error("an upload starts with the file's name and size, then its content")]
    BadUpload,
    #[error(
        "{tool} is not installed on the controller; it is needed to read {format} packages \
         (install {hint})"
    )]
    ToolMissing {
        tool: &'static str,
        format: &'static str,
        hint: &'static str,
    },
    #[error("cannot read the package's name, version and architecture: {0}")]
    Metadata(String),
    #[error("no package {0:?} in the repository (clustermgr package list)")]
    NotFound(String),
    #[error("package {name:?} has several versions ({versions}); give one as {name}=VERSION")]
    Ambiguous { name: String, versions: String },
    #[error(
        "{name} {version} ({arch}, {format}) is in the repository already with other content \
         (sha256 {sha256}); remove it first"
    )]
    Conflict {
        name: String,
        version: String,
        arch: String,
        format: String,
        sha256: String,
    },
    #[error("name at least one node to push to")]
    NoNodes,
    #[error("a package reference is required: NAME or NAME=VERSION")]
    NoReference,
    #[error("the package file {0} is missing from the repository; add it again")]
    FileMissing(String),
    #[error("no running receive-package job {0} of this node for that package")]
    NotYourJob(String),
    #[error("offset {offset} is not a chunk boundary within the package ({size} bytes)")]
    BadOffset { offset: u64, size: u64 },
    #[error("the push was started on {started} of the nodes; on the others: {failed}")]
    Partial { started: String, failed: String },
    #[error(transparent)]
    Check(#[from] crate::package_check::CheckError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error("package repository I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for PackageError {
    fn kind(&self) -> Kind {
        match self {
            Self::NotAPackage(_)
            | Self::SizeMismatch { .. }
            | Self::BadUpload
            | Self::Metadata(_)
            | Self::Ambiguous { .. }
            | Self::NoNodes
            | Self::NoReference
            | Self::BadOffset { .. } => Kind::InvalidArgument,
            Self::TooLarge { .. } => Kind::ResourceExhausted,
            Self::ToolMissing { .. } | Self::FileMissing(_) | Self::Partial { .. } => {
                Kind::FailedPrecondition
            }
            Self::NotFound(_) => Kind::NotFound,
            Self::Conflict { .. } => Kind::AlreadyExists,
            Self::NotYourJob(_) => Kind::PermissionDenied,
            Self::Check(crate::package_check::CheckError::Damaged(_)) => Kind::InvalidArgument,
            Self::Check(crate::package_check::CheckError::ToolMissing(_)) => {
                Kind::FailedPrecondition
            }
            Self::Check(crate::package_check::CheckError::Io(_)) => Kind::Internal,
            Self::Node(e) => e.kind(),
            Self::Job(e) => e.kind(),
            Self::Io(_) | Self::Store(_) => Kind::Internal,
        }
    }
}

pub fn info(r: &PackageRecord) -> PackageInfo {
    PackageInfo {
        name: r.name.clone(),
        version: r.version.clone(),
        arch: r.arch.clone(),
        format: r.format.clone(),
        sha256: r.sha256.clone(),
        size: r.size,
        added_unix_ms: r.added_unix_ms,
        added_by: r.added_by.clone(),
    }
}

/// Finishes an upload: checks it, reads its metadata, moves it to its content name and records
/// it with its audit row. The same file added twice is stored once (the existing record is
/// returned).
pub async fn add(
    ctl: &Ctl,
    repo: &Repository,
    mut upload: Upload,
    added_by: &str,
    audit: &Audit,
) -> Result<PackageInfo, PackageError> {
    let (format, sha, chunks, upload) = tokio::task::spawn_blocking(move || {
        let (f, s, c) = upload.seal()?;
        Ok::<_, PackageError>((f, s, c, upload))
    })
    .await
    .map_err(|e| PackageError::Io(std::io::Error::other(e.to_string())))??;
    let meta = read_meta(format, &upload.tmp).await?;
    // The whole archive, not only its front: a cut or damaged file is never stored.
    match format {
        Format::Deb => crate::package_check::deb(&upload.tmp).await?,
        Format::Rpm => crate::package_check::rpm(&upload.tmp).await?,
    }
    let rec = PackageRecord {
        name: meta.name,
        version: meta.version,
        arch: meta.arch,
        format: format.as_str().into(),
        sha256: sha,
        size: upload.received,
        chunk_size: CHUNK_SIZE,
        chunk_sha256: chunks,
        added_unix_ms: now_ms(),
        added_by: added_by.into(),
    };
    let dest = repo.file(&rec);
    // The file is in place before its record commits; a record never names a missing file.
    let mut upload = upload;
    let existed = dest.exists();
    if !existed {
        std::fs::rename(&upload.tmp, &dest)?;
        sync_dir(&repo.dir);
    }
    upload.file = None;
    let row = audit
        .on(format!("{}={}", rec.name, rec.version))
        .ok(format!(
            "add {} {} {} {} sha256={} size={}",
            rec.name, rec.version, rec.arch, rec.format, rec.sha256, rec.size
        ));
    match ctl.store.add_package(rec.clone(), row).await {
        Ok(PackageAdd::Added) => Ok(info(&rec)),
        Ok(PackageAdd::Exists(existing)) => Ok(info(&existing)),
        Ok(PackageAdd::Conflict(p)) => {
            if !existed {
                let _ = std::fs::remove_file(&dest);
            }
            Err(PackageError::Conflict {
                name: p.name,
                version: p.version,
                arch: p.arch,
                format: p.format,
                sha256: p.sha256,
            })
        }
        Err(e) => {
            if !existed {
                let _ = std::fs::remove_file(&dest);
            }
            Err(e.into())
        }
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Every package, by name then version.
pub fn list(store: &Store) -> Result<Vec<PackageInfo>, PackageError> {
    let mut v = store.packages()?;
    v.sort_by(|a, b| {
        (a.name.as_str(), a.version.as_str(), a.arch.as_str()).cmp(&(
            b.name.as_str(),
            b.version.as_str(),
            b.arch.as_str(),
        ))
    });
    Ok(v.iter().map(info).collect())
}

/// The one package a reference names: `NAME`, `NAME=VERSION`, or a full SHA-256.
pub fn find(store: &Store, r: &str) -> Result<PackageRecord, PackageError> {
    let r = r.trim();
    if r.is_empty() {
        return Err(PackageError::NoReference);
    }
    if r.len() == 64
        && r.bytes().all(|b| b.is_ascii_hexdigit())
        && let Some(p) = store.package(&r.to_ascii_lowercase())?
    {
        return Ok(p);
    }
    let (name, version) = match r.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (r, None),
    };
    let mut matches: Vec<PackageRecord> = store
        .packages()?
        .into_iter()
        .filter(|p| p.name == name && version.is_none_or(|v| p.version == v))
        .collect();
    match matches.len() {
        0 => Err(PackageError::NotFound(crate::audit::clean(r, 200))),
        1 => Ok(matches.remove(0)),
        _ => {
            matches.sort_by(|a, b| a.version.cmp(&b.version));
            Err(PackageError::Ambiguous {
                name: name.into(),
                versions: matches
                    .iter()
                    .map(|p| format!("{} ({} {})", p.version, p.arch, p.format))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }
}

/// Removes a package's record (with its audit row) and then its file.
pub async fn remove(
    ctl: &Ctl,
    repo: &Repository,
    r: &str,
    audit: &Audit,
) -> Result<PackageInfo, PackageError> {
    let rec = find(&ctl.store, r)?;
    let row = audit
        .on(format!("{}={}", rec.name, rec.version))
        .ok(format!(
            "remove {} {} {} sha256={}",
            rec.name, rec.version, rec.arch, rec.sha256
        ));
    let removed = ctl
        .store
        .remove_package(&rec.sha256, row)
        .await?
        .ok_or_else(|| PackageError::NotFound(crate::audit::clean(r, 200)))?;
    match std::fs::remove_file(repo.file(&removed)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    Ok(info(&removed))
}

/// The operation a push sends to each node.
pub fn receive_operation(rec: &PackageRecord, job_id: &str) -> Operation {
    Operation {
        kind: Some(operation::Kind::ReceivePackage(ReceivePackage {
            sha256: rec.sha256.clone(),
            size: rec.size,
            format: rec.format.clone(),
            display_name: format!("{}_{}_{}", rec.name, rec.version, rec.arch),
            chunk_size: rec.chunk_size,
            chunk_sha256: rec.chunk_sha256.clone(),
            job_id: job_id.to_string(),
        })),
    }
}

/// Starts one receive-package job per node, all at once. Every node is resolved (and must be
/// approved) before any job starts.
pub async fn push(
    ctl: &Ctl,
    repo: &Repository,
    r: &str,
    node_refs: &[String],
    timeout: Duration,
    by: &str,
    audit: &Audit,
) -> Result<(PackageInfo, Vec<Job>), PackageError> {
    let rec = find(&ctl.store, r)?;
    if node_refs.is_empty() {
        return Err(PackageError::NoNodes);
    }
    if !repo.file(&rec).is_file() {
        return Err(PackageError::FileMissing(rec.sha256.clone()));
    }
    let mut nodes: Vec<NodeRecord> = Vec::new();
    for n in node_refs {
        let node = crate::nodes::find(ctl, n)?;
        if !nodes.iter().any(|x| x.id == node.id) {
            nodes.push(node);
        }
    }
    let submits = nodes.iter().map(|node| {
        let id = uuid::Uuid::now_v7().to_string();
        let mut spec = JobSpec::new(receive_operation(&rec, &id), timeout, by.to_string());
        spec.id = Some(id.clone());
        async move {
            let r = ctl.jobs.submit(node, spec, audit).await;
            (node.hostname.clone(), r.map(|(job, _)| job))
        }
    });
    let results = futures::future::join_all(submits).await;
    let mut jobs = Vec::new();
    let mut failed = Vec::new();
    for (host, r) in results {
        match r {
            Ok(j) => jobs.push(j),
            Err(e) => failed.push((host, e)),
        }
    }
    if jobs.is_empty()
        && failed.len() == 1
        && let Some((_, e)) = failed.pop()
    {
        return Err(e.into());
    }
    if !failed.is_empty() {
        return Err(PackageError::Partial {
            started: if jobs.is_empty() {
                "none".into()
            } else {
                jobs.iter()
                    .map(|j| format!("{} (job {})", j.node_hostname, j.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            failed: failed
                .iter()
                .map(|(h, e)| format!("{h}: {e}"))
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    Ok((info(&rec), jobs))
}

/// What a node may fetch: the file of a running push job of its own, for that SHA-256.
pub fn authorize_fetch(
    ctl: &Ctl,
    repo: &Repository,
    node_id: &str,
    job_id: &str,
    sha256: &str,
    offset: u64,
) -> Result<(PathBuf, PackageRecord), PackageError> {
    let not_yours = || PackageError::NotYourJob(crate::audit::clean(job_id, 64));
    // The job record says which node may fetch which package, while the job runs (also
    // after a controller restart, when its node takes the job up again).
    match ctl.jobs.running(job_id) {
        Some(j)
            if j.node_id == node_id
                && j.kind == "receive-package"
                && !j.fetch_sha256.is_empty()
                && j.fetch_sha256 == sha256 => {}
        _ => return Err(not_yours()),
    }
    let rec = ctl.store.package(sha256)?.ok_or_else(not_yours)?;
    if offset > rec.size
        || (!offset.is_multiple_of(rec.chunk_size.max(1) as u64) && offset != rec.size)
    {
        return Err(PackageError::BadOffset {
            offset,
            size: rec.size,
        });
    }
    let path = repo.file(&rec);
    if !path.is_file() {
        return Err(PackageError::FileMissing(rec.sha256.clone()));
    }
    Ok((path, rec))
}

/// Reads `path` from `offset` in chunks of `chunk` bytes and hands each to `send` (blocking; a
/// false from `send` stops). Never holds more than one chunk.
pub fn read_chunks(
    path: &Path,
    offset: u64,
    chunk: u32,
    mut send: impl FnMut(u64, Vec<u8>) -> bool,
) -> Result<(), PackageError> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut at = offset;
    loop {
        let mut buf = Vec::with_capacity(chunk as usize);
        let n = (&mut f).take(chunk as u64).read_to_end(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        if !send(at, buf) {
            return Ok(());
        }
        at += n as u64;
    }
}

#[cfg(test)]
mod tests;
