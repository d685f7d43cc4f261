//! Jobs outlive sessions: a controller killed while a job runs learns the job's real result from
//! the agent when it comes back (whether the job was still running or had ended meanwhile), and
//! an agent killed while a job runs makes it `interrupted` once it reconnects.
//!
//! The long job is a readiness probe of a closed loopback port for ~6 s: it fails with a
//! definite result ("not ready after ...").

use clustermgr_proto::operator_client::OperatorClient;
use clustermgr_proto::{
    GetJobRequest, HttpsGet, Job, NodeRef, Operation, Probe, SubmitJobRequest, operation, probe,
};
use clustermgr_shared::config::ClientBundle;
use clustermgr_shared::dial::{DialOptions, connect};
use clustermgr_shared::tls::{client_config, install_crypto_provider};
use clustermgr_tests::{Agent, Controller, eventually, free_port};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::Duration;

struct Env {
    ctl: Controller,
    a: Agent,
    rt: tokio::runtime::Runtime,
}

fn setup() -> Env {
    install_crypto_provider();
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut a = Agent::new("worker");
    a.join(&ctl, "gluu-node");
    a.start();
    ctl.wait_status(&a.node_id, "online");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    Env { ctl, a, rt }
}

impl Env {
    /// A fresh client (the controller may have restarted since the last call).
    fn client(&self) -> OperatorClient<tonic::transport::Channel> {
        let bundle = ClientBundle::load(&self.ctl.data.join("admin.toml")).unwrap();
        let tls = client_config(&bundle.ca_pem, Some((&bundle.cert_pem, &bundle.key_pem))).unwrap();
        let ch = self
            .rt
            .block_on(connect(&self.ctl.addr, tls, DialOptions::default()))
            .unwrap();
        OperatorClient::new(ch)
    }

    /// Starts a probe of a closed port that polls for `within` and then fails.
    fn start_probe(&self, within: Duration) -> String {
        let port = free_port();
        let req = SubmitJobRequest {
            node: Some(NodeRef {
                node: self.a.node_id.clone(),
            }),
            operation: Some(Operation {
                kind: Some(operation::Kind::Probe(Probe {
                    target: Some(probe::Target::Https(HttpsGet {
                        url: format!("https://127.0.0.1:{port}/"),
                        ca_pem: self.ctl.ca_cert_pem(),
                    })),
                    within_ms: within.as_millis() as u32,
                })),
            }),
            timeout_ms: 60_000,
            wait: false,
        };
        let mut c = self.client();
        let job = self
            .rt
            .block_on(c.submit_job(req))
            .unwrap()
            .into_inner()
            .job
            .unwrap();
        assert_eq!(job.state, "running");
        job.id
    }

    fn job(&self, id: &str) -> Job {
        let mut c = self.client();
        self.rt
            .block_on(c.get_job(GetJobRequest { id: id.into() }))
            .unwrap()
            .into_inner()
    }

    /// Waits until the job's log shows that the agent started it.
    fn wait_started(&self, id: &str) {
        eventually(Duration::from_secs(20), "the probe started", || {
            let logs = self.ctl.cli_ok(&["job", "logs", id]);
            if logs.contains("probing:") {
                Ok(())
            } else {
                Err(logs)
            }
        });
    }

    /// Waits for the job's end as the agent reported it: a job a controller restart marked
    /// interrupted is still waiting for the agent's report.
    fn wait_ended(&self, id: &str) -> Job {
        eventually(Duration::from_secs(40), "the job ended", || {
            let j = self.job(id);
            if j.state == "running" || j.error.contains("controller stopped") {
                Err(format!("{j:?}"))
            } else {
                Ok(j)
            }
        })
    }
}

#[test]
fn a_controller_killed_while_a_job_runs_learns_its_real_result() {
    let mut e = setup();
    let id = e.start_probe(Duration::from_secs(10));
    e.wait_started(&id);
    e.ctl.kill9();
    e.ctl.start(&[]);
    // The agent reconnects and reports the job as running: it runs again on the controller.
    let j = e.wait_ended(&id);
    assert_eq!(j.state, "failed", "{j:?}");
    assert!(j.error.contains("not ready after"), "{j:?}");
    assert!(
        j.error.contains("re-observed after a controller restart"),
        "{j:?}"
    );
    // Its log went on after the restart (lines the killed controller had not written yet are
    // lost): the probe's final line is there.
    let logs = e.ctl.cli_ok(&["job", "logs", &id]);
    assert!(logs.contains("not ready after"), "{logs}");
    // The controller's own records say the same after another restart.
    e.ctl.stop();
    e.ctl.start(&[]);
    assert_eq!(e.job(&id).state, "failed");
}

#[test]
fn a_job_that_ended_while_the_controller_was_down_gets_its_result() {
    let mut e = setup();
    let id = e.start_probe(Duration::from_secs(6));
    e.wait_started(&id);
    e.ctl.kill9();
    // The job ends on the node while no controller runs.
    eventually(Duration::from_secs(30), "the agent ended the job", || {
        let log = e.a.log();
        if log
            .lines()
            .any(|l| l.contains("job ended") && l.contains(&id))
        {
            Ok(())
        } else {
            Err(log)
        }
    });
    e.ctl.start(&[]);
    let j = e.wait_ended(&id);
    assert_eq!(j.state, "failed", "{j:?}");
    assert!(j.error.contains("not ready after"), "{j:?}");
    assert!(
        j.error.contains("re-observed after a controller restart"),
        "{j:?}"
    );
}

#[test]
fn an_agent_killed_while_a_job_runs_leaves_it_interrupted() {
    let mut e = setup();
    let id = e.start_probe(Duration::from_secs(20));
    e.wait_started(&id);
    let pid = e.a.pid().unwrap();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    // While the agent is gone the job is still "running": the controller cannot know.
    assert_eq!(e.job(&id).state, "running");
    e.a.start();
    let j = e.wait_ended(&id);
    assert_eq!(j.state, "interrupted", "{j:?}");
    assert!(j.error.contains("no longer knows this job"), "{j:?}");
}
