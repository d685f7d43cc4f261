//! `clustermgr agent upgrade`: the package added to the repository, then the agent-upgrade
//! workflow followed like every workflow.

use super::client::{channel, explain};
use super::{Ctx, Exit};
use crate::config::parse_duration;
use anyhow::Result;
use clap::Subcommand;
use clustermgr_proto::UpgradeAgentsRequest;
use clustermgr_proto::packages_client::PackagesClient;
use clustermgr_shared::MAX_MESSAGE_BYTES;

#[derive(Subcommand)]
pub enum AgentCmd {
    /// Upgrade the nodes' agents to a clustermgr-agent .deb, one node at a time: the package is
    /// added to the repository and pushed to the nodes, then each node installs it (keeping
    /// its installed package) and the next starts only once the node's new agent is online
    /// with the new version. A node whose new agent does not come online within --timeout gets
    /// its previous package back and the roll stops (the workflow fails naming the node).
    Upgrade {
        /// The clustermgr-agent .deb file.
        #[arg(long)]
        package: std::path::PathBuf,
        /// Node ids or hostnames, upgraded in this order.
        #[arg(long = "nodes", num_args = 1.., required_unless_present = "all")]
        nodes: Vec<String>,
        /// Every approved node, by hostname.
        #[arg(long, conflicts_with = "nodes")]
        all: bool,
        /// How long each node's new agent has to come online.
        #[arg(long, default_value = "2m")]
        timeout: String,
        #[command(flatten)]
        start: super::args::StartArgs,
    },
}

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
            let info = super::package::add(&mut c, &package).await?;
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
            let mut cl = super::cluster::client(ctx).await?;
            super::workflow::started(&mut cl, r, start.detach, ctx).await
        }
    }
}

#[cfg(test)]
mod tests {
    /// clustermgr-agent(1) belongs to the agent's package: the controller's pages for
    /// `clustermgr agent` must not take its name (both packages on one host would conflict).
    #[test]
    fn the_agent_commands_pages_do_not_take_the_agents_man_page() {
        let dir = tempfile::tempdir().expect("tempdir");
        super::super::misc::man(Some(dir.path().to_path_buf())).expect("man");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
            .collect();
        assert!(
            names.iter().any(|n| n == "clustermgr-agents-upgrade.1"),
            "{names:?}"
        );
        assert!(
            !names.iter().any(|n| n == "clustermgr-agent.1"),
            "{names:?}"
        );
    }
}
