//! `cert-install`: the cluster's web certificate (Gluu's httpd certificate) on every Gluu node,
//! rolling, with a health gate per node and a rollback.
//!
//! Per node, in the cluster's order (the primary first): `backup` (the node's certificate set,
//! read and kept sealed by the driver: it holds the current httpd certificate and key),
//! `install` (once every node's backup is kept, and the node before this one serves the new
//! certificate: httpd.crt/httpd.key written, the JRE trust store entry `<lb>_httpd` re-imported,
//! Gluu restarted and probed on the node; the node puts its previous pair back itself when that
//! fails), `web-ready` (the readiness probe every Gluu workflow waits on, trusting exactly the
//! new certificate), `rollback` (when any step of the workflow failed: the nodes whose install
//! succeeded get their kept previous certificate and key back the same way, the node whose own
//! web-ready failed included — a clean-up step runs after its node's failure; otherwise
//! nothing).
//!
//! The new certificate and key are never in the workflow's inputs: the controller keeps them
//! sealed under [`NEW`] before the workflow starts.
//!
//! A node is out of the load balancer's rotation from before its `install` until after its
//! `web-ready` (`drain`, `rejoin`: [`crate::drain`]); from the first drain on, the balancer
//! trusts the new certificate on the backends beside the old one, until its own `configure`
//! makes the new one the only one. The rollback's restarts are not drained.

use crate::engine::{
    Definition, JobSpec, JobState, StepCtx, StepPlan, StepStatus, Workflow, is_done,
};
use crate::inputs::KindInputs;
use crate::readiness;
use clustermgr_proto::{
    ConfigureNginx, GluuCertificates, InstallHttpdCertificate, Operation, ProbeNginx,
    ReadGluuCertificates, operation,
};
use prost::Message as _;

pub const KIND: &str = "cert-install";
pub const STEPS: [&str; 6] = [
    "backup",
    crate::drain::DRAIN,
    "install",
    "web-ready",
    crate::drain::REJOIN,
    "rollback",
];
/// The load balancer's steps (when one is installed): after every Gluu node serves the new
/// certificate, nginx is reconfigured with it (`nginx -t` before the swap), then probed through
/// until it serves exactly the new certificate; a rollback puts the primary's previous pair back.
pub const LB_STEPS: [&str; 3] = ["configure", "probe", "rollback"];
/// Kept key of the new certificate and key (a `GluuCertificates` with the two files).
pub const NEW: &str = "new/httpd";
pub const HTTPD_CRT: &str = "etc/certs/httpd.crt";
pub const HTTPD_KEY: &str = "etc/certs/httpd.key";

/// Kept key of a node's certificate set before the install.
pub fn backup_key(node_id: &str) -> String {
    format!("previous/{node_id}")
}

/// The workflow's inputs (no secret).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Inputs {
    /// Node ids in rolling order (the primary first).
    pub order: Vec<String>,
    pub primary: String,
    /// The load balancer's node (empty: none installed).
    pub lb: String,
}

impl KindInputs for Inputs {
    const KIND: &'static str = KIND;
}

/// What the install needs besides observed state.
#[derive(Debug, Clone)]
pub struct CertInstall {
    pub inputs: Inputs,
    pub lb_hostname: String,
    pub https_port: Option<u16>,
    pub probe_within_ms: u32,
    /// The load balancer's configuration as it runs (certificate and key left empty), when the
    /// workflow has a load balancer.
    pub lb: Option<ConfigureNginx>,
    /// The load balancer a node is drained from around its install.
    pub balancer: crate::drain::Balancer,
}

/// The steps of `node_id` in a workflow with these inputs.
pub fn steps(inputs: &Inputs, node_id: &str) -> Vec<&'static str> {
    if !inputs.lb.is_empty() && inputs.lb == node_id {
        LB_STEPS.to_vec()
    } else {
        STEPS.to_vec()
    }
}

/// The httpd pair of a certificate set, each file with its SHA-256 as the set carries it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pair {
    pub crt: String,
    pub crt_sha256: String,
    pub key: Vec<u8>,
    pub key_sha256: String,
}

pub fn httpd_pair(set: &GluuCertificates) -> Option<Pair> {
    let find = |p: &str| {
        set.files
            .iter()
            .find(|f| f.path.trim_start_matches('/') == p)
            .map(|f| (f.content.clone(), f.sha256.clone()))
    };
    let (crt, crt_sha256) = find(HTTPD_CRT)?;
    let (key, key_sha256) = find(HTTPD_KEY)?;
    Some(Pair {
        crt: String::from_utf8(crt).ok()?,
        crt_sha256,
        key,
        key_sha256,
    })
}

/// The kept new pair as a certificate set (digests computed by the caller).
pub fn new_pair_with(
    certificate_pem: &str,
    key_pem: &[u8],
    certificate_sha256: &str,
    key_sha256: &str,
) -> GluuCertificates {
    let f =
        |path: &str, content: Vec<u8>, sha256: &str, mode: u32| clustermgr_proto::CertificateFile {
            path: path.into(),
            content,
            mode,
            sha256: sha256.to_string(),
        };
    GluuCertificates {
        files: vec![
            f(
                HTTPD_CRT,
                certificate_pem.as_bytes().to_vec(),
                certificate_sha256,
                0o644,
            ),
            f(HTTPD_KEY, key_pem.to_vec(), key_sha256, 0o600),
        ],
    }
}

/// A step other than a rollback failed somewhere in the workflow.
fn failed(wf: &Workflow) -> Option<String> {
    wf.nodes.iter().find_map(|n| {
        n.steps
            .iter()
            .find(|s| s.name != "rollback" && s.status() == StepStatus::Failed)
            .map(|_| n.hostname.clone())
    })
}

fn status(wf: &Workflow, node: &str, step: &str) -> Option<StepStatus> {
    wf.nodes
        .iter()
        .find(|n| n.node_id == node)?
        .steps
        .iter()
        .find(|s| s.name == step)
        .map(|s| s.status())
}

impl CertInstall {
    fn ip(&self, ctx: &StepCtx<'_>) -> Option<String> {
        ctx.node_view()?
            .inventory
            .as_ref()?
            .addresses
            .first()
            .cloned()
    }

    fn health_url(&self, ip: &str, primary: bool) -> String {
        let path = if primary {
            "/oxauth/restv1/health-check"
        } else {
            "/identity/restv1/health-check"
        };
        readiness::web_url(ip, self.https_port, path)
    }

    /// `rollback`: the job keeps the pair it writes even when the probe fails (the node's
    /// "previous" pair is then the new certificate being rolled back from).
    fn install_job(&self, p: Pair, url: String, summary: String, rollback: bool) -> StepPlan {
        StepPlan::Run(JobSpec {
            operation: Operation {
                kind: Some(operation::Kind::InstallHttpdCertificate(
                    InstallHttpdCertificate {
                        certificate_sha256: p.crt_sha256,
                        key_sha256: p.key_sha256,
                        certificate_pem: p.crt,
                        key_pem: p.key,
                        alias_prefix: self.lb_hostname.clone(),
                        probe_url: url,
                        within_ms: self.probe_within_ms,
                        keep_on_failure: rollback,
                    },
                )),
            },
            timeout_ms: self
                .probe_within_ms
                .saturating_mul(2)
                .saturating_add(5 * 60_000),
            summary,
            // The node compares before writing: the same pair twice changes nothing.
            rerunnable: true,
            keep_output_as: None,
        })
    }

    /// A kept pair; the error is why the step fails.
    fn pair(&self, ctx: &StepCtx<'_>, key: &str, what: &str) -> Result<Pair, String> {
        let Some(bytes) = ctx.observed.kept.get(key) else {
            return Err(format!("{what} is not kept"));
        };
        if bytes.is_empty() {
            // A plan's placeholder (what the node holds is not read yet).
            return Ok(Pair::default());
        }
        let set = GluuCertificates::decode(bytes.as_slice())
            .map_err(|e| format!("{what} cannot be read: {e}"))?;
        httpd_pair(&set).ok_or_else(|| format!("{what} has no {HTTPD_CRT} and {HTTPD_KEY}"))
    }

    fn install(&self, ctx: &StepCtx<'_>) -> StepPlan {
        let me = ctx.node.node_id.as_str();
        if let Some(h) = failed(ctx.workflow) {
            return StepPlan::Skip(format!("not installed: a step failed on {h}"));
        }
        let order = &self.inputs.order;
        match order.iter().position(|n| n == me) {
            Some(0) => {
                if let Some(n) = order.iter().find(|n| !ctx.done(n, "backup")) {
                    return StepPlan::Wait(format!(
                        "waiting for the backup of {}",
                        ctx.hostname(n)
                    ));
                }
            }
            Some(i) => {
                let prev = &order[i - 1];
                if !ctx.done(prev, "web-ready") {
                    return StepPlan::Wait(format!(
                        "rolling: waiting for {} to serve the new certificate",
                        ctx.hostname(prev)
                    ));
                }
            }
            None => return StepPlan::Fail("the node is not in the workflow's order".into()),
        }
        let Some(ip) = self.ip(ctx) else {
            return StepPlan::Wait("waiting for the node's inventory (its address)".into());
        };
        let pair = match self.pair(ctx, NEW, "the new certificate") {
            Ok(p) => p,
            Err(e) => return StepPlan::Fail(e),
        };
        let url = self.health_url(&ip, me == self.inputs.primary);
        let summary = format!(
            "install the new web certificate (etc/certs/httpd.crt, httpd.key; JRE trust store \
             alias {}_httpd), restart Gluu, wait for {url} serving it (the previous pair is put \
             back if that fails)",
            self.lb_hostname
        );
        self.install_job(pair, url, summary, false)
    }

    fn rollback(&self, ctx: &StepCtx<'_>) -> StepPlan {
        let me = ctx.node.node_id.as_str();
        let Some(h) = failed(ctx.workflow) else {
            let pending = ctx.workflow.nodes.iter().find(|n| {
                n.steps
                    .iter()
                    .any(|s| s.name != "rollback" && !is_done(s.status()))
            });
            return match pending {
                Some(n) => StepPlan::Wait(format!(
                    "kept until {} serves the new certificate",
                    n.hostname
                )),
                None => StepPlan::Skip("every node serves the new certificate".into()),
            };
        };
        if status(ctx.workflow, me, "install") != Some(StepStatus::Succeeded) {
            return StepPlan::Skip("the node was not changed".into());
        }
        let Some(ip) = self.ip(ctx) else {
            return StepPlan::Wait("waiting for the node's inventory (its address)".into());
        };
        let pair = match self.pair(ctx, &backup_key(me), "the node's previous certificate") {
            Ok(p) => p,
            Err(e) => return StepPlan::Fail(e),
        };
        let url = self.health_url(&ip, me == self.inputs.primary);
        self.install_job(
            pair,
            url.clone(),
            format!(
                "roll back (a step failed on {h}): put the previous web certificate and key back, \
                 restart Gluu, wait for {url}"
            ),
            true,
        )
    }
}

impl CertInstall {
    fn nginx(&self, ctx: &StepCtx<'_>, key: &str, what: &str, summary: String) -> StepPlan {
        let Some(template) = &self.lb else {
            return StepPlan::Fail(
                "the load balancer's configuration is not known (lb install first)".into(),
            );
        };
        let pair = match self.pair(ctx, key, what) {
            Ok(p) => p,
            Err(e) => return StepPlan::Fail(e),
        };
        StepPlan::Run(JobSpec {
            operation: Operation {
                kind: Some(operation::Kind::ConfigureNginx(ConfigureNginx {
                    certificate_pem: pair.crt,
                    key_pem: pair.key,
                    ..template.clone()
                })),
            },
            timeout_ms: 5 * 60_000,
            summary,
            rerunnable: true,
            keep_output_as: None,
        })
    }

    fn lb_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        let me = ctx.node.node_id.as_str();
        match ctx.step().name.as_str() {
            "configure" => {
                if let Some(h) = failed(ctx.workflow) {
                    return StepPlan::Skip(format!("not reconfigured: a step failed on {h}"));
                }
                if let Some(n) = self.inputs.order.iter().find(|n| !ctx.done(n, "web-ready")) {
                    return StepPlan::Wait(format!(
                        "waiting for {} to serve the new certificate",
                        ctx.hostname(n)
                    ));
                }
                self.nginx(
                    ctx,
                    NEW,
                    "the new certificate",
                    format!(
                        "reconfigure nginx for {} with the new certificate (checked with nginx \
                         -t before it replaces the running configuration)",
                        self.lb_hostname
                    ),
                )
            }
            "probe" => {
                if let Some(h) = failed(ctx.workflow) {
                    return StepPlan::Skip(format!("not reconfigured: a step failed on {h}"));
                }
                StepPlan::Run(JobSpec {
                    operation: Operation {
                        kind: Some(operation::Kind::ProbeNginx(ProbeNginx {
                            path: crate::lb::HEALTH_PATH.into(),
                            within_ms: self.probe_within_ms,
                        })),
                    },
                    timeout_ms: self.probe_within_ms.saturating_add(30_000),
                    summary: format!(
                        "wait until nginx serves the new certificate and https://{}{} answers",
                        self.lb_hostname,
                        crate::lb::HEALTH_PATH
                    ),
                    rerunnable: true,
                    keep_output_as: None,
                })
            }
            "rollback" => {
                let Some(h) = failed(ctx.workflow) else {
                    return match ctx.workflow.nodes.iter().find(|n| {
                        n.steps
                            .iter()
                            .any(|s| s.name != "rollback" && !is_done(s.status()))
                    }) {
                        Some(n) => StepPlan::Wait(format!(
                            "kept until {} serves the new certificate",
                            n.hostname
                        )),
                        None => StepPlan::Skip("nginx serves the new certificate".into()),
                    };
                };
                if status(ctx.workflow, me, "configure") != Some(StepStatus::Succeeded) {
                    return StepPlan::Skip("nginx was not changed".into());
                }
                self.nginx(
                    ctx,
                    &backup_key(&self.inputs.primary),
                    "the primary's previous certificate",
                    format!(
                        "roll back (a step failed on {h}): nginx with the previous certificate"
                    ),
                )
            }
            other => StepPlan::Fail(format!("unknown step {other:?}")),
        }
    }
}

impl Definition for CertInstall {
    fn observed_nodes(&self, _wf: &Workflow) -> Vec<String> {
        self.balancer.observed()
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn plan_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        let me = ctx.node.node_id.as_str();
        if !self.inputs.lb.is_empty() && me == self.inputs.lb {
            return self.lb_step(ctx);
        }
        let step = ctx.step().name.as_str();
        if step == crate::drain::DRAIN || step == crate::drain::REJOIN {
            if step == crate::drain::DRAIN
                && let Some(h) = failed(ctx.workflow)
            {
                return StepPlan::Skip(format!("not installed: a step failed on {h}"));
            }
            // The balancer trusts the new certificate too, from the first drain on.
            let pair = match self.pair(ctx, NEW, "the new certificate") {
                Ok(p) => p,
                Err(e) => return StepPlan::Fail(e),
            };
            let b = crate::drain::Balancer {
                also_trust_pem: pair.crt,
                ..self.balancer.clone()
            };
            if let Some(plan) = crate::drain::plan(&b, ctx) {
                return plan;
            }
        }
        match step {
            "backup" => JobSpec::rerunnable(
                operation::Kind::ReadGluuCertificates(ReadGluuCertificates {}),
                60_000,
                "read the node's certificate set (its current web certificate and key, kept \
                 sealed for a rollback)",
            )
            .keeping(&backup_key(me))
            .into(),
            "install" => self.install(ctx),
            "web-ready" => {
                if let Some(h) = failed(ctx.workflow) {
                    return StepPlan::Skip(format!("not installed: a step failed on {h}"));
                }
                if status(ctx.workflow, me, "install") == Some(StepStatus::Skipped) {
                    return StepPlan::Skip("not installed".into());
                }
                let Some(ip) = self.ip(ctx) else {
                    return StepPlan::Wait("waiting for the node's inventory (its address)".into());
                };
                readiness::web(
                    &ip,
                    self.https_port,
                    me == self.inputs.primary,
                    self.probe_within_ms,
                )
            }
            "rollback" => self.rollback(ctx),
            other => StepPlan::Fail(format!("unknown step {other:?}")),
        }
    }

    /// A node whose own health gate (or the load balancer's probe) failed still gets its
    /// previous certificate back.
    fn cleanup(&self, step: &str) -> bool {
        step == "rollback"
    }

    fn check(&self, ctx: &StepCtx<'_>, job: &crate::engine::JobView) -> Result<(), String> {
        match ctx.step().name.as_str() {
            "backup" if job.state == JobState::Succeeded && job.output.is_none() => {
                Err("the node returned nothing".into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
