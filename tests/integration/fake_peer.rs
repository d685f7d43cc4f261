//! A controllable fake agent speaking the real protocol, for what a well-behaved agent never
//! does: ignoring a job, or reporting on another node's job.

use clustermgr_tests::fake_peer::{self, Enrollment, FakePeer};
use clustermgr_tests::{Controller, eventually, text};
use std::time::Duration;

type Fake = FakePeer;

/// A fake agent enrolled with a fresh token and connected, its Hello sent.
async fn fake(ctl: &Controller, hostname: &str) -> Fake {
    FakePeer::join(Enrollment {
        controller: ctl.addr.clone(),
        pin: ctl.pin.clone(),
        token: ctl.token("gluu-node"),
        hostname: hostname.into(),
        bind: None,
    })
    .await
    .unwrap()
}

async fn next_job(f: &mut Fake) -> String {
    f.next_job().await.unwrap().job_id
}

fn ping_result(job_id: &str) -> clustermgr_proto::AgentMessage {
    fake_peer::ping_result(job_id, "forged")
}

#[test]
fn a_silent_agent_times_out_and_nodes_cannot_answer_for_each_other() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut victim, liar) =
        rt.block_on(async { (fake(&ctl, "victim").await, fake(&ctl, "liar").await) });
    ctl.wait_status(&victim.node_id, "online");

    // The job goes to the victim, which never answers; the liar claims the result.
    let id = ctl
        .cli_ok(&[
            "job",
            "run",
            "victim",
            "ping",
            "--timeout",
            "1s",
            "--no-wait",
        ])
        .trim()
        .to_string();
    let got = rt.block_on(next_job(&mut victim));
    assert_eq!(got, id);
    rt.block_on(liar.tx.send(ping_result(&id))).unwrap();

    let job = eventually(Duration::from_secs(10), "job timed out", || {
        let j = ctl.json(&["job", "show", &id]);
        if j["state"] == "running" {
            Err(format!("{j}"))
        } else {
            Ok(j)
        }
    });
    assert_eq!(
        job["state"], "timed-out",
        "the liar's forged result was accepted: {job}"
    );
    assert!(job["error"].as_str().unwrap().contains("timeout"), "{job}");

    // A waited job that times out makes the CLI exit 1 with the state named.
    let o = ctl.cli(&["job", "run", "victim", "ping", "--timeout", "1s"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("timed-out"), "{}", text(&o.stderr));
    drop(liar);
}

#[test]
fn a_half_open_session_without_heartbeats_is_marked_offline_not_removed() {
    let mut ctl = Controller::init();
    ctl.start(&["--heartbeat-interval", "1s"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The fake keeps its connection open but never sends a heartbeat.
    let f = rt.block_on(fake(&ctl, "mute"));
    ctl.wait_status(&f.node_id, "online");
    ctl.wait_status(&f.node_id, "offline");
    assert_eq!(ctl.json(&["node", "list"]).as_array().unwrap().len(), 1);
    drop(f);
}

fn log_line(job_id: &str, seq: u64, line: &str) -> clustermgr_proto::AgentMessage {
    fake_peer::log_line(job_id, seq, line)
}

#[test]
fn job_logs_follow_streams_lines_as_they_come_and_ends_with_the_job() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut f = rt.block_on(fake(&ctl, "chatty"));
    ctl.wait_status(&f.node_id, "online");
    let id = ctl
        .cli_ok(&[
            "job",
            "run",
            "chatty",
            "ping",
            "--timeout",
            "60s",
            "--no-wait",
        ])
        .trim()
        .to_string();
    assert_eq!(rt.block_on(next_job(&mut f)), id);
    rt.block_on(f.tx.send(log_line(&id, 1, "step one")))
        .unwrap();

    // A follower started mid-job gets the stored line, then the live ones, then ends.
    let mut follower = std::process::Command::new(clustermgr_tests::clustermgr_bin())
        .arg("--data-dir")
        .arg(&ctl.data)
        .args(["job", "logs", "--follow", &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(10), "line one stored", || {
        let logs = ctl.cli_ok(&["job", "logs", &id]);
        if logs.contains("step one") {
            Ok(())
        } else {
            Err(logs)
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        follower.try_wait().unwrap().is_none(),
        "follow ended before the job did"
    );
    rt.block_on(async {
        f.tx.send(log_line(&id, 2, "step two")).await.unwrap();
        f.tx.send(log_line(&id, 3, "step three")).await.unwrap();
        f.tx.send(ping_result(&id)).await.unwrap();
    });
    eventually(
        Duration::from_secs(10),
        "follower exits",
        || match follower.try_wait().unwrap() {
            Some(_) => Ok(()),
            None => Err("still following".to_string()),
        },
    );
    let mut text_out = String::new();
    use std::io::Read;
    follower
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text_out)
        .unwrap();
    assert_eq!(text_out, "step one\nstep two\nstep three\n");
    assert_eq!(ctl.json(&["job", "show", &id])["state"], "succeeded");
}
