//! The agent side of the API: one bidirectional stream per agent, and certificate renewal.
//! The node is always the one named by the verified client certificate.
//!
//! A session that ends leaves the node's jobs running (the agent keeps running them); the next
//! session's `Hello` reconciles them (`Jobs::reconcile`).

use super::Ctl;
use crate::auth::{Principal, caller, caller_fingerprint};
use crate::error::status;
use crate::nodes;
use clustermgr_proto::{
    AgentMessage, ControllerMessage, Hello, RenewRequest, RenewResponse, Welcome, agent_message,
    agent_session_server::AgentSession, controller_message, job_event,
};
use futures::Stream;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

/// The agent session service, with the domain state that an agent's messages feed.
#[derive(Clone)]
pub struct SessionApi {
    pub ctl: Arc<Ctl>,
    pub packages: Arc<crate::packages::Repository>,
    pub logs: Arc<crate::logs::Broker>,
    pub health: Arc<crate::health::Health>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Reads the agent's first message, which must be its hello, within 15 s.
async fn read_hello(inbound: &mut Streaming<AgentMessage>) -> Result<Hello, Status> {
    let first = tokio::time::timeout(std::time::Duration::from_secs(15), inbound.message())
        .await
        .map_err(|_| Status::deadline_exceeded("no hello from the agent within 15 s"))??;
    match first {
        Some(AgentMessage {
            msg: Some(agent_message::Msg::Hello(h)),
        }) => Ok(h),
        _ => Err(Status::invalid_argument("a session must start with hello")),
    }
}

impl SessionApi {
    /// Handles the agent's messages until the session is ended (by the registry, by the
    /// revocation or expiry of its certificate, or by the agent), then records the node's last
    /// contact.
    async fn run_session(
        self,
        id: String,
        session: crate::registry::Session,
        mut killed: tokio::sync::watch::Receiver<bool>,
        mut inbound: Streaming<AgentMessage>,
        tx: crate::registry::Outbound,
        revoked: impl std::future::Future<Output = crate::auth::Ended>,
    ) {
        let ctl = self.ctl.clone();
        tokio::pin!(revoked);
        loop {
            tokio::select! {
                _ = killed.changed() => break,
                why = &mut revoked => {
                    let status = match why {
                        crate::auth::Ended::Revoked => Status::unauthenticated(
                            "this node's certificate was revoked",
                        ),
                        // The agent reconnects with its renewed certificate.
                        crate::auth::Ended::Expired => Status::unavailable(
                            "the certificate this session was opened with has expired; reconnect",
                        ),
                    };
                    let _ = tx.try_send(Err(status));
                    break;
                }
                msg = inbound.message() => match msg {
                    Ok(Some(m)) => {
                        session.touch();
                        self.handle(&id, m).await;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(node = %id, error = %e.message(), "agent stream error");
                        break;
                    }
                }
            }
        }
        ctl.registry.unregister(&id, session.generation);
        // Its jobs stay running: the agent goes on with them and reports at its next hello.
        tracing::info!(node = %id, "agent disconnected");
        if let Err(e) = nodes::seen(&ctl, &id, session.last_seen()).await {
            tracing::error!(node = %id, error = %e, "cannot record last contact");
        }
    }
}

fn node_id(p: Principal) -> Result<String, Status> {
    match p {
        Principal::Node { id } => Ok(id),
        Principal::Operator { .. } => Err(Status::permission_denied("agents only")),
    }
}

type OutStream = Pin<Box<dyn Stream<Item = Result<ControllerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentSession for SessionApi {
    type SessionStream = OutStream;
    type FetchPackageStream =
        Pin<Box<dyn Stream<Item = Result<clustermgr_proto::PackageChunk, Status>> + Send>>;

    async fn fetch_package(
        &self,
        req: Request<clustermgr_proto::FetchPackageRequest>,
    ) -> Result<Response<Self::FetchPackageStream>, Status> {
        // Only a running receive-package job of the calling node, for its own package, is
        // served; the file is read chunk by chunk into a small bounded channel.
        let id = node_id(caller(&req)?)?;
        let r = req.into_inner();
        let (path, rec) = crate::packages::authorize_fetch(
            &self.ctl,
            &self.packages,
            &id,
            &r.job_id,
            &r.sha256,
            r.offset,
        )
        .map_err(status)?;
        let (tx, rx) = mpsc::channel(4);
        let offset = r.offset;
        let ctl = self.ctl.clone();
        tokio::task::spawn_blocking(move || {
            let sent = crate::packages::read_chunks(&path, offset, rec.chunk_size, |at, data| {
                // Served only while the job runs (not after a timeout or an interruption).
                ctl.jobs.running(&r.job_id).is_some()
                    && tx
                        .blocking_send(Ok(clustermgr_proto::PackageChunk { offset: at, data }))
                        .is_ok()
            });
            if let Err(e) = sent {
                let _ = tx.blocking_send(Err(status(e)));
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn send_log_matches(
        &self,
        req: Request<Streaming<clustermgr_proto::LogMatchBatch>>,
    ) -> Result<Response<clustermgr_proto::SendLogMatchesResponse>, Status> {
        // Only a running search-logs job of the calling node, while its operator still reads.
        let id = node_id(caller(&req)?)?;
        let mut stream = req.into_inner();
        let Some(first) = stream.message().await? else {
            return Ok(Response::new(Default::default()));
        };
        let tx = self
            .logs
            .accept(&self.ctl, &id, &first.job_id)
            .map_err(status)?;
        let mut batch = first;
        loop {
            if !batch.matches.is_empty() && tx.send(batch.matches).await.is_err() {
                break;
            }
            tokio::select! {
                next = stream.message() => match next? {
                    Some(b) if b.job_id == batch.job_id => batch = b,
                    Some(_) => return Err(Status::invalid_argument("one job per upload")),
                    None => break,
                },
                // The operator went away: ending the upload ends the node's search.
                _ = tx.closed() => break,
            }
        }
        Ok(Response::new(Default::default()))
    }

    async fn session(
        &self,
        req: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<OutStream>, Status> {
        let id = node_id(caller(&req)?)?;
        let fp = caller_fingerprint(&req);
        let remote = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let peer = req.peer_certs();
        let ctl = self.ctl.clone();
        nodes::check_exists(&ctl, &id).map_err(status)?;
        let mut inbound = req.into_inner();
        // The session starts with the agent's inventory; record it before the node counts as
        // online, so that "online" always comes with an up-to-date inventory.
        let hello = read_hello(&mut inbound).await?;
        let (inv, running_jobs, finished_jobs) = (
            hello.inventory.unwrap_or_default(),
            hello.running_job_ids,
            hello.finished,
        );
        if let Some(why) =
            crate::agent_version::refusal(ctl.rt.min_agent_version.as_ref(), &inv.agent_version)
        {
            tracing::warn!(node = %id, %remote, reason = %why, "agent refused");
            crate::agent_version::refuse(&ctl, &id, inv, &why).await;
            return Err(Status::failed_precondition(why));
        }
        nodes::hello(&ctl, &id, inv)
            .await
            .map_err(status)?
            .ok_or_else(|| status(nodes::NodeError::Removed))?;
        let (tx, rx) = mpsc::channel(256);
        let (session, killed) = ctl.registry.register(&id, tx.clone(), remote.clone());
        let ended = killed.clone();
        // Re-check after registering: a removal that committed before this point is seen here,
        // one that commits after it finds the session in the registry and drops it.
        let node = match nodes::check_exists(&ctl, &id) {
            Ok(n) => n,
            Err(e) => {
                ctl.registry.unregister(&id, session.generation);
                return Err(status(e));
            }
        };
        // The agent's report of its jobs, before anything it sends next (log lines and results
        // of the jobs it reported as running follow the Hello).
        ctl.jobs.reconcile(&id, running_jobs, finished_jobs).await;
        if let Some(fp) = &fp
            && let Err(e) = nodes::retire_old_certificates(&ctl, &id, &fp.0).await
        {
            tracing::error!(node = %id, error = %e, "cannot retire older certificates");
        }
        let welcome = ControllerMessage {
            msg: Some(controller_message::Msg::Welcome(Welcome {
                node_id: id.clone(),
                heartbeat_interval_ms: ctl.rt.heartbeat.as_millis() as u32,
                pending_approval: !node.approved,
            })),
        };
        let _ = tx.try_send(Ok(welcome));
        crate::ca::greet(
            &ctl,
            peer.as_ref().and_then(|c| c.first()).map(|c| c.as_ref()),
            &tx,
        );
        tracing::info!(node = %id, %remote, "agent connected");
        let revoked = ctl.auth.clone().until_revoked(fp);
        tokio::spawn(
            self.clone()
                .run_session(id, session, killed, inbound, tx, revoked),
        );
        // Once the session is ended, what is still queued for the agent is dropped (an agent that
        // stopped reading must not keep its jobs' payloads in memory).
        Ok(Response::new(Box::pin(outbound(rx, ended))))
    }

    async fn renew(&self, req: Request<RenewRequest>) -> Result<Response<RenewResponse>, Status> {
        let id = node_id(caller(&req)?)?;
        let fp = caller_fingerprint(&req);
        let csr = req.into_inner().csr_der;
        let pem = nodes::renew(&self.ctl, &id, &csr, fp.as_ref().map(|f| f.0.as_str()))
            .await
            .map_err(status)?;
        Ok(Response::new(RenewResponse {
            certificate_pem: pem,
        }))
    }
}

type Out = Result<ControllerMessage, Status>;

/// The stream to the agent: what is queued, until the session is ended; then only the status
/// telling the agent why (if one was queued), and what else was queued is dropped.
fn outbound(
    rx: mpsc::Receiver<Out>,
    ended: tokio::sync::watch::Receiver<bool>,
) -> impl Stream<Item = Out> + Send {
    futures::stream::unfold(Some((rx, ended)), |state| async move {
        let (mut rx, mut ended) = state?;
        let next = tokio::select! {
            biased;
            _ = ended.wait_for(|k| *k) => None,
            m = rx.recv() => Some(m),
        };
        if let Some(m) = next {
            return m.map(|m| (m, Some((rx, ended))));
        }
        while let Ok(m) = rx.try_recv() {
            if let Err(s) = m {
                return Some((Err(s), None));
            }
        }
        None
    })
}

impl SessionApi {
    /// One message of an agent's session.
    async fn handle(&self, id: &str, m: AgentMessage) {
        let ctl = &self.ctl;
        match m.msg {
            Some(agent_message::Msg::Hello(h)) => {
                if let Some(inv) = h.inventory
                    && let Err(e) = nodes::hello(ctl, id, inv).await
                {
                    tracing::error!(node = %id, error = %e, "cannot record the inventory");
                }
            }
            Some(agent_message::Msg::Heartbeat(_)) | None => {}
            Some(agent_message::Msg::Health(r)) => {
                crate::health::report(ctl, &self.health, id, r).await
            }
            Some(agent_message::Msg::Metrics(b)) => {
                match crate::metrics::ingest(ctl, &self.metrics, id, b).await {
                    Ok(pause) if !pause.is_zero() => tokio::time::sleep(pause).await,
                    Ok(_) => {}
                    Err(e) => tracing::error!(node = %id, error = %e, "cannot store metrics"),
                }
            }
            Some(agent_message::Msg::JobEvent(ev)) => match ev.event {
                Some(job_event::Event::Log(line)) => ctl.jobs.log(id, &ev.job_id, line),
                Some(job_event::Event::Progress(p)) => ctl.jobs.progress(id, &ev.job_id, p),
                Some(job_event::Event::Result(r)) => {
                    ctl.jobs.result(id, &ev.job_id, r).await;
                }
                None => {}
            },
        }
    }
}
