use super::*;
use clustermgr_proto::{BackupDirectory, BackupManifest, BackupPartInfo};
use clustermgr_shared::fsrep::CHUNK_BYTES;

const SECRET: &[u8] = b"bindPassword: Sup3r-s3cret-backup-pw";

struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
    store: Store,
    sealer: Sealer,
    backups: Backups,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let store = Store::open(&data.join("store.redb")).unwrap();
    let sealer = Sealer::from_bytes(&[5u8; 32]).unwrap();
    let backups = Backups::open(&data).unwrap();
    Fixture {
        _dir: dir,
        data,
        store,
        sealer,
        backups,
    }
}

/// An archive of 2.5 parts with the secret inside, as the agent would send it.
fn archive() -> Vec<u8> {
    let mut a: Vec<u8> = (0..(CHUNK_BYTES * 5 / 2) as u32)
        .map(|i| (i * 7 % 253) as u8)
        .collect();
    let at = CHUNK_BYTES + 100;
    a[at..at + SECRET.len()].copy_from_slice(SECRET);
    a
}

fn chunks(id: &str, content: &[u8], sha: &str) -> Vec<Result<BackupChunk, tonic::Status>> {
    let mut v = vec![Ok(BackupChunk {
        backup_id: id.into(),
        size: content.len() as u64,
        sha256: sha.into(),
        data: Vec::new(),
    })];
    v.extend(content.chunks(300_001).map(|c| {
        Ok(BackupChunk {
            data: c.to_vec(),
            ..Default::default()
        })
    }));
    v
}

fn sha(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}

fn output(r: &Received) -> BackupNodeOutput {
    BackupNodeOutput {
        backup_id: r.backup_id.clone(),
        sha256: r.sha256.clone(),
        size: r.size,
        manifest: Some(BackupManifest {
            directory: BackupDirectory::Openldap as i32,
            parts: vec![BackupPartInfo {
                name: "o=gluu.ldif".into(),
                base: "o=gluu".into(),
                entries: 4,
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

/// Uploads `content` as backup `id` of `node` and records it.
async fn upload(f: &Fixture, id: &str, node: &str, content: &[u8], keep: u32) -> Vec<BackupInfo> {
    let parts = futures::stream::iter(chunks(id, content, &sha(content)));
    let r = f
        .backups
        .receive(&f.store, &f.sealer, node, parts)
        .await
        .unwrap();
    let out = output(&r);
    let (_, retired) = f
        .backups
        .record(
            &f.store,
            node,
            &format!("{node}.example.org"),
            &out,
            keep,
            &HashSet::new(),
        )
        .await
        .unwrap();
    retired
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_is_stored_sealed_by_its_digest_and_reads_back_whole() {
    let f = fixture();
    let content = archive();
    upload(&f, "b1", "n1", &content, 0).await;
    let dir = f.data.join(DIR);
    assert_eq!(files_in(&dir), [sha(&content)]);
    // At rest, nothing of the secret (nor any 64 bytes of the content) shows.
    let raw = std::fs::read(dir.join(sha(&content))).unwrap();
    assert!(!raw.windows(SECRET.len()).any(|w| w == SECRET));
    assert!(
        !raw.windows(64)
            .any(|w| content.windows(64).next() == Some(w))
    );
    // Round trip.
    let info = Backups::get(&f.store, "b1").unwrap();
    assert_eq!(
        (info.node_id.as_str(), info.size),
        ("n1", content.len() as u64)
    );
    assert_eq!(info.directory, BackupDirectory::Openldap as i32);
    assert_eq!(info.parts.len(), 1);
    let mut back = Vec::new();
    f.backups
        .read(&f.sealer, &info, |p| {
            back.extend(p);
            true
        })
        .unwrap();
    assert_eq!(back, content);
    // As a fetch stream.
    let backups = Arc::new(Backups::open(&f.data).unwrap());
    let sealer = Arc::new(Sealer::from_bytes(&[5u8; 32]).unwrap());
    let mut rx = backups.send(sealer, info.clone());
    let mut streamed = Vec::new();
    while let Some(c) = rx.recv().await {
        streamed.extend(c.unwrap().data);
    }
    assert_eq!(streamed, content);
    // Another data directory's key reads nothing.
    let other = Sealer::from_bytes(&[6u8; 32]).unwrap();
    assert!(f.backups.read(&other, &info, |_| true).is_err());
    assert!(matches!(
        Backups::get(&f.store, "nope"),
        Err(BackupError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_that_does_not_match_its_digest_or_size_is_refused_and_leaves_nothing() {
    let f = fixture();
    let content = archive();
    let wrong = sha(b"something else");
    let parts = futures::stream::iter(chunks("b1", &content, &wrong));
    let e = f
        .backups
        .receive(&f.store, &f.sealer, "n1", parts)
        .await
        .unwrap_err();
    assert!(matches!(e, BackupError::Blob(BlobError::Hash)), "{e}");
    // Fewer bytes than announced.
    let mut short = chunks("b1", &content, &sha(&content));
    short.pop();
    let e = f
        .backups
        .receive(&f.store, &f.sealer, "n1", futures::stream::iter(short))
        .await
        .unwrap_err();
    assert!(
        matches!(e, BackupError::Blob(BlobError::Size { .. })),
        "{e}"
    );
    // A broken transfer.
    let mut broken = chunks("b1", &content, &sha(&content));
    broken.insert(2, Err(tonic::Status::cancelled("gone")));
    let e = f
        .backups
        .receive(&f.store, &f.sealer, "n1", futures::stream::iter(broken))
        .await
        .unwrap_err();
    assert!(matches!(e, BackupError::Transfer(_)), "{e}");
    // A head that is not one.
    for head in [
        BackupChunk {
            backup_id: "../x".into(),
            size: 1,
            sha256: sha(b"x"),
            data: vec![],
        },
        BackupChunk {
            backup_id: "b1".into(),
            size: 1,
            sha256: "zz".into(),
            data: vec![],
        },
        BackupChunk {
            backup_id: "b1".into(),
            size: 1,
            sha256: sha(b"x"),
            data: b"x".to_vec(),
        },
    ] {
        assert!(matches!(
            f.backups.begin(&head),
            Err(BackupError::Invalid(_))
        ));
    }
    assert!(files_in(&f.data.join(DIR)).is_empty());
    assert!(f.store.backups().unwrap().is_empty());
    // A job output naming another archive is not recorded; nor is another node's upload, nor
    // one never received.
    let r = f
        .backups
        .receive(
            &f.store,
            &f.sealer,
            "n1",
            futures::stream::iter(chunks("b2", b"abc", &sha(b"abc"))),
        )
        .await
        .unwrap();
    let good = output(&r);
    let none = HashSet::new();
    assert!(matches!(
        f.backups.record(&f.store, "n2", "h", &good, 0, &none).await,
        Err(BackupError::NotReceived(_))
    ));
    // A received archive, noted, survives the start-up sweep.
    assert_eq!(f.backups.sweep(&f.store).unwrap(), 0);
    assert_eq!(files_in(&f.data.join(DIR)), [sha(b"abc")]);
    let mut bad = good.clone();
    bad.sha256 = sha(b"abd");
    assert!(matches!(
        f.backups.record(&f.store, "n1", "h", &bad, 0, &none).await,
        Err(BackupError::Invalid(_))
    ));
    assert!(matches!(
        f.backups.record(&f.store, "n1", "h", &good, 0, &none).await,
        Err(BackupError::NotReceived(_))
    ));
    assert!(f.store.backups().unwrap().is_empty());
    assert_eq!(f.backups.sweep(&f.store).unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_damaged_on_disk_is_refused_at_its_read() {
    let f = fixture();
    let content = archive();
    upload(&f, "b1", "n1", &content, 0).await;
    let mut info = Backups::get(&f.store, "b1").unwrap();
    // The index says another digest for the same file: the read ends in an error.
    let file = f.backups.file(&info.sha256);
    let other = sha(b"other");
    std::fs::rename(&file, f.backups.file(&other)).unwrap();
    info.sha256 = other;
    assert!(matches!(
        f.backups.read(&f.sealer, &info, |_| true),
        Err(BackupError::Damaged(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_newest_backups_of_each_node_are_kept() {
    let f = fixture();
    for i in 0..3u8 {
        let c = vec![i; 10];
        assert!(upload(&f, &format!("a{i}"), "n1", &c, 2).await.len() <= 1);
        // Creation times are milliseconds: make them distinct.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    upload(&f, "other", "n2", &[9u8; 10], 2).await;
    let kept: Vec<String> = Backups::list(&f.store, Some("n1"))
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(kept, ["a2", "a1"]);
    // The retired archive's file is gone; the other node's stays.
    let mut want = vec![sha(&[1u8; 10]), sha(&[2u8; 10]), sha(&[9u8; 10])];
    want.sort();
    assert_eq!(files_in(&f.data.join(DIR)), want);
    assert_eq!(
        Backups::list(&f.store, Some("n2.example.org"))
            .unwrap()
            .len(),
        1
    );
    // keep 0 is the default, 7.
    let all: Vec<BackupInfo> = (0..9u64)
        .map(|i| BackupInfo {
            id: format!("x{i}"),
            node_id: "n1".into(),
            created_unix_ms: i,
            ..Default::default()
        })
        .collect();
    let retired: Vec<String> = retention(&all, "n1", 0).into_iter().map(|b| b.id).collect();
    assert_eq!(retired, ["x1", "x0"]);
    assert!(retention(&all, "n2", 1).is_empty());
}

#[test]
fn ids_are_plain() {
    assert!(valid_id(&new_id()));
    assert!(!valid_id("A"));
    assert!(!valid_id(""));
    assert!(!valid_id("a/b"));
}

/// A backup recorded while another node's upload is still being written leaves that upload
/// alone (only the start-up sweep removes interrupted uploads).
#[tokio::test(flavor = "multi_thread")]
async fn recording_a_backup_keeps_another_upload_in_progress() {
    let f = fixture();
    let content = archive();
    let head = chunks("b-other", &content, &sha(&content))
        .remove(0)
        .unwrap();
    let mut other = f.backups.begin(&head).unwrap();
    other.write(&f.sealer, &content[..1000]).unwrap();
    let dir = f.data.join(DIR);
    let in_progress = || {
        files_in(&dir)
            .into_iter()
            .filter(|n| n.starts_with(".upload-"))
            .count()
    };
    assert_eq!(in_progress(), 1);
    let retired = upload(&f, "b-first", "n1", &content, 7).await;
    assert!(retired.is_empty());
    assert_eq!(in_progress(), 1, "{:?}", files_in(&dir));
    // The start-up sweep takes it.
    f.backups.sweep(&f.store).unwrap();
    assert_eq!(in_progress(), 0);
}

/// An archive received before a restart is still noted after it and is recorded then; one
/// forgotten (its workflow is gone: `settle` at start) goes with its file.
#[tokio::test(flavor = "multi_thread")]
async fn a_received_archive_survives_a_restart_while_its_workflow_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let sealer = Sealer::from_bytes(&[5u8; 32]).unwrap();
    let (live, dead) = (b"live archive".to_vec(), b"dead archive".to_vec());
    let outs = {
        let store = Store::open(&data.join("store.redb")).unwrap();
        let backups = Backups::open(&data).unwrap();
        let mut outs = Vec::new();
        for (id, c) in [("b-live", &live), ("b-dead", &dead)] {
            let parts = futures::stream::iter(chunks(id, c, &sha(c)));
            outs.push(output(
                &backups.receive(&store, &sealer, "n1", parts).await.unwrap(),
            ));
        }
        outs
    };
    let store = Store::open(&data.join("store.redb")).unwrap();
    let backups = Backups::open(&data).unwrap();
    assert_eq!(backups.sweep(&store).unwrap(), 0);
    assert_eq!(store.backup_uploads().unwrap().len(), 2);
    backups.forget(&store, vec!["b-dead".into()]).await.unwrap();
    assert_eq!(files_in(&data.join(DIR)), [sha(&live)]);
    let none = HashSet::new();
    let (info, _) = backups
        .record(&store, "n1", "h", &outs[0], 0, &none)
        .await
        .unwrap();
    assert_eq!((info.id.as_str(), info.size), ("b-live", live.len() as u64));
    assert!(matches!(
        backups.record(&store, "n1", "h", &outs[1], 0, &none).await,
        Err(BackupError::NotReceived(_))
    ));
    // Recorded again (a workflow's end seen twice): the same record, nothing retired.
    let (again, retired) = backups
        .record(&store, "n1", "h", &outs[0], 1, &none)
        .await
        .unwrap();
    assert_eq!((again, retired.len()), (info.clone(), 0));
    // The same id with another archive is refused.
    let mut other = outs[0].clone();
    other.sha256 = sha(b"x");
    assert!(matches!(
        backups.record(&store, "n1", "h", &other, 0, &none).await,
        Err(BackupError::Conflict(_))
    ));
    assert!(store.backup_uploads().unwrap().is_empty());
}

/// The retention keeps a backup a restore still needs, past `keep`; a workflow that ended
/// without recording an upload forgets it and its file.
#[tokio::test(flavor = "multi_thread")]
async fn retention_spares_what_a_restore_needs_and_unrecorded_uploads_go() {
    let f = fixture();
    upload(&f, "old", "n1", b"old one", 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let parts = futures::stream::iter(chunks("new", b"new one", &sha(b"new one")));
    let r = f
        .backups
        .receive(&f.store, &f.sealer, "n1", parts)
        .await
        .unwrap();
    let protect: HashSet<String> = ["old".to_string()].into();
    let (_, retired) = f
        .backups
        .record(&f.store, "n1", "h", &output(&r), 1, &protect)
        .await
        .unwrap();
    assert!(retired.is_empty());
    assert_eq!(Backups::list(&f.store, None).unwrap().len(), 2);
    // Unprotected, the next one retires both older ones.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    assert_eq!(upload(&f, "newest", "n1", b"newest", 1).await.len(), 2);
    assert_eq!(files_in(&f.data.join(DIR)), [sha(b"newest")]);
    let parts = futures::stream::iter(chunks("failed", b"failed", &sha(b"failed")));
    f.backups
        .receive(&f.store, &f.sealer, "n1", parts)
        .await
        .unwrap();
    assert_eq!(files_in(&f.data.join(DIR)).len(), 2);
    f.backups
        .forget(&f.store, vec!["failed".into()])
        .await
        .unwrap();
    assert_eq!(files_in(&f.data.join(DIR)), [sha(b"newest")]);
    assert!(f.store.backup_uploads().unwrap().is_empty());
}

/// A fetch whose node stops taking parts (without closing) ends once the stall limit passes,
/// freeing its thread, without sending the rest.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_fetch_frees_its_reader() {
    let f = fixture();
    let content: Vec<u8> = (0..CHUNK_BYTES * 7).map(|i| (i % 251) as u8).collect();
    upload(&f, "b1", "n1", &content, 0).await;
    let info = Backups::get(&f.store, "b1").unwrap();
    let backups = Arc::new(f.backups);
    let stall = std::time::Duration::from_millis(100);
    let mut rx = backups.clone().send_within(Arc::new(f.sealer), info, stall);
    // Nothing is read until the reader has given up (it holds the last other reference).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while Arc::strong_count(&backups) > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the reader never gave up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut parts = 0;
    while let Some(p) = rx.recv().await {
        p.unwrap();
        parts += 1;
    }
    assert!(parts < 7, "{parts} parts sent");
}

/// Keeping fewer backups than the default deletes some: an admin's decision, for the start
/// (the request's keep, 0 the default) and for a retry (the stored keep).
#[test]
fn keeping_fewer_than_the_default_needs_an_admin() {
    use crate::ctl::WorkflowKind;
    use crate::roles::Role;
    use clustermgr_workflow::inputs::KindInputs;
    assert_eq!(role_for_keep(0), Role::Operator);
    assert_eq!(role_for_keep(DEFAULT_KEEP), Role::Operator);
    assert_eq!(role_for_keep(30), Role::Operator);
    assert_eq!(role_for_keep(DEFAULT_KEEP - 1), Role::Admin);
    assert_eq!(role_for_keep(1), Role::Admin);
    let f = fixture();
    let kind = BackupKind {
        backups: Arc::new(f.backups),
    };
    let wf = |keep: u32| clustermgr_proto::Workflow {
        kind: clustermgr_workflow::backup::KIND.into(),
        inputs: clustermgr_workflow::backup::Inputs {
            ids: [("n1".to_string(), "b1".to_string())].into(),
            keep,
        }
        .encode()
        .into_iter()
        .collect(),
        ..Default::default()
    };
    assert_eq!(kind.retry_role(&wf(7)), Role::Operator);
    assert_eq!(kind.retry_role(&wf(2)), Role::Admin);
    // Inputs that cannot be read: the safe side.
    let mut bad = wf(7);
    bad.inputs.insert("keep".into(), "many".into());
    assert_eq!(kind.retry_role(&bad), Role::Admin);
}
