//! Enrollment, the one call served without a client certificate: a join token plus a CSR buys
//! a node certificate (see `nodes::enroll`). Each source address may fail only so often per
//! window; its failures are audited as one row per window, not one per attempt. A request that
//! presents a valid token passes the limit (its failures still count).

use super::Ctl;
use crate::error::{Kind, status};
use crate::limits::Source;
use crate::nodes;
use clustermgr_proto::{EnrollRequest, EnrollResponse, enrollment_server::Enrollment};
use std::net::{IpAddr, Ipv4Addr};
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
        let peer = req.remote_addr();
        let src = Source::of(peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip()));
        let remote = peer.map(|a| a.to_string()).unwrap_or_default();
        let ctl = &self.ctl;
        let r = req.into_inner();
        if let Err(wait) = ctl.enroll_guard.admit(src)
            && !crate::tokens::presents_valid(&ctl.store, &r.token)
        {
            return Err(Status::resource_exhausted(format!(
                "too many failed enrollment attempts from this address; retry in {wait} s"
            )));
        }
        let result = nodes::enroll(ctl, &r.token, &r.csr_der, &r.hostname, &remote).await;
        if let Err(e) = &result
            && crate::error::Classify::kind(e) != Kind::Internal
        {
            ctl.enroll_guard.failed(src);
        }
        result.map(Response::new).map_err(status)
    }
}
