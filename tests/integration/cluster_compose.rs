//! Operations compose: a workflow asked for while another holds one of its nodes is queued
//! behind it (shown as queued, with what it waits for), survives a controller restart, can be
//! cancelled while queued, and starts by itself when the holder ends; `--no-wait` refuses
//! instead. `server add` says which follow-up workflows it started, and `gluu install` of the
//! new server right after it works (it waits for the cache client `server add` started).

use super::cache::{cache_host, redis_password};
use super::gluu_cluster::{Cluster, HTTPS_PORT};
use clustermgr_tests::{eventually, text};
use serde_json::Value;
use std::time::Duration;

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_workflow_on_a_busy_node_is_queued_then_runs_and_server_add_then_gluu_install_works() {
    let mut c = Cluster::new(3, HTTPS_PORT);
    let g3 = c.nodes[2].agent.hostname.clone();
    // gluu3 joins later: out of the cluster while gluu1 and gluu2 are installed.
    c.ctl.cli_ok(&["server", "remove", &g3]);
    for cmd in [
        &["gluu", "install", "--all"][..],
        &["replication", "deploy", "--all"],
    ] {
        let out = c.ctl.cli(cmd);
        assert_eq!(out.status.code(), Some(0), "{cmd:?}: {}", text(&out.stderr));
    }

    let (cache, _daemons) = cache_host(&c);
    let out = c.ctl.cli(&["cache", "install", &cache.hostname]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // gluu3's agent is away: what server add starts on it holds it until the agent is back
    // (an offline node waits), so the queue is observed without racing a running step.
    let g3_id = c.nodes[2].agent.node_id.clone();
    c.nodes[2].agent.stop();
    c.ctl.wait_status(&g3_id, "offline");

    // server add names its follow-ups, in JSON and in text.
    let added = c.ctl.json(&["server", "add", &g3]);
    let follow_ups = added["started_workflows"].as_array().unwrap().clone();
    let cache_wf = follow_ups
        .iter()
        .find(|w| w["kind"] == "cache-install")
        .unwrap_or_else(|| panic!("no cache-install follow-up: {added}"));
    let cache_id = cache_wf["id"].as_str().unwrap().to_string();
    assert!(
        follow_ups.iter().any(|w| w["kind"] == "hosts"),
        "the cluster manages /etc/hosts: {added}"
    );
    let listed = c.ctl.json(&["server", "list"]);
    assert!(
        !listed.to_string().contains("started_workflows"),
        "only server add lists follow-ups: {listed}"
    );

    // --no-wait: refused, naming the holder; nothing recorded.
    let before = c.ctl.json(&["workflow", "list"]).as_array().unwrap().len();
    let refused = c.ctl.cli(&["gluu", "install", &g3, "--no-wait"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    let err = text(&refused.stderr);
    assert!(
        err.contains(&cache_id) && err.contains("cache-install") && err.contains("--no-wait"),
        "{err}"
    );
    assert_eq!(
        c.ctl.json(&["workflow", "list"]).as_array().unwrap().len(),
        before
    );

    // Without it: queued behind the cache client, shown as such.
    let install = c.ctl.cli(&["gluu", "install", &g3, "--detach"]);
    assert_eq!(install.status.code(), Some(0), "{}", text(&install.stderr));
    let install_id = text(&install.stdout).trim().to_string();
    let wf = c.workflow(&install_id);
    assert_eq!(wf["status"], "queued", "{wf}");
    assert_eq!(ids(&wf["queued_behind"]), [cache_id.as_str()], "{wf}");
    let shown = c.ctl.cli_ok(&["workflow", "show", &install_id]);
    assert!(
        shown.contains("queued") && shown.contains(&format!("waits for   {cache_id}")),
        "{shown}"
    );
    let table = c.ctl.cli_ok(&["workflow", "list"]);
    let row = table
        .lines()
        .find(|l| l.contains(&install_id[..8]) && l.contains("gluu-install"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("queued"), "{table}");

    // --no-wait names what holds the node and whether that one runs or is queued itself.
    let refused = c.ctl.cli(&["keys", "rotate", "--no-wait"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    let err = text(&refused.stderr);
    assert!(
        err.contains(&install_id) && err.contains("holds it (queued)"),
        "{err}"
    );

    // A later workflow on the install's primary queues behind the install (first come,
    // first served); cancelled while queued, it ends without running anything.
    let rotate = c.ctl.cli(&["keys", "rotate", "--detach"]);
    assert_eq!(rotate.status.code(), Some(0), "{}", text(&rotate.stderr));
    let rotate_id = text(&rotate.stdout).trim().to_string();
    let wf = c.workflow(&rotate_id);
    assert_eq!(wf["status"], "queued", "{wf}");
    assert!(
        ids(&wf["queued_behind"]).contains(&install_id),
        "behind the install: {wf}"
    );
    c.ctl.cli_ok(&["workflow", "cancel", &rotate_id]);
    let wf = eventually(
        Duration::from_secs(30),
        "the queued rotation cancelled",
        || {
            let wf = c.workflow(&rotate_id);
            if wf["status"] == "cancelled" {
                Ok(wf)
            } else {
                Err(wf.to_string())
            }
        },
    );
    for n in wf["nodes"].as_array().unwrap() {
        for s in n["steps"].as_array().unwrap() {
            assert_eq!(s["status"], "cancelled", "{wf}");
            assert!(s["job_id"].is_null(), "a job ran: {wf}");
        }
    }

    // Two cache workflows never run at once (the cache record): a new password waits for the
    // cache client, and Redis keeps its password until the change runs.
    let redis_before = redis_password(&cache).expect("requirepass");
    let refused = c.ctl.cli(&["cache", "password", "set", "--no-wait"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains(&cache_id),
        "{}",
        text(&refused.stderr)
    );
    let password = c.ctl.cli(&["cache", "password", "set", "--detach"]);
    assert_eq!(
        password.status.code(),
        Some(0),
        "{}",
        text(&password.stderr)
    );
    let password_id = text(&password.stdout).trim().to_string();
    let wf = c.workflow(&password_id);
    assert_eq!(wf["status"], "queued", "{wf}");
    assert!(ids(&wf["queued_behind"]).contains(&cache_id), "{wf}");
    assert_eq!(
        redis_password(&cache).as_deref(),
        Some(redis_before.as_str())
    );

    // The queue is in the store: a controller killed and started again keeps it.
    c.ctl.kill9();
    c.ctl.start(&[]);
    let wf = c.workflow(&install_id);
    assert_eq!(wf["status"], "queued", "{wf}");
    assert_eq!(ids(&wf["queued_behind"]), [cache_id.as_str()], "{wf}");

    // The agent is back: the cache client ends, and the install starts by itself and succeeds.
    c.nodes[2].agent.start();
    c.ctl.wait_status(&g3_id, "online");
    // (server add's cache client reads the cache host's address though the host is not one
    // of its nodes; it used to wait for it forever.)
    let done = eventually(Duration::from_secs(300), "the queued install ended", || {
        let wf = c.workflow(&install_id);
        match wf["status"].as_str() {
            Some("succeeded" | "failed" | "cancelled") => Ok(wf),
            _ => Err(format!("{wf}\n{}", c.workflow(&cache_id))),
        }
    });
    assert_eq!(done["status"], "succeeded", "{done}");
    let holder = c.workflow(&cache_id);
    assert_eq!(holder["status"], "succeeded", "{holder}");
    let started = c.workflow(&install_id);
    let first_step = started["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["steps"].as_array().unwrap().iter())
        .filter_map(|s| s["started_unix_ms"].as_u64().filter(|t| *t > 0))
        .min()
        .unwrap();
    assert!(
        first_step >= holder["finished_unix_ms"].as_u64().unwrap(),
        "the install started before its holder ended: {started}\n{holder}"
    );
    // The password change ran after both (first come, first served), and only then. (Its
    // Gluu step on gluu3 needs the replicated configuration, which this test never deploys
    // there: only Redis's step is looked at.)
    let changed = eventually(Duration::from_secs(300), "the new password", || {
        let wf = c.workflow(&password_id);
        match wf["status"].as_str() {
            Some("succeeded" | "failed" | "cancelled") => Ok(wf),
            _ => Err(wf.to_string()),
        }
    });
    let redis = Cluster::step(&changed, &cache.hostname, "redis");
    assert_eq!(redis["status"], "succeeded", "{changed}");
    assert!(
        redis["started_unix_ms"].as_u64() >= done["finished_unix_ms"].as_u64(),
        "the password changed before the install ended: {changed}\n{done}"
    );
    assert_ne!(redis_password(&cache), Some(redis_before));
    let servers = c.ctl.json(&["server", "list"]);
    let s3 = servers
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["hostname"] == g3.as_str())
        .unwrap();
    assert_eq!(s3["install_state"], "installed", "{servers}");
}
