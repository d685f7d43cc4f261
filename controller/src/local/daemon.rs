//! `clustermgr init` and `clustermgr serve`.

use super::{InitCmd, ServeCmd, init};
use crate::server::{self, ServeOptions};
use anyhow::Result;
use clustermgr_cli::{Ctx, Exit};

pub async fn init(cmd: InitCmd, ctx: &Ctx) -> Result<Exit> {
    let pin = init::run(
        &ctx.data,
        init::InitArgs {
            listen: cmd.listen,
            advertise: cmd.advertise,
            sans: cmd.sans,
            force: cmd.force,
        },
    )
    .await?;
    println!("{pin}");
    Ok(Exit::Ok)
}

pub async fn serve(cmd: ServeCmd, ctx: &Ctx) -> Result<Exit> {
    server::serve(
        ctx.data.clone(),
        ServeOptions {
            listen: cmd.listen,
            require_approval: cmd.require_approval,
            node_cert_ttl: cmd.node_cert_ttl,
            heartbeat_interval: cmd.heartbeat_interval,
            metrics_retention: cmd.metrics_retention,
            metrics_limits: cmd.metrics_limits,
            metrics_listen: cmd.metrics_listen,
            web_listen: cmd.web_listen,
            min_agent_version: cmd.min_agent_version,
        },
    )
    .await?;
    Ok(Exit::Ok)
}
