//! The install's package steps: `programs` (which of its programs the node lacks), then per
//! component `push-<component>` and `install-<component>`, only for a program the node lacks.
//!
//! Programs and packages are the node's distribution's: Debian and Ubuntu run `redis-server` and
//! `stunnel4` from the packages of those names; CentOS and RHEL run `redis-server` from `redis`
//! and `stunnel` from `stunnel` (EPEL), as Gluu's own cluster manager installed them; twemproxy is
//! `nutcracker` on both.

use super::{Cache, Packages, run};
use crate::engine::{StepCtx, StepPlan};
use crate::gluu_install::distro::Family;
use clustermgr_proto::{CacheStatus, InstallPackage, install_package, operation, operation_output};

/// What the cache installs on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Redis,
    Stunnel,
    Nutcracker,
}

impl Component {
    /// The suffix of its steps (`push-redis`, `install-stunnel`).
    pub fn step(self) -> &'static str {
        match self {
            Component::Redis => "redis",
            Component::Stunnel => "stunnel",
            Component::Nutcracker => "nutcracker",
        }
    }

    /// From a step's suffix; also the Debian package names earlier releases named the steps by
    /// (a workflow recorded before keeps working).
    fn from_step(s: &str) -> Option<Component> {
        match s {
            "redis" | "redis-server" => Some(Component::Redis),
            "stunnel" | "stunnel4" => Some(Component::Stunnel),
            "nutcracker" => Some(Component::Nutcracker),
            _ => None,
        }
    }

    /// The program the node runs, looked for by `programs`.
    pub fn program(self, family: Family) -> &'static str {
        match (self, family) {
            (Component::Redis, _) => "redis-server",
            (Component::Stunnel, Family::Deb) => "stunnel4",
            (Component::Stunnel, Family::Rpm) => "stunnel",
            (Component::Nutcracker, _) => "nutcracker",
        }
    }

    /// The package that brings the program.
    pub fn package(self, family: Family) -> &'static str {
        match (self, family) {
            (Component::Redis, Family::Deb) => "redis-server",
            (Component::Redis, Family::Rpm) => "redis",
            (Component::Stunnel, Family::Deb) => "stunnel4",
            (Component::Stunnel, Family::Rpm) => "stunnel",
            (Component::Nutcracker, _) => "nutcracker",
        }
    }
}

/// Every package name the cache may install, on either family (offline: what the controller's
/// repository is searched for).
pub const PACKAGE_NAMES: &[&str] = &["redis-server", "redis", "stunnel4", "stunnel", "nutcracker"];

impl Cache {
    /// The components a node needs.
    fn components(&self, server: bool) -> Vec<Component> {
        if server {
            vec![Component::Redis, Component::Stunnel]
        } else if self.sharded() {
            vec![Component::Stunnel, Component::Nutcracker]
        } else {
            vec![Component::Stunnel]
        }
    }

    /// `programs`, `push-<component>`, `install-<component>`; None for any other step.
    pub(super) fn package_step(
        &self,
        ctx: &StepCtx<'_>,
        me: &str,
        server: bool,
    ) -> Option<StepPlan> {
        let step = ctx.step().name.as_str();
        let inv = ctx.node_view().and_then(|v| v.inventory.as_ref());
        let known = inv.and_then(Family::of);
        // A node whose inventory names neither apt nor dnf/yum nor a known distribution is
        // looked at with Debian's names; a package is never installed on it (below).
        let family = known.unwrap_or(Family::Deb);
        if step == "programs" {
            let programs: Vec<String> = self
                .components(server)
                .into_iter()
                .map(|c| c.program(family).to_string())
                .collect();
            return Some(run(
                operation::Kind::CacheStatus(CacheStatus {
                    programs: programs.clone(),
                    ..Default::default()
                }),
                format!("look for {} on the node", programs.join(", ")),
                60_000,
            ));
        }
        let (push, suffix) = match (step.strip_prefix("push-"), step.strip_prefix("install-")) {
            (Some(p), _) => (true, p),
            (_, Some(p)) => (false, p),
            _ => return None,
        };
        let Some(component) = Component::from_step(suffix) else {
            return Some(StepPlan::Fail(format!("no package step {step:?}")));
        };
        if !self.components(server).contains(&component) {
            return Some(StepPlan::Skip(format!(
                "{} is not needed here (one Redis server: no twemproxy)",
                component.step()
            )));
        }
        let program = component.program(family);
        let missing = match ctx
            .job_of(me, "programs")
            .and_then(|j| j.output.as_ref())
            .and_then(|o| o.kind.as_ref())
        {
            Some(operation_output::Kind::CacheStatus(s)) => &s.missing_programs,
            _ => {
                return Some(StepPlan::Fail(
                    "the node did not report which programs it has".into(),
                ));
            }
        };
        if !missing.iter().any(|m| m == program) {
            return Some(StepPlan::Skip(format!("{program} is present on the node")));
        }
        let Some(family) = known else {
            return Some(StepPlan::Fail(format!(
                "{program} is missing and the node's package manager is unknown (its inventory names neither apt nor dnf/yum): install it on the node"
            )));
        };
        Some(self.package_job(component.package(family), program, family, push))
    }

    /// A missing program's `push-` or `install-` step, from where packages come from.
    fn package_job(&self, package: &str, program: &str, family: Family, push: bool) -> StepPlan {
        match (&self.packages, push) {
            (Packages::Online, true) => {
                StepPlan::Skip("online: installed from the node's repositories".into())
            }
            (Packages::Online, false) => run(
                operation::Kind::InstallPackage(InstallPackage {
                    source: Some(install_package::Source::Name(package.to_string())),
                    repository: None,
                    force: false,
                }),
                format!("install {package} from the node's repositories"),
                30 * 60_000,
            ),
            (Packages::Pushed(repo), _) => match repo.get(package) {
                None => StepPlan::Fail(format!(
                    "{program} is not on the node and the controller's repository has no {package} package (offline mode: clustermgr package add FILE)"
                )),
                Some(p)
                    if !p.receive.format.is_empty() && p.receive.format != family.extension() =>
                {
                    StepPlan::Fail(format!(
                        "the controller's {package} package is a .{} and the node installs .{} packages",
                        p.receive.format,
                        family.extension()
                    ))
                }
                Some(p) if push => run(
                    operation::Kind::ReceivePackage(p.receive.clone()),
                    format!(
                        "push {} ({} bytes) into the node's cache",
                        p.summary, p.receive.size
                    ),
                    60 * 60_000,
                ),
                Some(p) => run(
                    operation::Kind::InstallPackage(InstallPackage {
                        source: Some(install_package::Source::CachedSha256(p.sha256.clone())),
                        repository: None,
                        force: false,
                    }),
                    format!("install {} (pushed)", p.summary),
                    30 * 60_000,
                ),
            },
        }
    }
}
