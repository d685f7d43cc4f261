//! Enrollment: a join token plus a CSR buys a node certificate. The token is checked twice:
//! once before the (costly) signing, once inside the transaction that consumes it, so two
//! concurrent uses of a single-use token cannot both succeed.

use super::{Ctl, internal};
use crate::auth::Principal;
use crate::store::{NODES, PRINCIPALS, Store, TOKENS, decode};
use crate::tokens;
use clustermgr_proto::{
    EnrollRequest, EnrollResponse, Node, PrincipalRecord, TokenRecord,
    enrollment_server::Enrollment,
};
use clustermgr_shared::pki::{CertInfo, Usage, validity_from_now};
use clustermgr_shared::util::now_ms;
use prost::Message;
use redb::ReadableTable;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct EnrollApi {
    pub ctl: Arc<Ctl>,
}

#[tonic::async_trait]
impl Enrollment for EnrollApi {
    async fn enroll(
        &self,
        req: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let remote = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let r = req.into_inner();
        let ctl = &self.ctl;
        let (who, result) = match tokens::split(&r.token) {
            Some((token_id, secret)) => (
                format!("token:{token_id}"),
                self.enroll_inner(&token_id, secret, &r).await,
            ),
            None => (
                "token:(malformed)".to_string(),
                Err(Status::unauthenticated("malformed join token")),
            ),
        };
        let (target, detail) = match &result {
            Ok(resp) => (
                resp.node_id.clone(),
                format!(
                    "hostname={} role={} from={remote}",
                    clean(&r.hostname),
                    resp.role
                ),
            ),
            Err(_) => (
                String::new(),
                format!("hostname={} from={remote}", clean(&r.hostname)),
            ),
        };
        let _ = crate::audit::record(
            &ctl.store,
            who,
            "node.enroll",
            target,
            detail,
            crate::audit::outcome(&result),
        )
        .await;
        result.map(Response::new)
    }
}

fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(253).collect()
}

impl EnrollApi {
    async fn enroll_inner(
        &self,
        token_id: &str,
        secret: &str,
        r: &EnrollRequest,
    ) -> Result<EnrollResponse, Status> {
        let ctl = &self.ctl;
        let rec = ctl
            .store
            .get_msg::<TokenRecord>(TOKENS, token_id)
            .map_err(internal)?
            .ok_or_else(|| Status::unauthenticated("unknown join token"))?;
        tokens::check(&rec, secret)?;

        let node_id = uuid::Uuid::new_v4().to_string();
        let cert_pem = ctl
            .ca
            .sign_csr(
                &r.csr_der,
                &node_id,
                Usage::Client,
                validity_from_now(ctl.rt.node_cert_ttl),
            )
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let info = CertInfo::from_pem(&cert_pem).map_err(internal)?;
        let hostname = clean(&r.hostname);
        let approved = !ctl.rt.require_approval;
        let node = Node {
            id: node_id.clone(),
            hostname,
            role: rec.role.clone(),
            approved,
            enrolled_unix_ms: now_ms(),
            certificate_not_after_unix: info.not_after_unix,
            ..Default::default()
        };
        let principal = PrincipalRecord {
            kind: "node".into(),
            id: node_id.clone(),
            not_after_unix: info.not_after_unix,
            ca_key_id: info.authority_key_id.clone(),
        };
        consume_and_create(
            &ctl.store,
            token_id,
            secret,
            node,
            &info.fingerprint,
            principal,
        )
        .await?;
        ctl.auth.insert(
            info.fingerprint.clone(),
            Principal::Node {
                id: node_id.clone(),
            },
        );
        tracing::info!(node = %node_id, role = %rec.role, token = %token_id, "node enrolled");
        Ok(EnrollResponse {
            node_id,
            certificate_pem: cert_pem,
            ca_pem: ctl.ca.cert_pem().to_string(),
            role: rec.role,
            pending_approval: !approved,
        })
    }
}

async fn consume_and_create(
    store: &Store,
    token_id: &str,
    secret: &str,
    node: Node,
    fp: &str,
    principal: PrincipalRecord,
) -> Result<(), Status> {
    let token_id = token_id.to_string();
    let secret = clustermgr_shared::Secret::new(secret.to_string());
    let fp = fp.to_string();
    store
        .write(move |txn| {
            let mut tokens_t = txn.open_table(TOKENS)?;
            let rec: Option<TokenRecord> = match tokens_t.get(token_id.as_str())? {
                Some(v) => Some(decode("tokens", v.value())?),
                None => None,
            };
            let Some(mut rec) = rec else {
                return Ok(Err(Status::unauthenticated("unknown join token")));
            };
            if let Err(s) = tokens::check(&rec, secret.expose()) {
                return Ok(Err(s));
            }
            rec.uses_left -= 1;
            tokens_t.insert(token_id.as_str(), rec.encode_to_vec().as_slice())?;
            txn.open_table(NODES)?
                .insert(node.id.as_str(), node.encode_to_vec().as_slice())?;
            txn.open_table(PRINCIPALS)?
                .insert(fp.as_str(), principal.encode_to_vec().as_slice())?;
            Ok(Ok(()))
        })
        .await
        .map_err(internal)?
}
