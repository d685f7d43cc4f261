//! `gluu-install`: Gluu Server on the primary, then on the others in parallel.
//!
//! Per node: `preflight` (the OS from the inventory: supported and of the primary's family, and
//! for an online install a release Gluu publishes packages for; then on the node: ports free,
//! disk space, names resolvable — every problem at once), `push` (offline: the package into the
//! node's cache, resumable), `package` (from the cache, or online from the repositories, pinned
//! to the cluster's version: `gluu-server=4.2.3~focal` from the suite of the node's distribution
//! on deb, `gluu-server-4.2.3` on rpm; see [`distro`]), `setup` (setup.py with a
//! setup.properties made here: from the cluster settings on the primary; from the primary's
//! `setup.properties.last` on the others, with the node's own address and `--no-data`), then
//! readiness probes of the directory and the web tier.
//! The primary then turns oxAuth's key regeneration off (`key-regeneration`; the cluster rotates
//! keys itself), and reads its `setup.properties.last` (`record-properties`, decrypting 4.2.3's
//! `.last.enc` on the node) and its certificate set (`record-certificates`) for the others. The
//! others wait for those, and after their setup install the primary's certificates
//! (`certificates`: files checked by SHA-256, keytool imports) and restart Gluu (`restart`).
//!
//! Idempotence: a node whose inventory says Gluu is installed skips `package` and `setup`; a node
//! an earlier install completed (every step succeeded) also skips every step that writes, so a
//! re-run on a working cluster only observes. `force` installs the package again and re-applies
//! what writes (setup itself never runs twice on an installed node).

use crate::engine::{Definition, JobSpec, JobView, StepCtx, StepPlan};
use crate::inputs::KindInputs;
use crate::readiness;
use clustermgr_proto::{
    CollectFacts, GluuCertificates, GluuServices, InstallGluuCertificates, InstallPackage,
    Operation, PackageRepository, Preflight, ReadGluuCertificates, ReadSetupProperties,
    ReceivePackage, RunGluuSetup, SetOxAuthConfig, gluu_services, install_package, operation,
    operation_output,
};
use distro::{DistroError, Family, Release};
use prost::Message as _;
use std::collections::{BTreeMap, BTreeSet};

pub(crate) use steps::kept_certificates;

pub mod components;
pub mod distro;
mod properties;
mod steps;

pub use clustermgr_proto::gluu::{parse_properties, render_properties};
pub use components::{Component, Components, ComponentsError};
pub use properties::{COPIED, RecordError, SetupProperties, same_components};

pub const KIND: &str = "gluu-install";
pub const DIRECTORY_ADMIN_DN: &str = "cn=directory manager";
/// Key of the primary's setup.properties.last in the workflow's kept outputs.
pub const PRIMARY_PROPERTIES: &str = "primary/setup.properties.last";
/// Key of the primary's certificate set (an encoded `GluuCertificates`).
pub const PRIMARY_CERTIFICATES: &str = "primary/certificates";
/// The workflow's inputs (no secrets), frozen when the install starts.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Inputs {
    pub primary: String,
    #[serde(default)]
    pub force: bool,
    /// What every node of this install gets (None: one started before components could be
    /// chosen, which installs the settings' components).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "components_text"
    )]
    pub components: Option<Components>,
    /// Offline: the repository's package pushed to the nodes (empty: online).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub package_sha256: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub package_summary: String,
    /// Online: the package and the version every node installs (no version: an install
    /// recorded before versions were pinned).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub package_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub package_version: String,
}

impl KindInputs for Inputs {
    const KIND: &'static str = KIND;
}

/// The components as their names, comma-separated (`oxauth,oxtrust,...`).
mod components_text {
    use super::Components;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(c: &Option<Components>, s: S) -> Result<S::Ok, S::Error> {
        match c {
            Some(c) => s.serialize_str(&c.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Components>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        Components::parse(&text).map(Some).map_err(D::Error::custom)
    }
}
/// The directory's LDAPS port.
pub const LDAPS_PORT: u32 = 1636;

/// Where the Gluu package comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PackageSource {
    /// Offline: a package the controller pushes into the nodes' caches.
    Pushed {
        sha256: String,
        summary: String,
        /// The push (file hash, size, chunk hashes).
        receive: ReceivePackage,
    },
    /// Online without a version: refused at preflight. An online install pins Gluu's version
    /// (a newer release in the repository would otherwise make a cluster of mixed versions);
    /// this is what an install started without the cluster's version asks for.
    Online {
        name: String,
        repository: Option<PackageRepository>,
    },
    /// Online, pinned to `version` (the cluster's Gluu version, e.g. `4.2.3`): each node installs
    /// `NAME=VERSION~SUITE` (deb, the suite of its distribution) or `NAME-VERSION` (rpm) from its
    /// repositories, after configuring `repository` (Gluu's, on deb with the node's suite) when
    /// given.
    Pinned {
        name: String,
        version: String,
        repository: Option<PackageRepository>,
    },
}

/// The organisation fields setup puts in the certificates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Org {
    pub name: String,
    pub country: String,
    pub city: String,
    pub state: String,
    pub admin_email: String,
}

/// What the install needs besides observed state. Built by the controller from the cluster
/// settings each time the workflow is advanced; never persisted in the workflow record.
#[derive(Clone)]
pub struct GluuInstall {
    pub primary: String,
    pub lb_hostname: String,
    pub org: Org,
    pub ldap_admin_password: String,
    pub package: PackageSource,
    pub force: bool,
    /// The web tier's port when not 443 (a sandbox host without root).
    pub https_port: Option<u16>,
    /// How long a readiness probe waits.
    pub probe_within_ms: u32,
    /// Nodes an earlier install completed.
    pub completed: BTreeSet<String>,
    /// Free space the preflight asks for under /opt.
    pub min_free_bytes: u64,
    /// Names every node must resolve (empty when the cluster manages /etc/hosts itself).
    pub resolve: Vec<String>,
    /// The components setup installs on every node (frozen when the workflow starts).
    pub components: Components,
    /// The load balancer a node Gluu already runs on is drained from while this install
    /// restarts it (a re-run with --force, or one an earlier run did not complete).
    pub balancer: crate::drain::Balancer,
}

impl std::fmt::Debug for GluuInstall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GluuInstall")
            .field("primary", &self.primary)
            .field("lb_hostname", &self.lb_hostname)
            .field("ldap_admin_password", &"***")
            .field("package", &self.package)
            .field("force", &self.force)
            .field("components", &self.components.to_string())
            .finish_non_exhaustive()
    }
}

impl GluuInstall {
    /// The steps of a node: from its package to its web tier's readiness the node is out of
    /// the load balancer's rotation when Gluu already runs there ([`crate::drain::around`]).
    pub fn steps(&self, node_id: &str) -> Vec<&'static str> {
        crate::drain::around(self.plain_steps(node_id), "package", "web-ready")
    }

    fn plain_steps(&self, node_id: &str) -> Vec<&'static str> {
        if node_id == self.primary {
            vec![
                "preflight",
                "push",
                "package",
                "setup",
                "directory-ready",
                "web-ready",
                "key-regeneration",
                "record-properties",
                "record-certificates",
                "inventory",
            ]
        } else {
            vec![
                "preflight",
                "push",
                "package",
                "setup",
                "certificates",
                "restart",
                "directory-ready",
                "web-ready",
                "inventory",
            ]
        }
    }

    fn job(&self, kind: operation::Kind, summary: String, timeout_ms: u32) -> StepPlan {
        JobSpec::rerunnable(kind, timeout_ms, summary).into()
    }
}

fn installed(ctx: &StepCtx<'_>) -> bool {
    ctx.node_view()
        .and_then(|v| v.inventory.as_ref())
        .and_then(|i| i.gluu.as_ref())
        .is_some_and(|g| g.installed)
}

/// The family of the node's distribution (its os-release `ID`).
fn family(ctx: &StepCtx<'_>, node_id: &str) -> Option<Family> {
    let inv = ctx.observed.nodes.get(node_id)?.inventory.as_ref()?;
    Family::of_os(&inv.os_id)
}

fn present(ctx: &StepCtx<'_>) -> bool {
    ctx.node_view()
        .and_then(|v| v.inventory.as_ref())
        .and_then(|i| i.gluu.as_ref())
        .is_some_and(|g| g.present)
}

/// The release of the node's distribution, for an online install.
fn release(ctx: &StepCtx<'_>) -> Result<&'static Release, DistroError> {
    let inv = ctx
        .node_view()
        .and_then(|v| v.inventory.as_ref())
        .ok_or(DistroError::Unknown)?;
    Release::of(&inv.os_id, &inv.os_version)
}

impl GluuInstall {
    /// A step that writes, on a node an earlier install completed: skipped unless forced.
    fn settled(&self, ctx: &StepCtx<'_>) -> bool {
        !self.force && self.completed.contains(&ctx.node.node_id)
    }

    /// The plan of a drain or rejoin step: only a node Gluu runs on already, which this run
    /// restarts (not one an earlier run completed, unless forced), leaves the rotation.
    fn drain_plan(&self, ctx: &StepCtx<'_>) -> Option<StepPlan> {
        let step = ctx.step().name.as_str();
        let me = ctx.node.node_id.as_str();
        let drain_skipped = crate::engine::step_of(ctx.workflow, me, crate::drain::DRAIN)
            .is_some_and(|s| s.status() == crate::engine::StepStatus::Skipped);
        if step == crate::drain::DRAIN && (!installed(ctx) || self.settled(ctx)) {
            return Some(StepPlan::Skip(
                "Gluu Server does not run on the node yet, or nothing restarts: nothing to drain"
                    .into(),
            ));
        }
        // Behind an external balancer a new node's health mark appears with its rejoin.
        if step == crate::drain::REJOIN && drain_skipped && !self.balancer.health_marks() {
            return Some(StepPlan::Skip("the node was not drained".into()));
        }
        crate::drain::plan(&self.balancer, ctx)
    }

    /// Whether the `package` step installs the package on this node.
    fn package_needed(&self, ctx: &StepCtx<'_>) -> bool {
        !self.settled(ctx) && (self.force || !(installed(ctx) || present(ctx)))
    }

    fn preflight(&self, ctx: &StepCtx<'_>, ip: &str, is_primary: bool) -> StepPlan {
        let me = ctx.node.node_id.as_str();
        let inv = ctx.node_view().and_then(|v| v.inventory.as_ref());
        let os = inv.map(|i| i.os_id.clone()).unwrap_or_default();
        let mut problems = Vec::new();
        let online = !matches!(self.package, PackageSource::Pushed { .. });
        match family(ctx, me) {
            // An online install names the releases it supports below.
            None if online => {}
            None => problems.push(format!(
                "OS {os:?} is not supported ({})",
                distro::OS_NAMES
            )),
            Some(f) if !is_primary && family(ctx, &self.primary) != Some(f) => {
                problems.push(format!(
                    "OS {os:?} differs from the primary's family: every node must run the primary's OS"
                ))
            }
            Some(_) => {}
        }
        match &self.package {
            PackageSource::Pushed { receive, .. } => {
                if let Some(f) = family(ctx, me)
                    && (f.extension() != receive.format
                        || inv.is_some_and(|i| {
                            !i.package_manager.is_empty()
                                && (f == Family::Deb) != (i.package_manager == "apt")
                        }))
                {
                    problems.push(format!(
                        "the package is a .{} and the node installs .{} packages",
                        receive.format,
                        f.extension()
                    ));
                }
            }
            PackageSource::Online { name, .. } if self.package_needed(ctx) => {
                problems.push(format!(
                    "an online install pins {name}'s version, and none was given (set the cluster's Gluu version)"
                ));
                if let Err(e) = release(ctx) {
                    problems.push(e.to_string());
                }
            }
            PackageSource::Pinned { .. } if self.package_needed(ctx) => {
                if let Err(e) = release(ctx) {
                    problems.push(e.to_string());
                }
            }
            PackageSource::Online { .. } | PackageSource::Pinned { .. } => {}
        }
        if !problems.is_empty() {
            return StepPlan::Fail(problems.join("; "));
        }
        if installed(ctx) || self.completed.contains(me) {
            // Gluu listens on the ports already: nothing left to check.
            return StepPlan::Skip(format!("OS {os}, address {ip}; Gluu Server is installed"));
        }
        let mut ports = vec![LDAPS_PORT, 4444, 8989];
        match self.https_port {
            Some(p) if p != 443 => ports.push(p as u32),
            _ => ports.extend([443, 80]),
        }
        ports.sort_unstable();
        ports.dedup();
        self.job(
            operation::Kind::Preflight(Preflight {
                address: ip.to_string(),
                ports: ports.clone(),
                disk_path: "/opt".into(),
                min_free_bytes: self.min_free_bytes,
                resolve: self.resolve.clone(),
            }),
            format!(
                "preflight on {ip}: ports {ports:?} free, {} MiB free under /opt{}",
                self.min_free_bytes >> 20,
                if self.resolve.is_empty() {
                    String::new()
                } else {
                    format!(", {} resolve", self.resolve.join(" and "))
                }
            ),
            60_000,
        )
    }
}

impl Definition for GluuInstall {
    fn observed_nodes(&self, _wf: &clustermgr_proto::Workflow) -> Vec<String> {
        self.balancer.observed()
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn plan_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        let me = ctx.node.node_id.as_str();
        let primary = self.primary.as_str();
        let is_primary = me == primary;
        // The others start once the primary is installed and has recorded what they need.
        if !is_primary && !ctx.done(primary, "record-certificates") {
            return StepPlan::Wait("waiting for the primary's install".into());
        }
        let Some(ip) = ctx.address(me) else {
            return StepPlan::Wait("waiting for the node's inventory (its address)".into());
        };
        if let Some(plan) = self.drain_plan(ctx) {
            return plan;
        }
        match ctx.step().name.as_str() {
            "preflight" => self.preflight(ctx, &ip, is_primary),
            "push" => self.push_step(ctx),
            "package" => self.package_step(ctx),
            "setup" => self.setup_step(ctx, &ip, is_primary),
            "certificates" => self.certificates_step(ctx),
            "restart" => {
                if self.settled(ctx) {
                    return StepPlan::Skip("installed by an earlier run".into());
                }
                self.job(
                    operation::Kind::GluuServices(GluuServices {
                        action: gluu_services::Action::Restart as i32,
                        ..Default::default()
                    }),
                    "restart Gluu Server with the primary's certificates".into(),
                    15 * 60_000,
                )
            }
            "directory-ready" => {
                readiness::directory(&ip, &self.ldap_admin_password, self.probe_within_ms)
            }
            "web-ready" => readiness::web(&ip, self.https_port, is_primary, self.probe_within_ms),
            "key-regeneration" => self.key_regeneration_step(ctx, &ip),
            "record-properties" => JobSpec::rerunnable(
                operation::Kind::ReadSetupProperties(ReadSetupProperties {
                    password: self.ldap_admin_password.clone().into_bytes(),
                }),
                60_000,
                "read setup.properties.last for the other nodes",
            )
            .keeping(PRIMARY_PROPERTIES)
            .into(),
            "record-certificates" => JobSpec::rerunnable(
                operation::Kind::ReadGluuCertificates(ReadGluuCertificates {}),
                60_000,
                "read the certificate set for the other nodes",
            )
            .keeping(PRIMARY_CERTIFICATES)
            .into(),
            "inventory" => self.job(
                operation::Kind::CollectFacts(CollectFacts {}),
                "refresh the node's inventory (Gluu version, components)".into(),
                60_000,
            ),
            other => StepPlan::Fail(format!("unknown step {other:?}")),
        }
    }

    fn check(&self, ctx: &StepCtx<'_>, job: &JobView) -> Result<(), String> {
        let kind = job.output.as_ref().and_then(|o| o.kind.as_ref());
        match ctx.step().name.as_str() {
            "record-properties" | "record-certificates" if job.output.is_none() => {
                Err("the node returned nothing".into())
            }
            "preflight" => match kind {
                Some(operation_output::Kind::Preflight(p)) if !p.problems.is_empty() => {
                    Err(p.problems.join("; "))
                }
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

/// Services control, for workflows that restart Gluu.
pub fn services(action: gluu_services::Action) -> Operation {
    Operation {
        kind: Some(operation::Kind::GluuServices(GluuServices {
            action: action as i32,
            ..Default::default()
        })),
    }
}

impl GluuInstall {
    /// `push`: the pushed package into the node's cache (an offline install that needs it).
    fn push_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        let PackageSource::Pushed {
            receive, summary, ..
        } = &self.package
        else {
            return StepPlan::Skip("online install: nothing to push".into());
        };
        if self.settled(ctx) || (installed(ctx) && !self.force) {
            return StepPlan::Skip("Gluu Server is installed".into());
        }
        self.job(
            operation::Kind::ReceivePackage(receive.clone()),
            format!(
                "push {summary} ({} bytes) into the node's cache",
                receive.size
            ),
            60 * 60_000,
        )
    }

    /// `package`: the Gluu Server package installed, from the cache or a pinned repository.
    fn package_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        if !self.package_needed(ctx) {
            return StepPlan::Skip(if present(ctx) && !installed(ctx) {
                "the Gluu Server package is present".into()
            } else {
                "Gluu Server is installed".into()
            });
        }
        let (source, summary, repository) = match &self.package {
            PackageSource::Pushed {
                sha256, summary, ..
            } => (
                install_package::Source::CachedSha256(sha256.clone()),
                format!("install {summary} (pushed)"),
                None,
            ),
            PackageSource::Online { name, .. } => {
                return StepPlan::Fail(format!(
                    "an online install pins {name}'s version, and none was given"
                ));
            }
            PackageSource::Pinned {
                name,
                version,
                repository,
            } => {
                let release = match release(ctx) {
                    Ok(r) => r,
                    Err(e) => return StepPlan::Fail(e.to_string()),
                };
                let pin = release.pin(name, version, repository.as_ref());
                let summary = match &pin.repository {
                    Some(r) if release.family == Family::Deb => format!(
                        "install {} from {} {} {} (signed; configured first)",
                        pin.shown, r.url, r.suite, r.component
                    ),
                    Some(r) => format!(
                        "install {} from {} (signed; configured first)",
                        pin.shown, r.url
                    ),
                    None => format!("install {} from the node's repositories", pin.shown),
                };
                (
                    install_package::Source::Name(pin.spec),
                    summary,
                    pin.repository,
                )
            }
        };
        self.job(
            operation::Kind::InstallPackage(InstallPackage {
                source: Some(source),
                repository,
                force: self.force,
            }),
            summary,
            30 * 60_000,
        )
    }

    /// `key-regeneration`: oxAuth stops regenerating its keys (the cluster rotates them).
    fn key_regeneration_step(&self, ctx: &StepCtx<'_>, ip: &str) -> StepPlan {
        if self.settled(ctx) {
            return StepPlan::Skip("installed by an earlier run".into());
        }
        self.job(
            operation::Kind::SetOxAuthConfig(SetOxAuthConfig {
                host: ip.to_string(),
                port: LDAPS_PORT,
                password: self.ldap_admin_password.clone().into_bytes(),
                values: BTreeMap::from([(
                    "keyRegenerationEnabled".to_string(),
                    "false".to_string(),
                )])
                .into_iter()
                .collect(),
            }),
            "set oxAuth keyRegenerationEnabled=false (the cluster rotates keys)".into(),
            5 * 60_000,
        )
    }
}

#[cfg(test)]
mod tests;
