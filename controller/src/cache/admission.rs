//! A queued `cache password set` takes its nodes when it starts, not when it was asked for
//! (`clustermgr_workflow::cache::retake_nodes`).

use super::{CacheError, current_clients, record};
use crate::ctl::Ctl;
use clustermgr_proto::Workflow;

/// Rewrites a queued, not yet started password workflow's nodes to the cache hosts and the
/// Gluu servers with a client in the record now. Returns whether they changed.
pub fn take_nodes(ctl: &Ctl, wf: &mut Workflow) -> Result<bool, CacheError> {
    let rec = record(ctl)?;
    let named = |ids: &[String]| -> Result<Vec<(String, String)>, CacheError> {
        let mut out = Vec::new();
        for id in ids {
            if let Some(n) = ctl.store.node(id)? {
                out.push((n.id.clone(), n.hostname.clone()));
            }
        }
        Ok(out)
    };
    let servers = named(&rec.server_node_ids)?;
    let clients = named(&current_clients(ctl, &rec)?)?;
    Ok(clustermgr_workflow::cache::retake_nodes(
        wf, &servers, &clients,
    ))
}
