//! `clustermgr-agent run`: keep one outbound stream to the controller, reconnecting with
//! exponential backoff and jitter; run jobs; renew the certificate at two thirds of its life.
//!
//! Jobs belong to the process-wide [`Runner`], not to a session: a job goes on when the stream
//! breaks, its events wait in the runner, and each session's `Hello` reports the jobs the
//! runner knows (running, and recently ended with their results) before it sends what waited.

use crate::facts::{self, HostView};
use crate::ops::Ctx;
use crate::runner::Runner;
use crate::state::{AgentConfig, StateDir};
use anyhow::{Result, anyhow, bail};
use clustermgr_proto::agent_session_client::AgentSessionClient;
use clustermgr_proto::{
    AgentMessage, Heartbeat, Hello, RenewRequest, agent_message, controller_message,
};
use clustermgr_shared::dial::{self, DialOptions};
use clustermgr_shared::pki::{self, CertInfo};
use clustermgr_shared::util::{fmt_unix, now_ms, now_unix};
use clustermgr_shared::{MAX_MESSAGE_BYTES, paths};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// HTTP/2 keep-alive interval: a connection that stops answering is dropped after about
    /// twice this, and the agent reconnects.
    pub keepalive: Duration,
    /// How often host metrics are sampled (zero: never).
    pub metrics_interval: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            keepalive: Duration::from_secs(10),
            metrics_interval: crate::metrics::DEFAULT_INTERVAL,
        }
    }
}

/// Why a session ended.
enum End {
    Shutdown,
    /// Worth retrying (network, controller restart).
    Lost(String),
    /// Connect again at once (a new certificate to present).
    Reconnect(String),
    /// Retrying cannot help (revoked, removed, expired).
    Fatal(anyhow::Error),
}

fn classify(status: &tonic::Status) -> End {
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => Fatal(anyhow!(
            "the controller refused this node: {}\nre-join with a new token: clustermgr-agent join --force --token <TOKEN> ...",
            status.message()
        )),
        // E.g. this agent is older than the controller's minimum version: retried, since an
        // upgrade or a lowered minimum lets it in.
        Code::FailedPrecondition => Lost(format!(
            "the controller refused this session: {}",
            status.message()
        )),
        _ => Lost(format!("{}: {}", status.code(), status.message())),
    }
}
use End::{Fatal, Lost};

/// Fails with a clear message when the certificate is no longer valid.
pub fn check_not_expired(info: &CertInfo) -> Result<()> {
    if now_unix() >= info.not_after_unix {
        bail!(
            "this node's certificate expired at {} (the agent was off past its renewal time); \
             create a token with `clustermgr token create --role <ROLE>` and re-join with \
             `clustermgr-agent join --force --token <TOKEN> --controller <HOST:PORT> --ca-pin <PIN>`",
            fmt_unix(info.not_after_unix)
        );
    }
    Ok(())
}

pub fn context(cfg: &AgentConfig) -> Ctx {
    let mut managed: Vec<String> = paths::DEFAULT_MANAGED
        .iter()
        .map(|s| s.to_string())
        .collect();
    managed.extend(cfg.extra_managed_paths.iter().cloned());
    Ctx {
        view: HostView {
            root: cfg.root.clone(),
            hostname: cfg.hostname.clone(),
            address: cfg.address.clone(),
        },
        managed,
        host: crate::host::Host::detect(&cfg.root),
        channel: None,
    }
}

/// Runs until shutdown (Ok) or a fatal refusal (Err).
pub async fn run(state: StateDir, opts: RunOptions) -> Result<()> {
    clustermgr_shared::tls::install_crypto_provider();
    let cfg = state.load_config()?;
    // The package this process was started from, read now (see ops::upgrade).
    let package = crate::ops::upgrade::package_version(&cfg.root);
    if !package.is_empty() {
        tracing::info!(package = %package, "started from clustermgr-agent package");
    }
    let ident = state.load_identity()?;
    check_not_expired(&ident.info)?;
    let mut backoff = opts.min_backoff;
    let runner = Runner::new();
    // Samples wait here while no session is up.
    let metrics = std::sync::Arc::new(crate::metrics::Buffer::default());
    if !opts.metrics_interval.is_zero() {
        crate::metrics::start(cfg.root.clone(), opts.metrics_interval, metrics.clone());
    }
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let started = Instant::now();
        let end = tokio::select! {
            e = session_once(&state, &cfg, &runner, &metrics, opts.keepalive) => e,
            _ = &mut shutdown => End::Shutdown,
        };
        match end {
            End::Shutdown => {
                tracing::info!("shutting down");
                return Ok(());
            }
            Fatal(e) => return Err(e),
            End::Reconnect(why) => {
                tracing::info!(reason = %why, "reconnecting");
                backoff = opts.min_backoff;
            }
            Lost(why) => {
                if started.elapsed() > Duration::from_secs(10) {
                    backoff = opts.min_backoff;
                }
                let jitter = 0.5 + rand::random::<f64>() * 0.5;
                let wait = backoff.mul_f64(jitter);
                tracing::warn!(reason = %why, retry_in_ms = wait.as_millis() as u64, "session lost");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {},
                    _ = &mut shutdown => return Ok(()),
                }
                backoff = (backoff * 2).min(opts.max_backoff);
            }
        }
    }
}

/// The node's identity, checked, and a channel to the controller under it.
async fn dial_controller(
    state: &StateDir,
    cfg: &AgentConfig,
    keepalive: Duration,
) -> Result<(CertInfo, tonic::transport::Channel), End> {
    let ident = state.load_identity().map_err(Fatal)?;
    check_not_expired(&ident.info).map_err(Fatal)?;
    let ca = state.load_ca().map_err(Fatal)?;
    let tls = clustermgr_shared::tls::client_config(&ca, Some((&ident.cert_pem, &ident.key_pem)))
        .map_err(|e| Fatal(e.into()))?;
    let bind = cfg.address.as_deref().and_then(|a| a.parse().ok());
    let channel = dial::connect(
        &cfg.controller,
        tls,
        DialOptions {
            bind,
            keepalive: Some(keepalive),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| Lost(format!("{e}: {}", dial::root_cause(&e))))?;
    Ok((ident.info, channel))
}

/// A heartbeat ticking every `every`, not catching up on missed ticks.
fn heartbeat_every(every: Duration) -> tokio::time::Interval {
    let mut heartbeat = tokio::time::interval(every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat
}

async fn session_once(
    state: &StateDir,
    cfg: &AgentConfig,
    runner: &Runner,
    metrics: &crate::metrics::Buffer,
    keepalive: Duration,
) -> End {
    let (info, channel) = match dial_controller(state, cfg, keepalive).await {
        Ok(v) => v,
        Err(end) => return end,
    };
    let mut client = AgentSessionClient::new(channel.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let channel_for_fsrep = channel.clone();
    let ctx = Ctx {
        channel: Some(channel),
        ..context(cfg)
    };
    let (tx, rx) = mpsc::channel::<AgentMessage>(256);
    let mut inbound = match say_hello(&ctx, runner, &mut client, &tx, rx).await {
        Ok(inbound) => inbound,
        Err(end) => return end,
    };
    tracing::info!(controller = %cfg.controller, node = %cfg.node_id, "session established");
    let _fsrep = start_fsrep(state, cfg, &ctx, channel_for_fsrep);
    // Service health checks, as the controller configures them, for this session's life.
    let (health_cfg, health_rx) =
        tokio::sync::watch::channel(clustermgr_proto::HealthConfig::default());
    tokio::spawn(crate::health::run(ctx.clone(), health_rx, tx.clone()));

    let mut heartbeat = heartbeat_every(Duration::from_secs(5));
    let mut hb_seq = 0u64;
    // What waited for a session (events of jobs that went on while none was up) goes first.
    runner.wake();
    let mut renew_at = renewal_deadline(&info);
    // After a renewal, reconnect with the new certificate once no job has run or arrived for a
    // moment (jobs survive the switch, but their events would wait for the new session).
    let mut reconnect_when_idle = false;
    let mut idle_check = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(m)) => match m.msg {
                    Some(controller_message::Msg::Welcome(w)) => on_welcome(&ctx, &w, &mut heartbeat),
                    Some(controller_message::Msg::Job(job)) => {
                        runner.submit(ctx.clone(), job);
                    }
                    Some(controller_message::Msg::CaUpdate(u)) => {
                        if let Some(end) = on_ca_update(state, &mut client, &u, &mut renew_at).await {
                            return end;
                        }
                    }
                    Some(controller_message::Msg::Cancel(c)) => {
                        runner.cancel(&c.job_id, &c.reason);
                    }
                    Some(controller_message::Msg::HealthConfig(h)) => {
                        metrics.set_directory(&ctx, &h);
                        health_cfg.send_replace(h);
                    }
                    None => {}
                },
                Ok(None) => return Lost("the controller closed the session".into()),
                Err(s) => return classify(&s),
            },
            _ = metrics.ready.notified() => {
                if let Err(end) = send_metrics(metrics, &tx).await {
                    return end;
                }
            }
            _ = runner.notified() => {
                for m in runner.outgoing() {
                    if tx.send(m).await.is_err() {
                        return Lost("session stream closed".into());
                    }
                }
            }
            _ = idle_check.tick(), if reconnect_when_idle => {
                if runner.idle_for().is_some_and(|d| d >= Duration::from_secs(1)) {
                    return End::Reconnect("switching to the renewed certificate".into());
                }
            }
            _ = heartbeat.tick() => {
                hb_seq += 1;
                let msg = AgentMessage { msg: Some(agent_message::Msg::Heartbeat(Heartbeat { seq: hb_seq })) };
                if tx.send(msg).await.is_err() {
                    return Lost("session stream closed".into());
                }
            }
            _ = tokio::time::sleep_until(renew_at) => {
                // The controller retires the old certificate once this node connects with the
                // new one: switch as soon as no job runs on this connection.
                reconnect_when_idle |= renew_on_time(state, &mut client, &mut renew_at).await;
            }
        }
    }
}

/// File replication, riding on this session's connection and ending with the session.
fn start_fsrep(
    state: &StateDir,
    cfg: &AgentConfig,
    ctx: &Ctx,
    channel: tonic::transport::Channel,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(crate::fsrep::run(crate::fsrep::Setup {
        channel,
        node_id: cfg.node_id.clone(),
        root: cfg.root.clone(),
        state_file: state.dir.join("fsrep.state"),
        host: ctx.host.clone(),
    })))
}

/// The certificate renewed when its time comes: whether it was (then the next renewal is two
/// thirds into the new one's life; else it is tried again in 30 s).
async fn renew_on_time(
    state: &StateDir,
    client: &mut AgentSessionClient<tonic::transport::Channel>,
    renew_at: &mut tokio::time::Instant,
) -> bool {
    match renew(state, client).await {
        Ok(info) => {
            tracing::info!(not_after = %fmt_unix(info.not_after_unix), "certificate renewed");
            *renew_at = renewal_deadline(&info);
            true
        }
        Err(e) => {
            renewal_failed(&e, renew_at);
            false
        }
    }
}

/// Opens the session with a `Hello` (the node's inventory and the jobs the runner knows): the
/// controller's stream.
async fn say_hello(
    ctx: &Ctx,
    runner: &Runner,
    client: &mut AgentSessionClient<tonic::transport::Channel>,
    tx: &mpsc::Sender<AgentMessage>,
    rx: mpsc::Receiver<AgentMessage>,
) -> Result<tonic::Streaming<clustermgr_proto::ControllerMessage>, End> {
    let (running_job_ids, finished) = runner.hello();
    let in_hello: Vec<String> = finished.iter().map(|e| e.job_id.clone()).collect();
    let hello = AgentMessage {
        msg: Some(agent_message::Msg::Hello(Hello {
            inventory: Some(facts::inventory(&ctx.view)),
            running_job_ids,
            finished,
        })),
    };
    let _ = tx.send(hello).await;
    let inbound = client
        .session(ReceiverStream::new(rx))
        .await
        .map_err(|s| classify(&s))?
        .into_inner();
    runner.sent_in_hello(&in_hello);
    Ok(inbound)
}

/// The controller's welcome: the node is up (unless it waits for approval), and the heartbeat
/// goes at the pace it asks.
fn on_welcome(ctx: &Ctx, w: &clustermgr_proto::Welcome, heartbeat: &mut tokio::time::Interval) {
    if !w.pending_approval {
        crate::ops::upgrade::session_up(&ctx.host);
    }
    if w.heartbeat_interval_ms > 0 {
        *heartbeat = heartbeat_every(Duration::from_millis(u64::from(w.heartbeat_interval_ms)));
    }
    if w.pending_approval {
        tracing::warn!("this node is pending approval on the controller");
    }
}

/// A new CA bundle from the controller: saved, and the certificate renewed from the new CA
/// when the controller asks (then the session reconnects to present it).
async fn on_ca_update(
    state: &StateDir,
    client: &mut AgentSessionClient<tonic::transport::Channel>,
    u: &clustermgr_proto::CaUpdate,
    renew_at: &mut tokio::time::Instant,
) -> Option<End> {
    match state.save_ca_bundle(&u.ca_bundle_pem) {
        Ok(true) => tracing::info!("CA bundle updated"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "CA bundle not saved"),
    }
    if !u.renew_certificate {
        return None;
    }
    match renew(state, client).await {
        Ok(info) => {
            tracing::info!(not_after = %fmt_unix(info.not_after_unix), "certificate renewed from the new CA");
            Some(End::Reconnect(
                "presenting the certificate from the new CA".into(),
            ))
        }
        Err(e) => {
            renewal_failed(&e, renew_at);
            None
        }
    }
}

/// A failed renewal is tried again in 30 s.
fn renewal_failed(e: &anyhow::Error, renew_at: &mut tokio::time::Instant) {
    tracing::warn!(error = %e, "certificate renewal failed; retrying in 30s");
    *renew_at = tokio::time::Instant::now() + Duration::from_secs(30);
}

/// The metrics sampled so far, sent; kept for the next session when the stream is closed.
async fn send_metrics(
    metrics: &crate::metrics::Buffer,
    tx: &mpsc::Sender<AgentMessage>,
) -> Result<(), End> {
    let samples = metrics.take();
    if samples.is_empty() {
        return Ok(());
    }
    let msg = AgentMessage {
        msg: Some(agent_message::Msg::Metrics(
            clustermgr_proto::MetricsBatch {
                samples: samples.clone(),
            },
        )),
    };
    if tx.send(msg).await.is_err() {
        metrics.put_back(samples);
        return Err(Lost("session stream closed".into()));
    }
    Ok(())
}

/// Ends a task when its owner goes away.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Two thirds into the certificate's life, with up to 5 % jitter earlier.
fn renewal_deadline(info: &CertInfo) -> tokio::time::Instant {
    let life = info.not_after_unix.saturating_sub(info.not_before_unix) as f64;
    let at = info.renew_at_unix() as f64 - life * 0.05 * rand::random::<f64>();
    let secs_from_now = (at - now_ms() as f64 / 1000.0).max(0.0);
    tokio::time::Instant::now() + Duration::from_secs_f64(secs_from_now)
}

async fn renew(
    state: &StateDir,
    client: &mut AgentSessionClient<tonic::transport::Channel>,
) -> Result<CertInfo> {
    let cfg = state.load_config()?;
    let (key, csr) = pki::new_key_and_csr(&cfg.node_id)?;
    let resp = client
        .renew(RenewRequest { csr_der: csr })
        .await
        .map_err(|s| anyhow!("renewal refused: {}", s.message()))?
        .into_inner();
    let info = CertInfo::from_pem(&resp.certificate_pem)?;
    state.save_identity(&resp.certificate_pem, &key)?;
    Ok(info)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
