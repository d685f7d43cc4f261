//! The agent side of the API: one bidirectional stream per agent, and certificate renewal.
//! The node is always the one named by the verified client certificate.

use super::{Ctl, internal};
use crate::auth::{Principal, caller};
use crate::store::{NODES, PRINCIPALS};
use clustermgr_proto::{
    AgentMessage, ControllerMessage, Node, PrincipalRecord, RenewRequest, RenewResponse, Welcome,
    agent_message, agent_session_server::AgentSession, controller_message, job_event,
};
use clustermgr_shared::pki::{CertInfo, Usage, validity_from_now};
use futures::Stream;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub struct SessionApi {
    pub ctl: Arc<Ctl>,
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

    async fn session(
        &self,
        req: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<OutStream>, Status> {
        let id = node_id(caller(&req)?)?;
        let remote = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let peer = req.peer_certs();
        let ctl = self.ctl.clone();
        let node = ctl
            .store
            .get_msg::<Node>(NODES, &id)
            .map_err(internal)?
            .ok_or_else(|| Status::permission_denied("this node has been removed; re-join it"))?;
        let mut inbound = req.into_inner();
        // The session starts with the agent's inventory; record it before the node counts as
        // online, so that "online" always comes with an up-to-date inventory.
        let first = tokio::time::timeout(std::time::Duration::from_secs(15), inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no hello from the agent within 15 s"))??;
        match first {
            Some(
                m @ AgentMessage {
                    msg: Some(agent_message::Msg::Hello(_)),
                },
            ) => handle(&ctl, &id, m).await.map_err(internal)?,
            _ => return Err(Status::invalid_argument("a session must start with hello")),
        }
        let (tx, rx) = mpsc::channel(256);
        let (session, mut killed) = ctl.registry.register(&id, tx.clone(), remote.clone());
        let welcome = ControllerMessage {
            msg: Some(controller_message::Msg::Welcome(Welcome {
                node_id: id.clone(),
                heartbeat_interval_ms: ctl.rt.heartbeat.as_millis() as u32,
                pending_approval: !node.approved,
            })),
        };
        let _ = tx.send(Ok(welcome)).await;
        super::ca::greet(
            &ctl,
            peer.as_ref().and_then(|c| c.first()).map(|c| c.as_ref()),
            &tx,
        );
        tracing::info!(node = %id, %remote, "agent connected");
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = killed.changed() => break,
                    msg = inbound.message() => match msg {
                        Ok(Some(m)) => {
                            session.touch();
                            if let Err(e) = handle(&ctl, &id, m).await {
                                tracing::error!(node = %id, error = %e, "cannot record agent message");
                            }
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
            tracing::info!(node = %id, "agent disconnected");
            if ctl.registry.get(&id).is_none() {
                ctl.jobs.node_disconnected(&id).await;
            }
            let last = session.last_seen();
            let _ = update_node(&ctl, &id, move |n| n.last_seen_unix_ms = last).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn renew(&self, req: Request<RenewRequest>) -> Result<Response<RenewResponse>, Status> {
        let id = node_id(caller(&req)?)?;
        let ctl = &self.ctl;
        let csr = req.into_inner().csr_der;
        let pem = ctl
            .ca
            .sign_csr(
                &csr,
                &id,
                Usage::Client,
                validity_from_now(ctl.rt.node_cert_ttl),
            )
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let info = CertInfo::from_pem(&pem).map_err(internal)?;
        let rec = PrincipalRecord {
            kind: "node".into(),
            id: id.clone(),
            not_after_unix: info.not_after_unix,
            ca_key_id: info.authority_key_id.clone(),
        };
        ctl.store
            .put_msg(PRINCIPALS, info.fingerprint.clone(), rec)
            .await
            .map_err(internal)?;
        ctl.auth
            .insert(info.fingerprint.clone(), Principal::Node { id: id.clone() });
        let not_after = info.not_after_unix;
        update_node(ctl, &id, move |n| n.certificate_not_after_unix = not_after)
            .await
            .map_err(internal)?;
        tracing::info!(node = %id, "certificate renewed");
        Ok(Response::new(RenewResponse {
            certificate_pem: pem,
        }))
    }
}

async fn handle(ctl: &Arc<Ctl>, id: &str, m: AgentMessage) -> anyhow::Result<()> {
    match m.msg {
        Some(agent_message::Msg::Hello(h)) => {
            if let Some(inv) = h.inventory {
                let hostname = inv.hostname.clone();
                update_node(ctl, id, move |n| {
                    if !hostname.is_empty() {
                        n.hostname = hostname;
                    }
                    n.inventory = Some(inv);
                    n.last_seen_unix_ms = clustermgr_shared::util::now_ms();
                })
                .await?;
            }
        }
        Some(agent_message::Msg::Heartbeat(_)) | None => {}
        Some(agent_message::Msg::JobEvent(ev)) => match ev.event {
            Some(job_event::Event::Log(line)) => ctl.jobs.log(id, &ev.job_id, line).await?,
            Some(job_event::Event::Progress(p)) => ctl.jobs.progress(id, &ev.job_id, p),
            Some(job_event::Event::Result(r)) => ctl.jobs.result(id, &ev.job_id, r).await,
            None => {}
        },
    }
    Ok(())
}

/// Read-modify-write of a node record in one transaction (no-op if the node was removed).
pub async fn update_node(
    ctl: &Ctl,
    id: &str,
    f: impl FnOnce(&mut Node) + Send + 'static,
) -> Result<(), crate::store::StoreError> {
    let id = id.to_string();
    ctl.store
        .write(move |txn| {
            use prost::Message;
            use redb::ReadableTable;
            let mut t = txn.open_table(NODES)?;
            let node: Option<Node> = match t.get(id.as_str())? {
                Some(v) => Some(crate::store::decode("nodes", v.value())?),
                None => None,
            };
            if let Some(mut n) = node {
                f(&mut n);
                t.insert(id.as_str(), n.encode_to_vec().as_slice())?;
            }
            Ok(())
        })
        .await
}
