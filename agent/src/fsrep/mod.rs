//! File replication, the node's half: one `FileReplication/Sync` stream on the session's
//! connection. The controller sends the configuration; when replication is on for this node,
//! the agent scans the replicated paths, says what it holds (`Hello`), then sends the changes
//! inotify shows (directories watched recursively, never through a symbolic link; events
//! debounced, then the touched paths scanned) and writes the changes relayed to it.
//!
//! The replicated paths are Gluu's own, as Gluu sees them: they are watched and written under
//! the container root (`ROOT/opt/gluu-server`) of an nspawn machine or init.d chroot packaging,
//! under the host root for a nochroot one ([`crate::ops::gluu::Layout`]). Until Gluu is installed
//! and set up, the node replicates nothing and says why in its report. Actions restart nothing
//! here: the node asks the controller (`FsrepRestart`), which restarts the services through a
//! drained gluu-restart workflow of the node, one node out of rotation at a time.
//!
//! When the kernel cannot watch every directory (ENOSPC: the inotify watch limit) the agent says
//! so in its report and scans every 2 s instead of every 30 s. Nothing is lost either way: every
//! scan compares the files with what was last sent or written.

mod actions;
mod apply;
pub mod local;
mod staged;
mod sync;
pub(crate) mod transfer;
mod trust;
mod watch;

use crate::host::Host;
use crate::ops::gluu::Layout;
use clustermgr_proto::{FsrepActionRun, FsrepUp, fsrep_up};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum FsrepError {
    #[error("file replication stream: {0}")]
    Stream(#[from] tonic::Status),
    #[error("{0}")]
    Local(#[from] local::LocalError),
    #[error("the controller did not start with the configuration")]
    NoConfig,
}

/// Where the agent keeps what it knows of the replicated paths.
pub struct Setup {
    pub channel: tonic::transport::Channel,
    pub node_id: String,
    /// The agent's root (its backups go under it).
    pub root: PathBuf,
    pub state_file: PathBuf,
    pub host: Host,
}

/// Keeps the stream up for the session's lifetime (the session aborts this task when it ends).
pub async fn run(s: Setup) {
    let mut runs: Vec<FsrepActionRun> = Vec::new();
    let mut backoff = Duration::from_millis(250);
    loop {
        match sync::sync_once(&s, &mut runs).await {
            // Ended by the controller (a new configuration): open it again soon.
            Ok(()) => {
                tracing::debug!("file replication stream ended");
                backoff = Duration::from_millis(250);
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "file replication stream ended");
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        let jitter = 0.5 + rand::random::<f64>() * 0.5;
        tokio::time::sleep(backoff.mul_f64(jitter)).await;
    }
}

/// The tree the replicated paths are in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tree {
    /// Host directory the paths inside Gluu are under.
    base: PathBuf,
    flavor: &'static str,
}

/// Gluu's tree on this node, or why there is none to replicate yet.
fn tree(host: &Host) -> Result<Tree, String> {
    let layout = Layout::detect(host).map_err(|e| e.0)?;
    if !layout.installed() {
        return Err(format!(
            "Gluu Server ({}) is not set up yet (no setup.properties.last under {}): nothing is \
             replicated until it is",
            layout.flavor.label(),
            layout.base.display()
        ));
    }
    Ok(Tree {
        base: layout.base,
        flavor: layout.flavor.label(),
    })
}

fn up(msg: fsrep_up::Msg) -> FsrepUp {
    FsrepUp { msg: Some(msg) }
}

async fn send(tx: &mpsc::Sender<FsrepUp>, m: FsrepUp) -> Result<(), FsrepError> {
    tx.send(m)
        .await
        .map_err(|_| FsrepError::Stream(tonic::Status::unavailable("stream closed")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{PackageFormat, PackageMode, Runner};
    use crate::ops::gluu::Flavor;
    use crate::ops::gluu::layout::fixture::install;
    use std::path::Path;

    fn host(root: &Path, runner: Runner) -> Host {
        Host {
            root: root.to_path_buf(),
            packages: PackageMode::UnderRoot,
            format: Some(PackageFormat::Deb),
            runner,
            proc: root.join("proc"),
        }
    }

    fn set_up(root: &Path, base: &Path) {
        let d = base.join("install/community-edition-setup");
        std::fs::write(d.join("setup.properties.last.enc"), "").unwrap();
        let _ = root;
    }

    #[test]
    fn the_paths_are_gluu_s_own_for_each_packaging() {
        let d = tempfile::tempdir().unwrap();
        let h = host(d.path(), Runner::Real);
        let e = tree(&h).unwrap_err();
        assert!(e.contains("not installed"), "{e}");
        // Installed, not set up: nothing yet, and the status says so.
        install(d.path(), Flavor::Machine);
        let container = d.path().join("opt/gluu-server");
        let e = tree(&h).unwrap_err();
        assert!(e.contains("not set up yet"), "{e}");
        set_up(d.path(), &container);
        assert_eq!(
            tree(&h).unwrap(),
            Tree {
                base: container.clone(),
                flavor: "nspawn-machine"
            }
        );
        let d2 = tempfile::tempdir().unwrap();
        install(d2.path(), Flavor::InitdChroot);
        set_up(d2.path(), &d2.path().join("opt/gluu-server"));
        let t = tree(&host(d2.path(), Runner::Real)).unwrap();
        assert_eq!(t.base, d2.path().join("opt/gluu-server"));
        assert_eq!(t.flavor, "initd-chroot");
        let d3 = tempfile::tempdir().unwrap();
        install(d3.path(), Flavor::NoChroot);
        set_up(d3.path(), d3.path());
        let t = tree(&host(d3.path(), Runner::Real)).unwrap();
        assert_eq!((t.base.as_path(), t.flavor), (d3.path(), "nochroot"));

        // A relayed write lands inside the machine's root, its backup under the agent's root.
        let state = tempfile::tempdir().unwrap();
        let cfg = clustermgr_proto::FsrepConfig {
            enabled: true,
            paths: vec!["/etc/gluu/conf".into()],
            backups: 1,
            max_file_bytes: 1 << 20,
            ..Default::default()
        };
        let t = tree(&h).unwrap();
        let mut l =
            local::Local::load(&t.base, d.path(), &state.path().join("s"), "n1", cfg).unwrap();
        let conf = container.join("etc/gluu/conf");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("oxauth.properties"), "old").unwrap();
        let f = clustermgr_proto::FsrepFile {
            path: "/etc/gluu/conf/oxauth.properties".into(),
            version: Some(clustermgr_proto::FsrepVersion {
                hlc: 1 << 50,
                node_id: "n2".into(),
            }),
            mode: 0o644,
            sha256: {
                use sha2::Digest;
                sha2::Sha256::digest(b"new").to_vec()
            },
            content: b"new".to_vec(),
            ..Default::default()
        };
        let (ack, changed) = l.apply(f);
        assert!(ack.error.is_empty() && changed, "{}", ack.error);
        assert_eq!(
            std::fs::read_to_string(conf.join("oxauth.properties")).unwrap(),
            "new"
        );
        assert!(!d.path().join("etc/gluu/conf/oxauth.properties").exists());
        assert_eq!(
            std::fs::read_to_string(
                d.path()
                    .join("var/lib/clustermgr/fsrep-backups/etc/gluu/conf/oxauth.properties.1")
            )
            .unwrap(),
            "old"
        );
        assert_eq!(
            l.inside(&conf.join("x.xml")).as_deref(),
            Some("/etc/gluu/conf/x.xml")
        );
    }
}
