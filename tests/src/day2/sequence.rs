//! The day-2 sequence on a sandbox (`clustermgr sandbox up --nodes 3`), run while a
//! [`Day2Client`] talks to the load balancer: each operation is a phase of the client, timed,
//! with the wall time its workflows spent in drain and rejoin steps.

use super::{Day2Client, Tally, Target};
use crate::{clustermgr_bin, text};
use clustermgr_shared::pki::{Ca, Usage};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The sandbox's load balancer (nginx on lb.sandbox).
pub fn sandbox_target() -> Target {
    Target {
        lb: std::net::IpAddr::from([127, 0, 0, 2]),
        port: 8443,
        host: "idp.sandbox.test".into(),
        client_id: "sandbox-test".into(),
        secret: "secret".into(),
    }
}

/// The certificate every sandbox node and the balancer serve first.
pub fn sandbox_certificate(dir: &Path) -> Result<String, String> {
    let p = dir.join("hosts/gluu1.sandbox/root/opt/gluu-server/etc/certs/httpd.crt");
    std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))
}

/// One operation: a phase name and the `clustermgr` arguments that run it (to its end).
#[derive(Debug, Clone)]
pub struct Op {
    pub name: String,
    pub args: Vec<String>,
    /// A certificate (PEM) the client trusts from this operation on (a certificate roll).
    pub trust: Option<String>,
}

/// How an operation went.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    pub wall: Duration,
    /// Wall time of the drain and rejoin steps of the workflows it started.
    pub draining: Duration,
    /// The drain steps that ran (not skipped).
    pub drains: usize,
    pub tally: Tally,
}

const SCHEMA: &str = "\
objectidentifier dayTwoOID 1.3.6.1.4.1.99998
attributetype ( dayTwoOID:1 NAME 'dayTwoBadge' EQUALITY caseIgnoreMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( dayTwoOID:2 NAME 'dayTwoPerson' SUP top AUXILIARY MAY ( dayTwoBadge ) )
";

/// The operations of issue 20, in its order, with their files written under `files`: a new
/// certificate for the balancer's name (from a new CA), the cache password, a replication
/// redeploy, a custom schema, a Gluu restart of the second server, and the removal of the third.
pub fn operations(files: &Path) -> Result<Vec<Op>, String> {
    let ca = Ca::generate("day-2 web CA", Duration::from_secs(10 * 86_400))
        .map_err(|e| e.to_string())?;
    let host = sandbox_target().host;
    let (crt, key) = ca
        .issue_with_new_key(
            &host,
            std::slice::from_ref(&host),
            Usage::Server,
            Duration::from_secs(5 * 86_400),
        )
        .map_err(|e| e.to_string())?;
    let write = |name: &str, content: &[u8]| -> Result<PathBuf, String> {
        let p = files.join(name);
        std::fs::write(&p, content).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(p)
    };
    let crt_p = write("day2.crt", crt.as_bytes())?;
    let key_p = write("day2.key", key.expose().as_bytes())?;
    let ca_p = write("day2-ca.crt", ca.cert_pem().as_bytes())?;
    let schema = write("daytwo.schema", SCHEMA.as_bytes())?;
    let s = |p: &PathBuf| p.to_string_lossy().into_owned();
    let op = |name: &str, args: &[&str]| Op {
        name: name.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        trust: None,
    };
    Ok(vec![
        Op {
            trust: Some(crt.clone()),
            ..op(
                "cert install",
                &[
                    "cert",
                    "install",
                    "--cert",
                    &s(&crt_p),
                    "--key",
                    &s(&key_p),
                    "--chain",
                    &s(&ca_p),
                ],
            )
        },
        op("cache password set", &["cache", "password", "set"]),
        op(
            "replication deploy --all",
            &["replication", "deploy", "--all"],
        ),
        op("schema add", &["schema", "add", &s(&schema)]),
        op("gluu restart gluu2", &["gluu", "restart", "gluu2.sandbox"]),
        op(
            "server remove gluu3",
            &["server", "remove", "gluu3.sandbox"],
        ),
    ])
}

/// `clustermgr --data-dir DATA --output json ARGS`.
pub fn cli(data: &Path, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(clustermgr_bin());
    c.arg("--data-dir").arg(data).args(["--output", "json"]);
    c.args(args);
    c.output().unwrap_or_else(|e| panic!("clustermgr: {e}"))
}

fn workflow_ids(data: &Path) -> Vec<String> {
    let o = cli(data, &["workflow", "list", "--limit", "500"]);
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|w| w["id"].as_str().map(str::to_string))
        .collect()
}

/// (wall time of drain and rejoin steps, drains run) of workflow `id`.
fn draining_of(data: &Path, id: &str) -> (Duration, usize) {
    let o = cli(data, &["workflow", "show", id]);
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&o.stdout) else {
        return (Duration::ZERO, 0);
    };
    let mut ms = 0u64;
    let mut drains = 0;
    for n in v["nodes"].as_array().into_iter().flatten() {
        for s in n["steps"].as_array().into_iter().flatten() {
            let name = s["name"].as_str().unwrap_or_default();
            if (name == "drain" || name == "rejoin") && s["status"] == "succeeded" {
                let (a, b) = (
                    s["started_unix_ms"].as_u64().unwrap_or(0),
                    s["finished_unix_ms"].as_u64().unwrap_or(0),
                );
                ms += b.saturating_sub(a);
                drains += usize::from(name == "drain");
            }
        }
    }
    (Duration::from_millis(ms), drains)
}

/// Runs `op` as the client's phase `op.name`, then lets the client run `settle` more rounds in
/// it (requests that a late reload or restart would break still count there).
pub fn run(data: &Path, client: &Day2Client, op: &Op, settle: u64) -> Outcome {
    if let Some(pem) = &op.trust {
        client.trust(pem);
    }
    let before = workflow_ids(data);
    client.phase(&op.name);
    let start = Instant::now();
    let args: Vec<&str> = op.args.iter().map(String::as_str).collect();
    let o = cli(data, &args);
    let wall = start.elapsed();
    let done = client
        .tally()
        .into_iter()
        .find(|(n, _)| *n == op.name)
        .map(|(_, t)| t.rounds)
        .unwrap_or(0);
    let tally = client.wait_rounds(&op.name, done + settle, Duration::from_secs(120));
    let (mut draining, mut drains) = (Duration::ZERO, 0);
    for id in workflow_ids(data).iter().filter(|id| !before.contains(id)) {
        let (d, n) = draining_of(data, id);
        draining += d;
        drains += n;
    }
    Outcome {
        name: op.name.clone(),
        ok: o.status.success(),
        detail: format!("{}{}", text(&o.stderr), text(&o.stdout))
            .chars()
            .take(2000)
            .collect(),
        wall,
        draining,
        drains,
        tally,
    }
}

/// A line per outcome: failed/total, wall time, draining.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "{:<28} {:>14} {:>9} {:>10} {:>7}\n",
        "operation", "failed/rounds", "wall s", "draining s", "drains"
    );
    for o in outcomes {
        out.push_str(&format!(
            "{:<28} {:>14} {:>9.1} {:>10.1} {:>7}{}\n",
            o.name,
            format!("{}/{}", o.tally.failed, o.tally.rounds),
            o.wall.as_secs_f64(),
            o.draining.as_secs_f64(),
            o.drains,
            if o.ok { "" } else { "  (the command failed)" }
        ));
    }
    out
}
