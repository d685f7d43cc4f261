//! The `Packages` service: thin adapters over `packages.rs`. Listing needs role viewer; adding,
//! removing and pushing need operator. Every change is audited (a success writes its row with
//! the change, a refusal or failure a row of its own); rows hold names, versions, sizes and
//! SHA-256s of package files, never content.

use super::{Ctl, audited};
use crate::audit::Audit;
use crate::auth::{Role, caller, require};
use crate::error::status;
use crate::packages::{self, DEFAULT_PUSH_TIMEOUT, PackageError};
use clustermgr_proto::packages_server::Packages;
use clustermgr_proto::*;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status, Streaming};

pub struct PackagesApi {
    pub ctl: Arc<Ctl>,
    pub packages: Arc<crate::packages::Repository>,
}

/// Longest push job timeout a caller may ask for.
const MAX_PUSH_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

#[tonic::async_trait]
impl Packages for PackagesApi {
    async fn add_package(
        &self,
        req: Request<Streaming<AddPackageRequest>>,
    ) -> Result<Response<PackageInfo>, Status> {
        let p = caller(&req)?;
        let mut stream = req.into_inner();
        let a = Audit::new(&p, "package.add", String::new());
        let ctl = &self.ctl;
        let by = p.to_string();
        let call = async {
            let start = match stream.message().await? {
                Some(AddPackageRequest {
                    msg: Some(add_package_request::Msg::Start(s)),
                }) => s,
                _ => return Err(status(PackageError::BadUpload)),
            };
            let mut upload = self
                .packages
                .begin(&start.file_name, start.size)
                .map_err(status)?;
            while let Some(m) = stream.message().await? {
                let Some(add_package_request::Msg::Data(data)) = m.msg else {
                    return Err(status(PackageError::BadUpload));
                };
                upload = tokio::task::spawn_blocking(move || upload.write(&data).map(|()| upload))
                    .await
                    .map_err(crate::error::internal)?
                    .map_err(status)?;
            }
            packages::add(ctl, &self.packages, upload, &by, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn list_packages(
        &self,
        req: Request<ListPackagesRequest>,
    ) -> Result<Response<ListPackagesResponse>, Status> {
        let p = caller(&req)?;
        require(&p, Role::Viewer, "reading")?;
        let packages = packages::list(&self.ctl.store).map_err(status)?;
        Ok(Response::new(ListPackagesResponse { packages }))
    }

    async fn remove_package(
        &self,
        req: Request<RemovePackageRequest>,
    ) -> Result<Response<PackageInfo>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner().package;
        let a = Audit::new(&p, "package.remove", r.clone());
        let call = async {
            packages::remove(&self.ctl, &self.packages, &r, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn push_package(
        &self,
        req: Request<PushPackageRequest>,
    ) -> Result<Response<PushPackageResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let a = Audit::new(&p, "package.push", r.package.clone());
        let by = p.to_string();
        let timeout = match r.timeout_ms {
            0 => DEFAULT_PUSH_TIMEOUT,
            ms => Duration::from_millis(ms as u64).min(MAX_PUSH_TIMEOUT),
        };
        let call = async {
            packages::push(
                &self.ctl,
                &self.packages,
                &r.package,
                &r.nodes,
                timeout,
                &by,
                &a,
            )
            .await
            .map_err(status)
        };
        let (package, jobs) = audited(&self.ctl.store, &p, Role::Operator, &a, call).await?;
        Ok(Response::new(PushPackageResponse {
            package: Some(package),
            jobs,
        }))
    }

    async fn upgrade_agents(
        &self,
        req: Request<UpgradeAgentsRequest>,
    ) -> Result<Response<StartWorkflowResponse>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let a = Audit::new(&p, "agent.upgrade", r.package.clone());
        let call = async {
            crate::agent_upgrade::start(&self.ctl, &r, &a)
                .await
                .map_err(status)
        };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }
}
