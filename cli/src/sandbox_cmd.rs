//! `clustermgr sandbox up|status|down`: the commands, which show what the sandbox
//! (`crate::sandbox`) returns and reports.

use crate::args::{Output, SandboxCmd};
use crate::client::Cluster;
use crate::context::{Ctx, Exit};
use crate::output::{Render, render, table};
use crate::sandbox::{self, Down, Event, MachinesStopped, Phase, Progress, Status};
use anyhow::{Result, bail};
use serde_json::{Value, json};
use std::io::Write;

/// `sandbox up`'s progress on stderr: each workflow followed with `workflow watch`'s view.
struct Reporter;

impl Progress for Reporter {
    fn event(&mut self, event: Event) {
        match event {
            Event::LeftoverMachines { dir, stopped } => {
                say_machines(&stopped);
                if !stopped.killed.is_empty() {
                    eprintln!(
                        "killed machine processes left in {}: {:?}",
                        dir.display(),
                        stopped.killed
                    );
                }
            }
            Event::PackageAdded(info) => eprintln!(
                "added {} {} ({}) to the repository",
                info.name, info.version, info.format
            ),
            Event::WorkflowStarted { phase, id } => match phase {
                Phase::GluuInstall => {
                    eprintln!("installing Gluu Server (nspawn machines): workflow {id}")
                }
                Phase::Replication => eprintln!("deploying LDAP replication: workflow {id}"),
                Phase::Cache => eprintln!("installing the cache on cache.sandbox: workflow {id}"),
                Phase::LoadBalancer => eprintln!("installing the load balancer: workflow {id}"),
            },
        }
    }

    async fn follow(&mut self, cluster: &mut Cluster, id: &str) -> Result<()> {
        crate::workflow::follow(cluster, id, Output::Table).await?;
        Ok(())
    }
}

/// The machines' stops that failed.
fn say_machines(stopped: &MachinesStopped) {
    for line in &stopped.failures {
        eprintln!("{line}");
    }
}

/// `sandbox down`'s report; an error when machine processes had to be killed.
fn show_down(d: &Down) -> Result<()> {
    say_machines(&d.machines);
    if !d.left_running.is_empty() {
        eprintln!(
            "left running (not started by the sandbox): {}",
            d.left_running.join("; ")
        );
    }
    if !d.machines.killed.is_empty() {
        bail!(
            "gluu-serverd stop left machine processes, killed: {}",
            d.machines.killed.join("; ")
        );
    }
    if d.purged {
        eprintln!("sandbox stopped and {} removed", d.dir.display());
    } else {
        eprintln!("sandbox stopped (state kept in {})", d.dir.display());
    }
    Ok(())
}

/// What `sandbox up` did, on stderr (the nodes go to stdout).
fn show_up(up: &sandbox::Up) {
    if let Some(g) = &up.gluu {
        show_gluu(g, &up.dir);
    }
    eprintln!(
        "timing: sandbox up {:.1} s ({})",
        up.total.as_secs_f64(),
        timings(&up.phases)
    );
    eprintln!(
        "sandbox up in {}: controller {}",
        up.dir.display(),
        up.controller
    );
    eprintln!(
        "web console:  https://{}/ (trusting {}; the first admin needs the setup code in {})",
        up.console,
        clustermgr_shared::datadir::DataDir::new(up.data_dir.clone())
            .ca_cert()
            .display(),
        up.data_dir.join("web-setup-code").display()
    );
    eprintln!(
        "use it with:  export CLUSTERMGR_DATA_DIR={}",
        up.data_dir.display()
    );
    eprintln!(
        "stop it with: clustermgr sandbox down --dir {}",
        up.dir.display()
    );
}

/// The Gluu Server's part of it.
fn show_gluu(g: &sandbox::GluuUp, dir: &std::path::Path) {
    eprintln!(
        "Gluu Server installed on {} (workflow {}); passwords in {}",
        g.installed.join(", "),
        g.workflow_id,
        g.secrets.display()
    );
    if let Some(r) = &g.replication_workflow_id {
        eprintln!("LDAP replication deployed (workflow {r}): clustermgr replication status");
    }
    if let Some(c) = &g.cache_workflow_id {
        eprintln!("cache installed (workflow {c}): clustermgr cache status");
    }
    if let Some(l) = &g.lb_workflow_id {
        eprintln!(
            "load balancer installed on lb.sandbox (workflow {l}): {}",
            crate::lb::sandbox_hint(dir)
        );
    }
    eprintln!("result: {}", g.status);
    for n in &g.nodes {
        eprintln!(
            "timing: install on {} {:.1} s ({})",
            n.hostname,
            n.total.as_secs_f64(),
            timings(&n.steps)
        );
    }
}

/// `name 1.2 s, ...`
fn timings(list: &[(String, std::time::Duration)]) -> String {
    list.iter()
        .map(|(name, d)| format!("{name} {:.1} s", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn run(cmd: SandboxCmd, ctx: &Ctx) -> Result<Exit> {
    match cmd {
        SandboxCmd::Up {
            nodes,
            dir,
            gluu_package,
            no_gluu,
        } => {
            let gluu = if no_gluu {
                None
            } else {
                Some(sandbox::gluu_package(gluu_package)?)
            };
            let up = sandbox::up(&dir, nodes, gluu.as_deref(), &mut Reporter).await?;
            render(ctx.output, up.nodes.as_slice())?;
            show_up(&up);
            Ok(match &up.gluu {
                Some(g) if g.status != "succeeded" => Exit::JobFailed,
                _ => Exit::Ok,
            })
        }
        SandboxCmd::Status { dir } => {
            let status = sandbox::status(&dir).await?;
            render(ctx.output, &status)?;
            Ok(if status.all_ok {
                Exit::Ok
            } else {
                Exit::SandboxDown
            })
        }
        SandboxCmd::Down { dir, purge } => {
            show_down(&sandbox::down(&dir, purge)?)?;
            Ok(Exit::Ok)
        }
    }
}

impl Render for Status {
    fn json(&self) -> Value {
        Value::Array(
            self.procs
                .iter()
                .map(|s| {
                    let p = &s.proc;
                    let mut v = json!({"name": p.name, "role": p.role, "address": p.address,
                        "pid": p.pid, "running": s.running, "status": s.status,
                        "node_id": p.node_id, "gluu": s.gluu, "flavor": s.flavor,
                        "machine": s.machine});
                    if p.role == "lb" {
                        v["lb"] = self.lb.as_ref().map(crate::lb::status_json).into();
                    }
                    v
                })
                .collect(),
        )
    }

    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut t = table(&[
            "HOST", "ROLE", "ADDRESS", "PID", "PROCESS", "STATUS", "GLUU", "FLAVOR", "MACHINE",
        ]);
        for s in &self.procs {
            let p = &s.proc;
            t.add_row(vec![
                p.name.clone(),
                p.role.clone(),
                p.address.clone(),
                p.pid.to_string(),
                if s.running { "running" } else { "stopped" }.into(),
                s.status.clone(),
                s.gluu.clone().unwrap_or_default(),
                s.flavor.clone().unwrap_or_default(),
                s.machine.clone().unwrap_or_default(),
            ]);
        }
        writeln!(out, "{t}")?;
        if let Some(c) = &self.cache {
            let pinged = c.nodes.iter().filter(|n| n.ping_ok).count();
            writeln!(
                out,
                "cache: {} (Redis PING answered on {pinged} of {} nodes, through stunnel on the Gluu nodes)",
                if c.healthy { "healthy" } else { "NOT healthy" },
                c.nodes.len()
            )?;
        }
        if let Some(l) = &self.lb {
            crate::lb::sandbox_line(l, out)?;
        }
        writeln!(
            out,
            "passwords (LDAP admin, replication): {}",
            self.secrets.display()
        )
    }
}
