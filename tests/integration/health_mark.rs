//! The external load balancer hook on a whole cluster: with `--external-lb` and
//! `--external-lb-health-wait`, `gluu restart NODE` takes the node's health mark away before
//! the restart (https://NODE/clustermgr-health, served by the node's own web tier from Gluu's
//! document root, answers 404) and puts it back once the node is ready (200).

use crate::day2::Down;
use clustermgr_tests::day2::sequence::cli;
use clustermgr_tests::{Sandbox, eventually, text};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const NODE: &str = "gluu2.sandbox";
/// gluu2's address and the sandbox's HTTPS port.
const MARK: &str = "https://127.0.0.12:8443/clustermgr-health";
const WAIT: Duration = Duration::from_secs(300);

/// The HTTP status the node's web tier answers for its health mark (0: no answer).
fn mark_status() -> u16 {
    crate::gluu_cluster::https_status(MARK)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn ok(data: &Path, args: &[&str]) -> String {
    let o = cli(data, args);
    assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    text(&o.stdout)
}

fn workflow(data: &Path, id: &str) -> Value {
    serde_json::from_str(&ok(data, &["workflow", "show", id])).expect("JSON")
}

fn step_status(wf: &Value, name: &str) -> String {
    wf["nodes"][0]["steps"]
        .as_array()
        .and_then(|ss| ss.iter().find(|s| s["name"] == name))
        .map(|s| s["status"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

#[test]
fn a_gluu_restart_behind_an_external_balancer_takes_the_health_mark_away_then_back() {
    let sbx = Sandbox::new(2);
    let _down = Down(&sbx);
    sbx.up();
    let data = sbx.dir.join("controller");
    ok(
        &data,
        &[
            "cluster",
            "configure",
            "--external-lb",
            "--external-lb-health-wait",
            "2",
        ],
    );
    // Installed before the setting: no mark yet; the first restart's rejoin writes it.
    ok(&data, &["gluu", "restart", NODE]);
    eventually(
        WAIT,
        "the mark served after the rejoin",
        || match mark_status() {
            200 => Ok(()),
            s => Err(format!("{s}")),
        },
    );
    // The next restart: 404 while the node is drained (seen before its rejoin), 200 after.
    let id = ok(&data, &["gluu", "restart", NODE, "--detach"])
        .trim()
        .to_string();
    eventually(WAIT, "the mark gone while the node is drained", || {
        let s = mark_status();
        let wf = workflow(&data, &id);
        let drain = step_status(&wf, "drain");
        let rejoin = step_status(&wf, "rejoin");
        if rejoin == "succeeded" {
            panic!("the rejoin ended before a 404 was seen: {wf}");
        }
        if s == 404 && (drain == "running" || drain == "succeeded") {
            Ok(())
        } else {
            Err(format!("{s} drain {drain} rejoin {rejoin}"))
        }
    });
    let wf = eventually(WAIT, "the workflow done", || {
        let wf = workflow(&data, &id);
        match wf["status"].as_str() {
            Some("succeeded") => Ok(wf),
            Some("failed" | "cancelled") => panic!("{wf}"),
            _ => Err(wf.to_string()),
        }
    });
    assert_eq!(step_status(&wf, "rejoin"), "succeeded", "{wf}");
    assert_eq!(mark_status(), 200, "the mark back after the rejoin");
}
