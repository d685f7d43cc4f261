//! The archive's members and its manifest: each part's size, SHA-256 and count (entries of an
//! LDIF, files of the configuration), read from disk in a stream.

use super::super::OpError;
use super::super::replication::{BASES, Directory};
use super::wire;
use clustermgr_proto::{BackupManifest, BackupPartInfo, BackupPartKind};
use prost::Message;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// The manifest's format.
pub const ARCHIVE_FORMAT: u32 = 1;
pub const MANIFEST: &str = "manifest.pb";
pub const FILES_PART: &str = "files.tar";
/// The archive's name in the stage.
pub const ARCHIVE: &str = "backup.tar";

/// The LDIF member of a base (`o=gluu.ldif`).
pub fn ldif_name(base: &str) -> String {
    format!("{base}.ldif")
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> OpError {
    let shown = p.display().to_string();
    move |e| OpError(format!("cannot read {shown}: {e}"))
}

/// Entries of an LDIF file (its `dn:` lines; a folded line starts with a space) and whether the
/// first one is `base`.
pub fn count_entries(p: &Path, base: &str) -> Result<(u64, bool), OpError> {
    let f = super::open_staged(p).map_err(io(p))?;
    let mut n = 0u64;
    let mut first_is_base = false;
    for line in BufReader::new(f).split(b'\n') {
        let line = line.map_err(io(p))?;
        if line.starts_with(b"dn:") {
            if n == 0 {
                let dn = String::from_utf8_lossy(&line[3..]);
                first_is_base = dn.trim().eq_ignore_ascii_case(base);
            }
            n += 1;
        }
    }
    Ok((n, first_is_base))
}

/// Regular files under `dir` (no link followed).
fn count_files(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}

fn part(
    stage: &Path,
    name: &str,
    kind: BackupPartKind,
    base: &str,
    entries: u64,
) -> Result<BackupPartInfo, OpError> {
    let p = stage.join(name);
    let f = super::open_staged(&p).map_err(io(&p))?;
    let size = f.metadata().map_err(io(&p))?.len();
    let sha256 = crate::ops::packages::sha256_of(f).map_err(io(&p))?;
    Ok(BackupPartInfo {
        name: name.to_string(),
        kind: kind as i32,
        base: base.to_string(),
        size,
        sha256,
        entries,
    })
}

/// Hashes and counts the parts in `stage` (a host path) and writes the manifest there.
pub fn write_manifest(
    layout: &super::Layout,
    stage: &Path,
    dir: Directory,
    hostname: String,
    paths: Vec<String>,
) -> Result<BackupManifest, OpError> {
    let mut parts = Vec::new();
    for base in BASES {
        let name = ldif_name(base);
        let (entries, _) = count_entries(&stage.join(&name), base)?;
        if entries == 0 {
            return Err(OpError(format!("the export of {base} holds no entry")));
        }
        parts.push(part(stage, &name, BackupPartKind::Ldif, base, entries)?);
    }
    let files = paths
        .iter()
        .map(|p| count_files(&layout.host_path(p)))
        .sum();
    parts.push(part(stage, FILES_PART, BackupPartKind::Files, "", files)?);
    let m = BackupManifest {
        format: ARCHIVE_FORMAT,
        hostname,
        created_unix_ms: clustermgr_shared::util::now_ms(),
        directory: wire(dir) as i32,
        parts,
        paths,
    };
    let p = stage.join(MANIFEST);
    clustermgr_shared::fsutil::write_private(&p, &m.encode_to_vec())
        .map_err(|e| OpError(format!("cannot write {}: {e}", p.display())))?;
    Ok(m)
}

/// The archive's members in order: the manifest first.
pub fn member_names(m: &BackupManifest) -> Vec<String> {
    std::iter::once(MANIFEST.to_string())
        .chain(m.parts.iter().map(|p| p.name.clone()))
        .collect()
}

/// Reads the manifest an extracted archive holds and checks every part it lists (a plain name,
/// its size and SHA-256), before anything on the node is touched.
pub fn read_checked(stage: &Path) -> Result<BackupManifest, OpError> {
    let p = stage.join(MANIFEST);
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut super::open_staged(&p).map_err(io(&p))?, &mut bytes)
        .map_err(io(&p))?;
    let m = BackupManifest::decode(bytes.as_slice())
        .map_err(|e| OpError(format!("the archive's manifest does not decode: {e}")))?;
    if m.format != ARCHIVE_FORMAT {
        return Err(OpError(format!(
            "the archive's format is {}, this agent reads {ARCHIVE_FORMAT}",
            m.format
        )));
    }
    for part in &m.parts {
        let plain = !part.name.is_empty()
            && !part.name.contains('/')
            && part.name != "."
            && part.name != "..";
        if !plain {
            return Err(OpError(format!("the manifest names {:?}", part.name)));
        }
        let f = stage.join(&part.name);
        // The file itself, never what a link in its place points to.
        let meta = std::fs::symlink_metadata(&f).map_err(io(&f))?;
        if !meta.is_file() {
            return Err(OpError(format!(
                "{} in the archive is not a regular file",
                part.name
            )));
        }
        let size = meta.len();
        let sha = crate::ops::packages::sha256_file(&f).map_err(io(&f))?;
        if size != part.size || sha != part.sha256 {
            return Err(OpError(format!(
                "{} in the archive is not what its manifest says (size or SHA-256)",
                part.name
            )));
        }
    }
    Ok(m)
}

/// The members of a tar as `tar -tv` lists them: each one's type (the mode's first character:
/// `-` a regular file, `d` a directory, `l` a symbolic link, `h` a hard link, ...) and name.
/// A name tar had to escape (a backslash) is refused rather than guessed.
pub fn listed(listing: &str) -> Result<Vec<(char, String)>, OpError> {
    let mut out = Vec::new();
    for line in listing.lines().filter(|l| !l.trim().is_empty()) {
        let bad = || OpError(format!("an archive member tar lists as {line:?}"));
        let kind = line.chars().next().ok_or_else(bad)?;
        // mode, owner/group, size, date, time, then the name.
        let mut rest = line;
        for _ in 0..5 {
            rest = rest.trim_start();
            let end = rest.find(char::is_whitespace).ok_or_else(bad)?;
            rest = &rest[end..];
        }
        let name = rest.trim_start();
        if name.is_empty() || name.contains('\\') {
            return Err(bad());
        }
        out.push((kind, name.to_string()));
    }
    Ok(out)
}

/// Whether the archive's members are what a backup holds: regular files named plainly (the
/// manifest, the LDIFs, the files' tar), nothing a later step could be redirected through.
pub fn outer_member_ok(kind: char, name: &str) -> bool {
    kind == '-' && !name.is_empty() && !name.contains('/') && name != "." && name != ".."
}

/// Whether a member of the configuration's tar may be written back: a regular file or a
/// directory under `etc/gluu/conf` or `etc/certs`, by a relative name without `..`.
pub fn files_member_ok(kind: char, name: &str) -> bool {
    let name = name.trim_end_matches('/');
    let under = |dir: &str| name == dir || name.starts_with(&format!("{dir}/"));
    (kind == '-' || kind == 'd')
        && !name.starts_with('/')
        && !name
            .split('/')
            .any(|c| c == ".." || c == "." || c.is_empty())
        && (under("etc/gluu/conf") || under("etc/certs"))
}
