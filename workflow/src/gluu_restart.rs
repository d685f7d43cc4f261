//! `gluu-restart`: Gluu Server restarted on the servers named, one at a time in the order given,
//! each out of the load balancer's rotation meanwhile.
//!
//! Per node: `drain` ([`crate::drain`]), `restart` (once the node before it is back),
//! `web-ready` (the readiness probe every Gluu workflow waits on), `rejoin`.
//!
//! `services` restricts the restart to those Gluu services (what file replication's actions ask
//! for, [`coalesce`]); none restarts the whole server (`gluu restart NODE...`).

use crate::drain::{self, Balancer, DRAIN, REJOIN};
use crate::engine::{Definition, JobSpec, StepCtx, StepPlan, StepStatus, Workflow, is_terminal};
use crate::inputs::KindInputs;
use crate::readiness;
use clustermgr_proto::{GluuServices, Operation, gluu_services, operation};

pub const KIND: &str = "gluu-restart";
pub const STEPS: [&str; 4] = [DRAIN, "restart", "web-ready", REJOIN];

/// The workflow's inputs.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Inputs {
    /// Node ids in the order they restart.
    pub order: Vec<String>,
    pub primary: String,
    /// The Gluu services to restart; empty: the whole server.
    pub services: Vec<String>,
}

impl KindInputs for Inputs {
    const KIND: &'static str = KIND;
}

#[derive(Debug, Clone)]
pub struct GluuRestart {
    pub inputs: Inputs,
    pub https_port: Option<u16>,
    pub probe_within_ms: u32,
    pub balancer: Balancer,
}

impl Definition for GluuRestart {
    fn observed_nodes(&self, _wf: &Workflow) -> Vec<String> {
        self.balancer.observed()
    }

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
                let services = &self.inputs.services;
                StepPlan::Run(JobSpec {
                    operation: Operation {
                        kind: Some(operation::Kind::GluuServices(GluuServices {
                            action: gluu_services::Action::Restart as i32,
                            services: services.clone(),
                        })),
                    },
                    timeout_ms: 15 * 60_000,
                    summary: if services.is_empty() {
                        "restart Gluu Server".into()
                    } else {
                        format!("restart {}", services.join(", "))
                    },
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

/// What a node's request to restart `services` (file replication's actions) becomes, given the
/// workflows not ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Coalesce {
    /// A gluu-restart of the node whose restart has not started yet already restarts them (or the
    /// whole server): nothing to add.
    Covered(String),
    /// This queued or not yet restarted gluu-restart of the node alone now restarts them too
    /// (its inputs widened): save it.
    Widened(Box<Workflow>),
    /// None takes them: start a gluu-restart of the node for them (queued behind what holds it).
    Start,
}

/// Folds a node's restart request into a gluu-restart of that node whose `restart` step has
/// not started (queued, or still draining or waiting for the node before it), so that requests
/// while one waits make one restart; otherwise a new one is started.
pub fn coalesce(active: &[Workflow], node: &str, services: &[String]) -> Coalesce {
    let waiting = active.iter().filter(|w| {
        w.kind == KIND
            && !w.cancel_requested
            && !is_terminal(w.status())
            && w.nodes.iter().any(|n| {
                n.node_id == node
                    && n.steps
                        .iter()
                        .any(|s| s.name == "restart" && s.status() == StepStatus::Pending)
            })
    });
    let mut widen = None;
    for w in waiting {
        // One whose inputs cannot be read is not widened (its own run reports them).
        let Ok(inputs) = Inputs::decode(&w.inputs) else {
            continue;
        };
        if inputs.services.is_empty() || services.iter().all(|s| inputs.services.contains(s)) {
            return Coalesce::Covered(w.id.clone());
        }
        if widen.is_none() && inputs.order == [node] {
            widen = Some((w, inputs));
        }
    }
    let Some((w, mut inputs)) = widen else {
        return Coalesce::Start;
    };
    for s in services {
        if !inputs.services.contains(s) {
            inputs.services.push(s.clone());
        }
    }
    let mut w = w.clone();
    w.inputs.extend(inputs.encode());
    Coalesce::Widened(Box::new(w))
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
                services: Vec::new(),
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

    /// (node, step) of what was sent.
    fn step_names<T>(sent: &[(String, String, T)]) -> Vec<(&str, &str)> {
        sent.iter()
            .map(|(n, s, _)| (n.as_str(), s.as_str()))
            .collect()
    }

    #[test]
    fn without_a_balancer_the_restarts_still_roll() {
        let (def, mut wf, mut obs) = fixture(Balancer::default());
        let sent = drive(&def, &mut wf, &mut obs);
        let steps = step_names(&sent);
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

    /// A gluu-restart of `order` restarting `services` (none: the whole server), its steps pending.
    fn restart_of(id: &str, order: &[&str], services: &[&str]) -> Workflow {
        let mut wf = new_workflow(
            id,
            KIND,
            "node:n1",
            1,
            order
                .iter()
                .map(|n| (n.to_string(), n.to_string(), STEPS.to_vec()))
                .collect(),
        );
        let inputs = Inputs {
            order: order.iter().map(|n| n.to_string()).collect(),
            primary: "n1".into(),
            services: services.iter().map(|s| s.to_string()).collect(),
        };
        wf.inputs = inputs.encode().into_iter().collect();
        wf
    }

    fn set_step(wf: &mut Workflow, node: &str, step: &str, status: StepStatus) {
        let n = wf.nodes.iter_mut().find(|n| n.node_id == node).unwrap();
        let s = n.steps.iter_mut().find(|s| s.name == step).unwrap();
        s.set_status(status);
    }

    #[test]
    fn a_restart_request_joins_a_waiting_restart_of_its_node_or_starts_one() {
        let queued = || {
            let mut w = restart_of("q", &["n1"], &["idp"]);
            w.set_status(WorkflowStatus::Queued);
            w
        };
        let draining = || {
            let mut w = restart_of("d", &["n1"], &["idp"]);
            w.set_status(WorkflowStatus::Running);
            set_step(&mut w, "n1", DRAIN, StepStatus::Running);
            w
        };
        let restarting = || {
            let mut w = draining();
            set_step(&mut w, "n1", DRAIN, StepStatus::Succeeded);
            set_step(&mut w, "n1", "restart", StepStatus::Running);
            w
        };
        let widened = |id: &str, services: &[&str]| {
            let mut w = if id == "q" { queued() } else { draining() };
            let mut i = Inputs::decode(&w.inputs).unwrap();
            i.services = services.iter().map(|s| s.to_string()).collect();
            w.inputs.extend(i.encode());
            Coalesce::Widened(Box::new(w))
        };
        let ended = || {
            let mut w = restart_of("e", &["n1"], &[]);
            w.set_status(WorkflowStatus::Failed);
            w
        };
        let cancelling = || {
            let mut w = queued();
            w.cancel_requested = true;
            w
        };
        let other_node = restart_of("o", &["n2"], &[]);
        let whole_two = restart_of("w", &["n2", "n1"], &[]);
        let idp_two = restart_of("t", &["n2", "n1"], &["idp"]);
        let mut other_kind = restart_of("k", &["n1"], &[]);
        other_kind.kind = "cache-install".into();
        let cases: Vec<(&str, Vec<Workflow>, &[&str], Coalesce)> = vec![
            ("nothing waiting", vec![], &["idp"], Coalesce::Start),
            (
                "queued, same service",
                vec![queued()],
                &["idp"],
                Coalesce::Covered("q".into()),
            ),
            (
                "queued, another service",
                vec![queued()],
                &["oxauth"],
                widened("q", &["idp", "oxauth"]),
            ),
            (
                "draining, not restarted yet",
                vec![draining()],
                &["oxauth", "idp"],
                widened("d", &["idp", "oxauth"]),
            ),
            (
                "its restart already runs",
                vec![restarting()],
                &["idp"],
                Coalesce::Start,
            ),
            ("ended", vec![ended()], &["idp"], Coalesce::Start),
            (
                "being cancelled",
                vec![cancelling()],
                &["idp"],
                Coalesce::Start,
            ),
            (
                "another node's",
                vec![other_node],
                &["idp"],
                Coalesce::Start,
            ),
            ("another kind", vec![other_kind], &["idp"], Coalesce::Start),
            (
                "whole server, with another node",
                vec![whole_two],
                &["idp"],
                Coalesce::Covered("w".into()),
            ),
            (
                "services of two nodes: not widened",
                vec![idp_two],
                &["oxauth"],
                Coalesce::Start,
            ),
        ];
        for (name, active, services, want) in cases {
            let services: Vec<String> = services.iter().map(|s| s.to_string()).collect();
            assert_eq!(coalesce(&active, "n1", &services), want, "{name}");
        }
    }

    #[test]
    fn a_services_restart_restarts_only_them_drained() {
        let names = [("n1", "gluu1".to_string()), ("n2", "gluu2".to_string())];
        let (mut def, mut wf, mut obs) = fixture(drain::testing::balancer("lb", names));
        def.inputs.services = vec!["idp".into(), "oxauth".into()];
        let mut sent = Vec::new();
        drain::testing::succeed_all_with(&def, &mut wf, &mut obs, &|_| None, &mut |_, d, step| {
            sent.push((d.node_id.clone(), step.to_string(), d.job.clone()));
        });
        assert_eq!(wf.status(), WorkflowStatus::Succeeded);
        let steps = step_names(&sent);
        assert_eq!(
            steps,
            [
                ("n1", DRAIN),
                ("n1", "restart"),
                ("n1", "web-ready"),
                ("n1", REJOIN),
                ("n2", DRAIN),
                ("n2", "restart"),
                ("n2", "web-ready"),
                ("n2", REJOIN)
            ]
        );
        for (_, _, j) in sent.iter().filter(|(_, s, _)| s == "restart") {
            assert_eq!(j.summary, "restart idp, oxauth");
            let Some(operation::Kind::GluuServices(g)) = &j.operation.kind else {
                panic!("{:?}", j.operation)
            };
            assert_eq!(g.services, ["idp", "oxauth"]);
        }
    }

    #[test]
    fn inputs_round_trip() {
        let i = Inputs {
            order: vec!["a".into(), "b".into()],
            primary: "a".into(),
            services: vec!["idp".into(), "oxauth".into()],
        };
        let m = i.encode().into_iter().collect();
        assert_eq!(Inputs::decode(&m), Ok(i));
    }
}
