//! `clustermgr audit`.

use super::client::explain;
use super::output::render;
use super::{Ctx, Exit};
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
