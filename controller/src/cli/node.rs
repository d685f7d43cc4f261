//! `clustermgr node list|show|approve|remove`.

use super::client::explain;
use super::output::{Details, render};
use super::{Ctx, Exit, NodeCmd};
use anyhow::Result;
use clustermgr_proto::{ListNodesRequest, NodeRef};

pub async fn run(cmd: NodeCmd, ctx: &Ctx) -> Result<Exit> {
    let mut c = ctx.client().await?;
    match cmd {
        NodeCmd::List => {
            let nodes = c
                .list_nodes(ListNodesRequest {})
                .await
                .map_err(explain)?
                .into_inner()
                .nodes;
            render(ctx.output, nodes.as_slice())?;
        }
        NodeCmd::Show { node } => {
            let n = c
                .get_node(NodeRef { node })
                .await
                .map_err(explain)?
                .into_inner();
            render(ctx.output, &Details(&n))?;
        }
        NodeCmd::Approve { node } => {
            let n = c
                .approve_node(NodeRef { node })
                .await
                .map_err(explain)?
                .into_inner();
            eprintln!("approved node {} ({})", n.id, n.hostname);
        }
        NodeCmd::Remove { node } => {
            let r = c
                .remove_node(NodeRef { node })
                .await
                .map_err(explain)?
                .into_inner();
            eprintln!(
                "removed node {}: certificates revoked, identity purged{}",
                r.id,
                if r.session_dropped {
                    ", live session dropped"
                } else {
                    ""
                }
            );
        }
    }
    Ok(Exit::Ok)
}
