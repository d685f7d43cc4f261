//! The `CertificateAuthority` service: thin adapters over `crate::ca`. Admin role for
//! everything but renewing one's own credential; every call is audited (a refused or failed
//! call gets its own row, a change its row from the domain).

use super::listener::TlsSwitch;
use super::{Ctl, audited};
use crate::audit::Audit;
use crate::auth::{Role, caller, require};
use crate::ca;
use crate::config::DataDir;
use crate::error::status;
use clustermgr_proto::certificate_authority_server::CertificateAuthority;
use clustermgr_proto::{
    CaStatusRequest, CaStatusResponse, RenewCredentialRequest, RenewCredentialResponse,
    RenewServerRequest, RenewServerResponse, RetirePreviousRequest, RetirePreviousResponse,
    RotateRequest, RotateResponse,
};
use clustermgr_shared::pki::CertInfo;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct CaApi {
    pub ctl: Arc<Ctl>,
    pub data: DataDir,
    pub tls: Arc<TlsSwitch>,
}

/// The authority key id of the caller's certificate ("" when none).
fn caller_key_id<T>(req: &Request<T>) -> String {
    req.peer_certs()
        .and_then(|c| c.first().and_then(|l| CertInfo::from_der(l).ok()))
        .map(|i| i.authority_key_id)
        .unwrap_or_default()
}

#[tonic::async_trait]
impl CertificateAuthority for CaApi {
    async fn status(
        &self,
        req: Request<CaStatusRequest>,
    ) -> Result<Response<CaStatusResponse>, Status> {
        let p = caller(&req)?;
        require(&p, Role::Admin, "reading the CA status")?;
        ca::status(&self.ctl, &self.data)
            .map(Response::new)
            .map_err(status)
    }

    async fn renew_server(
        &self,
        req: Request<RenewServerRequest>,
    ) -> Result<Response<RenewServerResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let a = Audit::new(&p, "ca.renew-server", "");
        let call = async {
            ca::renew_server(&self.ctl, &self.data, &r.extra_sans, &a, |c| {
                self.tls.set(c)
            })
            .await
            .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Admin, &a, call)
            .await
            .map(Response::new)
    }

    async fn rotate(
        &self,
        req: Request<RotateRequest>,
    ) -> Result<Response<RotateResponse>, Status> {
        let p = caller(&req)?;
        let a = Audit::new(&p, "ca.rotate", "");
        let call = async {
            ca::rotate(&self.ctl, &self.data, &a, |c| self.tls.set(c))
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Admin, &a, call)
            .await
            .map(Response::new)
    }

    async fn retire_previous(
        &self,
        req: Request<RetirePreviousRequest>,
    ) -> Result<Response<RetirePreviousResponse>, Status> {
        let p = caller(&req)?;
        let key_id = caller_key_id(&req);
        let force = req.into_inner().force;
        let a = Audit::new(&p, "ca.retire", "");
        let call = async {
            ca::retire(&self.ctl, &self.data, &key_id, force, &a, |c| {
                self.tls.set(c)
            })
            .await
            .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Admin, &a, call)
            .await
            .map(Response::new)
    }

    /// Any operator renews its own credential (nodes are refused by the domain, with the way
    /// they renew).
    async fn renew_credential(
        &self,
        req: Request<RenewCredentialRequest>,
    ) -> Result<Response<RenewCredentialResponse>, Status> {
        let p = caller(&req)?;
        let target = match &p {
            crate::auth::Principal::Operator { name, .. } => name.clone(),
            crate::auth::Principal::Node { .. } => String::new(),
        };
        let a = Audit::new(&p, "operator.renew", target);
        let r = ca::renew_credential(&self.ctl, &p, req.into_inner(), &a)
            .await
            .map_err(status);
        crate::audit::record_failure(&self.ctl.store, &a, &r.as_ref().map_err(|s| s.message()))
            .await;
        r.map(Response::new)
    }
}
