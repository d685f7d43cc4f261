//! The `Certificates` service: thin adapters over `certs.rs`. `cert show` and dry runs need
//! viewer; installing needs operator and is audited (a refused or failed call gets its own row,
//! built from names and the error, never from the request's key).

use super::{Ctl, audited, viewer};
use crate::audit::Audit;
use crate::auth::{Role, caller, require};
use crate::certs;
use crate::error::status;
use clustermgr_proto::certificates_server::Certificates;
use clustermgr_proto::*;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct CertificatesApi {
    pub ctl: Arc<Ctl>,
}

#[tonic::async_trait]
impl Certificates for CertificatesApi {
    async fn show_certificates(
        &self,
        req: Request<ShowCertificatesRequest>,
    ) -> Result<Response<CertificatesShown>, Status> {
        viewer(&req)?;
        certs::show(&self.ctl)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn install_certificate(
        &self,
        req: Request<InstallCertificateRequest>,
    ) -> Result<Response<CertWorkflowStarted>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let a = Audit::new(&p, "cert.install", "cluster");
        if r.dry_run {
            require(&p, Role::Viewer, "planning")?;
            return certs::install(&self.ctl, &r, &a)
                .await
                .map(Response::new)
                .map_err(status);
        }
        let call = async { certs::install(&self.ctl, &r, &a).await.map_err(status) };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }
}
