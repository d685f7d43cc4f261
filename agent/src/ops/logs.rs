//! `search-logs`: reads this node's own log files (rotated ones too), keeps the lines that match,
//! and streams them to the controller over the agent's own connection
//! (`AgentSession/SendLogMatches`); nothing of the logs goes into the job record. With `follow`,
//! it keeps reading what is appended (and files that appear, e.g. after a rotation) until the
//! controller ends the stream (the operator went away) or the job is cancelled.
//!
//! Where each type of log lives comes from the node's Gluu [`Layout`]: Gluu's logs are read by
//! their host path under the container root (`/opt/gluu-server`; the machine's own paths on a
//! 4.2.3 node), the host's (nginx, Redis, stunnel, the agent) under the agent's root. Files are
//! read from disk, so a stopped Gluu machine's logs are searched too; the job says the machine
//! is stopped (nothing new is written to them then).

mod scan;

pub use scan::line_time;

use super::gluu::{CONTAINER, Layout};
use super::{Ctx, Log, OpError};
use crate::host::Host;
use clustermgr_proto::{
    LogMatch, LogMatchBatch, LogType, SearchLogs, SearchLogsOutput,
    agent_session_client::AgentSessionClient,
};
use clustermgr_shared::safefs;
use nix::dir::Dir;
use nix::sys::stat::SFlag;
use scan::Scan;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::{Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// Most matches one search sends (the controller asks for fewer).
pub const MAX_LIMIT: u32 = 10_000;
/// Longest line sent; longer ones are cut.
pub const MAX_LINE: usize = 4096;
/// Matches per message up the stream.
const BATCH: usize = 500;
/// How often a follow looks for appended lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
pub use clustermgr_shared::logpattern::{REGEX_SIZE_LIMIT, compile};

/// Where one type of log lives: a directory, and the prefix of the files in it that belong to
/// the type (rotated files share it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub ty: LogType,
    /// `base` joined with `rel` (for display).
    pub dir: PathBuf,
    /// The configured directory it is under (the agent's root or Gluu's container root), and
    /// the path below it, which is walked without following any symbolic link.
    pub base: PathBuf,
    pub rel: &'static str,
    pub prefix: &'static str,
}

/// Where Gluu's files are on this host: the layout's container root (the host's root for a
/// nochroot install); without a detectable install, the container directory if there is one,
/// else the host's root.
pub fn gluu_base(host: &Host) -> PathBuf {
    match Layout::detect(host) {
        Ok(l) => l.base,
        Err(_) => {
            let container = host.path(CONTAINER);
            if container.is_dir() {
                container
            } else {
                host.root.clone()
            }
        }
    }
}

/// The log sources of a node: Gluu's under `gluu` (see [`gluu_base`]), the host's under `root`.
pub fn sources(root: &Path, gluu: &Path, types: &[LogType]) -> Vec<Source> {
    let all = LogType::ALL;
    let wanted: Vec<LogType> = if types.is_empty() {
        all.to_vec()
    } else {
        all.into_iter().filter(|t| types.contains(t)).collect()
    };
    let mut out = Vec::new();
    for ty in wanted {
        let mut add = |base: &Path, rel: &'static str, prefix: &'static str| {
            out.push(Source {
                ty,
                dir: base.join(rel),
                base: base.to_path_buf(),
                rel,
                prefix,
            })
        };
        match ty {
            LogType::Oxauth => add(gluu, "opt/gluu/jetty/oxauth/logs", "oxauth"),
            LogType::Oxtrust => add(gluu, "opt/gluu/jetty/identity/logs", "oxtrust"),
            LogType::Httpd => {
                add(gluu, "var/log/apache2", "");
                add(gluu, "var/log/httpd", "");
                // The load balancer host's nginx.
                add(root, "var/log/nginx", "");
            }
            LogType::Ldap => {
                add(gluu, "opt/opendj/logs", "");
                add(gluu, "var/log/openldap", "");
            }
            LogType::Redis => {
                add(root, "var/log/redis", "");
                add(root, "var/log/stunnel4", "");
            }
            LogType::Agent => add(root, "var/log/clustermgr-agent", ""),
            LogType::Unspecified => {}
        }
    }
    out
}

fn is_compressed(name: &str) -> bool {
    [".gz", ".bz2", ".xz", ".zst", ".zip"]
        .iter()
        .any(|e| name.ends_with(e))
}

/// A source's directory, opened below its base without following any symbolic link (a
/// directory swapped for a link leads nowhere).
fn open_source_dir(src: &Source) -> Option<OwnedFd> {
    let base = safefs::open_dir(&src.base).ok()?;
    safefs::open_dir_beneath(&base, Path::new(src.rel), false).ok()
}

/// One regular file of a source.
struct Found {
    path: PathBuf,
    name: OsString,
    mtime: u64,
    ino: u64,
}

/// The regular files of a source, oldest first, by their entries' own types (symbolic links,
/// FIFOs, devices and directories are left out); compressed ones are counted, not read.
fn files_of(src: &Source, skipped: &mut u32) -> Vec<Found> {
    let Some(dir) = open_source_dir(src) else {
        return Vec::new();
    };
    let Ok(mut d) = dir
        .try_clone()
        .map_err(drop)
        .and_then(|dup| Dir::from_fd(dup).map_err(drop))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in d.iter().flatten() {
        let name = OsStr::from_bytes(e.file_name().to_bytes()).to_os_string();
        let shown = name.to_string_lossy().into_owned();
        if shown == "." || shown == ".." || !shown.starts_with(src.prefix) {
            continue;
        }
        let Ok(Some(st)) = safefs::stat_entry(&dir, &name) else {
            continue;
        };
        if safefs::kind(&st) != SFlag::S_IFREG {
            continue;
        }
        if is_compressed(&shown) {
            *skipped += 1;
            continue;
        }
        let mtime =
            (st.st_mtime.max(0) as u64) * 1000 + (st.st_mtime_nsec.max(0) as u64) / 1_000_000;
        out.push(Found {
            path: src.dir.join(&name),
            name,
            mtime,
            ino: st.st_ino,
        });
    }
    out.sort_by(|a, b| a.mtime.cmp(&b.mtime).then(a.path.cmp(&b.path)));
    out
}

/// A file being followed.
struct Followed {
    ty: LogType,
    /// Its source (an index into the search's sources) and its name there.
    src: usize,
    name: OsString,
    shown: String,
    offset: u64,
    ino: u64,
    last: u64,
}

fn shown(root: &Path, p: &Path) -> String {
    match p.strip_prefix(root) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => p.display().to_string(),
    }
}

/// Opens a source's file: every directory below the base without following a link, the file
/// itself no-follow and non-blocking, and only if it is a regular file (a FIFO swapped in is
/// refused, never waited on).
fn open_plain(src: &Source, name: &OsStr) -> Option<std::fs::File> {
    let dir = open_source_dir(src)?;
    safefs::open_regular(&dir, name).ok().map(|(f, _)| f)
}

fn ino_of(f: &std::fs::File) -> u64 {
    use std::os::unix::fs::MetadataExt;
    f.metadata().map(|m| m.ino()).unwrap_or(0)
}

/// The first scan: every file of every source, oldest first.
fn scan_all(
    root: &Path,
    srcs: &[Source],
    scan: &mut Scan<'_>,
    out: &mut SearchLogsOutput,
) -> BTreeMap<PathBuf, Followed> {
    let mut followed = BTreeMap::new();
    for (i, src) in srcs.iter().enumerate() {
        for Found {
            path, name, mtime, ..
        } in files_of(src, &mut out.skipped_compressed)
        {
            let Some(mut f) = open_plain(src, &name) else {
                continue;
            };
            out.files += 1;
            let file = name;
            let name = shown(root, &path);
            let mut last = mtime;
            let ino = ino_of(&f);
            // A file last written before `since` has no line to keep.
            let offset = if mtime < scan.since {
                f.seek(SeekFrom::End(0)).unwrap_or(0)
            } else {
                // Lines before the first stamped one take the file's time only if nothing
                // earlier says otherwise; start from the oldest possible.
                last = 0;
                let n = scan.read(src.ty, &name, &mut f, &mut last).unwrap_or(0);
                if last == 0 {
                    last = mtime;
                }
                n
            };
            followed.insert(
                path,
                Followed {
                    ty: src.ty,
                    src: i,
                    name: file,
                    shown: name,
                    offset,
                    ino,
                    last,
                },
            );
        }
    }
    followed
}

/// One follow round: appended lines of known files, and files that appeared. Files are known by
/// inode, so a file renamed by a rotation keeps where it was read to and its successor is read
/// from its start.
fn follow_round(
    root: &Path,
    srcs: &[Source],
    followed: &mut BTreeMap<PathBuf, Followed>,
    scan: &mut Scan<'_>,
) {
    let mut skipped = 0;
    let mut by_ino: std::collections::HashMap<u64, Followed> = std::mem::take(followed)
        .into_values()
        .map(|e| (e.ino, e))
        .collect();
    for (i, src) in srcs.iter().enumerate() {
        for Found {
            path, name, ino, ..
        } in files_of(src, &mut skipped)
        {
            let mut e = by_ino.remove(&ino).unwrap_or(Followed {
                ty: src.ty,
                src: i,
                name: name.clone(),
                shown: String::new(),
                offset: 0,
                ino,
                last: 0,
            });
            e.src = i;
            e.name = name;
            e.shown = shown(root, &path);
            followed.insert(path, e);
        }
    }
    for entry in followed.values_mut() {
        let Some(mut f) = open_plain(&srcs[entry.src], &entry.name) else {
            continue;
        };
        if ino_of(&f) != entry.ino {
            continue;
        }
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        // Truncated in place (copytruncate rotation): read from the start.
        if len < entry.offset {
            entry.offset = 0;
        }
        if len == entry.offset || f.seek(SeekFrom::Start(entry.offset)).is_err() {
            continue;
        }
        if let Ok(n) = scan.read(entry.ty, &entry.shown, &mut f, &mut entry.last) {
            entry.offset += n;
        }
    }
}

type Sender = mpsc::Sender<LogMatchBatch>;

async fn send_kept(tx: &Sender, job_id: &str, kept: &mut Vec<LogMatch>) -> bool {
    while !kept.is_empty() {
        let n = kept.len().min(BATCH);
        let matches: Vec<LogMatch> = kept.drain(..n).collect();
        if tx
            .send(LogMatchBatch {
                job_id: job_id.to_string(),
                matches,
            })
            .await
            .is_err()
        {
            return false;
        }
    }
    true
}

pub async fn search(
    ctx: &Ctx,
    req: SearchLogs,
    log: &mut Log,
) -> Result<SearchLogsOutput, OpError> {
    let re = compile(&req.grep).map_err(|e| OpError(format!("invalid pattern: {e}")))?;
    let types: Vec<LogType> = req
        .types
        .iter()
        .filter_map(|t| LogType::try_from(*t).ok())
        .filter(|t| *t != LogType::Unspecified)
        .collect();
    let limit = match req.limit {
        0 => 1000,
        n => n.min(MAX_LIMIT),
    } as usize;
    let channel = ctx
        .channel
        .clone()
        .ok_or_else(|| OpError("this agent has no connection to send the matches over".into()))?;
    let root = ctx.root().clone();
    let srcs = sources(&root, &gluu_base(&ctx.host), &types);
    log.line(format!(
        "searching {} log location(s){}",
        srcs.len(),
        if req.follow { ", then following" } else { "" }
    ));
    if crate::health::gluu_stopped(&ctx.host) {
        log.line(
            "the Gluu Server machine is stopped: its log files are read from disk, and nothing \
             new is written to them until it starts",
        );
    }

    let (tx, rx) = mpsc::channel::<LogMatchBatch>(8);
    let mut client = AgentSessionClient::new(channel);
    let mut upload = tokio::spawn(async move {
        client
            .send_log_matches(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    // The first message names the job, even when nothing matches.
    let opened = tx
        .send(LogMatchBatch {
            job_id: req.job_id.clone(),
            matches: Vec::new(),
        })
        .await
        .is_ok();

    let (mut out, followed, mut kept) =
        scan_first(&root, &srcs, &re, req.since_unix_ms, limit).await?;
    let open = opened && send_kept(&tx, &req.job_id, &mut kept).await;
    log.line(format!(
        "{} file(s) read, {} line(s) matched, {} sent{}",
        out.files,
        out.matched,
        out.sent,
        if out.skipped_compressed > 0 {
            format!(
                ", {} compressed file(s) not searched",
                out.skipped_compressed
            )
        } else {
            String::new()
        }
    ));

    if req.follow {
        if open {
            let search = Following {
                root: &root,
                srcs: &srcs,
                re: &re,
                tx: &tx,
                job_id: &req.job_id,
            };
            search.follow(followed, &mut upload, &mut out).await?;
        }
        log.line("the controller ended the follow");
        return Ok(out);
    }
    drop(tx);
    match upload.await {
        Ok(Ok(_)) => Ok(out),
        Ok(Err(s)) => Err(OpError(format!(
            "the controller refused the matches: {}",
            s.message()
        ))),
        Err(e) => Err(OpError(format!("the upload stopped: {e}"))),
    }
}

/// The first pass over every file: the output so far, the files to follow and the matches kept
/// (the last `limit` of them).
async fn scan_first(
    root: &Path,
    srcs: &[Source],
    re: &regex::bytes::Regex,
    since: u64,
    limit: usize,
) -> Result<(SearchLogsOutput, BTreeMap<PathBuf, Followed>, Vec<LogMatch>), OpError> {
    let (root, srcs, re) = (root.to_path_buf(), srcs.to_vec(), re.clone());
    tokio::task::spawn_blocking(move || {
        let mut out = SearchLogsOutput::default();
        let mut scan = Scan::new(&re, since, limit);
        let followed = scan_all(&root, &srcs, &mut scan, &mut out);
        let (kept, matched, truncated) = scan.finish();
        out.matched = matched;
        out.truncated = truncated;
        out.sent = kept.len() as u64;
        (out, followed, kept)
    })
    .await
    .map_err(|e| OpError(format!("the search stopped: {e}")))
}

/// A search that follows its files once they are read.
struct Following<'a> {
    root: &'a Path,
    srcs: &'a [Source],
    re: &'a regex::bytes::Regex,
    tx: &'a Sender,
    job_id: &'a str,
}

impl Following<'_> {
    /// Sends what the `followed` files gain, until the controller ends the upload.
    async fn follow(
        &self,
        mut followed: BTreeMap<PathBuf, Followed>,
        upload: &mut tokio::task::JoinHandle<
            Result<tonic::Response<clustermgr_proto::SendLogMatchesResponse>, tonic::Status>,
        >,
        out: &mut SearchLogsOutput,
    ) -> Result<(), OpError> {
        let mut tick = tokio::time::interval(FOLLOW_POLL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut *upload => return Ok(()),
            }
            let root = self.root.to_path_buf();
            let srcs = self.srcs.to_vec();
            let re = self.re.clone();
            let (f, mut new) = tokio::task::spawn_blocking(move || {
                let mut scan = Scan::new(&re, 0, MAX_LIMIT as usize);
                follow_round(&root, &srcs, &mut followed, &mut scan);
                (followed, scan.finish().0)
            })
            .await
            .map_err(|e| OpError(format!("the follow stopped: {e}")))?;
            followed = f;
            out.matched += new.len() as u64;
            out.sent += new.len() as u64;
            if !send_kept(self.tx, self.job_id, &mut new).await {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests;
