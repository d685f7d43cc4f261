//! `clustermgr whoami`.

use crate::client::explain;
use crate::context::{Ctx, Exit};
use crate::output::render;
use anyhow::Result;
use clustermgr_proto::WhoAmIRequest;

pub async fn whoami(ctx: &Ctx) -> Result<Exit> {
    let w = ctx
        .client()
        .await?
        .who_am_i(WhoAmIRequest {})
        .await
        .map_err(explain)?
        .into_inner();
    render(ctx.output, &w)?;
    Ok(Exit::Ok)
}
