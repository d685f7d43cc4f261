//! `clustermgr lb install|status|remove|config`. `install` and `remove` start a workflow and
//! follow it like every starting command (exit 0 succeeded, 1 failed or cancelled, 2 not started;
//! `--detach`, `--dry-run`); `status` exits 1 unless the balancer is healthy (or external).

use crate::args::{LbCmd, OxauthBalancingArg};
use crate::client::{channel, explain};
use crate::context::{Ctx, Exit};
use crate::output::{Render, render, table};
use anyhow::Result;
use clustermgr_proto::load_balancer_client::LoadBalancerClient;
use clustermgr_proto::{
    GetLoadBalancerConfigRequest, GetLoadBalancerStatusRequest, InstallLoadBalancerRequest,
    LoadBalancerConfig, LoadBalancerStatus, OxauthBalancing, RemoveLoadBalancerRequest,
    StartWorkflowResponse,
};
use serde_json::Value;
use std::io::Write;

/// How to reach the sandbox's load balancer from the machine (its name does not resolve there).
pub fn sandbox_hint(dir: &std::path::Path) -> String {
    format!(
        "curl --cacert {} --resolve idp.sandbox.test:8443:127.0.0.2 \
         https://idp.sandbox.test:8443/.well-known/openid-configuration",
        dir.join("hosts/gluu1.sandbox/root/opt/gluu-server/etc/certs/httpd.crt")
            .display()
    )
}

/// `lb status` as JSON (also in `sandbox status`).
pub fn status_json(s: &LoadBalancerStatus) -> Value {
    Status(s).json()
}

/// The load balancer's line in `sandbox status`.
pub fn sandbox_line(s: &LoadBalancerStatus, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "load balancer: {} on {} ({}{}){}",
        s.url,
        s.nginx
            .as_ref()
            .map(|n| n.listen_address.as_str())
            .filter(|a| !a.is_empty())
            .unwrap_or("lb.sandbox"),
        s.state,
        if s.state == "installed" {
            if s.healthy {
                ", healthy"
            } else {
                ", NOT healthy"
            }
        } else {
            ""
        },
        if s.error.is_empty() {
            String::new()
        } else {
            format!(": {}", s.error)
        }
    )
}

pub(crate) struct Status<'a>(pub(crate) &'a LoadBalancerStatus);

impl Render for Status<'_> {
    fn json(&self) -> Value {
        crate::view::lb_status(self.0)
    }
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let s = self.0;
        writeln!(out, "state       {}", s.state)?;
        writeln!(out, "url         {}", s.url)?;
        if !s.hostname.is_empty() {
            writeln!(out, "node        {} ({})", s.hostname, s.node_id)?;
        }
        if s.oxauth_balancing != 0 {
            writeln!(
                out,
                "/oxauth     {}",
                crate::view::balancing_name(s.oxauth_balancing)
            )?;
        }
        if !s.workflow_id.is_empty() {
            writeln!(out, "workflow    {}", s.workflow_id)?;
        }
        if !s.error.is_empty() {
            writeln!(out, "error       {}", s.error)?;
        }
        if let Some(n) = &s.nginx {
            writeln!(
                out,
                "nginx       {}{}",
                if !n.installed {
                    "not installed"
                } else if !n.configured {
                    "installed, not configured"
                } else if n.running {
                    "running"
                } else {
                    "stopped"
                },
                if n.configured {
                    format!(
                        " on {}:{} (http {})",
                        n.listen_address, n.https_port, n.http_port
                    )
                } else {
                    String::new()
                }
            )?;
            if n.configured {
                writeln!(out, "through lb  {}", n.through_lb_detail)?;
                let mut t = table(&["BACKEND", "ADDRESS", "HEALTH"]);
                for b in &n.backends {
                    let h = n
                        .health
                        .iter()
                        .find(|h| h.address == b.address && h.port == b.port);
                    let mut health = h
                        .map(|h| format!("{} {}", if h.ok { "ok" } else { "FAIL" }, h.detail))
                        .unwrap_or_default();
                    if n.drained.contains(&b.name) {
                        health.push_str(" (drained: out of rotation)");
                    }
                    t.add_row(vec![
                        b.name.clone(),
                        format!("{}:{}", b.address, b.port),
                        health,
                    ]);
                }
                writeln!(out, "{t}")?;
            }
        }
        writeln!(out, "{}", if s.healthy { "healthy" } else { "NOT healthy" })
    }
}

struct Config<'a>(&'a LoadBalancerConfig);

impl Render for Config<'_> {
    fn json(&self) -> Value {
        crate::view::lb_config(self.0)
    }
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let c = self.0;
        writeln!(
            out,
            "A load balancer for {} must listen on https port {} (the cluster's web certificate, \
             issued to {}) and redirect http port {} to https. Routes:",
            c.lb_hostname, c.https_port, c.backend_tls_name, c.http_port
        )?;
        let mut t = table(&["PATH", "STICKY", "WHAT"]);
        for r in &c.routes {
            t.add_row(vec![
                r.path.clone(),
                if r.sticky { "yes" } else { "no" }.into(),
                r.action.clone(),
            ]);
        }
        writeln!(out, "{t}")?;
        writeln!(
            out,
            "Backends (HTTPS; each serves the certificate issued to {}):",
            c.backend_tls_name
        )?;
        let mut t = table(&["SERVER", "ADDRESS"]);
        for b in &c.backends {
            t.add_row(vec![b.name.clone(), format!("{}:{}", b.address, b.port)]);
        }
        writeln!(out, "{t}")?;
        writeln!(
            out,
            "Health check: GET {} on each backend (200 when healthy); take a backend out after \
             2 failures for 10 s, and retry a request on another backend on an error, a timeout \
             or HTTP 500/502/503/504.",
            c.health_check_path
        )?;
        if !c.external_lb {
            writeln!(
                out,
                "(This cluster is not set to use an external load balancer: `clustermgr lb \
                 install` puts nginx on the lb node with these routes.)"
            )?;
        }
        Ok(())
    }
}

async fn started(r: StartWorkflowResponse, detach: bool, ctx: &Ctx) -> Result<Exit> {
    let mut c = ctx.cluster().await?;
    crate::workflow::started(&mut c, r, detach, ctx).await
}

pub async fn run(cmd: LbCmd, ctx: &Ctx) -> Result<Exit> {
    let mut c = LoadBalancerClient::new(channel(&ctx.target).await?);
    match cmd {
        LbCmd::Install {
            node,
            oxauth_balancing,
            start,
        } => {
            let r = c
                .install_load_balancer(InstallLoadBalancerRequest {
                    node: node.unwrap_or_default(),
                    oxauth_balancing: match oxauth_balancing {
                        None => OxauthBalancing::Unspecified,
                        Some(OxauthBalancingArg::Sticky) => OxauthBalancing::Sticky,
                        Some(OxauthBalancingArg::RoundRobin) => OxauthBalancing::RoundRobin,
                    } as i32,
                    dry_run: start.dry_run,
                })
                .await
                .map_err(explain)?
                .into_inner();
            started(r, start.detach, ctx).await
        }
        LbCmd::Remove { start } => {
            let r = c
                .remove_load_balancer(RemoveLoadBalancerRequest {
                    dry_run: start.dry_run,
                })
                .await
                .map_err(explain)?
                .into_inner();
            started(r, start.detach, ctx).await
        }
        LbCmd::Status => {
            let s = c
                .get_load_balancer_status(GetLoadBalancerStatusRequest {})
                .await
                .map_err(explain)?
                .into_inner();
            render(ctx.output, &Status(&s))?;
            Ok(if s.healthy || s.state == "external" {
                Exit::Ok
            } else {
                Exit::JobFailed
            })
        }
        LbCmd::Config => {
            let cfg = c
                .get_load_balancer_config(GetLoadBalancerConfigRequest {})
                .await
                .map_err(explain)?
                .into_inner();
            render(ctx.output, &Config(&cfg))?;
            Ok(Exit::Ok)
        }
    }
}
