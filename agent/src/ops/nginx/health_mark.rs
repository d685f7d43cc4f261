//! An external load balancer's drain and rejoin: the node's health mark, a file its own web
//! tier serves at `/clustermgr-health` (Gluu's Apache document root, `/var/www/html` inside the
//! container), present (200) while the node is in rotation. The job runs on the node itself:
//! the balancer only reads what the node serves (the agent accepts no connection and runs
//! nothing from the network). After the change the job waits `mark_wait_ms`, the time the
//! operator gave for the balancer's health checks to see it (and, for a drain, for the
//! requests it sent the node before to finish).

use crate::ops::gluu::Layout;
use crate::ops::{Ctx, Log, OpError};
use clustermgr_proto::{SetBackendRotation, SetBackendRotationOutput};
use clustermgr_shared::fsutil::write_atomic;
use std::path::PathBuf;
use std::time::Duration;

/// Inside the Gluu container (or on the host for nochroot): the document root's file.
pub const HEALTH_MARK: &str = "/var/www/html/clustermgr-health";
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// The host path of this node's health mark.
pub fn mark_path(ctx: &Ctx) -> Result<PathBuf, OpError> {
    let layout = Layout::locate(&ctx.host)
        .ok_or_else(|| OpError("Gluu Server is not installed on this node".into()))?;
    Ok(layout.host_path(HEALTH_MARK))
}

pub async fn set(
    ctx: &Ctx,
    req: &SetBackendRotation,
    log: &mut Log,
) -> Result<SetBackendRotationOutput, OpError> {
    let path = mark_path(ctx)?;
    let shown = path.display().to_string();
    let present = path.exists();
    let changed = present != req.in_rotation;
    if req.in_rotation {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| OpError(format!("{}: {e}", dir.display())))?;
        }
        write_atomic(&path, b"ok\n", 0o644).map_err(|e| OpError(format!("{shown}: {e}")))?;
    } else if present {
        std::fs::remove_file(&path).map_err(|e| OpError(format!("{shown}: {e}")))?;
    }
    log.line(format!(
        "{}'s health mark {shown} {}{}",
        req.name,
        if req.in_rotation {
            "is there"
        } else {
            "is gone"
        },
        if changed { "" } else { " (it already was)" }
    ));
    let wait = Duration::from_millis(u64::from(req.mark_wait_ms)).min(MAX_WAIT);
    // Also when it already was (a job sent again after this agent restarted mid-wait): the
    // balancer may not have seen it yet.
    if !wait.is_zero() {
        log.line(format!(
            "waiting {} s for the external load balancer's health checks",
            wait.as_secs()
        ));
        tokio::time::sleep(wait).await;
    }
    Ok(SetBackendRotationOutput {
        changed,
        drained: if req.in_rotation {
            Vec::new()
        } else {
            vec![req.name.clone()]
        },
        drained_in_ms: if req.in_rotation {
            0
        } else {
            wait.as_millis() as u64
        },
        ready: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gluu::Flavor;
    use crate::ops::tests::log;

    /// What an external balancer sees: a real nginx serving the Gluu container's document root
    /// (as Gluu's Apache does) answers the health mark 200 in rotation, 404 once drained, and
    /// 200 again after the rejoin.
    #[tokio::test]
    async fn the_health_mark_served_by_the_web_tier_goes_with_a_drain_and_comes_back() {
        let nginx = super::super::NGINX;
        if !std::path::Path::new(nginx).exists() {
            panic!("{nginx} is needed by this test");
        }
        let dir = tempfile::tempdir().unwrap();
        let ctx = super::super::tests::sandbox_ctx(dir.path());
        crate::ops::gluu::layout::fixture::install(dir.path(), Flavor::Machine);
        let mark = mark_path(&ctx).unwrap();
        let docroot = mark.parent().unwrap().to_path_buf();
        std::fs::create_dir_all(&docroot).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let web = dir.path().join("web");
        std::fs::create_dir_all(&web).unwrap();
        let pid = web.join("nginx.pid");
        std::fs::write(
            web.join("nginx.conf"),
            format!(
                "pid {pid};\nerror_log {err};\nevents {{}}\nhttp {{ access_log off; \
                 client_body_temp_path {w}/b; proxy_temp_path {w}/p; fastcgi_temp_path {w}/f; \
                 uwsgi_temp_path {w}/u; scgi_temp_path {w}/s; \
                 server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n",
                pid = pid.display(),
                err = web.join("error.log").display(),
                w = web.display(),
                root = docroot.display(),
            ),
        )
        .unwrap();
        let started = std::process::Command::new(nginx)
            .arg("-p")
            .arg(&web)
            .arg("-c")
            .arg(web.join("nginx.conf"))
            .status()
            .unwrap();
        assert!(started.success());
        struct Stop(PathBuf);
        impl Drop for Stop {
            fn drop(&mut self) {
                if let Ok(p) = std::fs::read_to_string(&self.0) {
                    let _ = std::process::Command::new("kill").arg(p.trim()).status();
                }
            }
        }
        let _stop = Stop(pid);
        let probe = || {
            let o = std::process::Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg(format!("http://127.0.0.1:{port}/clustermgr-health"))
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        let (mut l, _rx) = log();
        let req = |in_rotation: bool| SetBackendRotation {
            name: "gluu1".into(),
            in_rotation,
            health_mark: true,
            mark_wait_ms: 1,
            ..Default::default()
        };
        let first = set(&ctx, &req(true), &mut l).await.unwrap();
        assert!(first.changed);
        assert_eq!(probe(), "200");
        let out = set(&ctx, &req(false), &mut l).await.unwrap();
        assert!(out.changed && out.drained == vec!["gluu1".to_string()]);
        assert_eq!(probe(), "404", "drained");
        let again = set(&ctx, &req(false), &mut l).await.unwrap();
        assert!(!again.changed, "a drain sent again");
        set(&ctx, &req(true), &mut l).await.unwrap();
        assert_eq!(probe(), "200", "rejoined");
    }
}
