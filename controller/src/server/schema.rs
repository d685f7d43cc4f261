//! The `Schema` service: thin adapters over `schema.rs`. Listing and dry runs need viewer;
//! adding needs operator and is audited (a refused call gets its own row).

use super::{Ctl, audited, viewer};
use crate::audit::Audit;
use crate::auth::{Role, caller, require};
use crate::error::status;
use crate::schema;
use clustermgr_proto::schema_server::Schema;
use clustermgr_proto::*;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct SchemaApi {
    pub ctl: Arc<Ctl>,
}

#[tonic::async_trait]
impl Schema for SchemaApi {
    async fn add_schema(
        &self,
        req: Request<AddSchemaRequest>,
    ) -> Result<Response<SchemaWorkflowStarted>, Status> {
        let p = caller(&req)?;
        let r = req.into_inner();
        let a = Audit::new(&p, "schema.add", "cluster");
        if r.dry_run {
            require(&p, Role::Viewer, "planning")?;
            return schema::add(&self.ctl, &r, &a)
                .await
                .map(Response::new)
                .map_err(status);
        }
        let call = async { schema::add(&self.ctl, &r, &a).await.map_err(status) };
        audited(&self.ctl.store, &p, Role::Operator, &a, call)
            .await
            .map(Response::new)
    }

    async fn list_schema(
        &self,
        req: Request<ListSchemaRequest>,
    ) -> Result<Response<SchemaList>, Status> {
        viewer(&req)?;
        schema::list(&self.ctl).map(Response::new).map_err(status)
    }
}
