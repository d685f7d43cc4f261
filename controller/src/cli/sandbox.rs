//! `clustermgr sandbox up|status|down`: the commands; the sandbox itself is `crate::sandbox`.

use super::output::{Render, render, table};
use super::{Ctx, Exit, SandboxCmd};
use crate::sandbox::{self, Status};
use anyhow::Result;
use serde_json::{Value, json};
use std::io::Write;

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
            let up = sandbox::up(&dir, nodes, gluu.as_deref()).await?;
            render(ctx.output, up.nodes.as_slice())?;
            if let Some(g) = &up.gluu {
                eprintln!(
                    "Gluu Server installed on {} (workflow {}); passwords in {}",
                    g.installed.join(", "),
                    g.workflow_id,
                    g.secrets.display()
                );
                if let Some(r) = &g.replication_workflow_id {
                    eprintln!(
                        "LDAP replication deployed (workflow {r}): clustermgr replication status"
                    );
                }
                if let Some(c) = &g.cache_workflow_id {
                    eprintln!("cache installed (workflow {c}): clustermgr cache status");
                }
                if let Some(l) = &g.lb_workflow_id {
                    eprintln!(
                        "load balancer installed on lb.sandbox (workflow {l}): {}",
                        super::lb::sandbox_hint(&up.dir)
                    );
                }
                eprintln!("result: {}", g.status);
                for n in &g.nodes {
                    let steps: Vec<String> = n
                        .steps
                        .iter()
                        .map(|(name, d)| format!("{name} {:.1} s", d.as_secs_f64()))
                        .collect();
                    eprintln!(
                        "timing: install on {} {:.1} s ({})",
                        n.hostname,
                        n.total.as_secs_f64(),
                        steps.join(", ")
                    );
                }
            }
            let phases: Vec<String> = up
                .phases
                .iter()
                .map(|(name, d)| format!("{name} {:.1} s", d.as_secs_f64()))
                .collect();
            eprintln!(
                "timing: sandbox up {:.1} s ({})",
                up.total.as_secs_f64(),
                phases.join(", ")
            );
            eprintln!(
                "sandbox up in {}: controller {}",
                up.dir.display(),
                up.controller
            );
            eprintln!(
                "web console:  https://{}/ (trusting {}; the first admin needs the setup code in {})",
                up.console,
                crate::config::DataDir::new(up.data_dir.clone())
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
            sandbox::down(&dir, purge)?;
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
                        v["lb"] = self.lb.as_ref().map(super::lb::status_json).into();
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
            writeln!(out, "{c}")?;
        }
        if let Some(l) = &self.lb {
            super::lb::sandbox_line(l, out)?;
        }
        writeln!(
            out,
            "passwords (LDAP admin, replication): {}",
            self.secrets.display()
        )
    }
}
