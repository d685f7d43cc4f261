//! `clustermgr workflow list|show|watch|cancel|retry` and the commands that start workflows
//! (`gluu install|adopt`). A starting command prints the workflow's id, follows it with a
//! progress bar per node and exits with its result: 0 succeeded, 1 failed or cancelled, 2 not
//! started (an error). `--detach` prints the id alone on stdout and returns at once; `--dry-run`
//! prints the plan and changes nothing.

use crate::args::{GluuCmd, Output, ReplicationCmd, WorkflowCmd};
use crate::client::Cluster as Client;
use crate::client::explain;
use crate::context::{Ctx, Exit};
use crate::output::{Render, Row, render, table};
use anyhow::Result;
use clustermgr_proto::{
    InstallGluuRequest, ListServersRequest, ListWorkflowsRequest, NodeRef, NodeSteps, PlannedStep,
    RestartGluuRequest, StartWorkflowResponse, StepStatus, Workflow, WorkflowRef, WorkflowStatus,
};
use clustermgr_shared::util::fmt_ms;
use clustermgr_workflow::{is_terminal, node_progress, status_name, step_status_name};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};

fn step_json(s: &clustermgr_proto::Step) -> Value {
    json!({
        "name": s.name,
        "status": step_status_name(s.status()),
        "job_id": if s.job_id.is_empty() { Value::Null } else { json!(s.job_id) },
        "attempts": s.attempts,
        "started_unix_ms": s.started_unix_ms,
        "finished_unix_ms": s.finished_unix_ms,
        "error": if s.error.is_empty() { Value::Null } else { json!(s.error) },
        "exit_code": s.exit_code,
        "waiting_for": if s.waiting_for.is_empty() { Value::Null } else { json!(s.waiting_for) },
    })
}

impl Row for Workflow {
    const HEADER: &'static [&'static str] = &[
        "ID",
        "KIND",
        "STATUS",
        "NODES",
        "STARTED BY",
        "CREATED",
        "FINISHED",
        "WAITS FOR",
    ];
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "kind": self.kind,
            "status": status_name(self.status()),
            "started_by": self.started_by,
            "created_unix_ms": self.created_unix_ms,
            "updated_unix_ms": self.updated_unix_ms,
            "finished_unix_ms": self.finished_unix_ms,
            "cancel_requested": self.cancel_requested,
            "error": if self.error.is_empty() { Value::Null } else { json!(self.error) },
            "inputs": self.inputs,
            "queued_behind": self.queued_behind,
            "nodes": self.nodes.iter().map(|n| json!({
                "node_id": n.node_id,
                "hostname": n.hostname,
                "steps": n.steps.iter().map(step_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.kind.clone(),
            status_name(self.status()).into(),
            self.nodes.len().to_string(),
            self.started_by.clone(),
            fmt_ms(self.created_unix_ms),
            fmt_ms(self.finished_unix_ms),
            // The first it waits for (an id, shown short); `workflow show` lists them all.
            self.queued_behind.first().cloned().unwrap_or_default(),
        ]
    }
}

/// `workflow show`: the record, then a table of steps per node.
struct Shown<'a>(&'a Workflow);

impl Render for Shown<'_> {
    fn json(&self) -> Value {
        self.0.json()
    }
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let w = self.0;
        writeln!(out, "id          {}", w.id)?;
        writeln!(out, "kind        {}", w.kind)?;
        writeln!(
            out,
            "status      {}{}",
            status_name(w.status()),
            if w.cancel_requested && !is_terminal(w.status()) {
                " (cancel requested)"
            } else {
                ""
            }
        )?;
        if !w.queued_behind.is_empty() {
            writeln!(
                out,
                "waits for   {} (it starts when they end)",
                w.queued_behind.join(", ")
            )?;
        }
        writeln!(out, "started by  {}", w.started_by)?;
        writeln!(out, "created     {}", fmt_ms(w.created_unix_ms))?;
        writeln!(out, "finished    {}", fmt_ms(w.finished_unix_ms))?;
        if !w.error.is_empty() {
            writeln!(out, "error       {}", w.error)?;
        }
        let mut t = table(&[
            "NODE", "STEP", "STATUS", "TRIES", "STARTED", "TOOK", "JOB", "DETAIL",
        ]);
        for n in &w.nodes {
            for s in &n.steps {
                let took = if s.finished_unix_ms >= s.started_unix_ms && s.started_unix_ms > 0 {
                    format!(
                        "{:.1}s",
                        (s.finished_unix_ms - s.started_unix_ms) as f64 / 1000.0
                    )
                } else {
                    String::new()
                };
                let detail = if !s.error.is_empty() {
                    if s.exit_code != 0 {
                        format!("exit code {}: {}", s.exit_code, s.error)
                    } else {
                        s.error.clone()
                    }
                } else {
                    s.waiting_for.clone()
                };
                t.add_row(vec![
                    n.hostname.clone(),
                    s.name.clone(),
                    step_status_name(s.status()).into(),
                    s.attempts.to_string(),
                    fmt_ms(s.started_unix_ms),
                    took,
                    s.job_id.clone(),
                    detail,
                ]);
            }
        }
        writeln!(out, "{t}")
    }
}

impl Row for PlannedStep {
    const HEADER: &'static [&'static str] = &["NODE", "STEP", "ACTION", "WHAT"];
    fn json(&self) -> Value {
        json!({"hostname": self.hostname, "step": self.step, "action": self.action, "detail": self.detail})
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.hostname.clone(),
            self.step.clone(),
            self.action.clone(),
            self.detail.clone(),
        ]
    }
}

fn exit_of(w: &Workflow) -> Exit {
    if w.status() == WorkflowStatus::Succeeded {
        Exit::Ok
    } else {
        Exit::JobFailed
    }
}

/// The step a node is at, in words.
fn current(n: &NodeSteps) -> String {
    if let Some(s) = n.steps.iter().find(|s| {
        matches!(
            s.status(),
            StepStatus::Running | StepStatus::Failed | StepStatus::Cancelled
        )
    }) {
        let mut m = format!("{} {}", s.name, step_status_name(s.status()));
        if !s.error.is_empty() {
            m.push_str(": ");
            m.push_str(&s.error);
        }
        return m;
    }
    match n.steps.iter().find(|s| s.status() == StepStatus::Pending) {
        Some(s) if !s.waiting_for.is_empty() => format!("{}: {}", s.name, s.waiting_for),
        Some(s) => format!("{} pending", s.name),
        None => "done".into(),
    }
}

/// Follows a workflow until it ends: progress bars on a terminal, one line per change
/// otherwise (all on stderr); the final record on stdout with `--output json`.
pub async fn follow(c: &mut Client, id: &str, output: Output) -> Result<Exit> {
    let mut stream = c
        .watch_workflow(WorkflowRef { id: id.into() })
        .await
        .map_err(explain)?
        .into_inner();
    let tty = std::io::stderr().is_terminal();
    let multi = MultiProgress::with_draw_target(if tty {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template("{prefix:>20} [{bar:24}] {pos}/{len} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    let mut said: HashMap<String, String> = HashMap::new();
    let mut last: Option<Workflow> = None;
    while let Some(w) = stream.message().await.map_err(explain)? {
        let was_queued = last
            .as_ref()
            .is_some_and(|l| l.status() == WorkflowStatus::Queued);
        if was_queued && w.status() != WorkflowStatus::Queued {
            let line = format!("workflow {} starts: its turn came", w.id);
            if tty {
                multi.println(line).ok();
            } else {
                eprintln!("{line}");
            }
        }
        for n in &w.nodes {
            let (done, total) = node_progress(n);
            let msg = current(n);
            let bar = bars.entry(n.node_id.clone()).or_insert_with(|| {
                let b = multi.add(ProgressBar::new(total as u64));
                b.set_style(style.clone());
                b.set_prefix(n.hostname.clone());
                b
            });
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message(msg.clone());
            if !tty && said.get(&n.node_id) != Some(&msg) {
                eprintln!("{}: [{done}/{total}] {msg}", n.hostname);
                said.insert(n.node_id.clone(), msg);
            }
        }
        let ended = is_terminal(w.status());
        last = Some(w);
        if ended {
            break;
        }
    }
    for b in bars.values() {
        b.abandon();
    }
    let Some(w) = last else {
        anyhow::bail!("the controller ended the watch without a workflow");
    };
    if !is_terminal(w.status()) {
        anyhow::bail!(
            "the connection ended while workflow {} was {}; it goes on: clustermgr workflow watch {}",
            w.id,
            status_name(w.status()),
            w.id
        );
    }
    eprintln!("workflow {} {}", w.id, status_name(w.status()));
    if !w.error.is_empty() {
        eprintln!("  {}", w.error);
        eprintln!("  details: clustermgr workflow show {}", w.id);
    }
    if output == Output::Json {
        render(output, &Shown(&w))?;
    }
    Ok(exit_of(&w))
}

/// What a starting command does with the workflow it started.
pub(crate) async fn started(
    c: &mut Client,
    r: StartWorkflowResponse,
    detach: bool,
    ctx: &Ctx,
) -> Result<Exit> {
    let Some(w) = r.workflow else {
        render(ctx.output, r.plan.as_slice())?;
        return Ok(Exit::Ok);
    };
    if detach {
        println!("{}", w.id);
        return Ok(Exit::Ok);
    }
    if w.status() == WorkflowStatus::Queued {
        eprintln!(
            "workflow {} ({}) queued behind {}: it starts when they end (clustermgr workflow cancel {} gives up)",
            w.id,
            w.kind,
            w.queued_behind.join(", "),
            w.id
        );
    } else {
        eprintln!("workflow {} ({}) started", w.id, w.kind);
    }
    follow(c, &w.id, ctx.output).await
}

pub async fn run_workflow(cmd: WorkflowCmd, ctx: &Ctx) -> Result<Exit> {
    let mut c = ctx.cluster().await?;
    match cmd {
        WorkflowCmd::List { limit } => {
            let ws = c
                .list_workflows(ListWorkflowsRequest { limit })
                .await
                .map_err(explain)?
                .into_inner()
                .workflows;
            render(ctx.output, ws.as_slice())?;
        }
        WorkflowCmd::Show { id } => {
            let w = c
                .get_workflow(WorkflowRef { id })
                .await
                .map_err(explain)?
                .into_inner();
            render(ctx.output, &Shown(&w))?;
        }
        WorkflowCmd::Watch { id } => return follow(&mut c, &id, ctx.output).await,
        WorkflowCmd::Cancel { id } => {
            let w = c
                .cancel_workflow(WorkflowRef { id })
                .await
                .map_err(explain)?
                .into_inner();
            if w.status() == WorkflowStatus::Queued {
                eprintln!("workflow {} was queued: it ends without running", w.id);
            } else {
                eprintln!("workflow {} will stop after its running steps", w.id);
            }
        }
        WorkflowCmd::Retry { id, detach } => {
            let w = c
                .retry_workflow(WorkflowRef { id })
                .await
                .map_err(explain)?
                .into_inner();
            if detach {
                println!("{}", w.id);
                return Ok(Exit::Ok);
            }
            eprintln!("workflow {} retried from its failed steps", w.id);
            return follow(&mut c, &w.id, ctx.output).await;
        }
    }
    Ok(Exit::Ok)
}

pub async fn run_gluu(cmd: GluuCmd, ctx: &Ctx) -> Result<Exit> {
    let mut c = ctx.cluster().await?;
    match cmd {
        GluuCmd::Install {
            nodes,
            all,
            force,
            start,
        } => {
            let r = c
                .install_gluu(InstallGluuRequest {
                    nodes: nodes.into_iter().map(|node| NodeRef { node }).collect(),
                    all,
                    force,
                    dry_run: start.dry_run,
                    no_wait: start.no_wait,
                })
                .await
                .map_err(explain)?
                .into_inner();
            started(&mut c, r, start.detach, ctx).await
        }
        GluuCmd::Restart { nodes, start } => {
            let r = c
                .restart_gluu(RestartGluuRequest {
                    nodes: nodes.into_iter().map(|node| NodeRef { node }).collect(),
                    dry_run: start.dry_run,
                    no_wait: start.no_wait,
                })
                .await
                .map_err(explain)?
                .into_inner();
            started(&mut c, r, start.detach, ctx).await
        }
        GluuCmd::Adopt { node, detach } => {
            let r = c
                .adopt_gluu(NodeRef { node })
                .await
                .map_err(explain)?
                .into_inner();
            started(&mut c, r, detach, ctx).await
        }
        GluuCmd::Status => {
            let servers = c
                .list_servers(ListServersRequest {})
                .await
                .map_err(explain)?
                .into_inner()
                .servers;
            render(ctx.output, servers.as_slice())?;
            Ok(Exit::Ok)
        }
    }
}

impl Row for clustermgr_proto::NodeReplicationState {
    const HEADER: &'static [&'static str] = &[
        "NODE",
        "SERVER ID",
        "BASE",
        "REACHABLE",
        "IN AGREEMENT",
        "LAG",
        "PARTNERS",
        "NEWEST CHANGE",
    ];
    fn json(&self) -> Value {
        json!({
            "node_id": self.node_id,
            "hostname": self.hostname,
            "server_id": self.server_id,
            "reachable": self.reachable,
            "error": if self.error.is_empty() { Value::Null } else { json!(self.error) },
            "lag_ms": self.lag_ms,
            "bases": self.bases.iter().map(|b| json!({
                "base": b.base,
                "reachable": b.reachable,
                "error": if b.error.is_empty() { Value::Null } else { json!(b.error) },
                "in_agreement": b.in_agreement,
                "lag_ms": b.lag_ms,
                "partners": b.partners,
                "context_csn": b.context_csn,
            })).collect::<Vec<_>>(),
        })
    }
    fn cells(&self) -> Vec<String> {
        Vec::new()
    }
}

/// `replication status`: a row per node and base, then whether all agree.
struct Report<'a>(&'a clustermgr_proto::ReplicationStatusReport);

impl Render for Report<'_> {
    fn json(&self) -> Value {
        json!({
            "in_agreement": self.0.in_agreement,
            "checked_unix_ms": self.0.checked_unix_ms,
            "nodes": self.0.nodes.iter().map(Row::json).collect::<Vec<_>>(),
        })
    }
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut t = table(<clustermgr_proto::NodeReplicationState as Row>::HEADER);
        for n in &self.0.nodes {
            if n.bases.is_empty() {
                t.add_row(vec![
                    n.hostname.clone(),
                    n.server_id.to_string(),
                    String::new(),
                    "no".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    n.error.clone(),
                ]);
            }
            for b in &n.bases {
                let mut newest = b.context_csn.clone();
                newest.sort();
                t.add_row(vec![
                    n.hostname.clone(),
                    n.server_id.to_string(),
                    b.base.clone(),
                    if b.reachable { "yes" } else { "no" }.into(),
                    if b.in_agreement { "yes" } else { "no" }.into(),
                    format!("{:.1}s", b.lag_ms as f64 / 1000.0),
                    b.partners.join(","),
                    if b.reachable {
                        newest.last().cloned().unwrap_or_default()
                    } else {
                        b.error.clone()
                    },
                ]);
            }
        }
        writeln!(out, "{t}")?;
        writeln!(
            out,
            "{}",
            if self.0.in_agreement {
                "all nodes agree"
            } else {
                "the nodes do NOT agree"
            }
        )
    }
}

/// `replication deploy|remove|status`. `status` exits 1 when the nodes do not agree.
pub async fn run_replication(cmd: ReplicationCmd, ctx: &Ctx) -> Result<Exit> {
    let mut c = ctx.cluster().await?;
    match cmd {
        ReplicationCmd::Deploy { nodes, all, start } => {
            let r = c
                .deploy_replication(clustermgr_proto::DeployReplicationRequest {
                    nodes: nodes.into_iter().map(|node| NodeRef { node }).collect(),
                    all,
                    dry_run: start.dry_run,
                    no_wait: start.no_wait,
                })
                .await
                .map_err(explain)?
                .into_inner();
            started(&mut c, r, start.detach, ctx).await
        }
        ReplicationCmd::Remove { node, detach } => {
            let r = c
                .remove_replication(NodeRef { node })
                .await
                .map_err(explain)?
                .into_inner();
            started(&mut c, r, detach, ctx).await
        }
        ReplicationCmd::Status => {
            let r = c
                .get_replication_status(clustermgr_proto::GetReplicationStatusRequest {})
                .await
                .map_err(explain)?
                .into_inner();
            render(ctx.output, &Report(&r))?;
            Ok(if r.in_agreement {
                Exit::Ok
            } else {
                Exit::JobFailed
            })
        }
    }
}

/// `hosts apply [--dry-run] [--detach]`.
pub async fn run_hosts(start: crate::args::StartArgs, ctx: &Ctx) -> Result<Exit> {
    let mut c = ctx.cluster().await?;
    let r = c
        .apply_hosts(clustermgr_proto::ApplyHostsRequest {
            dry_run: start.dry_run,
        })
        .await
        .map_err(explain)?
        .into_inner();
    started(&mut c, r, start.detach, ctx).await
}
