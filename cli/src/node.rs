//! `clustermgr node list|show|approve|remove`.

use crate::args::NodeCmd;
use crate::client::explain;
use crate::context::{Ctx, Exit};
use crate::output::{Render, details, render};
use crate::records::node_json;
use anyhow::Result;
use clustermgr_proto::{ListNodesRequest, ListServersRequest, Node, NodeRef};
use serde_json::Value;

/// `node show`: the node, and for a server of the cluster the components setup installs on it
/// (`server list`'s).
struct Shown {
    node: Node,
    components: Option<Vec<String>>,
}

impl Render for Shown {
    fn json(&self) -> Value {
        let mut v = node_json(&self.node);
        if let (Some(c), Value::Object(map)) = (&self.components, &mut v) {
            map.insert("components".into(), serde_json::json!(c));
        }
        v
    }
    fn human(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        out.write_all(details(&self.json()).as_bytes())
    }
}

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
            let components = ctx
                .cluster()
                .await?
                .list_servers(ListServersRequest {})
                .await
                .map_err(explain)?
                .into_inner()
                .servers
                .into_iter()
                .find(|s| s.node_id == n.id)
                .map(|s| s.configured_components);
            render(
                ctx.output,
                &Shown {
                    node: n,
                    components,
                },
            )?;
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
