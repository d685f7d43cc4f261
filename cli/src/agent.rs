//! `clustermgr agent upgrade`: the package added to the repository, then the agent-upgrade
//! workflow followed like every workflow.

use crate::args::AgentCmd;
use crate::client::{channel, explain};
use crate::context::{Ctx, Exit};
use anyhow::Result;
use clustermgr_proto::UpgradeAgentsRequest;
use clustermgr_proto::packages_client::PackagesClient;
use clustermgr_shared::MAX_MESSAGE_BYTES;
use clustermgr_shared::duration::parse_duration;

pub async fn run(cmd: AgentCmd, ctx: &Ctx) -> Result<Exit> {
    match cmd {
        AgentCmd::Upgrade {
            package,
            nodes,
            all,
            timeout,
            start,
        } => {
            let within = parse_duration(&timeout)?;
            let mut c = PackagesClient::new(channel(&ctx.target).await?)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
            let info = crate::package::add(&mut c, &package).await?;
            eprintln!(
                "{} {} ({} bytes) is in the repository (sha256 {})",
                info.name, info.version, info.size, info.sha256
            );
            let r = c
                .upgrade_agents(UpgradeAgentsRequest {
                    package: info.sha256,
                    nodes,
                    all,
                    online_within_ms: within.as_millis().min(u32::MAX as u128) as u32,
                    dry_run: start.dry_run,
                })
                .await
                .map_err(explain)?
                .into_inner();
            let mut cl = ctx.cluster().await?;
            crate::workflow::started(&mut cl, r, start.detach, ctx).await
        }
    }
}
