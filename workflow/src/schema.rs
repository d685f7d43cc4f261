//! `schema-add`: custom LDAP schema on every Gluu node's directory.
//!
//! Per node, in the cluster's order (the primary first): `check` (every node at once: the
//! directory's own check of its configuration with the new schema, `slaptest -u` on OpenLDAP;
//! nothing of the node changes), `install` (once every node's check passed, and the node before
//! this one is installed: the schema written, the directory restarted alone and waited for on
//! LDAPS, put back by the node itself when the directory does not come back), `verify` (once
//! every node is installed, so a test entry replicated to a peer finds the schema there too:
//! the directory's subschema lists every element, and a temporary entry carrying the new
//! attribute types is added, read back and deleted).
//!
//! A failed check anywhere means no node is changed; a failed install stops the nodes after it
//! (the nodes before keep the schema, which is harmless: nothing uses it yet).

use crate::engine::{Definition, JobSpec, JobState, StepCtx, StepPlan, StepStatus, Workflow};
use crate::gluu_install::LDAPS_PORT;
use crate::inputs::KindInputs;
use clustermgr_proto::{
    ApplyLdapSchema, CustomSchema, Operation, VerifyLdapSchema, operation, operation_output,
};

pub const KIND: &str = "schema-add";
/// `install` restarts the directory: the node is out of the load balancer's rotation around it
/// ([`crate::drain`]).
pub const STEPS: [&str; 5] = [
    "check",
    crate::drain::DRAIN,
    "install",
    crate::drain::REJOIN,
    "verify",
];
/// Where the verification's temporary entry is made.
pub const VERIFY_BASE: &str = "o=site";

/// The workflow's inputs (no secret).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Inputs {
    /// Node ids in rolling order (the primary first).
    pub order: Vec<String>,
    /// The schema's name, shown to the operator (the schema itself is encoded below).
    #[serde(default)]
    pub name: String,
    /// The schema, as its protobuf encoding in base64.
    #[serde(with = "crate::inputs::proto_base64")]
    pub schema: CustomSchema,
}

impl KindInputs for Inputs {
    const KIND: &'static str = KIND;
}

/// What the workflow needs besides observed state.
#[derive(Clone)]
pub struct SchemaAdd {
    pub inputs: Inputs,
    /// The directory manager's password (never in inputs).
    pub admin_password: String,
    /// How long a restarted directory has to answer.
    pub within_ms: u32,
    /// The load balancer a node is drained from while its directory restarts.
    pub balancer: crate::drain::Balancer,
}

/// A failed step and its host: the first found.
fn failure(wf: &Workflow) -> Option<(String, String)> {
    wf.nodes.iter().find_map(|n| {
        n.steps
            .iter()
            .find(|s| s.status() == StepStatus::Failed)
            .map(|s| (n.hostname.clone(), s.name.clone()))
    })
}

impl std::fmt::Debug for SchemaAdd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaAdd")
            .field("inputs", &self.inputs)
            .field("within_ms", &self.within_ms)
            .finish_non_exhaustive()
    }
}

impl SchemaAdd {
    fn apply(&self, ip: String, check_only: bool, summary: String) -> StepPlan {
        StepPlan::Run(JobSpec {
            operation: Operation {
                kind: Some(operation::Kind::ApplyLdapSchema(ApplyLdapSchema {
                    schemas: vec![self.inputs.schema.clone()],
                    check_only,
                    host: ip,
                    port: LDAPS_PORT,
                    admin_password: self.admin_password.clone().into_bytes(),
                    within_ms: self.within_ms,
                    only_missing: false,
                })),
            },
            // Installing waits for the directory, and may wait again after a rollback.
            timeout_ms: self.within_ms.saturating_mul(2).saturating_add(5 * 60_000),
            summary,
            // The node compares before writing: the same schema twice changes nothing.
            rerunnable: true,
            keep_output_as: None,
        })
    }

    fn elements(&self) -> String {
        let s = &self.inputs.schema;
        let names: Vec<&str> = s
            .elements
            .iter()
            .filter_map(|e| e.names.first().map(String::as_str))
            .collect();
        let shown = if names.len() > 6 {
            format!("{}, ... ({} in all)", names[..6].join(", "), names.len())
        } else {
            names.join(", ")
        };
        format!("schema {:?} ({shown})", s.name)
    }
}

impl Definition for SchemaAdd {
    fn observed_nodes(&self, _wf: &Workflow) -> Vec<String> {
        self.balancer.observed()
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn plan_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        let me = ctx.node.node_id.as_str();
        let step = ctx.step().name.as_str();
        let Some(ip) = ctx.address(me) else {
            return StepPlan::Wait("waiting for the node's inventory (its address)".into());
        };
        let order = &self.inputs.order;
        if step == crate::drain::DRAIN {
            // Only once the schema is known to be accepted everywhere.
            if let Some((h, s)) = failure(ctx.workflow) {
                return StepPlan::Skip(format!("not installed: the {s} step failed on {h}"));
            }
            if let Some(n) = order.iter().find(|n| !ctx.done(n, "check")) {
                return StepPlan::Wait(format!("waiting for the check on {}", ctx.hostname(n)));
            }
        }
        if let Some(plan) = crate::drain::plan(&self.balancer, ctx) {
            return plan;
        }
        match step {
            "check" => self.apply(
                ip,
                true,
                format!(
                    "check the directory's configuration with {} (slaptest -u on OpenLDAP; \
                     nothing is changed)",
                    self.elements()
                ),
            ),
            "install" => {
                if let Some((h, s)) = failure(ctx.workflow) {
                    return StepPlan::Skip(format!("not installed: the {s} step failed on {h}"));
                }
                if let Some(n) = order.iter().find(|n| !ctx.done(n, "check")) {
                    return StepPlan::Wait(format!("waiting for the check on {}", ctx.hostname(n)));
                }
                match order.iter().position(|n| n == me) {
                    Some(0) => {}
                    Some(i) => {
                        let prev = &order[i - 1];
                        if !ctx.done(prev, "install") {
                            return StepPlan::Wait(format!(
                                "rolling: waiting for {} to run the new schema",
                                ctx.hostname(prev)
                            ));
                        }
                    }
                    None => {
                        return StepPlan::Fail("the node is not in the workflow's order".into());
                    }
                }
                self.apply(
                    ip,
                    false,
                    format!(
                        "install {} in the directory, restart it alone and wait for LDAPS on \
                         {LDAPS_PORT} (the previous schema is put back if it does not answer)",
                        self.elements()
                    ),
                )
            }
            "verify" => {
                if let Some((h, s)) = failure(ctx.workflow) {
                    return StepPlan::Skip(format!("not verified: the {s} step failed on {h}"));
                }
                if let Some(n) = order.iter().find(|n| !ctx.done(n, "install")) {
                    return StepPlan::Wait(format!(
                        "waiting for {} to run the new schema",
                        ctx.hostname(n)
                    ));
                }
                StepPlan::Run(JobSpec {
                    operation: Operation {
                        kind: Some(operation::Kind::VerifyLdapSchema(VerifyLdapSchema {
                            schema: Some(self.inputs.schema.clone()),
                            host: ip,
                            port: LDAPS_PORT,
                            admin_password: self.admin_password.clone().into_bytes(),
                            base: VERIFY_BASE.into(),
                        })),
                    },
                    timeout_ms: 2 * 60_000,
                    summary: format!(
                        "verify {}: listed in the directory's subschema, and a temporary entry \
                         under {VERIFY_BASE} carrying the new attribute types is added, read \
                         back and deleted",
                        self.elements()
                    ),
                    rerunnable: true,
                    keep_output_as: None,
                })
            }
            other => StepPlan::Fail(format!("unknown step {other:?}")),
        }
    }

    fn check(&self, ctx: &StepCtx<'_>, job: &crate::engine::JobView) -> Result<(), String> {
        if job.state != JobState::Succeeded {
            return Ok(());
        }
        let out = job.output.as_ref().and_then(|o| o.kind.as_ref());
        match (ctx.step().name.as_str(), out) {
            ("check" | "install", Some(operation_output::Kind::ApplyLdapSchema(_))) => Ok(()),
            (crate::drain::DRAIN | crate::drain::REJOIN, _) => Ok(()),
            ("verify", Some(operation_output::Kind::VerifyLdapSchema(v))) => {
                let want = self.inputs.schema.elements.len() as u32;
                if v.attribute_types + v.object_classes == want {
                    Ok(())
                } else {
                    Err(format!(
                        "the directory lists {} of the {want} elements",
                        v.attribute_types + v.object_classes
                    ))
                }
            }
            _ => Err("the node returned no result for the step".into()),
        }
    }
}

#[cfg(test)]
mod tests;
