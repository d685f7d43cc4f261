//! Reading log files for a search: the time a line carries, and the block scan that keeps the
//! newest matching lines (each with the time of the nearest stamped line at or before it).

use super::MAX_LINE;
use clustermgr_proto::{LogMatch, LogType};
use regex::bytes::Regex;
use std::io::Read;

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

pub(super) fn to_ms(y: u32, mo: u8, d: u32, h: u32, mi: u32, s: u32, ms: u32) -> Option<u64> {
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
pub(super) struct Scan<'a> {
    pub(super) re: &'a Regex,
    pub(super) since: u64,
    pub(super) limit: usize,
    /// Matches in reading order; compacted to the newest `limit` by time when it grows to
    /// twice that.
    pub(super) kept: Vec<LogMatch>,
    pub(super) matched: u64,
    pub(super) truncated: bool,
    /// Lines looked at for a stamp (at most about one walk over every block).
    pub(super) walked: u64,
}

impl<'a> Scan<'a> {
    pub(super) fn new(re: &'a Regex, since: u64, limit: usize) -> Self {
        Self {
            re,
            since,
            limit,
            kept: Vec::new(),
            matched: 0,
            truncated: false,
            walked: 0,
        }
    }

    /// Keeps the newest `limit` matches by time (reading order breaks ties), oldest first.
    fn compact(&mut self) {
        if self.kept.len() > self.limit {
            self.kept.sort_by_key(|m| m.unix_ms);
            let extra = self.kept.len() - self.limit;
            self.kept.drain(..extra);
            self.truncated = true;
        }
    }

    pub(super) fn finish(mut self) -> (Vec<LogMatch>, u64, bool) {
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
    pub(super) fn read(
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
pub(super) const BLOCK: usize = 1 << 20;
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
