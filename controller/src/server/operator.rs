//! The operator API (CLI and integrations). Reads need role viewer, changes to nodes, tokens
//! and jobs need operator, managing operators needs admin. Every mutating call, allowed or
//! refused, is written to the audit log.

use super::{Ctl, internal};
use crate::audit;
use crate::auth::{Principal, Role, caller, require};
use crate::jobs::{Finished, JobError};
use crate::store::{NODES, OPERATORS, PRINCIPALS, TOKENS, decode, purge_principals};
use clustermgr_proto::operator_server::Operator;
use clustermgr_proto::*;
use clustermgr_shared::pki::{CertInfo, Usage, validity_from_now};
use clustermgr_shared::util::now_ms;
use clustermgr_shared::{MAX_FILE_BYTES, NODE_ROLES, paths};
use futures::Stream;
use prost::Message;
use redb::ReadableTable;
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

impl OperatorApi {
    /// Runs a mutating call: role check, the call, then the audit entry.
    async fn mutate<T, F, Fut>(
        &self,
        p: &Principal,
        min: Role,
        action: &str,
        target: String,
        call: F,
    ) -> Result<T, Status>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(T, String), Status>>,
    {
        let result = match require(p, min, action) {
            Ok(()) => call().await,
            Err(e) => Err(e),
        };
        let (detail, out) = match result {
            Ok((v, detail)) => (detail, Ok(v)),
            Err(e) => (String::new(), Err(e)),
        };
        if let Err(e) = audit::record(
            &self.ctl.store,
            p.to_string(),
            action,
            target,
            detail,
            audit::outcome(&out),
        )
        .await
        {
            tracing::error!(error = %e, "cannot write the audit log");
        }
        out
    }
}

fn viewer<T>(req: &Request<T>) -> Result<Principal, Status> {
    let p = caller(req)?;
    require(&p, Role::Viewer, "reading")?;
    Ok(p)
}

fn peer_not_after<T>(req: &Request<T>) -> u64 {
    req.peer_certs()
        .and_then(|c| c.first().and_then(|l| CertInfo::from_der(l).ok()))
        .map(|i| i.not_after_unix)
        .unwrap_or(0)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
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
        let nodes = self
            .ctl
            .store
            .all_msgs::<Node>(NODES)
            .map_err(internal)?
            .into_iter()
            .map(|(_, n)| self.ctl.decorate(n))
            .collect::<Vec<_>>();
        let mut nodes = nodes;
        nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.id.cmp(&b.id)));
        Ok(Response::new(ListNodesResponse { nodes }))
    }

    async fn get_node(&self, req: Request<NodeRef>) -> Result<Response<Node>, Status> {
        viewer(&req)?;
        Ok(Response::new(self.ctl.find_node(&req.get_ref().node)?))
    }

    async fn approve_node(&self, req: Request<NodeRef>) -> Result<Response<Node>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner().node;
        let ctl = self.ctl.clone();
        self.mutate(
            &p,
            Role::Operator,
            "node.approve",
            r.clone(),
            || async move {
                let node = ctl.find_node(&r)?;
                super::session::update_node(&ctl, &node.id, |n| n.approved = true)
                    .await
                    .map_err(internal)?;
                let node = ctl.find_node(&node.id)?;
                let detail = format!("id={} hostname={}", node.id, node.hostname);
                Ok((node, detail))
            },
        )
        .await
        .map(Response::new)
    }

    async fn remove_node(
        &self,
        req: Request<NodeRef>,
    ) -> Result<Response<RemoveNodeResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner().node;
        let ctl = self.ctl.clone();
        self.mutate(
            &p,
            Role::Operator,
            "node.remove",
            r.clone(),
            || async move {
                let node = ctl.find_node(&r)?;
                let id = node.id.clone();
                // Revoke first: from here on its certificates are refused.
                ctl.auth.remove_node(&id);
                let purge_id = id.clone();
                ctl.store
                    .write(move |txn| {
                        txn.open_table(NODES)?.remove(purge_id.as_str())?;
                        purge_principals(txn, "node", &purge_id)?;
                        Ok(())
                    })
                    .await
                    .map_err(internal)?;
                let dropped = ctl
                    .registry
                    .drop_session(
                        &id,
                        Status::permission_denied(
                            "this node was removed from the cluster; re-join it with a new token",
                        ),
                    )
                    .await;
                ctl.jobs.node_disconnected(&id).await;
                let detail = format!(
                    "id={id} hostname={} session_dropped={dropped}",
                    node.hostname
                );
                Ok((
                    RemoveNodeResponse {
                        id,
                        session_dropped: dropped,
                    },
                    detail,
                ))
            },
        )
        .await
        .map(Response::new)
    }

    async fn create_token(
        &self,
        req: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let ctl = self.ctl.clone();
        let by = p.to_string();
        self.mutate(
            &p,
            Role::Operator,
            "token.create",
            r.role.clone(),
            || async move {
                if !NODE_ROLES.contains(&r.role.as_str()) {
                    return Err(Status::invalid_argument(format!(
                        "unknown role {:?}; expected one of {}",
                        r.role,
                        NODE_ROLES.join(", ")
                    )));
                }
                let ttl = if r.ttl_seconds == 0 {
                    1800
                } else {
                    r.ttl_seconds
                };
                if ttl > 7 * 86_400 {
                    return Err(Status::invalid_argument(
                        "token lifetime is limited to 7 days",
                    ));
                }
                let uses = if r.uses == 0 { 1 } else { r.uses };
                if uses > 10_000 {
                    return Err(Status::invalid_argument(
                        "a token allows at most 10000 uses",
                    ));
                }
                let (id, token, rec) = crate::tokens::generate(&r.role, ttl, uses, &by);
                let expires = rec.expires_unix;
                ctl.store
                    .put_msg(TOKENS, id.clone(), rec)
                    .await
                    .map_err(internal)?;
                let detail = format!("token_id={id} role={} ttl={ttl}s uses={uses}", r.role);
                Ok((
                    CreateTokenResponse {
                        token: token.into_inner(),
                        token_id: id,
                        expires_unix: expires,
                    },
                    detail,
                ))
            },
        )
        .await
        .map(Response::new)
    }

    async fn list_tokens(
        &self,
        req: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        viewer(&req)?;
        let tokens = self
            .ctl
            .store
            .all_msgs::<TokenRecord>(TOKENS)
            .map_err(internal)?
            .iter()
            .map(|(_, t)| crate::tokens::info(t))
            .collect();
        Ok(Response::new(ListTokensResponse { tokens }))
    }

    async fn revoke_token(
        &self,
        req: Request<RevokeTokenRequest>,
    ) -> Result<Response<TokenInfo>, Status> {
        let p = caller(&req)?;
        let id = req.into_inner().token_id.trim().to_ascii_lowercase();
        // Accept a whole token too, but only ever record its id.
        let id = id
            .split_once('.')
            .map_or(id.clone(), |(i, _)| i.to_string());
        let ctl = self.ctl.clone();
        self.mutate(
            &p,
            Role::Operator,
            "token.revoke",
            id.clone(),
            || async move {
                let key = id.clone();
                let removed = ctl
                    .store
                    .write(move |txn| {
                        let rec = txn
                            .open_table(TOKENS)?
                            .remove(key.as_str())?
                            .map(|v| decode::<TokenRecord>("tokens", v.value()));
                        rec.transpose()
                    })
                    .await
                    .map_err(internal)?;
                let rec = removed
                    .ok_or_else(|| Status::not_found(format!("no join token with id {id:?}")))?;
                let detail = format!("role={}", rec.role);
                Ok((crate::tokens::info(&rec), detail))
            },
        )
        .await
        .map(Response::new)
    }

    async fn submit_job(
        &self,
        req: Request<SubmitJobRequest>,
    ) -> Result<Response<SubmitJobResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let ctl = self.ctl.clone();
        let target = r.node.as_ref().map(|n| n.node.clone()).unwrap_or_default();
        let by = p.to_string();
        let summary = r
            .operation
            .as_ref()
            .map(|op| crate::jobs::kind_of(op).1)
            .unwrap_or_default();
        let (job, done) = self
            .mutate(
                &p,
                Role::Operator,
                "job.submit",
                target.clone(),
                || async move {
                    let op = r
                        .operation
                        .ok_or_else(|| Status::invalid_argument("an operation is required"))?;
                    validate_operation(&op)?;
                    let node = ctl.find_node(&target)?;
                    let timeout = match r.timeout_ms {
                        0 => DEFAULT_JOB_TIMEOUT,
                        ms => Duration::from_millis(ms as u64).min(MAX_JOB_TIMEOUT),
                    };
                    let (job, done) = ctl
                        .jobs
                        .submit(&node.id, &node.hostname, node.approved, op, timeout, by)
                        .await
                        .map_err(|e| match e {
                            JobError::NodeOffline(_) | JobError::Pending(_) => {
                                Status::failed_precondition(e.to_string())
                            }
                            JobError::Store(e) => internal(e),
                        })?;
                    let detail = format!("job={} {summary}", job.id);
                    Ok(((job, done), detail))
                },
            )
            .await?;
        if !r.wait {
            return Ok(Response::new(SubmitJobResponse {
                job: Some(job),
                content: Vec::new(),
            }));
        }
        let mut done = done;
        let finished: Finished = loop {
            if let Some(f) = done.borrow_and_update().clone() {
                break f;
            }
            if done.changed().await.is_err() {
                let job = self.ctl.jobs.get(&job.id).map_err(internal)?.unwrap_or(job);
                break Finished { job, content: None };
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
            Some(self.ctl.find_node(&r.node)?.id)
        };
        let limit = if r.limit == 0 { 50 } else { r.limit as usize };
        let jobs = self
            .ctl
            .jobs
            .list(node.as_deref(), limit)
            .map_err(internal)?;
        Ok(Response::new(ListJobsResponse { jobs }))
    }

    async fn get_job(&self, req: Request<GetJobRequest>) -> Result<Response<Job>, Status> {
        viewer(&req)?;
        let id = &req.get_ref().id;
        self.ctl
            .jobs
            .get(id)
            .map_err(internal)?
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no job {id:?}")))
    }

    async fn job_logs(&self, req: Request<JobLogsRequest>) -> Result<Response<LogStream>, Status> {
        viewer(&req)?;
        let r = req.into_inner();
        let jobs = self.ctl.jobs.clone();
        if jobs.get(&r.id).map_err(internal)?.is_none() {
            return Err(Status::not_found(format!("no job {:?}", r.id)));
        }
        // Subscribe before reading stored lines so nothing falls between the two.
        let live = if r.follow {
            jobs.subscribe(&r.id)
        } else {
            None
        };
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            let mut last = r.after_seq;
            let send_stored = |last: &mut u64| -> Result<Vec<JobLogLine>, Status> {
                let lines = jobs.logs_after(&r.id, *last).map_err(internal)?;
                if let Some(l) = lines.last() {
                    *last = l.seq;
                }
                Ok(lines)
            };
            match send_stored(&mut last) {
                Ok(lines) => {
                    for l in lines {
                        if tx.send(Ok(l)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
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
                            if let Ok(lines) = send_stored(&mut last) {
                                for l in lines { if tx.send(Ok(l)).await.is_err() { return; } }
                            }
                        }
                        Err(_) => break,
                    },
                    changed = done.changed() => {
                        if changed.is_err() || done.borrow().is_some() { break; }
                    }
                }
            }
            if let Ok(lines) = send_stored(&mut last) {
                for l in lines {
                    if tx.send(Ok(l)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn create_operator(
        &self,
        req: Request<CreateOperatorRequest>,
    ) -> Result<Response<CreateOperatorResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let ctl = self.ctl.clone();
        let by = p.to_string();
        self.mutate(
            &p,
            Role::Admin,
            "operator.create",
            r.name.clone(),
            || async move {
                if !valid_name(&r.name) {
                    return Err(Status::invalid_argument(
                        "operator names are 1-64 characters of letters, digits, '-', '_' or '.'",
                    ));
                }
                if Role::parse(&r.role).is_none() {
                    return Err(Status::invalid_argument(format!(
                        "unknown role {:?}; expected admin, operator or viewer",
                        r.role
                    )));
                }
                if ctl
                    .store
                    .get_msg::<OperatorRecord>(OPERATORS, &r.name)
                    .map_err(internal)?
                    .is_some()
                {
                    return Err(Status::already_exists(format!(
                        "operator {:?} already exists",
                        r.name
                    )));
                }
                let ttl = match r.ttl_seconds {
                    0 => ctl.rt.operator_cert_ttl,
                    s => Duration::from_secs(s),
                };
                let pem = ctl
                    .ca
                    .sign_csr(&r.csr_der, &r.name, Usage::Client, validity_from_now(ttl))
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                let info = CertInfo::from_pem(&pem).map_err(internal)?;
                let (name, role) = (r.name.clone(), r.role.clone());
                let fp = info.fingerprint.clone();
                let not_after = info.not_after_unix;
                let ca_key_id = info.authority_key_id.clone();
                let created_by = by.clone();
                ctl.store
                    .write(move |txn| {
                        let rec = OperatorRecord {
                            name: name.clone(),
                            role,
                            created_unix_ms: now_ms(),
                            created_by,
                        };
                        txn.open_table(OPERATORS)?
                            .insert(name.as_str(), rec.encode_to_vec().as_slice())?;
                        let pr = PrincipalRecord {
                            kind: "operator".into(),
                            id: name.clone(),
                            not_after_unix: not_after,
                            ca_key_id,
                        };
                        txn.open_table(PRINCIPALS)?
                            .insert(fp.as_str(), pr.encode_to_vec().as_slice())?;
                        Ok(())
                    })
                    .await
                    .map_err(internal)?;
                ctl.auth.insert(
                    info.fingerprint,
                    Principal::Operator {
                        name: r.name.clone(),
                        role: Role::parse(&r.role).unwrap_or(Role::Viewer),
                    },
                );
                let detail = format!("role={}", r.role);
                Ok((
                    CreateOperatorResponse {
                        certificate_pem: pem,
                        ca_pem: ctl.ca.cert_pem(),
                    },
                    detail,
                ))
            },
        )
        .await
        .map(Response::new)
    }

    async fn list_operators(
        &self,
        req: Request<ListOperatorsRequest>,
    ) -> Result<Response<ListOperatorsResponse>, Status> {
        viewer(&req)?;
        let operators = self
            .ctl
            .store
            .all_msgs::<OperatorRecord>(OPERATORS)
            .map_err(internal)?
            .into_iter()
            .map(|(_, o)| OperatorInfo {
                name: o.name,
                role: o.role,
                created_unix_ms: o.created_unix_ms,
                created_by: o.created_by,
            })
            .collect();
        Ok(Response::new(ListOperatorsResponse { operators }))
    }

    async fn remove_operator(
        &self,
        req: Request<RemoveOperatorRequest>,
    ) -> Result<Response<OperatorInfo>, Status> {
        let p = caller(&req)?;
        let name = req.into_inner().name;
        let ctl = self.ctl.clone();
        self.mutate(
            &p,
            Role::Admin,
            "operator.remove",
            name.clone(),
            || async move {
                let who = name.clone();
                let removed = ctl
                    .store
                    .write(move |txn| {
                        let mut ops = txn.open_table(OPERATORS)?;
                        let mut admins = 0;
                        let mut target: Option<OperatorRecord> = None;
                        for row in ops.iter()? {
                            let (k, v) = row?;
                            let rec: OperatorRecord = decode("operators", v.value())?;
                            if rec.role == "admin" {
                                admins += 1;
                            }
                            if k.value() == who {
                                target = Some(rec);
                            }
                        }
                        let Some(rec) = target else {
                            return Ok(Err(Status::not_found(format!("no operator {who:?}"))));
                        };
                        if rec.role == "admin" && admins == 1 {
                            return Ok(Err(Status::failed_precondition(
                                "refusing to remove the last admin",
                            )));
                        }
                        ops.remove(who.as_str())?;
                        purge_principals(txn, "operator", &who)?;
                        Ok(Ok(rec))
                    })
                    .await
                    .map_err(internal)??;
                ctl.auth.remove_operator(&name);
                let detail = format!("role={}", removed.role);
                Ok((
                    OperatorInfo {
                        name: removed.name,
                        role: removed.role,
                        created_unix_ms: removed.created_unix_ms,
                        created_by: removed.created_by,
                    },
                    detail,
                ))
            },
        )
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
            n => n as usize,
        };
        let entries = audit::list(&self.ctl.store, limit).map_err(internal)?;
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
