//! The plan a `--dry-run` shows: the workflow advanced with every job assumed to succeed.

use super::{
    Definition, JobState, JobView, Observed, StepCtx, StepPlan, StepStatus, Workflow, advance,
    bind_job, step_of,
};
use clustermgr_proto::OperationOutput;

/// One line of a dry run: what a step would do.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    pub hostname: String,
    pub step: String,
    pub what: Planned,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Planned {
    Run(String),
    Skip(String),
    /// The plan stops here for this node (a precondition no simulated step makes true).
    Blocked(String),
    Fail(String),
}

/// What the workflow would do if every job succeeded, without doing anything: the plan for
/// `--dry-run`. Each dispatched job is assumed to succeed with no output (so the kind's check of
/// a job's output, which a simulated job does not have, is not asked).
pub fn dry_run(wf: &Workflow, def: &dyn Definition, obs: &Observed) -> Vec<PlannedStep> {
    let def = &Simulated(def);
    let mut wf = wf.clone();
    let mut obs = obs.clone();
    let mut out = Vec::new();
    let mut seq = 0u64;
    for _ in 0..10_000 {
        let d = advance(&mut wf, def, &obs);
        for t in &d.transitions {
            if t.status == StepStatus::Skipped {
                let why = step_of(&wf, &t.node_id, &t.step)
                    .map(|s| s.waiting_for.clone())
                    .unwrap_or_default();
                out.push(PlannedStep {
                    hostname: hostname(&wf, &t.node_id),
                    step: t.step.clone(),
                    what: Planned::Skip(why),
                });
            } else if t.status == StepStatus::Failed {
                let e = step_of(&wf, &t.node_id, &t.step)
                    .map(|s| s.error.clone())
                    .unwrap_or_default();
                out.push(PlannedStep {
                    hostname: hostname(&wf, &t.node_id),
                    step: t.step.clone(),
                    what: Planned::Fail(e),
                });
            }
        }
        if d.dispatch.is_empty() {
            break;
        }
        for disp in &d.dispatch {
            seq += 1;
            let job_id = format!("dry-run-{seq}");
            bind_job(&mut wf, disp, &job_id);
            // What the job would keep is not known before it runs: an empty placeholder lets
            // the steps that need it be planned.
            if let Some(key) = &disp.job.keep_output_as {
                obs.kept.entry(key.clone()).or_default();
            }
            obs.jobs.insert(
                job_id,
                JobView {
                    state: JobState::Succeeded,
                    exit_code: 0,
                    error: String::new(),
                    output: Some(OperationOutput::default()),
                },
            );
            out.push(PlannedStep {
                hostname: hostname(&wf, &disp.node_id),
                step: wf
                    .nodes
                    .iter()
                    .find(|n| n.node_id == disp.node_id)
                    .map(|n| n.steps[disp.step].name.clone())
                    .unwrap_or_default(),
                what: Planned::Run(disp.job.summary.clone()),
            });
        }
    }
    for n in &wf.nodes {
        if let Some(s) = n.steps.iter().find(|s| s.status() == StepStatus::Pending) {
            out.push(PlannedStep {
                hostname: n.hostname.clone(),
                step: s.name.clone(),
                what: Planned::Blocked(s.waiting_for.clone()),
            });
        }
    }
    out
}

fn hostname(wf: &Workflow, node_id: &str) -> String {
    wf.nodes
        .iter()
        .find(|n| n.node_id == node_id)
        .map(|n| n.hostname.clone())
        .unwrap_or_else(|| node_id.to_string())
}

/// A kind's definition in a dry run: every simulated job passes its check.
struct Simulated<'a>(&'a dyn Definition);

impl Definition for Simulated<'_> {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }

    fn plan_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        self.0.plan_step(ctx)
    }

    fn cleanup(&self, step: &str) -> bool {
        self.0.cleanup(step)
    }

    fn observed_nodes(&self, wf: &Workflow) -> Vec<String> {
        self.0.observed_nodes(wf)
    }
}
