//! The install's and adopt's kinds: their plans, the servers an ended one completes, and the
//! load balancer's backends after an install.

use super::{PROBE_WITHIN_MS, gluu_install_def};
use crate::audit::Audit;
use crate::ctl::{Ctl, KindError, Plan, WorkflowKind};
use crate::settings;
use crate::workflows::WorkflowError;
use clustermgr_proto::{ServerRecord, Workflow, WorkflowStatus};
use clustermgr_shared::util::now_ms;
use clustermgr_workflow::gluu_adopt::{self, GluuAdopt};
use clustermgr_workflow::inputs::KindInputs;
use clustermgr_workflow::{gluu_install, is_done};
use futures::future::BoxFuture;

/// `gluu install`.
pub struct GluuInstallKind;

impl WorkflowKind for GluuInstallKind {
    fn kinds(&self) -> &'static [&'static str] {
        &[gluu_install::KIND]
    }

    fn definition(&self, ctl: &Ctl, wf: &Workflow) -> Result<Plan, KindError> {
        let s = settings::settings_record(ctl)?;
        let inputs = gluu_install::Inputs::decode(&wf.inputs).map_err(WorkflowError::from)?;
        Ok(Box::new(gluu_install_def(ctl, &s, &inputs)?))
    }

    /// Nodes whose every step is done are installed servers.
    fn finished_servers(&self, ctl: &Ctl, wf: &Workflow) -> Result<Vec<ServerRecord>, KindError> {
        let mut out = Vec::new();
        for n in &wf.nodes {
            if !n.steps.iter().all(|s| is_done(s.status())) {
                continue;
            }
            if let Some(mut s) = ctl.store.server(&n.node_id)?
                && !s.install_complete
            {
                s.install_complete = true;
                s.installed_unix_ms = now_ms();
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Servers may have become installed: the load balancer's backends follow.
    fn ended<'a>(&'a self, ctl: &'a Ctl, wf: &'a Workflow) -> BoxFuture<'a, Result<(), KindError>> {
        Box::pin(async move {
            let who = format!("workflow:{}", wf.id);
            crate::lb::after_change(ctl, &Audit::new(who, "lb.update", wf.kind.clone())).await;
            Ok(())
        })
    }
}

/// `gluu adopt`.
pub struct GluuAdoptKind;

impl WorkflowKind for GluuAdoptKind {
    fn kinds(&self) -> &'static [&'static str] {
        &[gluu_adopt::KIND]
    }

    fn definition(&self, ctl: &Ctl, _wf: &Workflow) -> Result<Plan, KindError> {
        let s = settings::settings_record(ctl)?;
        Ok(Box::new(GluuAdopt {
            lb_hostname: s.lb_hostname.clone(),
            ldap_admin_password: settings::ldap_admin_password(ctl, &s)?,
            https_port: (s.https_port != 0).then_some(s.https_port as u16),
            probe_within_ms: PROBE_WITHIN_MS,
            components: settings::of(&s),
        }))
    }

    /// The adopted node is the installed primary; no other server is.
    fn finished_servers(&self, ctl: &Ctl, wf: &Workflow) -> Result<Vec<ServerRecord>, KindError> {
        if wf.status() != WorkflowStatus::Succeeded {
            return Ok(Vec::new());
        }
        let adopted: Vec<&str> = wf.nodes.iter().map(|n| n.node_id.as_str()).collect();
        let mut out = Vec::new();
        for mut s in ctl.store.servers()? {
            if adopted.contains(&s.node_id.as_str()) {
                s.primary = true;
                s.install_complete = true;
                s.installed_unix_ms = now_ms();
                out.push(s);
            } else if s.primary {
                s.primary = false;
                out.push(s);
            }
        }
        Ok(out)
    }
}
