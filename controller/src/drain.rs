//! Drain and rejoin around restarts: which load balancer a rolling workflow drains its nodes
//! from, and which backends workflows hold out of rotation (running ones, and ended ones that
//! left a node out) (the planning is the
//! workflow crate's `drain` module; the operation is the agent's `set-backend-rotation`).

use crate::ctl::Ctl;
use crate::settings;
use crate::workflows::WorkflowError;
use clustermgr_proto::Workflow;
use clustermgr_workflow::drain::{self, Balancer};

/// How long a drain waits for in-flight requests, and a rejoin for the node's readiness.
pub const WITHIN_MS: u32 = 10 * 60_000;

fn lb_error(e: crate::lb::LbError) -> WorkflowError {
    WorkflowError::Refused(e.to_string())
}

/// The nginx load balancer installed now and the nodes behind it (an empty balancer when none
/// is installed or the cluster's is external: drain and rejoin are then skipped).
pub fn balancer(ctl: &Ctl) -> Result<Balancer, WorkflowError> {
    // Running workflows' nodes out of rotation, and those ended ones left out (a failed
    // workflow's, a failed drain's) that no rejoin has put back since: the balancer keeps them
    // out (nginx's own list of drained backends; an external balancer sees no health mark).
    // Only the nodes behind the balancer now (a server removed since is not waited for).
    let held = |backends: &std::collections::BTreeMap<String, String>| {
        let mut all = drain::left_out_by(&ctl.store.workflows()?);
        all.retain(|h| backends.contains_key(&h.node_id));
        Ok::<_, WorkflowError>(all)
    };
    let s = settings::settings_record(ctl)?;
    if s.external_lb {
        if s.external_lb_health_wait_secs == 0 {
            return Ok(Balancer::default());
        }
        // An external balancer probing the health marks: every server is behind it.
        let mut backends = std::collections::BTreeMap::new();
        for srv in ctl.store.servers()? {
            if let Some(n) = ctl.store.node(&srv.node_id)? {
                backends.insert(n.id.clone(), n.hostname.clone());
            }
        }
        return Ok(Balancer {
            held: held(&backends)?,
            backends,
            within_ms: WITHIN_MS,
            health_mark_wait_ms: s.external_lb_health_wait_secs.saturating_mul(1000),
            ..Balancer::default()
        });
    }
    let Some(inputs) = crate::lb::installed_inputs(ctl).map_err(lb_error)? else {
        return Ok(Balancer::default());
    };
    let backends = crate::lb::backends_of_nodes(ctl)
        .map_err(lb_error)?
        .into_iter()
        .map(|(id, b)| (id, b.name))
        .collect();
    Ok(Balancer {
        lb_node: inputs.lb,
        held: held(&backends)?,
        backends,
        within_ms: WITHIN_MS,
        also_trust_pem: String::new(),
        health_mark_wait_ms: 0,
    })
}

/// The installed nginx load balancer's node, when `wf` has drain or rejoin steps.
pub fn lb_node(ctl: &Ctl, wf: &Workflow) -> Result<Option<String>, WorkflowError> {
    let drains = wf
        .nodes
        .iter()
        .flat_map(|n| n.steps.iter())
        .any(|s| s.name == drain::DRAIN || s.name == drain::REJOIN);
    if !drains {
        return Ok(None);
    }
    Ok(crate::lb::installed_inputs(ctl)
        .map_err(lb_error)?
        .map(|i| i.lb))
}
