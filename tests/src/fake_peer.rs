//! A controllable fake agent speaking the real protocol: enrollment with a join token and the CA
//! pin, then one session stream on its own TLS connection. Tests drive it by hand for what a
//! well-behaved agent never does (ignoring a job, answering for another node); the scale bench
//! runs thousands of them with [`FakePeer::answer_pings`], the well-behaved loop.

use anyhow::{Context, Result, anyhow};
use clustermgr_proto::agent_session_client::AgentSessionClient;
use clustermgr_proto::enrollment_client::EnrollmentClient;
use clustermgr_proto::{
    AgentMessage, ControllerMessage, EnrollRequest, Heartbeat, Hello, Inventory, JobLogLine,
    JobRequest, JobResult, MetricPoint, MetricsBatch, MetricsSample, OperationOutput, PingOutput,
    agent_message, controller_message, job_event, operation, operation_output,
};
use clustermgr_shared::dial::{DialOptions, connect};
use clustermgr_shared::util::now_ms;
use clustermgr_shared::{MAX_MESSAGE_BYTES, Secret, pki, tls};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

pub mod fsrep;

/// Where and as whom a fake peer enrolls.
#[derive(Clone, Debug)]
pub struct Enrollment {
    /// The controller, `HOST:PORT`.
    pub controller: String,
    /// The CA pin printed by `clustermgr init`.
    pub pin: String,
    pub token: String,
    pub hostname: String,
    /// Local address to connect from (a loopback address of its own per peer).
    pub bind: Option<IpAddr>,
}

/// A peer's credential after enrolling.
pub struct Enrolled {
    pub controller: String,
    pub hostname: String,
    pub bind: Option<IpAddr>,
    pub node_id: String,
    pub cert_pem: String,
    pub key_pem: Secret<String>,
    pub ca_pem: String,
}

fn dial_options(bind: Option<IpAddr>) -> DialOptions {
    DialOptions {
        bind,
        ..Default::default()
    }
}

impl Enrollment {
    /// Enrolls with a new key (made here, as the real agent does).
    pub async fn enroll(self) -> Result<Enrolled> {
        let (key, csr) = pki::new_key_and_csr(&self.hostname).context("key and CSR")?;
        self.enroll_with(key, csr).await
    }

    /// Enrolls with a key and CSR made beforehand (the bench makes them before timing).
    pub async fn enroll_with(self, key_pem: Secret<String>, csr_der: Vec<u8>) -> Result<Enrolled> {
        tls::install_crypto_provider();
        let host = &self.hostname;
        let (tls, _seen) = tls::pinned_client_config(&self.pin).context("pinned TLS config")?;
        let channel = connect(&self.controller, tls, dial_options(self.bind))
            .await
            .with_context(|| format!("{host}: enrollment connection"))?;
        let resp = EnrollmentClient::new(channel)
            .enroll(EnrollRequest {
                token: self.token.clone(),
                csr_der,
                hostname: self.hostname.clone(),
            })
            .await
            .map_err(|s| {
                anyhow!(
                    "{host}: enrollment refused: {:?}: {}",
                    s.code(),
                    s.message()
                )
            })?
            .into_inner();
        Ok(Enrolled {
            controller: self.controller,
            hostname: self.hostname,
            bind: self.bind,
            node_id: resp.node_id,
            cert_pem: resp.certificate_pem,
            key_pem,
            ca_pem: resp.ca_pem,
        })
    }
}

impl Enrolled {
    /// The smallest inventory: the hostname, and the source address when there is one.
    pub fn inventory(&self) -> Inventory {
        Inventory {
            hostname: self.hostname.clone(),
            addresses: self.bind.iter().map(|ip| ip.to_string()).collect(),
            ..Default::default()
        }
    }

    /// A new connection with the node's credential.
    pub async fn channel(&self) -> Result<tonic::transport::Channel> {
        tls::install_crypto_provider();
        let host = &self.hostname;
        let tls = tls::client_config(&self.ca_pem, Some((&self.cert_pem, &self.key_pem)))
            .with_context(|| format!("{host}: TLS config"))?;
        connect(&self.controller, tls, dial_options(self.bind))
            .await
            .with_context(|| format!("{host}: connection"))
    }

    /// Opens the session on a new connection and sends Hello with `inventory`; returns once the
    /// controller has accepted the stream.
    pub async fn connect(&self, inventory: Inventory) -> Result<FakePeer> {
        let host = &self.hostname;
        let channel = self.channel().await?;
        let mut client = AgentSessionClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let (tx, rx) = mpsc::channel::<AgentMessage>(16);
        tx.send(hello(inventory))
            .await
            .map_err(|_| anyhow!("{host}: session stream closed"))?;
        let inbound = client
            .session(ReceiverStream::new(rx))
            .await
            .map_err(|s| anyhow!("{host}: session refused: {:?}: {}", s.code(), s.message()))?
            .into_inner();
        Ok(FakePeer {
            node_id: self.node_id.clone(),
            hostname: self.hostname.clone(),
            tx,
            inbound,
        })
    }
}

/// An open session: what goes up is whatever the test sends on `tx`; what comes down is read
/// from `inbound`. Nothing is answered unless the test (or [`FakePeer::answer_pings`]) does.
pub struct FakePeer {
    pub node_id: String,
    pub hostname: String,
    pub tx: mpsc::Sender<AgentMessage>,
    pub inbound: tonic::Streaming<ControllerMessage>,
}

impl FakePeer {
    /// Enrolls with a new key and opens the session with the smallest inventory.
    pub async fn join(e: Enrollment) -> Result<FakePeer> {
        let enrolled = e.enroll().await?;
        enrolled.connect(enrolled.inventory()).await
    }

    pub async fn send(&self, m: AgentMessage) -> Result<()> {
        self.tx
            .send(m)
            .await
            .map_err(|_| anyhow!("{}: session stream closed", self.hostname))
    }

    /// The next message from the controller; None when the stream ended.
    pub async fn next_message(&mut self) -> Result<Option<controller_message::Msg>> {
        loop {
            match self.inbound.message().await {
                Ok(Some(ControllerMessage { msg: Some(m) })) => return Ok(Some(m)),
                Ok(Some(ControllerMessage { msg: None })) => continue,
                Ok(None) => return Ok(None),
                Err(s) => {
                    return Err(anyhow!(
                        "{}: session ended: {:?}: {}",
                        self.hostname,
                        s.code(),
                        s.message()
                    ));
                }
            }
        }
    }

    /// The next job sent to this peer (other messages are skipped).
    pub async fn next_job(&mut self) -> Result<JobRequest> {
        loop {
            match self.next_message().await? {
                Some(controller_message::Msg::Job(j)) => return Ok(j),
                Some(_) => continue,
                None => return Err(anyhow!("{}: session ended", self.hostname)),
            }
        }
    }

    /// Behaves like a healthy agent until `stop` fires: heartbeats at the interval the
    /// controller's Welcome names, and every ping job answered (with a "pong" log line first when
    /// `log_lines`); other operations fail. Ends early if the controller ends the session, which
    /// counts in `stats.lost` unless `stop` had fired.
    pub fn answer_pings(
        self,
        log_lines: bool,
        stats: Arc<PeerStats>,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        self.answer_pings_and_send_metrics(log_lines, None, stats, stop)
    }

    /// [`FakePeer::answer_pings`], and a [`metrics_batch`] every `metrics_every` (the first
    /// after a fraction of the interval derived from the node id, so that peers spread out).
    pub fn answer_pings_and_send_metrics(
        self,
        log_lines: bool,
        metrics_every: Option<Duration>,
        stats: Arc<PeerStats>,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let FakePeer {
            node_id,
            hostname,
            tx,
            mut inbound,
        } = self;
        tokio::spawn(async move {
            let mut heartbeat = tokio::time::interval(Duration::from_secs(10));
            heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq = 0u64;
            let mut metrics_tick = metrics_every.map(|every| {
                let spread: u32 = node_id.bytes().map(u32::from).sum::<u32>() % 1000;
                let first = tokio::time::Instant::now() + every.mul_f64(f64::from(spread) / 1000.0);
                let mut t = tokio::time::interval_at(first, every);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            loop {
                let to_send: Vec<AgentMessage> = tokio::select! {
                    _ = stop.changed() => return,
                    _ = async {
                        match metrics_tick.as_mut() {
                            Some(t) => {
                                t.tick().await;
                            }
                            None => std::future::pending::<()>().await,
                        }
                    } => {
                        stats.metrics.fetch_add(1, Ordering::Relaxed);
                        vec![metrics_batch(seq)]
                    }
                    _ = heartbeat.tick() => {
                        seq += 1;
                        vec![AgentMessage {
                            msg: Some(agent_message::Msg::Heartbeat(Heartbeat { seq })),
                        }]
                    }
                    msg = inbound.message() => match msg {
                        Ok(Some(ControllerMessage { msg: Some(m) })) => match m {
                            controller_message::Msg::Welcome(w) => {
                                if w.heartbeat_interval_ms > 0 {
                                    let every = Duration::from_millis(w.heartbeat_interval_ms.into());
                                    heartbeat = tokio::time::interval_at(
                                        tokio::time::Instant::now() + every,
                                        every,
                                    );
                                    heartbeat.set_missed_tick_behavior(
                                        tokio::time::MissedTickBehavior::Delay,
                                    );
                                }
                                Vec::new()
                            }
                            controller_message::Msg::Job(job) => {
                                answer(&job, log_lines, &stats)
                            }
                            controller_message::Msg::Cancel(_)
                            | controller_message::Msg::CaUpdate(_)
                            | controller_message::Msg::HealthConfig(_) => Vec::new(),
                        },
                        Ok(Some(ControllerMessage { msg: None })) => Vec::new(),
                        Ok(None) | Err(_) => {
                            if !*stop.borrow() {
                                stats.lost.fetch_add(1, Ordering::Relaxed);
                                eprintln!("{hostname} ({node_id}): session ended by the controller");
                            }
                            return;
                        }
                    },
                };
                for m in to_send {
                    if tx.send(m).await.is_err() {
                        stats.lost.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        })
    }
}

/// Counters shared by peers running [`FakePeer::answer_pings`].
#[derive(Debug, Default)]
pub struct PeerStats {
    /// Ping jobs answered.
    pub pings: AtomicUsize,
    /// Metrics batches sent.
    pub metrics: AtomicUsize,
    /// Sessions the controller ended (or that broke) before the peers were told to stop.
    pub lost: AtomicUsize,
}

fn answer(job: &JobRequest, log_lines: bool, stats: &PeerStats) -> Vec<AgentMessage> {
    match job.operation.as_ref().and_then(|o| o.kind.as_ref()) {
        Some(operation::Kind::Ping(p)) => {
            stats.pings.fetch_add(1, Ordering::Relaxed);
            let mut out = Vec::with_capacity(2);
            if log_lines {
                out.push(log_line(&job.job_id, 1, "pong"));
            }
            out.push(ping_result(&job.job_id, &p.payload));
            out
        }
        _ => vec![AgentMessage::job_event(
            &job.job_id,
            job_event::Event::Result(JobResult {
                success: false,
                error: "this fake agent only answers ping".into(),
                ..Default::default()
            }),
        )],
    }
}

/// A metrics batch like the real agent's on a Gluu node: one sample of 40 points (CPU, load,
/// memory, two disks, two NICs, eight services); `n` varies the counters.
pub fn metrics_batch(n: u64) -> AgentMessage {
    let n = n as f64;
    let mut points = Vec::with_capacity(40);
    let mut p = |name: &str, labels: &str, value: f64| {
        points.push(MetricPoint {
            name: name.into(),
            labels: labels.into(),
            value,
        })
    };
    p("cpu_usage_percent", "", 3.5 + n % 7.0);
    for (i, mode) in [
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    ]
    .iter()
    .enumerate()
    {
        p(
            "cpu_seconds_total",
            &format!("mode=\"{mode}\""),
            1000.0 * (i as f64 + 1.0) + n * 15.0,
        );
    }
    p("load1", "", 0.42);
    p("load5", "", 0.35);
    p("load15", "", 0.30);
    p("memory_total_bytes", "", 8.0e9);
    p("memory_used_bytes", "", 3.1e9 + n * 1e3);
    p("memory_available_bytes", "", 4.9e9 - n * 1e3);
    p("swap_used_bytes", "", 0.0);
    for mount in ["/", "/opt"] {
        p("disk_total_bytes", &format!("mount=\"{mount}\""), 1.0e11);
        p("disk_used_bytes", &format!("mount=\"{mount}\""), 4.0e10 + n);
    }
    for nic in ["lo", "eth0"] {
        p(
            "network_receive_bytes_total",
            &format!("nic=\"{nic}\""),
            1.0e9 + n * 1e5,
        );
        p(
            "network_transmit_bytes_total",
            &format!("nic=\"{nic}\""),
            2.0e9 + n * 1e5,
        );
    }
    for svc in [
        "oxauth",
        "identity",
        "ldap",
        "httpd",
        "redis",
        "stunnel",
        "twemproxy",
        "nginx",
    ] {
        p("process_up", &format!("service=\"{svc}\""), 1.0);
        p(
            "process_resident_bytes",
            &format!("service=\"{svc}\""),
            5.0e8,
        );
    }
    AgentMessage {
        msg: Some(agent_message::Msg::Metrics(MetricsBatch {
            samples: vec![MetricsSample {
                unix_ms: now_ms(),
                points,
            }],
        })),
    }
}

/// The Hello that opens a session.
pub fn hello(inventory: Inventory) -> AgentMessage {
    AgentMessage {
        msg: Some(agent_message::Msg::Hello(Hello {
            inventory: Some(inventory),
            ..Default::default()
        })),
    }
}

/// A successful ping result for `job_id` (sent for any job id: the controller must check).
pub fn ping_result(job_id: &str, payload: &str) -> AgentMessage {
    AgentMessage::job_event(
        job_id,
        job_event::Event::Result(JobResult {
            success: true,
            output: Some(OperationOutput {
                kind: Some(operation_output::Kind::Ping(PingOutput {
                    payload: payload.into(),
                    agent_unix_ms: now_ms(),
                })),
            }),
            ..Default::default()
        }),
    )
}

/// A job log line as the agent sends it.
pub fn log_line(job_id: &str, seq: u64, line: &str) -> AgentMessage {
    AgentMessage::job_event(
        job_id,
        job_event::Event::Log(JobLogLine {
            seq,
            line: line.into(),
            unix_ms: now_ms(),
        }),
    )
}
