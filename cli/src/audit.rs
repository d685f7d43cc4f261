//! `clustermgr audit`.

use crate::client::explain;
use crate::context::{Ctx, Exit};
use crate::output::render;
use anyhow::Result;
use clustermgr_proto::ListAuditRequest;

pub async fn run(limit: u32, ctx: &Ctx) -> Result<Exit> {
    let entries = ctx
        .client()
        .await?
        .list_audit(ListAuditRequest { limit })
        .await
        .map_err(explain)?
        .into_inner()
        .entries;
    render(ctx.output, entries.as_slice())?;
    Ok(Exit::Ok)
}
