//! Receiving a pushed package into the content-addressed cache
//! (`ROOT/var/cache/clustermgr/packages/<sha256>.<ext>`, where `packages.rs` installs from).
//!
//! The file is fetched over the agent's own connection (`AgentSession/FetchPackage`) into
//! `<sha256>.<ext>.part`, one chunk per message; each chunk's SHA-256 is checked before it is
//! written. A `.part` left by an earlier transfer is verified chunk by chunk and cut at the first
//! bad or partial chunk, and the transfer resumes there. The whole file's SHA-256 is checked
//! before it is renamed into the cache; a wrong file is deleted, never kept.

use super::{Ctx, Log, OpError};
use clustermgr_proto::agent_session_client::AgentSessionClient;
use clustermgr_proto::{FetchPackageRequest, ReceivePackage, ReceivePackageOutput};
use clustermgr_shared::MAX_MESSAGE_BYTES;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Written data is synced to disk at least this often.
const SYNC_EVERY: u64 = 8 << 20;
/// Largest chunk accepted (a chunk travels as one message).
const MAX_CHUNK: u32 = 8 << 20;

/// Packages being received right now (one transfer per file at a time).
static RECEIVING: Mutex<Option<HashSet<String>>> = Mutex::new(None);

struct Receiving(String);

impl Receiving {
    fn start(sha: &str) -> Result<Self, OpError> {
        let mut g = RECEIVING.lock().unwrap_or_else(|p| p.into_inner());
        let set = g.get_or_insert_with(HashSet::new);
        if !set.insert(sha.to_string()) {
            return Err(OpError(format!(
                "package {sha} is being received by another job on this node"
            )));
        }
        Ok(Self(sha.to_string()))
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        let mut g = RECEIVING.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = g.as_mut() {
            set.remove(&self.0);
        }
    }
}

pub(crate) fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn io(what: &str, p: &Path) -> impl FnOnce(std::io::Error) -> OpError {
    let msg = format!("{what} {}", p.display());
    move |e| OpError(format!("{msg}: {e}"))
}

fn joined<T>(r: Result<Result<T, OpError>, tokio::task::JoinError>) -> Result<T, OpError> {
    r.map_err(|e| OpError(format!("internal task failed: {e}")))?
}

/// Checks what the controller sent before anything is touched.
fn validate(req: &ReceivePackage) -> Result<u64, OpError> {
    if !is_sha256(&req.sha256) {
        return Err(OpError(format!(
            "{:?} is not a SHA-256 (64 lowercase hex digits)",
            req.sha256
        )));
    }
    if req.format != "deb" && req.format != "rpm" {
        return Err(OpError(format!(
            "unknown package format {:?} (deb or rpm)",
            req.format
        )));
    }
    if req.chunk_size == 0 || req.chunk_size > MAX_CHUNK {
        return Err(OpError(format!(
            "chunk size {} is outside 1..={MAX_CHUNK}",
            req.chunk_size
        )));
    }
    let chunks = req.size.div_ceil(req.chunk_size as u64);
    if chunks != req.chunk_sha256.len() as u64 || !req.chunk_sha256.iter().all(|h| is_sha256(h)) {
        return Err(OpError(format!(
            "the push lists {} chunk hashes; a {}-byte file in {}-byte chunks has {chunks}",
            req.chunk_sha256.len(),
            req.size,
            req.chunk_size
        )));
    }
    Ok(chunks)
}

/// Free bytes for an unprivileged writer on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> Result<u64, OpError> {
    let st = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| OpError(format!("cannot read free space of {}: {e}", dir.display())))?;
    Ok((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

pub async fn receive(
    ctx: &Ctx,
    req: ReceivePackage,
    log: &mut Log,
) -> Result<ReceivePackageOutput, OpError> {
    validate(&req)?;
    let _guard = Receiving::start(&req.sha256)?;
    let cache = ctx.host.package_cache();
    let final_path = cache.join(format!("{}.{}", req.sha256, req.format));
    let part_path = cache.join(format!("{}.{}.part", req.sha256, req.format));
    let name = if req.display_name.is_empty() {
        req.sha256.clone()
    } else {
        req.display_name.clone()
    };
    std::fs::create_dir_all(&cache).map_err(io("cannot create", &cache))?;

    // Already there with the right content: nothing to transfer.
    if final_path.exists() {
        let p = final_path.clone();
        let actual = joined(
            tokio::task::spawn_blocking(move || {
                super::packages::sha256_file(&p).map_err(io("cannot read", &p))
            })
            .await,
        )?;
        if actual == req.sha256 {
            log.line(format!(
                "{name} is already in the cache ({})",
                final_path.display()
            ));
            return Ok(ReceivePackageOutput {
                already_cached: true,
                resumed_from: 0,
                received_bytes: 0,
            });
        }
        log.line(format!(
            "the cached {} does not match its SHA-256; it is deleted and received again",
            final_path.display()
        ));
        std::fs::remove_file(&final_path).map_err(io("cannot delete", &final_path))?;
    }

    // Free disk, before any data moves.
    let have = std::fs::metadata(&part_path)
        .map(|m| m.len().min(req.size))
        .unwrap_or(0);
    let needed = req.size - have;
    let free = free_bytes(&cache)?;
    if free < needed {
        return Err(OpError(format!(
            "not enough disk space in {}: receiving {name} needs {needed} bytes, {free} are free",
            cache.display()
        )));
    }

    // Keep what an earlier transfer verified.
    let (file, hasher, resumed_from) = {
        let p = part_path.clone();
        let r = req.clone();
        joined(tokio::task::spawn_blocking(move || verify_part(&p, &r)).await)?
    };
    if resumed_from > 0 {
        log.line(format!(
            "resuming {name} at byte {resumed_from} of {} (verified chunks of an earlier transfer)",
            req.size
        ));
    } else {
        log.line(format!("receiving {name} ({} bytes)", req.size));
    }
    let (file, hasher, received) = if resumed_from < req.size {
        fetch(ctx, &req, file, hasher, resumed_from, log).await?
    } else {
        (file, hasher, 0)
    };
    let actual = hex::encode(hasher.finalize());
    drop(file);
    if actual != req.sha256 {
        let _ = std::fs::remove_file(&part_path);
        return Err(OpError(format!(
            "the received file's SHA-256 is {actual}, not {}; it was deleted",
            req.sha256
        )));
    }
    std::fs::rename(&part_path, &final_path).map_err(io("cannot rename", &part_path))?;
    if let Ok(d) = File::open(&cache) {
        let _ = d.sync_all();
    }
    log.line(format!(
        "received {name}: {received} bytes transferred, cached as {}",
        final_path.display()
    ));
    Ok(ReceivePackageOutput {
        already_cached: false,
        resumed_from,
        received_bytes: received,
    })
}

/// Opens (creating) the `.part` file, keeps its leading chunks that match their hashes and cuts
/// it after them. Returns the file positioned at the end, the hash of what it holds, and its
/// length.
fn verify_part(p: &PathBuf, req: &ReceivePackage) -> Result<(File, Sha256, u64), OpError> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(p)
        .map_err(io("cannot open", p))?;
    let len = f.metadata().map_err(io("cannot read", p))?.len();
    let mut whole = Sha256::new();
    let mut good = 0u64;
    let mut buf = Vec::with_capacity(req.chunk_size as usize);
    for expected in &req.chunk_sha256 {
        let want = (req.chunk_size as u64).min(req.size - good);
        if good + want > len {
            break;
        }
        buf.clear();
        (&mut f)
            .take(want)
            .read_to_end(&mut buf)
            .map_err(io("cannot read", p))?;
        if buf.len() as u64 != want || hex::encode(Sha256::digest(&buf)) != *expected {
            break;
        }
        whole.update(&buf);
        good += want;
    }
    if len != good {
        f.set_len(good).map_err(io("cannot truncate", p))?;
    }
    f.seek(SeekFrom::Start(good))
        .map_err(io("cannot seek", p))?;
    Ok((f, whole, good))
}

async fn fetch(
    ctx: &Ctx,
    req: &ReceivePackage,
    mut file: File,
    mut hasher: Sha256,
    from: u64,
    log: &mut Log,
) -> Result<(File, Sha256, u64), OpError> {
    let channel = ctx
        .channel
        .clone()
        .ok_or_else(|| OpError("this agent has no connection to fetch the package over".into()))?;
    let mut client = AgentSessionClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut stream = client
        .fetch_package(FetchPackageRequest {
            job_id: req.job_id.clone(),
            sha256: req.sha256.clone(),
            offset: from,
        })
        .await
        .map_err(|s| {
            OpError(format!(
                "the controller refused the transfer: {}",
                s.message()
            ))
        })?
        .into_inner();
    let mut at = from;
    let mut synced = from;
    let step = (req.size / 10).max(1);
    let mut next_report = (from / step + 1) * step;
    while at < req.size {
        let chunk = match stream.message().await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Err(OpError(format!(
                    "the transfer ended at byte {at} of {}; push again to resume",
                    req.size
                )));
            }
            Err(s) => {
                return Err(OpError(format!(
                    "the transfer broke at byte {at} of {}: {}; push again to resume",
                    req.size,
                    s.message()
                )));
            }
        };
        let index = (at / req.chunk_size as u64) as usize;
        let want = (req.chunk_size as u64).min(req.size - at);
        if chunk.offset != at || chunk.data.len() as u64 != want {
            return Err(OpError(format!(
                "the controller sent {} bytes at offset {}; expected {want} at {at}",
                chunk.data.len(),
                chunk.offset
            )));
        }
        let expected = req.chunk_sha256.get(index).cloned().unwrap_or_default();
        let sync = at + want - synced >= SYNC_EVERY || at + want == req.size;
        let (f, h) = joined(
            tokio::task::spawn_blocking(move || {
                if hex::encode(Sha256::digest(&chunk.data)) != expected {
                    return Err(OpError(format!(
                        "chunk {index} (offset {at}) does not match its SHA-256; it was not kept"
                    )));
                }
                file.write_all(&chunk.data)
                    .map_err(|e| OpError(format!("cannot write the package: {e}")))?;
                if sync {
                    file.sync_data()
                        .map_err(|e| OpError(format!("cannot sync the package: {e}")))?;
                }
                hasher.update(&chunk.data);
                Ok((file, hasher))
            })
            .await,
        )?;
        file = f;
        hasher = h;
        at += want;
        if sync {
            synced = at;
        }
        if at >= next_report || at == req.size {
            log.line(format!(
                "progress: {at}/{} bytes ({}%)",
                req.size,
                at * 100 / req.size.max(1)
            ));
            next_report = (at / step + 1) * step;
        }
    }
    Ok((file, hasher, at - from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req_for(content: &[u8], chunk: u32) -> ReceivePackage {
        ReceivePackage {
            sha256: hex::encode(Sha256::digest(content)),
            size: content.len() as u64,
            format: "deb".into(),
            display_name: "t".into(),
            chunk_size: chunk,
            chunk_sha256: content
                .chunks(chunk as usize)
                .map(|c| hex::encode(Sha256::digest(c)))
                .collect(),
            job_id: "j".into(),
        }
    }

    #[test]
    fn a_part_file_is_cut_at_its_first_bad_or_partial_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let req = req_for(&content, 1000);
        let p = dir.path().join("x.part");
        // 3.5 good chunks: kept 3.
        std::fs::write(&p, &content[..3500]).unwrap();
        let (_, _, good) = verify_part(&p, &req).unwrap();
        assert_eq!(good, 3000);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 3000);
        // A corrupted second chunk: kept 1.
        let mut bad = content[..5000].to_vec();
        bad[1500] ^= 0xff;
        std::fs::write(&p, &bad).unwrap();
        let (_, h, good) = verify_part(&p, &req).unwrap();
        assert_eq!(good, 1000);
        assert_eq!(
            hex::encode(h.finalize()),
            hex::encode(Sha256::digest(&content[..1000]))
        );
        // Complete: all kept.
        std::fs::write(&p, &content).unwrap();
        let (_, h, good) = verify_part(&p, &req).unwrap();
        assert_eq!(good, 10_000);
        assert_eq!(hex::encode(h.finalize()), req.sha256);
    }

    #[test]
    fn a_push_with_inconsistent_chunk_hashes_is_refused() {
        let mut req = req_for(b"abcdef", 4);
        assert_eq!(validate(&req).unwrap(), 2);
        req.chunk_sha256.pop();
        assert!(validate(&req).unwrap_err().0.contains("chunk hashes"));
        let mut req = req_for(b"abcdef", 4);
        req.format = "tgz".into();
        assert!(validate(&req).is_err());
        let mut req = req_for(b"abcdef", 4);
        req.sha256 = "../../etc/passwd".into();
        assert!(validate(&req).is_err());
    }
}
