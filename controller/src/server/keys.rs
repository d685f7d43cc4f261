//! The `Keys` service: thin adapters over `keys.rs`. Status and dry runs need viewer (a dry
//! run generates a key set: at most 10 a minute per caller, each audited); configuring and
//! rotating need operator and are audited (a refused or failed call gets its own row).

use super::{Ctl, audited, viewer};
use crate::audit::Audit;
use crate::auth::{Role, caller, require};
use crate::error::status;
use crate::keys;
use crate::limits::PerPrincipal;
use crate::workflows::WhenBusy;
use clustermgr_proto::keys_server::Keys;
use clustermgr_proto::*;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Key rotation dry runs per caller: 10 a minute.
static DRY_RUNS: LazyLock<PerPrincipal> =
    LazyLock::new(|| PerPrincipal::new(10, Duration::from_secs(60)));

pub struct KeysApi {
    pub ctl: Arc<Ctl>,
}

#[tonic::async_trait]
impl Keys for KeysApi {
    async fn configure_keys(
        &self,
        req: Request<ConfigureKeysRequest>,
    ) -> Result<Response<KeysSettings>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let a = Audit::new(&p, "keys.configure", "cluster");
        let call = async { keys::configure(&self.ctl, &r, &a).await.map_err(status) };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn rotate_keys(
        &self,
        req: Request<RotateKeysRequest>,
    ) -> Result<Response<StartWorkflowResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let a = Audit::new(&p, "keys.rotate", "cluster");
        if r.dry_run {
            require(&p, Role::Viewer, "planning")?;
            // A dry run generates a full key set: limited per caller, and audited.
            let out = match DRY_RUNS.admit(&p.to_string()) {
                Ok(()) => keys::rotate(&self.ctl, true, WhenBusy::Queue, &a)
                    .await
                    .map_err(status),
                Err(wait) => Err(Status::resource_exhausted(format!(
                    "too many key rotation dry runs by {p}; retry in {wait} s"
                ))),
            };
            let row = match &out {
                Ok(_) => a.ok("dry run"),
                Err(e) => a.failed(&format!("dry run: {}", e.message())),
            };
            if let Err(e) = self.ctl.store.append_audit(row).await {
                tracing::error!(error = %e, "cannot write the audit log");
            }
            return out.map(Response::new);
        }
        let when = WhenBusy::from_no_wait(r.no_wait);
        let call = async {
            keys::rotate(&self.ctl, false, when, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn get_keys_status(
        &self,
        req: Request<KeysStatusRequest>,
    ) -> Result<Response<KeysStatus>, Status> {
        viewer(&req)?;
        keys::status(&self.ctl).map(Response::new).map_err(status)
    }
}
