//! `gluu-restart`: Gluu Server restarted on the servers named, one at a time in the order given,
//! each out of the load balancer's rotation meanwhile.
//!
//! Per node: `drain` ([`crate::drain`]), `restart` (once the node before it is back),
//! `web-ready` (the readiness probe every Gluu workflow waits on), `rejoin`.

use crate::drain::{self, Balancer, DRAIN, REJOIN};
use crate::engine::{Definition, JobSpec, StepCtx, StepPlan};
use crate::readiness;
use clustermgr_proto::{GluuServices, Operation, gluu_services, operation};
use std::collections::{BTreeMap, HashMap};

pub const KIND: &str = "gluu-restart";
pub const STEPS: [&str; 4] = [DRAIN, "restart", "web-ready", REJOIN];

/// The workflow's inputs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Inputs {
    /// Node ids in the order they restart.
    pub order: Vec<String>,
    pub primary: String,
}

impl Inputs {
    pub fn encode(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("order".to_string(), self.order.join(",")),
            ("primary".to_string(), self.primary.clone()),
        ])
    }

    pub fn decode(m: &HashMap<String, String>) -> Self {
        Self {
            order: crate::certs::id_list(m, "order"),
            primary: m.get("primary").cloned().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GluuRestart {
    pub inputs: Inputs,
    pub https_port: Option<u16>,
    pub probe_within_ms: u32,
    pub balancer: Balancer,
}

impl Definition for GluuRestart {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn plan_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        if let Some(plan) = drain::plan(&self.balancer, ctx) {
            return plan;
        }
        let me = ctx.node.node_id.as_str();
        let Some(ip) = ctx.address(me) else {
            return StepPlan::Wait("waiting for the node's inventory (its address)".into());
        };
        match ctx.step().name.as_str() {
            "restart" => {
                let order = &self.inputs.order;
                if let Some(prev) = order
                    .iter()
                    .position(|n| n == me)
                    .and_then(|i| i.checked_sub(1))
                    .map(|i| &order[i])
                    && !ctx.done(prev, "web-ready")
                {
                    return StepPlan::Wait(format!(
                        "rolling: waiting for {} to be back",
                        ctx.hostname(prev)
                    ));
                }
                StepPlan::Run(JobSpec {
                    operation: Operation {
                        kind: Some(operation::Kind::GluuServices(GluuServices {
                            action: gluu_services::Action::Restart as i32,
                        })),
                    },
                    timeout_ms: 15 * 60_000,
                    summary: "restart Gluu Server".into(),
                    rerunnable: true,
                    keep_output_as: None,
                })
            }
            "web-ready" => readiness::web(
                &ip,
                self.https_port,
                me == self.inputs.primary,
                self.probe_within_ms,
            ),
            other => StepPlan::Fail(format!("unknown step {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::*;
    use clustermgr_proto::Inventory;

    fn fixture(b: Balancer) -> (GluuRestart, Workflow, Observed) {
        let nodes = ["n1", "n2"];
        let mut obs = Observed::default();
        for (i, n) in nodes.iter().enumerate() {
            obs.nodes.insert(
                n.to_string(),
                NodeView {
                    hostname: format!("gluu{}", i + 1),
                    online: true,
                    approved: true,
                    inventory: Some(Inventory {
                        addresses: vec![format!("10.0.0.{}", i + 1)],
                        ..Default::default()
                    }),
                },
            );
        }
        drain::testing::lb_online(&mut obs, "lb");
        let wf = new_workflow(
            "w",
            KIND,
            "operator:a",
            1,
            nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.to_string(), format!("gluu{}", i + 1), STEPS.to_vec()))
                .collect(),
        );
        let def = GluuRestart {
            inputs: Inputs {
                order: nodes.iter().map(|n| n.to_string()).collect(),
                primary: "n1".into(),
            },
            https_port: Some(8443),
            probe_within_ms: 1000,
            balancer: b,
        };
        (def, wf, obs)
    }

    /// (node, step, node that ran the job) in the order the jobs were sent.
    fn drive(
        def: &GluuRestart,
        wf: &mut Workflow,
        obs: &mut Observed,
    ) -> Vec<(String, String, String)> {
        drain::testing::succeed_all(def, wf, obs, &|_| None)
    }

    #[test]
    fn each_node_restarts_out_of_rotation_and_the_next_waits_for_it() {
        let names = [("n1", "gluu1".to_string()), ("n2", "gluu2".to_string())];
        let (def, mut wf, mut obs) = fixture(drain::testing::balancer("lb", names));
        let sent = drive(&def, &mut wf, &mut obs);
        assert_eq!(wf.status(), WorkflowStatus::Succeeded);
        let want: Vec<(String, String, String)> = ["n1", "n2"]
            .iter()
            .flat_map(|n| {
                [
                    (n.to_string(), DRAIN.to_string(), "lb".to_string()),
                    (n.to_string(), "restart".into(), n.to_string()),
                    (n.to_string(), "web-ready".into(), n.to_string()),
                    (n.to_string(), REJOIN.to_string(), "lb".to_string()),
                ]
            })
            .collect();
        assert_eq!(sent, want);
    }

    #[test]
    fn without_a_balancer_the_restarts_still_roll() {
        let (def, mut wf, mut obs) = fixture(Balancer::default());
        let sent = drive(&def, &mut wf, &mut obs);
        let steps: Vec<(&str, &str)> = sent
            .iter()
            .map(|(n, s, _)| (n.as_str(), s.as_str()))
            .collect();
        assert_eq!(
            steps,
            [
                ("n1", "restart"),
                ("n1", "web-ready"),
                ("n2", "restart"),
                ("n2", "web-ready")
            ]
        );
    }

    #[test]
    fn inputs_round_trip() {
        let i = Inputs {
            order: vec!["a".into(), "b".into()],
            primary: "a".into(),
        };
        let m: HashMap<String, String> = i.encode().into_iter().collect();
        assert_eq!(Inputs::decode(&m), i);
    }
}
