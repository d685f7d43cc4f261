//! `lb-install` and `lb-remove`: nginx as the cluster's load balancer on the node enrolled with
//! role lb.
//!
//! `lb-install` — on the primary: `certificates` (the primary's certificate set, read and kept
//! sealed by the driver; the balancer needs the httpd certificate and key from it). On the lb
//! node: `inspect` (is nginx there, is it configured), `push` (offline: the nginx package from the
//! repository into the node's cache, when nginx is missing), `package` (when nginx is missing:
//! the pushed package, or online `nginx` from the node's repositories), `configure` (the
//! configuration from the settings and the installed Gluu servers, checked with `nginx -t` on the
//! node before it replaces the running one, then a reload), `probe` (an HTTPS health check
//! through the balancer). Every step is safe to run again; a re-run with nothing changed leaves
//! nginx as it is.
//!
//! `lb-remove` — on the lb node: `remove` (nginx stopped, the cluster's configuration and
//! certificate removed; the package stays).

use crate::engine::{Definition, JobSpec, JobView, StepCtx, StepPlan};
use crate::inputs::KindInputs;
use clustermgr_proto::{
    ConfigureNginx, GluuCertificates, InstallPackage, LbBackend, NginxStatus, OxauthBalancing,
    ProbeNginx, ReadGluuCertificates, ReceivePackage, RemoveNginx, install_package, operation,
    operation_output,
};

pub const INSTALL_KIND: &str = "lb-install";
pub const REMOVE_KIND: &str = "lb-remove";
/// The primary's steps in an install.
pub const PRIMARY_STEPS: [&str; 1] = ["certificates"];
/// The lb node's steps in an install.
pub const LB_STEPS: [&str; 5] = ["inspect", "push", "package", "configure", "probe"];
pub const REMOVE_STEPS: [&str; 1] = ["remove"];
/// Key of the primary's certificate set in the workflow's kept outputs.
pub const CERTIFICATES: &str = "primary/certificates";
/// The certificate and key the balancer serves (paths in the primary's certificate set).
pub const HTTPD_CRT: &str = "etc/certs/httpd.crt";
pub const HTTPD_KEY: &str = "etc/certs/httpd.key";
/// Paths whose clients must stay on one server (the configuration's sticky upstream).
pub const STICKY_PATHS: [&str; 4] = ["/identity", "/idp", "/passport", "/casa"];
/// What the probe asks through the balancer.
pub const HEALTH_PATH: &str = "/oxauth/restv1/health-check";

/// The workflow's inputs (no secret): which nodes, how /oxauth is balanced, the ports.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Inputs {
    pub lb: String,
    pub primary: String,
    #[serde(rename = "oxauth_balancing", with = "balancing")]
    pub balancing: OxauthBalancing,
    /// 443 when a record does not say (the previous release's decoder's default).
    #[serde(default = "https_default")]
    pub https_port: u32,
    /// 80 when a record does not say.
    #[serde(default = "http_default")]
    pub http_port: u32,
    /// The servers balanced when it was asked for (`address:port=name;...`): a change of the
    /// servers reconfigures the balancer when they differ.
    #[serde(default)]
    pub backends: String,
}

impl KindInputs for Inputs {
    const KIND: &'static str = INSTALL_KIND;
}

fn https_default() -> u32 {
    443
}

fn http_default() -> u32 {
    80
}

/// `lb-remove` has no inputs.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct RemoveInputs {}

impl KindInputs for RemoveInputs {
    const KIND: &'static str = REMOVE_KIND;
}

pub fn balancing_name(b: OxauthBalancing) -> &'static str {
    match b {
        OxauthBalancing::RoundRobin => "round-robin",
        _ => "sticky",
    }
}

/// The balancing as its name (`sticky`, `round-robin`) in the inputs.
mod balancing {
    use super::{OxauthBalancing, balancing_name};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(b: &OxauthBalancing, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(balancing_name(*b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OxauthBalancing, D::Error> {
        let name = String::deserialize(d)?;
        [OxauthBalancing::Sticky, OxauthBalancing::RoundRobin]
            .into_iter()
            .find(|b| balancing_name(*b) == name)
            .ok_or_else(|| D::Error::custom(format!("{name:?} is neither sticky nor round-robin")))
    }
}

/// The steps of `node_id` in a workflow of `kind` (None: not a load balancer kind).
pub fn steps(kind: &str, primary: &str, node_id: &str) -> Option<Vec<&'static str>> {
    match kind {
        INSTALL_KIND => Some(if primary == node_id {
            PRIMARY_STEPS.to_vec()
        } else {
            LB_STEPS.to_vec()
        }),
        REMOVE_KIND => Some(REMOVE_STEPS.to_vec()),
        _ => None,
    }
}

/// Where nginx comes from when the lb node lacks it.
#[derive(Debug, Clone, PartialEq)]
pub enum NginxPackage {
    /// Offline: a package of the repository, pushed first.
    Pushed {
        sha256: String,
        summary: String,
        receive: ReceivePackage,
    },
    /// Online: `nginx` from the node's repositories.
    Online,
    /// Offline with no nginx package in the repository: fails only if the node needs one.
    Missing(String),
}

/// What the install needs besides observed state; built by the controller from the settings,
/// the inputs and the installed servers each time the workflow advances.
#[derive(Debug, Clone)]
pub struct LbInstall {
    pub inputs: Inputs,
    /// The load balancer's hostname.
    pub server_name: String,
    /// The installed Gluu servers, at the moment of planning.
    pub backends: Vec<LbBackend>,
    pub package: NginxPackage,
    pub probe_within_ms: u32,
    /// The cluster's load balancer address setting: nginx listens on it when the lb node has
    /// it, else on the node's first address.
    pub lb_ip: String,
    /// Backends (names) a running workflow took out of rotation and has not put back.
    pub drained: Vec<String>,
}

fn job(kind: operation::Kind, summary: String, timeout_ms: u32) -> StepPlan {
    JobSpec::rerunnable(kind, timeout_ms, summary).into()
}

/// The address nginx listens on: `preferred` when the node has it, else its first one.
fn address(ctx: &StepCtx<'_>, node_id: &str, preferred: &str) -> Option<String> {
    let addrs = &ctx
        .observed
        .nodes
        .get(node_id)?
        .inventory
        .as_ref()?
        .addresses;
    addrs
        .iter()
        .find(|a| !preferred.is_empty() && a.as_str() == preferred)
        .or(addrs.first())
        .cloned()
}

/// In a plan, where the inspect's answer is not known yet.
fn if_missing(present: Option<bool>) -> &'static str {
    if present.is_none() {
        " (if nginx is missing)"
    } else {
        ""
    }
}

/// The httpd certificate and key from the primary's certificate set.
pub fn httpd_pair(set: &GluuCertificates) -> Result<(String, Vec<u8>), String> {
    let find = |p: &str| {
        set.files
            .iter()
            .find(|f| f.path.trim_start_matches('/') == p)
            .map(|f| f.content.clone())
            .ok_or_else(|| format!("the primary's certificate set has no {p}"))
    };
    let crt =
        String::from_utf8(find(HTTPD_CRT)?).map_err(|_| format!("{HTTPD_CRT} is not text"))?;
    Ok((crt, find(HTTPD_KEY)?))
}

impl LbInstall {
    /// nginx is on the lb node (what its inspect step found).
    fn nginx_present(&self, ctx: &StepCtx<'_>) -> Option<bool> {
        let j = ctx.job_of(&self.inputs.lb, "inspect")?;
        match j.output.as_ref()?.kind.as_ref()? {
            operation_output::Kind::NginxStatus(s) => Some(s.installed),
            _ => None,
        }
    }

    pub fn configure_op(&self, listen: &str, crt: String, key: Vec<u8>) -> ConfigureNginx {
        ConfigureNginx {
            drained: self.drained.clone(),
            server_name: self.server_name.clone(),
            backends: self.backends.clone(),
            oxauth_balancing: self.inputs.balancing as i32,
            listen_address: listen.to_string(),
            https_port: self.inputs.https_port,
            http_port: self.inputs.http_port,
            certificate_pem: crt,
            key_pem: key,
        }
    }

    fn lb_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        let present = self.nginx_present(ctx);
        match ctx.step().name.as_str() {
            "inspect" => job(
                operation::Kind::NginxStatus(NginxStatus {}),
                "inspect nginx on the node (installed, configured, running)".into(),
                2 * 60_000,
            ),
            "push" => self.push_plan(present),
            "package" => self.package_plan(present),
            "configure" => self.configure_plan(ctx),
            "probe" => job(
                operation::Kind::ProbeNginx(ProbeNginx {
                    path: HEALTH_PATH.into(),
                    within_ms: self.probe_within_ms,
                }),
                format!(
                    "wait for https://{}{HEALTH_PATH} through the balancer",
                    self.server_name
                ),
                self.probe_within_ms.saturating_add(30_000),
            ),
            other => StepPlan::Fail(format!("unknown step {other:?}")),
        }
    }

    /// The nginx package pushed into the node's cache (when it is missing and pushed).
    fn push_plan(&self, present: Option<bool>) -> StepPlan {
        match (&self.package, present) {
            (_, Some(true)) => StepPlan::Skip("nginx is installed".into()),
            (NginxPackage::Online, _) => StepPlan::Skip("online install: nothing to push".into()),
            (NginxPackage::Missing(why), Some(false)) => StepPlan::Fail(why.clone()),
            // A plan (the inspect's answer is not known): what happens if nginx is missing.
            (NginxPackage::Missing(why), None) => {
                StepPlan::Skip(format!("if nginx is on the node; else this fails: {why}"))
            }
            (
                NginxPackage::Pushed {
                    summary, receive, ..
                },
                _,
            ) => job(
                operation::Kind::ReceivePackage(receive.clone()),
                format!(
                    "push {summary} ({} bytes) into the node's cache{}",
                    receive.size,
                    if_missing(present)
                ),
                60 * 60_000,
            ),
        }
    }

    /// nginx installed from the node's repositories or the pushed package (when missing).
    fn package_plan(&self, present: Option<bool>) -> StepPlan {
        match (&self.package, present) {
            (_, Some(true)) => StepPlan::Skip("nginx is installed".into()),
            (NginxPackage::Missing(why), Some(false)) => StepPlan::Fail(why.clone()),
            (NginxPackage::Missing(_), None) => {
                StepPlan::Skip("if nginx is on the node (see push)".into())
            }
            (NginxPackage::Online, _) => job(
                operation::Kind::InstallPackage(InstallPackage {
                    source: Some(install_package::Source::Name("nginx".into())),
                    repository: None,
                    force: false,
                }),
                format!(
                    "install nginx from the node's repositories{}",
                    if_missing(present)
                ),
                30 * 60_000,
            ),
            (
                NginxPackage::Pushed {
                    sha256, summary, ..
                },
                _,
            ) => job(
                operation::Kind::InstallPackage(InstallPackage {
                    source: Some(install_package::Source::CachedSha256(sha256.clone())),
                    repository: None,
                    force: false,
                }),
                format!("install {summary} (pushed){}", if_missing(present)),
                30 * 60_000,
            ),
        }
    }

    /// nginx configured for the backends, with the cluster's web certificate.
    fn configure_plan(&self, ctx: &StepCtx<'_>) -> StepPlan {
        if self.backends.is_empty() {
            return StepPlan::Fail(
                "no installed Gluu server to balance (gluu install first)".into(),
            );
        }
        let Some(listen) = address(ctx, &self.inputs.lb, &self.lb_ip) else {
            return StepPlan::Wait("waiting for the node's inventory (its address)".into());
        };
        let (set, read) = match crate::gluu_install::kept_certificates(ctx, CERTIFICATES) {
            Ok(x) => x,
            Err(plan) => return *plan,
        };
        // Empty: a plan's placeholder (what the primary holds is not read yet).
        let (crt, key) = match httpd_pair(&set) {
            Ok(p) => p,
            Err(_) if !read => (String::new(), Vec::new()),
            Err(e) => return StepPlan::Fail(e),
        };
        let summary = format!(
            "configure nginx for {} on {listen}:{} (http {} redirects): /identity /idp \
             /passport /casa sticky, /oxauth /.well-known {}, backends {}; checked with \
             nginx -t before it replaces the running configuration",
            self.server_name,
            self.inputs.https_port,
            self.inputs.http_port,
            balancing_name(self.inputs.balancing),
            self.backends
                .iter()
                .map(|b| format!("{} {}:{}", b.name, b.address, b.port))
                .collect::<Vec<_>>()
                .join(", ")
        );
        job(
            operation::Kind::ConfigureNginx(self.configure_op(&listen, crt, key)),
            summary,
            5 * 60_000,
        )
    }
}

impl Definition for LbInstall {
    fn observed_nodes(&self, _wf: &clustermgr_proto::Workflow) -> Vec<String> {
        Vec::new()
    }

    fn kind(&self) -> &'static str {
        INSTALL_KIND
    }

    fn plan_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        if ctx.node.node_id == self.inputs.primary {
            return match ctx.step().name.as_str() {
                "certificates" => JobSpec::rerunnable(
                    operation::Kind::ReadGluuCertificates(ReadGluuCertificates {}),
                    60_000,
                    "read the cluster's web certificate (httpd) for the balancer",
                )
                .keeping(CERTIFICATES)
                .into(),
                other => StepPlan::Fail(format!("unknown step {other:?}")),
            };
        }
        self.lb_step(ctx)
    }

    fn check(&self, ctx: &StepCtx<'_>, job: &JobView) -> Result<(), String> {
        match ctx.step().name.as_str() {
            "certificates" if job.output.is_none() => Err("the node returned nothing".into()),
            _ => Ok(()),
        }
    }
}

/// `lb-remove`.
#[derive(Debug, Clone, Default)]
pub struct LbRemove;

impl Definition for LbRemove {
    fn observed_nodes(&self, _wf: &clustermgr_proto::Workflow) -> Vec<String> {
        Vec::new()
    }

    fn kind(&self) -> &'static str {
        REMOVE_KIND
    }

    fn plan_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        match ctx.step().name.as_str() {
            "remove" => job(
                operation::Kind::RemoveNginx(RemoveNginx {}),
                "stop nginx and remove the cluster's configuration and certificate".into(),
                2 * 60_000,
            ),
            other => StepPlan::Fail(format!("unknown step {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests;
