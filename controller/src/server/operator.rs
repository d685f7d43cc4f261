//! The operator API (CLI and integrations): thin adapters over `nodes`, `tokens`, `operators`
//! and `jobs`. Reads need role viewer, changes to nodes, tokens and jobs need operator (job kinds
//! that read secrets or skip a workflow's checks need admin: `jobs::roles`), managing
//! operators needs admin. Every mutating call is audited: a successful change writes its row in
//! the change's own transaction; a refused or failed one writes a row of its own.

use super::{Ctl, audited, viewer};
use crate::audit::{self, Audit};
use crate::auth::{Auth, CertFingerprint, Principal, Role, caller, caller_fingerprint};
use crate::error::{internal, status};
use crate::jobs::{Finished, JobSpec};
use crate::{nodes, operators, tokens};
use clustermgr_proto::operator_server::Operator;
use clustermgr_proto::*;
use clustermgr_shared::pki::CertInfo;
use clustermgr_shared::{MAX_FILE_BYTES, paths};
use futures::Stream;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

pub struct OperatorApi {
    pub ctl: Arc<Ctl>,
}

const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_JOB_TIMEOUT: Duration = Duration::from_secs(3600);
/// Log lines read from the store per page.
const LOG_PAGE: usize = 1000;

fn peer_not_after<T>(req: &Request<T>) -> u64 {
    req.peer_certs()
        .and_then(|c| c.first().and_then(|l| CertInfo::from_der(l).ok()))
        .map(|i| i.not_after_unix)
        .unwrap_or(0)
}

/// Ends when the caller's credential is revoked (its operator removed) or expires.
fn revoked(
    auth: &Arc<Auth>,
    fp: Option<CertFingerprint>,
) -> impl Future<Output = crate::auth::Ended> + use<> {
    auth.clone().until_revoked(fp)
}

fn revoked_status() -> Status {
    Status::unauthenticated("this credential was revoked or has expired")
}

type LogStream = Pin<Box<dyn Stream<Item = Result<JobLogLine, Status>> + Send>>;

#[tonic::async_trait]
impl Operator for OperatorApi {
    type JobLogsStream = LogStream;

    async fn who_am_i(
        &self,
        req: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let not_after = peer_not_after(&req);
        match caller(&req)? {
            Principal::Operator { name, role } => Ok(Response::new(WhoAmIResponse {
                name,
                role: role.as_str().into(),
                certificate_not_after_unix: not_after,
            })),
            Principal::Node { .. } => Err(Status::permission_denied("operators only")),
        }
    }

    async fn list_nodes(
        &self,
        req: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        viewer(&req)?;
        let nodes = nodes::list(&self.ctl).map_err(status)?;
        Ok(Response::new(ListNodesResponse { nodes }))
    }

    async fn get_node(&self, req: Request<NodeRef>) -> Result<Response<Node>, Status> {
        viewer(&req)?;
        Ok(Response::new(
            nodes::get(&self.ctl, &req.get_ref().node).map_err(status)?,
        ))
    }

    async fn approve_node(&self, req: Request<NodeRef>) -> Result<Response<Node>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner().node;
        let a = Audit::new(&p, "node.approve", r.clone());
        let call = async { nodes::approve(&self.ctl, &r, &a).await.map_err(status) };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn remove_node(
        &self,
        req: Request<NodeRef>,
    ) -> Result<Response<RemoveNodeResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner().node;
        let a = Audit::new(&p, "node.remove", r.clone());
        let call = async {
            let (id, session_dropped) = nodes::remove(&self.ctl, &r, &a).await.map_err(status)?;
            Ok(RemoveNodeResponse {
                id,
                session_dropped,
            })
        };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn create_token(
        &self,
        req: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let a = Audit::new(&p, "token.create", r.role.clone());
        let by = p.to_string();
        let call = async {
            let (token, rec) =
                tokens::create(&self.ctl.store, &r.role, r.ttl_seconds, r.uses, &by, &a)
                    .await
                    .map_err(status)?;
            Ok(CreateTokenResponse {
                token: token.into_inner(),
                token_id: rec.id,
                expires_unix: rec.expires_unix,
            })
        };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn list_tokens(
        &self,
        req: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        viewer(&req)?;
        let tokens = tokens::list(&self.ctl.store).map_err(status)?;
        Ok(Response::new(ListTokensResponse { tokens }))
    }

    async fn revoke_token(
        &self,
        req: Request<RevokeTokenRequest>,
    ) -> Result<Response<TokenInfo>, Status> {
        let p = caller(&req)?;
        // Accept a whole token too, but only ever record its id.
        let id = tokens::token_id_of(&req.into_inner().token_id);
        let a = Audit::new(&p, "token.revoke", id.clone());
        let call = async {
            tokens::revoke(&self.ctl.store, &id, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn submit_job(
        &self,
        req: Request<SubmitJobRequest>,
    ) -> Result<Response<SubmitJobResponse>, Status> {
        let p = caller(&req)?;
        let fp = caller_fingerprint(&req);
        let r = req.into_inner();
        let ctl = &self.ctl;
        let target = r.node.as_ref().map(|n| n.node.clone()).unwrap_or_default();
        let a = Audit::new(&p, "job.submit", target.clone());
        let by = p.to_string();
        let call = async {
            let op = r
                .operation
                .ok_or_else(|| Status::invalid_argument("an operation is required"))?;
            validate_operation(&op)?;
            // Kinds that read secrets or skip a workflow's checks need more than operator.
            let need = crate::jobs::roles::required(&op);
            if let Some(why) = need.why {
                let what = format!("job kind {} ({why})", op.kind_name());
                crate::auth::require(&p, need.role, &what)?;
            }
            let node = nodes::find(ctl, &target).map_err(status)?;
            let timeout = match r.timeout_ms {
                0 => DEFAULT_JOB_TIMEOUT,
                ms => Duration::from_millis(ms as u64).min(MAX_JOB_TIMEOUT),
            };
            ctl.jobs
                .submit(&node, JobSpec::new(op, timeout, by), &a)
                .await
                .map_err(status)
        };
        let (job, mut done) = audited(&self.ctl.store, &p, Role::Operator, &a, call).await?;
        if !r.wait {
            return Ok(Response::new(SubmitJobResponse {
                job: Some(job),
                content: Vec::new(),
            }));
        }
        let revoked = revoked(&ctl.auth, fp);
        tokio::pin!(revoked);
        let finished: Finished = loop {
            if let Some(f) = done.borrow_and_update().clone() {
                break f;
            }
            tokio::select! {
                changed = done.changed() => if changed.is_err() {
                    let job = ctl.jobs.get(&job.id).map_err(status)?.unwrap_or(job);
                    break Finished { job, content: None };
                },
                _ = &mut revoked => return Err(revoked_status()),
            }
        };
        Ok(Response::new(SubmitJobResponse {
            job: Some(finished.job),
            content: finished.content.unwrap_or_default(),
        }))
    }

    async fn list_jobs(
        &self,
        req: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        viewer(&req)?;
        let r = req.into_inner();
        let node = if r.node.is_empty() {
            None
        } else {
            Some(nodes::find(&self.ctl, &r.node).map_err(status)?.id)
        };
        let limit = match r.limit {
            0 => 50,
            n => (n as usize).min(10_000),
        };
        let jobs = self.ctl.jobs.list(node.as_deref(), limit).map_err(status)?;
        Ok(Response::new(ListJobsResponse { jobs }))
    }

    async fn get_job(&self, req: Request<GetJobRequest>) -> Result<Response<Job>, Status> {
        viewer(&req)?;
        // By id or a unique prefix of it (tables show ids short).
        self.ctl
            .jobs
            .find(&req.get_ref().id)
            .map(Response::new)
            .map_err(status)
    }

    async fn job_logs(&self, req: Request<JobLogsRequest>) -> Result<Response<LogStream>, Status> {
        viewer(&req)?;
        let fp = caller_fingerprint(&req);
        let mut r = req.into_inner();
        let jobs = self.ctl.jobs.clone();
        r.id = jobs.find(&r.id).map_err(status)?.id;
        // Subscribe before reading stored lines so nothing falls between the two.
        let live = if r.follow {
            jobs.subscribe(&r.id)
        } else {
            None
        };
        let revoked = revoked(&self.ctl.auth, fp);
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            tokio::pin!(revoked);
            let mut last = r.after_seq;
            // Sends every stored line after `last`, page by page.
            macro_rules! send_stored {
                () => {
                    loop {
                        let page = match jobs.logs_after(&r.id, last, LOG_PAGE) {
                            Ok(p) => p,
                            Err(e) => {
                                let _ = tx.send(Err(internal(e))).await;
                                return;
                            }
                        };
                        let full = page.len() >= LOG_PAGE;
                        for l in page {
                            last = l.seq;
                            tokio::select! {
                                s = tx.send(Ok(l)) => if s.is_err() { return },
                                _ = &mut revoked => {
                                    let _ = tx.try_send(Err(revoked_status()));
                                    return;
                                }
                            }
                        }
                        if !full {
                            break;
                        }
                    }
                };
            }
            send_stored!();
            let Some((mut logs, mut done)) = live else {
                return;
            };
            loop {
                tokio::select! {
                    line = logs.recv() => match line {
                        Ok(l) if l.seq > last => {
                            last = l.seq;
                            if tx.send(Ok(l)).await.is_err() { return; }
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            send_stored!();
                        }
                        Err(_) => break,
                    },
                    changed = done.changed() => {
                        if changed.is_err() || done.borrow().is_some() { break; }
                    }
                    _ = &mut revoked => {
                        let _ = tx.try_send(Err(revoked_status()));
                        return;
                    }
                }
            }
            send_stored!();
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn create_operator(
        &self,
        req: Request<CreateOperatorRequest>,
    ) -> Result<Response<CreateOperatorResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let a = Audit::new(&p, "operator.create", r.name.clone());
        let by = p.to_string();
        let call = async {
            let pem = operators::create(
                &self.ctl,
                &r.name,
                &r.role,
                &r.csr_der,
                r.ttl_seconds,
                &by,
                &a,
            )
            .await
            .map_err(status)?;
            Ok(CreateOperatorResponse {
                certificate_pem: pem,
                ca_pem: self.ctl.ca.cert_pem(),
            })
        };
        audited(&self.ctl.store, &p, Role::Admin, &a, call)
            .await
            .map(Response::new)
    }

    async fn list_operators(
        &self,
        req: Request<ListOperatorsRequest>,
    ) -> Result<Response<ListOperatorsResponse>, Status> {
        viewer(&req)?;
        let operators = operators::list(&self.ctl).map_err(status)?;
        Ok(Response::new(ListOperatorsResponse { operators }))
    }

    async fn remove_operator(
        &self,
        req: Request<RemoveOperatorRequest>,
    ) -> Result<Response<OperatorInfo>, Status> {
        let p = caller(&req)?;
        let name = req.into_inner().name;
        let a = Audit::new(&p, "operator.remove", name.clone());
        let call = async {
            operators::remove(&self.ctl, &name, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Admin, &a, call)
            .await
            .map(Response::new)
    }

    async fn list_audit(
        &self,
        req: Request<ListAuditRequest>,
    ) -> Result<Response<ListAuditResponse>, Status> {
        viewer(&req)?;
        let limit = match req.get_ref().limit {
            0 => 100,
            n => (n as usize).min(100_000),
        };
        let entries = audit::list(&self.ctl.store, limit).map_err(status)?;
        Ok(Response::new(ListAuditResponse { entries }))
    }
}

/// Early, lexical validation of an operation (the agent re-checks against the real file system).
fn validate_operation(op: &Operation) -> Result<(), Status> {
    match &op.kind {
        None => Err(Status::invalid_argument("an operation kind is required")),
        Some(operation::Kind::ReadFile(r)) => paths::normalize(&r.path)
            .map(|_| ())
            .map_err(|e| Status::invalid_argument(e.to_string())),
        Some(operation::Kind::WriteFile(w)) => {
            paths::normalize(&w.path).map_err(|e| Status::invalid_argument(e.to_string()))?;
            if w.content.len() > MAX_FILE_BYTES {
                return Err(Status::invalid_argument(format!(
                    "file content is {} bytes; the limit is {MAX_FILE_BYTES}",
                    w.content.len()
                )));
            }
            if w.mode > 0o7777 {
                return Err(Status::invalid_argument("mode must be at most 0o7777"));
            }
            Ok(())
        }
        Some(_) => Ok(()),
    }
}
