//! `gluu-adopt`: a standalone Gluu Server becomes the cluster's primary.
//!
//! Steps on the one node: `inspect` reads its `setup.properties.last` (decrypting 4.2.3's
//! `.last.enc` on the node) and keeps it; `rename` renames its hostname to the load balancer's
//! everywhere the reference lists (LDAP strings, gluuHostname, the web server's configuration,
//! the host files) — skipped when it already carries the load balancer's name; `restart`
//! restarts Gluu so the services read the new name; then the directory and oxAuth are probed.
//! The driver records the node as the installed primary when every step is done.

use crate::engine::{Definition, JobSpec, JobView, StepCtx, StepPlan};
use crate::gluu_install::{Components, LDAPS_PORT, parse_properties, same_components};
use crate::readiness;
use clustermgr_proto::{
    GluuServices, ReadSetupProperties, RenameGluuHost, gluu_services, operation,
};

pub const KIND: &str = "gluu-adopt";
/// Key of the node's setup.properties.last in the kept outputs.
pub const PROPERTIES: &str = "node/setup.properties.last";

pub const STEPS: [&str; 5] = [
    "inspect",
    "rename",
    "restart",
    "directory-ready",
    "web-ready",
];

#[derive(Clone)]
pub struct GluuAdopt {
    pub lb_hostname: String,
    pub ldap_admin_password: String,
    pub https_port: Option<u16>,
    pub probe_within_ms: u32,
    /// The cluster's components: the node must have been installed with them.
    pub components: Components,
}

impl std::fmt::Debug for GluuAdopt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GluuAdopt")
            .field("lb_hostname", &self.lb_hostname)
            .finish_non_exhaustive()
    }
}

impl GluuAdopt {
    /// The hostname the node was installed with (from its kept setup.properties.last).
    fn installed_name(&self, ctx: &StepCtx<'_>) -> Option<String> {
        let last = ctx.observed.kept.get(PROPERTIES)?;
        parse_properties(&String::from_utf8_lossy(last))
            .into_iter()
            .find(|(k, _)| k == "hostname")
            .map(|(_, v)| v)
    }

    fn run(&self, kind: operation::Kind, summary: String, timeout_ms: u32) -> StepPlan {
        JobSpec::rerunnable(kind, timeout_ms, summary).into()
    }
}

impl Definition for GluuAdopt {
    fn observed_nodes(&self, _wf: &clustermgr_proto::Workflow) -> Vec<String> {
        Vec::new()
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn plan_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        let Some(ip) = ctx
            .node_view()
            .and_then(|v| v.inventory.as_ref())
            .and_then(|i| i.addresses.first().cloned())
        else {
            return StepPlan::Wait("waiting for the node's inventory (its address)".into());
        };
        let installed = ctx
            .node_view()
            .and_then(|v| v.inventory.as_ref())
            .and_then(|i| i.gluu.as_ref())
            .is_some_and(|g| g.installed);
        match ctx.step().name.as_str() {
            "inspect" => {
                if !installed {
                    return StepPlan::Fail(
                        "Gluu Server is not installed on this node (no setup.properties.last): install it with clustermgr gluu install".into(),
                    );
                }
                JobSpec::rerunnable(
                    operation::Kind::ReadSetupProperties(ReadSetupProperties {
                        password: self.ldap_admin_password.clone().into_bytes(),
                    }),
                    60_000,
                    "read setup.properties.last",
                )
                .keeping(PROPERTIES)
                .into()
            }
            "rename" | "restart" => {
                let Some(from) = self.installed_name(ctx) else {
                    return StepPlan::Wait("waiting for the node's setup.properties.last".into());
                };
                if ctx.step().name == "rename"
                    && let Some(last) = ctx.observed.kept.get(PROPERTIES)
                    && let Err(e) = same_components(
                        &parse_properties(&String::from_utf8_lossy(last)),
                        &self.components,
                    )
                {
                    return StepPlan::Fail(e.to_string());
                }
                if from.eq_ignore_ascii_case(&self.lb_hostname) {
                    return StepPlan::Skip(format!(
                        "installed as {from}: the load balancer's name already"
                    ));
                }
                if ctx.step().name == "rename" {
                    self.run(
                        operation::Kind::RenameGluuHost(RenameGluuHost {
                            host: ip.clone(),
                            port: LDAPS_PORT,
                            password: self.ldap_admin_password.clone().into_bytes(),
                            from: from.clone(),
                            to: self.lb_hostname.clone(),
                        }),
                        format!("rename the Gluu host {from} to {}", self.lb_hostname),
                        15 * 60_000,
                    )
                } else {
                    self.run(
                        operation::Kind::GluuServices(GluuServices {
                            action: gluu_services::Action::Restart as i32,
                            ..Default::default()
                        }),
                        "restart Gluu Server under its new name".into(),
                        15 * 60_000,
                    )
                }
            }
            "directory-ready" => {
                readiness::directory(&ip, &self.ldap_admin_password, self.probe_within_ms)
            }
            "web-ready" => readiness::web(&ip, self.https_port, true, self.probe_within_ms),
            other => StepPlan::Fail(format!("unknown step {other:?}")),
        }
    }

    fn check(&self, ctx: &StepCtx<'_>, job: &JobView) -> Result<(), String> {
        if ctx.step().name == "inspect" && job.output.is_none() {
            return Err("the node returned no setup.properties.last".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::*;
    use clustermgr_proto::{GluuInstallation, Inventory, OperationOutput};
    use std::collections::BTreeMap;

    fn def() -> GluuAdopt {
        GluuAdopt {
            lb_hostname: "idp.example.org".into(),
            ldap_admin_password: "secret-pw".into(),
            https_port: None,
            probe_within_ms: 1000,
            components: Components::default(),
        }
    }

    fn fixture(installed: bool) -> (Workflow, Observed) {
        let wf = new_workflow(
            "w",
            KIND,
            "operator:a",
            1,
            vec![("n1".into(), "gluu1".into(), STEPS.to_vec())],
        );
        let mut obs = Observed::default();
        obs.nodes.insert(
            "n1".into(),
            NodeView {
                hostname: "gluu1".into(),
                online: true,
                approved: true,
                inventory: Some(Inventory {
                    addresses: vec!["10.0.0.5".into()],
                    gluu: Some(GluuInstallation {
                        installed,
                        present: installed,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
        );
        (wf, obs)
    }

    fn drive(wf: &mut Workflow, obs: &mut Observed, installed_as: &str) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..20 {
            let d = advance(wf, &def(), obs);
            if d.dispatch.is_empty() {
                break;
            }
            for disp in d.dispatch {
                let id = format!("j{i}");
                bind_job(wf, &disp, &id);
                if disp.job.keep_output_as.is_some() {
                    obs.kept.insert(
                        PROPERTIES.into(),
                        format!("hostname={installed_as}\nip=10.0.0.5\n").into_bytes(),
                    );
                }
                obs.jobs.insert(
                    id,
                    JobView {
                        state: JobState::Succeeded,
                        exit_code: 0,
                        error: String::new(),
                        output: Some(OperationOutput::default()),
                    },
                );
                out.push(disp.job.summary);
            }
        }
        out
    }

    #[test]
    fn a_standalone_node_is_renamed_to_the_load_balancer_and_restarted() {
        let (mut wf, mut obs) = fixture(true);
        let done = drive(&mut wf, &mut obs, "gluu1.example.org");
        assert_eq!(wf.status(), WorkflowStatus::Succeeded);
        assert_eq!(
            done[..3],
            [
                "read setup.properties.last".to_string(),
                "rename the Gluu host gluu1.example.org to idp.example.org".into(),
                "restart Gluu Server under its new name".into(),
            ]
        );
        assert!(!format!("{done:?}{:?}", def()).contains("secret-pw"));
    }

    #[test]
    fn a_node_with_the_load_balancer_name_is_not_renamed() {
        let (mut wf, mut obs) = fixture(true);
        let done = drive(&mut wf, &mut obs, "IDP.example.org");
        assert_eq!(wf.status(), WorkflowStatus::Succeeded);
        assert!(
            !done
                .iter()
                .any(|s| s.starts_with("rename") || s.starts_with("restart"))
        );
    }

    #[test]
    fn a_node_without_gluu_cannot_be_adopted() {
        let (mut wf, mut obs) = fixture(false);
        drive(&mut wf, &mut obs, "x");
        assert_eq!(wf.status(), WorkflowStatus::Failed);
        assert!(wf.nodes[0].steps[0].error.contains("not installed"));
        let _ = BTreeMap::<u8, u8>::new();
    }

    #[test]
    fn a_node_installed_with_other_components_is_refused_saying_how_to_match() {
        let (mut wf, mut obs) = fixture(true);
        drive(&mut wf, &mut obs, "gluu1.example.org\ninstallSaml=True");
        assert_eq!(wf.status(), WorkflowStatus::Failed);
        let rename = &wf.nodes[0].steps[1];
        assert!(
            rename.error.contains(
                "installed with components oxauth,oxtrust,httpd,saml and the cluster's are oxauth,oxtrust,httpd"
            ) && rename
                .error
                .contains("cluster configure --components oxauth,oxtrust,httpd,saml"),
            "{}",
            rename.error
        );
    }
}
