//! The controller's start, as `serve` opens its state.

use super::*;
use clustermgr_proto::{
    BackupChunk, BackupNodeOutput, JobRecord, NodeSteps, OperationOutput, Step, StepStatus,
    Workflow, WorkflowStatus, operation_output,
};
use clustermgr_workflow::inputs::KindInputs;
use sha2::{Digest, Sha256};

/// A data directory made by `clustermgr init`.
async fn initialised(dir: &std::path::Path) -> DataDir {
    let data = DataDir::new(dir.join("data"));
    let init = crate::local::init::InitArgs {
        listen: "127.0.0.1:0".into(),
        advertise: None,
        sans: Vec::new(),
        force: false,
    };
    crate::local::init::run(&data, init).await.unwrap();
    data
}

/// The controller's state opened as `serve` opens it.
async fn opened(data: &DataDir) -> (Arc<Ctl>, Parts) {
    let settings = data.load_settings().unwrap();
    let opts = ServeOptions::default();
    let (_tls, ca) = load_tls(data).unwrap();
    open_state(data, &opts, runtime(&settings, &opts).unwrap(), ca)
        .await
        .unwrap()
}

fn backup_workflow(id: &str, node: &str, backup_id: &str, step: StepStatus, job: &str) -> Workflow {
    let inputs = clustermgr_workflow::backup::Inputs {
        ids: [(node.to_string(), backup_id.to_string())].into(),
        keep: 7,
    };
    Workflow {
        id: id.into(),
        kind: clustermgr_workflow::backup::KIND.into(),
        status: match step {
            StepStatus::Succeeded => WorkflowStatus::Succeeded,
            StepStatus::Failed => WorkflowStatus::Failed,
            _ => WorkflowStatus::Running,
        } as i32,
        inputs: inputs.encode().into_iter().collect(),
        nodes: vec![NodeSteps {
            node_id: node.into(),
            hostname: format!("{node}.example.org"),
            steps: vec![Step {
                name: "backup-directory".into(),
                status: step as i32,
                job_id: job.into(),
                ..Default::default()
            }],
        }],
        ..Default::default()
    }
}

/// Receives `content` as backup `id` of `node` (the archive noted, its file in place) and
/// returns what the node's job would report.
async fn received(
    store: &Store,
    data: &DataDir,
    node: &str,
    id: &str,
    content: &[u8],
) -> BackupNodeOutput {
    let sealer = crate::sealing::Sealer::load_or_create(&data.sealing_key()).unwrap();
    let backups = crate::backup::Backups::open(&data.root).unwrap();
    let sha = hex::encode(Sha256::digest(content));
    let parts = futures::stream::iter([
        Ok(BackupChunk {
            backup_id: id.into(),
            size: content.len() as u64,
            sha256: sha.clone(),
            data: Vec::new(),
        }),
        Ok(BackupChunk {
            data: content.to_vec(),
            ..Default::default()
        }),
    ]);
    let r = backups.receive(store, &sealer, node, parts).await.unwrap();
    BackupNodeOutput {
        backup_id: r.backup_id,
        sha256: r.sha256,
        size: r.size,
        ..Default::default()
    }
}

/// A backup workflow that ended while the controller stopped before its end was applied: at
/// the next start its received archive is recorded (a succeeded upload step) or forgotten with
/// its file (a failed one); one a running workflow names stays noted; an archive no workflow
/// names is forgotten.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_whose_end_was_missed_is_recorded_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = initialised(dir.path()).await;
    {
        let store = Store::open(&data.store()).unwrap();
        let done = received(&store, &data, "n1", "b-done", b"a whole backup").await;
        received(&store, &data, "n1", "b-failed", b"a failed one").await;
        received(&store, &data, "n2", "b-orphan", b"named by nothing").await;
        received(&store, &data, "n3", "b-live", b"still running").await;
        let job = JobRecord {
            id: "j1".into(),
            node_id: "n1".into(),
            output: Some(OperationOutput {
                kind: Some(operation_output::Kind::BackupNode(done)),
            }),
            ..Default::default()
        };
        store.put_job(job, Vec::new(), None).await.unwrap();
        for wf in [
            backup_workflow("w1", "n1", "b-done", StepStatus::Succeeded, "j1"),
            backup_workflow("w2", "n1", "b-failed", StepStatus::Failed, ""),
            backup_workflow("w3", "n3", "b-live", StepStatus::Running, "j3"),
        ] {
            store.put_workflow(wf, Vec::new(), None).await.unwrap();
        }
        assert_eq!(store.backup_uploads().unwrap().len(), 4);
    }
    let (ctl, _parts) = opened(&data).await;
    let held: Vec<String> = ctl
        .store
        .backups()
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(held, ["b-done"]);
    let noted: Vec<String> = ctl
        .store
        .backup_uploads()
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(noted, ["b-live"]);
    let mut files: Vec<String> = std::fs::read_dir(data.root.join(crate::backup::DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut want =
        [b"a whole backup".as_slice(), b"still running"].map(|c| hex::encode(Sha256::digest(c)));
    want.sort();
    assert_eq!(files, want);
}

/// An upload no running backup step expects is refused before anything is written or noted.
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_no_backup_expects_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = initialised(dir.path()).await;
    let (ctl, parts) = opened(&data).await;
    let content = b"unasked";
    let chunks = futures::stream::iter([
        Ok(BackupChunk {
            backup_id: "b1".into(),
            size: content.len() as u64,
            sha256: hex::encode(Sha256::digest(content)),
            data: Vec::new(),
        }),
        Ok(BackupChunk {
            data: content.to_vec(),
            ..Default::default()
        }),
    ]);
    let e = crate::backup::take_upload(&ctl, &parts.backups, "n1", "b1", chunks)
        .await
        .unwrap_err();
    assert!(matches!(e, crate::backup::BackupError::NotExpected), "{e}");
    assert!(ctl.store.backup_uploads().unwrap().is_empty());
    let files = std::fs::read_dir(data.root.join(crate::backup::DIR))
        .unwrap()
        .count();
    assert_eq!(files, 0);
}
