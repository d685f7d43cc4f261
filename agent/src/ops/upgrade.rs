//! `upgrade-agent`: this agent replaced by a newer clustermgr-agent package the controller
//! pushed into the node's cache.
//!
//! The package's prerm stops the agent and its postinst starts it again (when enabled), and a
//! stop kills every process of the agent's unit: a dpkg run by the agent itself would die with
//! it. So the agent hands the work to `upgrade.sh` in the transient unit
//! `clustermgr-agent-upgrade` (systemd-run), which keeps the installed package, installs the new
//! one, waits until the new agent is welcomed by the controller ([`session_up`] writes its
//! package version) and puts the kept package back if it is not, within the given time.
//!
//! The job that started it is interrupted when the agent is stopped; the workflow sends it
//! again, and whichever agent then runs answers from the unit's verdict: the new agent reports
//! the upgrade, the old one (after a rollback) fails the job with the reason.

use super::packages::{cached_file, installed_version, package_id, require_sha256};
use super::{Ctx, Log, OpError, run_checked, run_logged};
use crate::host::{Command, Host, PackageFormat, PackageMode};
use clustermgr_proto::{UpgradeAgent, UpgradeAgentOutput};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The agent's package.
pub const PACKAGE: &str = "clustermgr-agent";
/// Where the kept package, the helper script, the verdicts and the online marker live.
pub const DIR: &str = "/var/lib/clustermgr-agent/upgrade";
/// The transient unit the helper runs in.
pub const UNIT: &str = "clustermgr-agent-upgrade";
const SCRIPT: &str = include_str!("upgrade/upgrade.sh");
/// Time for keeping the installed package and installing the new one, besides the wait for the
/// new agent.
const INSTALL_WITHIN: Duration = Duration::from_secs(600);

/// The version of the package this process was started from: the installed clustermgr-agent
/// in the dpkg database under `root`, read once, when the agent starts (a later install does
/// not change what the running process reports). Empty when the agent is not installed from
/// a .deb.
pub fn package_version(root: &Path) -> String {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION
        .get_or_init(|| {
            // dpkg-query, not the status file: dpkg journals its changes (updates/) and the
            // postinst that starts a new agent runs before they are merged.
            let admin = root.join("var/lib/dpkg");
            if !admin.join("status").is_file() {
                return String::new();
            }
            std::process::Command::new("dpkg-query")
                .arg(format!("--admindir={}", admin.display()))
                .args(["-W", "-f=${db:Status-Status}\t${Version}\n", PACKAGE])
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| present_version(&String::from_utf8_lossy(&o.stdout)))
                .unwrap_or_default()
        })
        .clone()
}

/// The version from dpkg-query's `STATE\tVERSION` when the package is installed, or being
/// configured (the package's postinst starts the agent before dpkg records it configured).
pub fn present_version(line: &str) -> Option<String> {
    let (state, version) = line.lines().next()?.split_once('\t')?;
    let present = matches!(
        state,
        "installed" | "half-configured" | "unpacked" | "triggers-awaited" | "triggers-pending"
    );
    (present && !version.is_empty()).then(|| version.trim().to_string())
}

/// The controller welcomed this agent: an upgrade under way learns that the new agent is up.
pub fn session_up(host: &Host) {
    let dir = host.path(DIR);
    if !dir.is_dir() {
        return;
    }
    let v = package_version(&host.root);
    if let Err(e) =
        clustermgr_shared::fsutil::write_atomic(&dir.join("online"), v.as_bytes(), 0o600)
    {
        tracing::warn!(error = %e, "cannot tell an agent upgrade that this agent is online");
    }
}

/// What the helper decided, from its one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Upgraded {
        from: String,
        to: String,
    },
    RolledBack {
        from: String,
        to: String,
        why: String,
    },
    Failed(String),
}

impl Verdict {
    pub fn parse(line: &str) -> Option<Self> {
        let line = line.trim();
        let (word, rest) = line.split_once(' ')?;
        match word {
            "upgraded" => {
                let (from, to) = rest.split_once(' ')?;
                Some(Self::Upgraded {
                    from: from.into(),
                    to: to.into(),
                })
            }
            "rolled-back" => {
                let mut p = rest.splitn(3, ' ');
                Some(Self::RolledBack {
                    from: p.next()?.into(),
                    to: p.next()?.into(),
                    why: p.next().unwrap_or_default().into(),
                })
            }
            "failed" => Some(Self::Failed(rest.into())),
            _ => None,
        }
    }
}

fn verdict_path(host: &Host, sha: &str) -> PathBuf {
    host.path(DIR).join(format!("{sha}.result"))
}

async fn unit_active(host: &Host, log: &mut Log) -> Result<bool, OpError> {
    let out = run_logged(
        host,
        &Command::new(["systemctl", "is-active", "--quiet", UNIT]),
        log,
        "ask systemd about the upgrade unit",
    )
    .await?;
    Ok(out.success())
}

pub async fn upgrade(
    ctx: &Ctx,
    req: UpgradeAgent,
    log: &mut Log,
) -> Result<UpgradeAgentOutput, OpError> {
    // First: the hash names the verdict file below.
    require_sha256(&req.sha256)?;
    let host = &ctx.host;
    if host.packages != PackageMode::System || host.format != Some(PackageFormat::Deb) {
        return Err(OpError(
            "an agent upgrade needs the agent installed from its .deb, running as root on a \
             dpkg system"
                .into(),
        ));
    }
    if !host.path("/run/systemd/system").is_dir() {
        return Err(OpError(
            "an agent upgrade needs systemd (the install runs in a unit of its own)".into(),
        ));
    }
    let dir = host.path(DIR);
    std::fs::create_dir_all(&dir)
        .map_err(|e| OpError(format!("cannot create {}: {e}", dir.display())))?;
    let verdict = verdict_path(host, &req.sha256);
    let within = Duration::from_millis(u64::from(req.online_within_ms.max(1000)));
    if unit_active(host, log).await? {
        log.line("an agent upgrade is under way on this node; waiting for its verdict");
        return answer(
            host,
            &verdict,
            wait(&verdict, within + INSTALL_WITHIN).await?,
            log,
        );
    }
    if verdict.is_file() {
        let line = std::fs::read_to_string(&verdict).unwrap_or_default();
        return answer(host, &verdict, line, log);
    }
    let file = cached_file(host, PackageFormat::Deb, &req.sha256).await?;
    let id = package_id(host, PackageFormat::Deb, &file, log).await?;
    if id.name != PACKAGE {
        return Err(OpError(format!(
            "the pushed package is {} {}, not {PACKAGE}",
            id.name, id.version
        )));
    }
    if id.version != req.version {
        return Err(OpError(format!(
            "the pushed package is {PACKAGE} {}, the controller expected {}",
            id.version, req.version
        )));
    }
    let installed = installed_version(host, PackageFormat::Deb, PACKAGE, log).await?;
    let running = package_version(&host.root);
    if installed.as_deref() == Some(id.version.as_str()) && running == id.version {
        log.line(format!("{PACKAGE} {} is installed and running", id.version));
        return Ok(UpgradeAgentOutput {
            from_version: running.clone(),
            to_version: running,
            changed: false,
        });
    }
    let script = dir.join("upgrade.sh");
    clustermgr_shared::fsutil::write_atomic(&script, SCRIPT.as_bytes(), 0o700)
        .map_err(|e| OpError(format!("cannot write {}: {e}", script.display())))?;
    let cmd = Command::new([
        "systemd-run".to_string(),
        format!("--unit={UNIT}"),
        "--collect".into(),
        "--quiet".into(),
        "--setenv=DEBIAN_FRONTEND=noninteractive".into(),
        "/bin/sh".into(),
        script.display().to_string(),
        dir.display().to_string(),
        file.display().to_string(),
        id.version.clone(),
        within.as_secs().to_string(),
        verdict.display().to_string(),
    ]);
    run_checked(host, &cmd, log, "start the upgrade unit").await?;
    log.line(format!(
        "upgrading {PACKAGE} {} to {} in unit {UNIT} (journalctl -u {UNIT}); this agent is \
         stopped by the package, the new one must come online within {} s",
        installed.unwrap_or_default(),
        id.version,
        within.as_secs()
    ));
    let line = wait(&verdict, within + INSTALL_WITHIN).await?;
    answer(host, &verdict, line, log)
}

/// Waits for the helper's verdict.
async fn wait(verdict: &Path, within: Duration) -> Result<String, OpError> {
    let end = Instant::now() + within;
    loop {
        if let Ok(s) = std::fs::read_to_string(verdict)
            && !s.trim().is_empty()
        {
            return Ok(s);
        }
        if Instant::now() > end {
            return Err(OpError(format!(
                "no verdict from the upgrade unit within {} s (journalctl -u {UNIT})",
                within.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The job's outcome from a verdict. A failure is reported once: the verdict file is renamed,
/// so a retry of the workflow tries again.
fn answer(
    host: &Host,
    path: &Path,
    line: String,
    log: &mut Log,
) -> Result<UpgradeAgentOutput, OpError> {
    log.line(format!("upgrade unit: {}", line.trim()));
    let fail = |msg: String| {
        let _ = std::fs::rename(path, path.with_extension("reported"));
        Err(OpError(msg))
    };
    match Verdict::parse(&line) {
        Some(Verdict::Upgraded { from, to }) => {
            let running = package_version(&host.root);
            if running != to {
                return fail(format!(
                    "{PACKAGE} {to} was installed, but this agent was started from {running:?}"
                ));
            }
            Ok(UpgradeAgentOutput {
                from_version: from,
                to_version: to,
                changed: true,
            })
        }
        Some(Verdict::RolledBack { from, to, why }) => fail(format!(
            "{why}; {PACKAGE} {from} was reinstalled (upgrade to {to} rolled back)"
        )),
        Some(Verdict::Failed(why)) => fail(why),
        None => fail(format!(
            "unreadable verdict from the upgrade unit: {line:?}"
        )),
    }
}

#[cfg(test)]
mod script_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_version_counts_while_dpkg_configures_it() {
        assert_eq!(
            present_version("installed\t0.1.0+up1\n").as_deref(),
            Some("0.1.0+up1")
        );
        // Its postinst starts the agent while dpkg configures it.
        assert_eq!(
            present_version("half-configured\t0.2\n").as_deref(),
            Some("0.2")
        );
        assert_eq!(present_version("config-files\t0.1.0\n"), None);
        assert_eq!(present_version("not-installed\t\n"), None);
        assert_eq!(present_version(""), None);
    }

    #[test]
    fn verdicts_parse() {
        assert_eq!(
            Verdict::parse("upgraded 0.1.0 0.1.0+up1\n"),
            Some(Verdict::Upgraded {
                from: "0.1.0".into(),
                to: "0.1.0+up1".into()
            })
        );
        assert_eq!(
            Verdict::parse("rolled-back 0.1.0 0.2 the new agent (0.2) did not come online"),
            Some(Verdict::RolledBack {
                from: "0.1.0".into(),
                to: "0.2".into(),
                why: "the new agent (0.2) did not come online".into()
            })
        );
        assert_eq!(
            Verdict::parse("failed dpkg broke"),
            Some(Verdict::Failed("dpkg broke".into()))
        );
        assert_eq!(Verdict::parse("what"), None);
    }

    #[tokio::test]
    async fn a_hash_that_is_not_one_names_no_file() {
        use crate::host::{Recorder, Runner};
        use crate::ops::tests::{ctx_with, log};
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("run/systemd/system")).expect("systemd");
        // A verdict-shaped file outside the upgrade directory.
        let outside = d.path().join("secret.result");
        std::fs::write(&outside, "failed the content of another file\n").expect("write");
        let rec = std::sync::Arc::new(Recorder::default());
        rec.answer(3, ""); // systemctl is-active: no upgrade under way
        let ctx = ctx_with(Host {
            root: d.path().to_path_buf(),
            packages: PackageMode::System,
            format: Some(PackageFormat::Deb),
            runner: Runner::Recording(rec.clone()),
            proc: PathBuf::from("/proc"),
        });
        let (mut l, mut rx) = log();
        let req = UpgradeAgent {
            sha256: "../../../../secret".into(),
            version: "0.2.0".into(),
            online_within_ms: 1000,
        };
        let err = upgrade(&ctx, req, &mut l).await.expect_err("refused");
        assert!(err.0.contains("is not a SHA-256"), "{}", err.0);
        drop(l);
        while let Some((_, line)) = rx.recv().await {
            assert!(!line.contains("another file"), "{line}");
        }
        assert!(outside.is_file(), "the file outside was renamed");
        assert!(!d.path().join("var").exists(), "a directory was made");
        assert!(rec.calls.lock().expect("calls").is_empty());
    }

    #[test]
    fn the_helper_script_is_valid_shell() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("upgrade.sh");
        std::fs::write(&p, SCRIPT).expect("write");
        let o = std::process::Command::new("sh")
            .arg("-n")
            .arg(&p)
            .output()
            .expect("sh");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}
