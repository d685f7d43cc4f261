//! `search-logs`: reads this node's own log files (rotated ones too), keeps the lines that match,
//! and streams them to the controller over the agent's own connection
//! (`AgentSession/SendLogMatches`); nothing of the logs goes into the job record. With `follow`,
//! it keeps reading what is appended (and files that appear, e.g. after a rotation) until the
//! controller ends the stream (the operator went away) or the job is cancelled.
//!
//! Where each type of log lives comes from the node's layout: inside the Gluu container
//! (`/opt/gluu-server`) when there is one, else on the host.

use super::{Ctx, Log, OpError};
use clustermgr_proto::{
    LogMatch, LogMatchBatch, LogType, SearchLogs, SearchLogsOutput,
    agent_session_client::AgentSessionClient,
};
use regex::bytes::Regex;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};
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
    pub dir: PathBuf,
    pub prefix: &'static str,
}

/// The log sources of a node under `root` (the Gluu container's if present).
pub fn sources(root: &Path, types: &[LogType]) -> Vec<Source> {
    let container = root.join("opt/gluu-server");
    let gluu = if container.is_dir() {
        container
    } else {
        root.to_path_buf()
    };
    let all = [
        LogType::Oxauth,
        LogType::Oxtrust,
        LogType::Httpd,
        LogType::Ldap,
        LogType::Redis,
        LogType::Agent,
    ];
    let wanted: Vec<LogType> = if types.is_empty() {
        all.to_vec()
    } else {
        all.into_iter().filter(|t| types.contains(t)).collect()
    };
    let mut out = Vec::new();
    for ty in wanted {
        let mut add = |dir: PathBuf, prefix: &'static str| out.push(Source { ty, dir, prefix });
        match ty {
            LogType::Oxauth => add(gluu.join("opt/gluu/jetty/oxauth/logs"), "oxauth"),
            LogType::Oxtrust => add(gluu.join("opt/gluu/jetty/identity/logs"), "oxtrust"),
            LogType::Httpd => {
                add(gluu.join("var/log/apache2"), "");
                add(gluu.join("var/log/httpd"), "");
                // The load balancer host's nginx.
                add(root.join("var/log/nginx"), "");
            }
            LogType::Ldap => {
                add(gluu.join("opt/opendj/logs"), "");
                add(gluu.join("var/log/openldap"), "");
            }
            LogType::Redis => {
                add(root.join("var/log/redis"), "");
                add(root.join("var/log/stunnel4"), "");
            }
            LogType::Agent => add(root.join("var/log/clustermgr-agent"), ""),
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

/// The plain files of a source, oldest first; compressed ones are counted, not read. Symbolic
/// links are not followed.
fn files_of(src: &Source, skipped: &mut u32) -> Vec<(PathBuf, u64)> {
    let Ok(rd) = std::fs::read_dir(&src.dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(src.prefix) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        if is_compressed(&name) {
            *skipped += 1;
            continue;
        }
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        out.push((e.path(), mtime));
    }
    out.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    out
}

fn num(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn month(b: &[u8]) -> Option<u8> {
    const M: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    M.iter().position(|m| *m == b).map(|i| i as u8 + 1)
}

fn to_ms(y: u32, mo: u8, d: u32, h: u32, mi: u32, s: u32, ms: u32) -> Option<u64> {
    let month = time::Month::try_from(mo).ok()?;
    let date = time::Date::from_calendar_date(y as i32, month, u8::try_from(d).ok()?).ok()?;
    let t = time::Time::from_hms_milli(
        u8::try_from(h).ok()?,
        u8::try_from(mi).ok()?,
        u8::try_from(s).ok()?,
        u16::try_from(ms).ok()?,
    )
    .ok()?;
    let ts = time::PrimitiveDateTime::new(date, t).assume_utc();
    u64::try_from(ts.unix_timestamp_nanos() / 1_000_000).ok()
}

/// `HH:MM:SS[.,fraction]` at the start of `b` (the hour may have one digit).
fn hms(b: &[u8]) -> Option<(u32, u32, u32, u32)> {
    let mut parts = b.splitn(3, |c| *c == b':');
    let h = num(parts.next()?)?;
    let mi = num(parts.next()?)?;
    let rest = parts.next()?;
    let s_end = rest
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let s = num(&rest[..s_end])?;
    let mut ms = 0;
    if s_end < rest.len() && (rest[s_end] == b'.' || rest[s_end] == b',') {
        let frac = &rest[s_end + 1..];
        let n = frac
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
            .min(3);
        if n > 0 {
            ms = num(&frac[..n])? * 10u32.pow(3 - n as u32);
        }
    }
    Some((h, mi, s, ms))
}

/// The time a log line carries, in the formats of the logs a node keeps (read as UTC):
/// `2026-11-29 05:00:00,123` / `2026-11-29T05:00:00.123Z` (Gluu, jetty, ISO; optionally in
/// brackets), `[29/Nov/2026:05:00:00 +0000]` (OpenDJ access, Apache, nginx), and
/// `123:M 29 Nov 2026 05:00:00.123` (Redis).
pub fn line_time(line: &[u8]) -> Option<u64> {
    let head = &line[..line.len().min(96)];
    let start = head.iter().position(|c| !matches!(c, b'[' | b' '))?;
    let b = &head[start..];
    // ISO-like: YYYY-MM-DD[ T]H:MM:SS
    if b.len() >= 16 && b[4] == b'-' && b[7] == b'-' && (b[10] == b' ' || b[10] == b'T') {
        let (y, mo, d) = (num(&b[..4])?, num(&b[5..7])?, num(&b[8..10])?);
        let (h, mi, s, ms) = hms(&b[11..])?;
        return to_ms(y, u8::try_from(mo).ok()?, d, h, mi, s, ms);
    }
    // Redis: PID:R DD Mon YYYY HH:MM:SS.mmm
    if let Some(colon) = b.iter().position(|c| *c == b':')
        && colon > 0
        && b[..colon].iter().all(u8::is_ascii_digit)
        && b.len() > colon + 3
        && b[colon + 2] == b' '
    {
        let mut f = b[colon + 3..]
            .split(|c| *c == b' ')
            .filter(|p| !p.is_empty());
        let d = num(f.next()?)?;
        let mo = month(f.next()?)?;
        let y = num(f.next()?)?;
        let (h, mi, s, ms) = hms(f.next()?)?;
        return to_ms(y, mo, d, h, mi, s, ms);
    }
    // [DD/Mon/YYYY:HH:MM:SS ...] anywhere near the start.
    let open = head.iter().position(|c| *c == b'[')?;
    let b = &head[open + 1..];
    if b.len() >= 20 && b[2] == b'/' && b[6] == b'/' && b[11] == b':' {
        let (d, mo, y) = (num(&b[..2])?, month(&b[3..6])?, num(&b[7..11])?);
        let (h, mi, s, ms) = hms(&b[12..])?;
        return to_ms(y, mo, d, h, mi, s, ms);
    }
    None
}

fn cut(line: &[u8]) -> String {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    if end > MAX_LINE {
        let mut s = String::from_utf8_lossy(&line[..MAX_LINE]).into_owned();
        s.push('…');
        return s;
    }
    String::from_utf8_lossy(&line[..end]).into_owned()
}

/// What a search keeps while it reads.
struct Scan<'a> {
    re: &'a Regex,
    since: u64,
    limit: usize,
    /// Matches in reading order; compacted to the newest `limit` by time when it grows to
    /// twice that.
    kept: Vec<LogMatch>,
    matched: u64,
    truncated: bool,
    /// Lines looked at for a stamp (at most about one walk over every block).
    walked: u64,
}

impl Scan<'_> {
    /// Keeps the newest `limit` matches by time (reading order breaks ties), oldest first.
    fn compact(&mut self) {
        if self.kept.len() > self.limit {
            self.kept.sort_by_key(|m| m.unix_ms);
            let extra = self.kept.len() - self.limit;
            self.kept.drain(..extra);
            self.truncated = true;
        }
    }

    fn finish(mut self) -> (Vec<LogMatch>, u64, bool) {
        self.compact();
        self.kept.sort_by_key(|m| m.unix_ms);
        (self.kept, self.matched, self.truncated)
    }

    /// Reads `reader` from its current position; `last` is the time of the last stamped line
    /// seen in this file (carried across follow reads). Returns the bytes read (whole lines
    /// only: a line still being written is left for the next read).
    ///
    /// The pattern runs over whole blocks (like grep), not line by line: only a candidate
    /// match costs line work. A candidate is confirmed on its own line (a pattern such as
    /// `a\sb` may span a line break in a block; a line matches only by itself), and its time
    /// is that of the nearest stamped line at or before it.
    fn read(
        &mut self,
        ty: LogType,
        file: &str,
        reader: &mut impl Read,
        last: &mut u64,
    ) -> std::io::Result<u64> {
        let mut buf: Vec<u8> = Vec::with_capacity(BLOCK);
        let mut consumed = 0u64;
        let mut eof = false;
        while !eof {
            // Fill the block up to BLOCK bytes (more when no line ends in it yet).
            let want = buf.len().max(BLOCK - BLOCK / 8) + BLOCK / 8;
            while buf.len() < want {
                let old = buf.len();
                buf.resize(want, 0);
                let n = match reader.read(&mut buf[old..]) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                        buf.truncate(old);
                        continue;
                    }
                    Err(e) => {
                        buf.truncate(old);
                        return Err(e);
                    }
                };
                buf.truncate(old + n);
                if n == 0 {
                    eof = true;
                    break;
                }
            }
            let end = match buf.iter().rposition(|c| *c == b'\n') {
                Some(i) => i + 1,
                // No line end yet: read on, unless the line is beyond any reason.
                None if !eof && buf.len() < MAX_BLOCK => continue,
                None if !eof => buf.len(),
                None => break,
            };
            self.block(ty, file, &buf[..end], last);
            consumed += end as u64;
            buf.drain(..end);
        }
        Ok(consumed)
    }

    /// Whole lines: the confirmed matches kept, `last` moved to the block's last stamp.
    fn block(&mut self, ty: LogType, file: &str, block: &[u8], last: &mut u64) {
        let before = *last;
        let mut at = 0;
        // (end of the last matching line, the stamp in force there)
        let mut resolved: (usize, Option<u64>) = (0, None);
        while at < block.len() {
            let Some(m) = self.re.find_at(block, at) else {
                break;
            };
            let start = block[..m.start()]
                .iter()
                .rposition(|c| *c == b'\n')
                .map_or(0, |i| i + 1);
            let end = block[m.start()..]
                .iter()
                .position(|c| *c == b'\n')
                .map_or(block.len(), |i| m.start() + i + 1);
            at = end;
            let line = trim_eol(&block[start..end]);
            if !self.re.is_match(line) {
                // The candidate crossed a line end: the line it starts on does not match.
                continue;
            }
            // The walk back stops at the previous match's line, whose stamp is known: the
            // whole block is walked at most once, however many lines match.
            let stamp = stamp_before(block, end, resolved.0, &mut self.walked).or(resolved.1);
            resolved = (end, stamp);
            let t = stamp.unwrap_or(before);
            if t < self.since {
                continue;
            }
            self.matched += 1;
            if self.kept.len() >= self.limit.saturating_mul(2).max(1) {
                self.compact();
            }
            self.kept.push(LogMatch {
                r#type: ty as i32,
                file: file.to_string(),
                unix_ms: t,
                line: cut(line),
            });
        }
        if let Some(t) =
            stamp_before(block, block.len(), resolved.0, &mut self.walked).or(resolved.1)
        {
            *last = t;
        }
    }
}

/// Bytes of log read at a time.
const BLOCK: usize = 1 << 20;
/// A line longer than this is cut into pieces.
const MAX_BLOCK: usize = 16 << 20;

fn trim_eol(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &line[..end]
}

/// The time of the nearest stamped line ending at or before `pos` in `block`, walking back line
/// by line (continuation lines such as a stack trace's take their entry's stamp) but not past
/// `floor` (a line boundary whose stamp the caller knows).
fn stamp_before(block: &[u8], pos: usize, floor: usize, walked: &mut u64) -> Option<u64> {
    let mut end = pos;
    while end > floor {
        *walked += 1;
        // The line ending at `end` (its '\n' excluded).
        let stop = if block[end - 1] == b'\n' {
            end - 1
        } else {
            end
        };
        let start = block[..stop]
            .iter()
            .rposition(|c| *c == b'\n')
            .map_or(0, |i| i + 1);
        if let Some(t) = line_time(&block[start..stop]) {
            return Some(t);
        }
        end = start;
    }
    None
}

/// A file being followed.
struct Followed {
    ty: LogType,
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

fn open_plain(p: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(p)
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
    for src in srcs {
        for (path, mtime) in files_of(src, &mut out.skipped_compressed) {
            let Ok(mut f) = open_plain(&path) else {
                continue;
            };
            out.files += 1;
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
    use std::os::unix::fs::MetadataExt;
    let mut skipped = 0;
    let mut by_ino: std::collections::HashMap<u64, Followed> = std::mem::take(followed)
        .into_values()
        .map(|e| (e.ino, e))
        .collect();
    for src in srcs {
        for (path, _) in files_of(src, &mut skipped) {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ino = meta.ino();
            let mut e = by_ino.remove(&ino).unwrap_or(Followed {
                ty: src.ty,
                shown: String::new(),
                offset: 0,
                ino,
                last: 0,
            });
            e.shown = shown(root, &path);
            followed.insert(path, e);
        }
    }
    for (path, entry) in followed.iter_mut() {
        let Ok(mut f) = open_plain(path) else {
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
    let srcs = sources(&root, &types);
    log.line(format!(
        "searching {} log location(s){}",
        srcs.len(),
        if req.follow { ", then following" } else { "" }
    ));

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

    let since = req.since_unix_ms;
    let (mut out, mut followed, mut kept, matched, truncated) = {
        let root = root.clone();
        let srcs = srcs.clone();
        let re = re.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = SearchLogsOutput::default();
            let mut scan = Scan {
                re: &re,
                since,
                limit,
                kept: Vec::new(),
                matched: 0,
                truncated: false,
                walked: 0,
            };
            let followed = scan_all(&root, &srcs, &mut scan, &mut out);
            let (kept, matched, truncated) = scan.finish();
            (out, followed, kept, matched, truncated)
        })
        .await
        .map_err(|e| OpError(format!("the search stopped: {e}")))?
    };
    out.matched = matched;
    out.truncated = truncated;
    out.sent = kept.len() as u64;
    let mut open = opened && send_kept(&tx, &req.job_id, &mut kept).await;
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
        let mut tick = tokio::time::interval(FOLLOW_POLL);
        while open {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut upload => { open = false; continue; }
            }
            let root = root.clone();
            let srcs = srcs.clone();
            let re = re.clone();
            let (f, new) = tokio::task::spawn_blocking(move || {
                let mut scan = Scan {
                    re: &re,
                    since: 0,
                    limit: MAX_LIMIT as usize,
                    kept: Vec::new(),
                    matched: 0,
                    truncated: false,
                    walked: 0,
                };
                follow_round(&root, &srcs, &mut followed, &mut scan);
                (followed, scan.finish().0)
            })
            .await
            .map_err(|e| OpError(format!("the follow stopped: {e}")))?;
            followed = f;
            let mut new = new;
            out.matched += new.len() as u64;
            out.sent += new.len() as u64;
            open = send_kept(&tx, &req.job_id, &mut new).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_times_in_the_formats_nodes_write() {
        let gluu = line_time(b"2026-11-29 05:01:02,345 INFO  [qtp] hello").unwrap();
        assert_eq!(gluu, to_ms(2026, 11, 29, 5, 1, 2, 345).unwrap());
        assert_eq!(
            line_time(b"[2026-11-29 5:01:02.345678 +00:00:00] started"),
            Some(gluu)
        );
        assert_eq!(line_time(b"2026-11-29T05:01:02.345Z x"), Some(gluu));
        assert_eq!(
            line_time(b"[29/Nov/2026:05:01:02 +0000] conn=1 op=0 BIND"),
            to_ms(2026, 11, 29, 5, 1, 2, 0)
        );
        assert_eq!(
            line_time(b"127.0.0.1 - - [29/Nov/2026:05:01:02 +0000] \"GET / HTTP/1.1\" 200"),
            to_ms(2026, 11, 29, 5, 1, 2, 0)
        );
        assert_eq!(
            line_time(b"4242:M 29 Nov 2026 05:01:02.345 * Ready to accept connections"),
            Some(gluu)
        );
        assert_eq!(line_time(b"\tat org.gluu.Foo.bar(Foo.java:12)"), None);
        assert_eq!(line_time(b"2026-13-40 99:99:99 nonsense"), None);
        assert_eq!(line_time(b""), None);
    }

    #[test]
    fn scan_keeps_the_newest_matches_and_gives_continuation_lines_their_stamp() {
        let re = compile("ERROR|Caused").unwrap();
        let since = to_ms(2026, 11, 29, 5, 0, 0, 0).unwrap();
        let mut scan = Scan {
            re: &re,
            since,
            limit: 2,
            kept: Vec::new(),
            matched: 0,
            truncated: false,
            walked: 0,
        };
        let text = b"2026-11-29 04:59:59,000 ERROR too old\n\
            2026-11-29 05:00:01,000 ERROR one\n\
            \tCaused by: x\n\
            2026-11-29 05:00:02,000 INFO fine\n\
            2026-11-29 05:00:03,000 ERROR three\n\
            2026-11-29 05:00:04,000 ERROR partial";
        let mut last = 0;
        let n = scan
            .read(LogType::Oxauth, "/f", &mut &text[..], &mut last)
            .unwrap();
        assert_eq!(
            n as usize,
            text.len() - "2026-11-29 05:00:04,000 ERROR partial".len(),
            "an unfinished last line is left for the next read"
        );
        let (kept, matched, truncated) = scan.finish();
        assert_eq!(matched, 3);
        assert!(truncated);
        let lines: Vec<(&str, u64)> = kept.iter().map(|m| (m.line.as_str(), m.unix_ms)).collect();
        assert_eq!(
            lines,
            vec![
                ("\tCaused by: x", to_ms(2026, 11, 29, 5, 0, 1, 0).unwrap()),
                (
                    "2026-11-29 05:00:03,000 ERROR three",
                    to_ms(2026, 11, 29, 5, 0, 3, 0).unwrap()
                ),
            ]
        );
    }

    fn scan_of(re: &Regex, since: u64) -> Scan<'_> {
        Scan {
            re,
            since,
            limit: 1000,
            kept: Vec::new(),
            matched: 0,
            truncated: false,
            walked: 0,
        }
    }

    #[test]
    fn a_match_is_a_line_that_matches_by_itself() {
        let re = compile(r"ERROR\s+two|done$|^\tat").unwrap();
        let mut scan = scan_of(&re, 0);
        let text = b"2026-11-29 05:00:01,000 ERROR\ntwo is on the next line\n\
            2026-11-29 05:00:02,000 ERROR   two on one line\n\
            2026-11-29 05:00:03,000 job done\r\n\
            2026-11-29 05:00:04,000 not done yet\n\
            \tat org.gluu.Foo.bar(Foo.java:12)\n";
        let mut last = 0;
        scan.read(LogType::Oxauth, "/f", &mut &text[..], &mut last)
            .unwrap();
        let (kept, matched, _) = scan.finish();
        let lines: Vec<(&str, u64)> = kept.iter().map(|m| (m.line.as_str(), m.unix_ms)).collect();
        assert_eq!(matched, 3, "{lines:?}");
        assert_eq!(
            lines,
            vec![
                (
                    "2026-11-29 05:00:02,000 ERROR   two on one line",
                    to_ms(2026, 11, 29, 5, 0, 2, 0).unwrap()
                ),
                (
                    "2026-11-29 05:00:03,000 job done",
                    to_ms(2026, 11, 29, 5, 0, 3, 0).unwrap()
                ),
                (
                    "\tat org.gluu.Foo.bar(Foo.java:12)",
                    to_ms(2026, 11, 29, 5, 0, 4, 0).unwrap()
                ),
            ]
        );
        assert_eq!(last, to_ms(2026, 11, 29, 5, 0, 4, 0).unwrap());
    }

    #[test]
    fn unstamped_lines_cost_one_walk_per_block() {
        // 1 MiB of lines in a format without a stamp, every one matching: each match's walk
        // back stops at the previous match (quadratic otherwise: minutes, not milliseconds).
        let re = compile("conn=").unwrap();
        let line = b"Nov 29 05:00:00 host slapd[1]: conn=1000 op=1 SRCH\n";
        let mut text = Vec::new();
        while text.len() < 2 * BLOCK {
            text.extend_from_slice(line);
        }
        let lines = (text.len() / line.len()) as u64;
        let mut scan = scan_of(&re, 0);
        scan.limit = 10;
        let mut last = 7;
        scan.read(LogType::Ldap, "/f", &mut &text[..], &mut last)
            .unwrap();
        let walked = scan.walked;
        let (kept, matched, _) = scan.finish();
        assert_eq!(matched, lines);
        assert!(
            walked <= lines + 2,
            "{walked} line visits for {lines} lines"
        );
        // No stamp anywhere: the file's time carried in.
        assert!(kept.iter().all(|m| m.unix_ms == 7));
        assert_eq!(last, 7);
    }

    #[test]
    fn a_continuation_line_past_a_block_boundary_keeps_its_entrys_stamp() {
        let re = compile("Caused by").unwrap();
        let entry = to_ms(2026, 11, 29, 5, 0, 1, 0).unwrap();
        let mut text =
            b"2026-11-29 05:00:00,000 INFO before\n2026-11-29 05:00:01,000 ERROR x\n".to_vec();
        // More than a block of stack trace, then the line searched for, then a new entry.
        while text.len() < BLOCK + BLOCK / 2 {
            text.extend_from_slice(b"\tat org.gluu.Foo.bar(Foo.java:12)\n");
        }
        text.extend_from_slice(
            b"Caused by: java.io.IOException\n2026-11-29 05:00:09,000 INFO after\n",
        );
        for since in [0, entry, entry + 1] {
            let mut scan = scan_of(&re, since);
            let mut last = 0;
            let n = scan
                .read(LogType::Oxauth, "/f", &mut &text[..], &mut last)
                .unwrap();
            assert_eq!(n as usize, text.len());
            let (kept, _, _) = scan.finish();
            let times: Vec<u64> = kept.iter().map(|m| m.unix_ms).collect();
            let want = if since > entry { vec![] } else { vec![entry] };
            assert_eq!(times, want, "since {since}");
        }
    }

    #[test]
    fn patterns_are_bounded() {
        assert!(compile("(a+)+$").is_ok(), "no backtracking, so no blow-up");
        let e = compile("(").unwrap_err().to_string();
        assert!(e.contains("unclosed group"), "{e}");
        assert!(compile("\\w{1000}{1000}").is_err(), "too big to compile");
    }

    #[test]
    fn sources_follow_the_gluu_container_and_rotated_files_are_read_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir
            .path()
            .join("opt/gluu-server/opt/gluu/jetty/oxauth/logs");
        std::fs::create_dir_all(&logs).unwrap();
        for (name, age) in [
            ("oxauth.log", 0),
            ("oxauth.log.1", 100),
            ("oxauth.log.2.gz", 200),
        ] {
            let p = logs.join(name);
            std::fs::write(&p, "x\n").unwrap();
            let t = std::time::SystemTime::now() - Duration::from_secs(age);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        std::fs::write(logs.join("other.log"), "x\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", logs.join("oxauth-link.log")).unwrap();
        let srcs = sources(dir.path(), &[LogType::Oxauth]);
        assert_eq!(srcs.len(), 1);
        let mut skipped = 0;
        let files: Vec<String> = files_of(&srcs[0], &mut skipped)
            .into_iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files, vec!["oxauth.log.1", "oxauth.log"]);
        assert_eq!(skipped, 1);
        assert_eq!(sources(dir.path(), &[]).len(), 10, "every type");
    }
}
