//! `gluu-install`: Gluu Server on the primary, then on the others in parallel.
//!
//! Per node: `preflight` (from the node's inventory: OS supported and of the primary's family, an
//! address to install on), `package` (the pushed package from the node's cache, or online from
//! the repositories), `setup` (setup.py with a setup.properties made here: from the cluster
//! settings on the primary; from the primary's `setup.properties.last` on the others, with the
//! node's own address and `--no-data`), then readiness probes of the directory and the web
//! tier. The primary ends with `record-properties`, which reads its `setup.properties.last`
//! (decrypting Gluu 4.2.3's `.last.enc` on the node) for the others; they wait for it.
//!
//! A node whose inventory says Gluu is installed skips `package` and `setup` (re-running the
//! install changes nothing) unless `force` is set, which installs the package again.

use crate::engine::{Definition, JobSpec, JobView, StepCtx, StepPlan};
use clustermgr_proto::{
    GluuServices, HttpsGet, InstallPackage, LdapsBind, Operation, PackageRepository, Probe,
    ReadSetupProperties, RunGluuSetup, install_package, operation, probe,
};

pub const KIND: &str = "gluu-install";
pub const DIRECTORY_ADMIN_DN: &str = "cn=directory manager";
/// Key of the primary's setup.properties.last in the workflow's kept outputs.
pub const PRIMARY_PROPERTIES: &str = "primary/setup.properties.last";

/// Keys of the primary's `setup.properties.last` that are the node's own and never copied.
const NODE_OWN_KEYS: &[&str] = &[
    "ip",
    "ldap_hostname",
    "listen_all_interfaces",
    "loadData",
    "hostname",
];

/// Operating system families a node may run (the `ID`/`ID_LIKE` of os-release).
const FAMILIES: &[(&str, &str)] = &[
    ("debian", "deb"),
    ("ubuntu", "deb"),
    ("rhel", "rpm"),
    ("centos", "rpm"),
    ("rocky", "rpm"),
    ("almalinux", "rpm"),
    ("ol", "rpm"),
    ("fedora", "rpm"),
];

/// Where the Gluu package comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PackageSource {
    /// Offline: a package pushed into the nodes' caches, by SHA-256.
    Pushed { sha256: String, summary: String },
    /// Online: by name from the nodes' repositories (after configuring this one, if given).
    Online {
        name: String,
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
}

impl std::fmt::Debug for GluuInstall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GluuInstall")
            .field("primary", &self.primary)
            .field("lb_hostname", &self.lb_hostname)
            .field("ldap_admin_password", &"***")
            .field("package", &self.package)
            .field("force", &self.force)
            .finish_non_exhaustive()
    }
}

impl GluuInstall {
    /// The steps of a node.
    pub fn steps(&self, node_id: &str) -> Vec<&'static str> {
        if node_id == self.primary {
            vec![
                "preflight",
                "package",
                "setup",
                "directory-ready",
                "web-ready",
                "record-properties",
            ]
        } else {
            vec![
                "preflight",
                "package",
                "setup",
                "directory-ready",
                "web-ready",
            ]
        }
    }

    fn job(&self, kind: operation::Kind, summary: String, timeout_ms: u32) -> StepPlan {
        StepPlan::Run(JobSpec {
            operation: Operation { kind: Some(kind) },
            timeout_ms,
            summary,
            rerunnable: true,
            keep_output_as: None,
        })
    }

    fn web_url(&self, addr: &str, path: &str) -> String {
        let host = if addr.contains(':') {
            format!("[{addr}]")
        } else {
            addr.to_string()
        };
        match self.https_port {
            Some(p) if p != 443 => format!("https://{host}:{p}{path}"),
            _ => format!("https://{host}{path}"),
        }
    }

    /// setup.properties for the primary, from the cluster settings (the keys the reference
    /// lists; both spellings of the directory and web-server switches, since 4.2.3 reads
    /// `installLdap` and `installHttpd`).
    pub fn primary_properties(&self, ip: &str) -> String {
        let mut kv: Vec<(&str, String)> = vec![
            ("hostname", self.lb_hostname.clone()),
            ("ip", ip.to_string()),
            ("ldapPass", self.ldap_admin_password.clone()),
            ("orgName", self.org.name.clone()),
            ("countryCode", self.org.country.clone()),
            ("city", self.org.city.clone()),
            ("state", self.org.state.clone()),
            ("admin_email", self.org.admin_email.clone()),
            ("installOxAuth", "True".into()),
            ("installOxTrust", "True".into()),
            ("installLDAP", "True".into()),
            ("installLdap", "True".into()),
            ("installHTTPD", "True".into()),
            ("installHttpd", "True".into()),
            ("installJce", "True".into()),
            ("installSaml", "False".into()),
            ("installOxAuthRP", "False".into()),
            ("installPassport", "False".into()),
            ("installOxd", "False".into()),
            ("installCasa", "False".into()),
            ("ldap_type", "opendj".into()),
            ("opendj_type", "wrends".into()),
            ("application_max_ram", "3072".into()),
        ];
        if let Some(p) = self.https_port {
            kv.push(("https_port", p.to_string()));
        }
        render_properties(kv.iter().map(|(k, v)| (*k, v.as_str())))
    }

    /// setup.properties for another node: the primary's `.last` without the primary's own
    /// keys, with this node's address and the load balancer's hostname.
    pub fn secondary_properties(&self, primary_last: &str, ip: &str) -> String {
        let mut kv: Vec<(String, String)> = parse_properties(primary_last)
            .into_iter()
            .filter(|(k, _)| !NODE_OWN_KEYS.contains(&k.as_str()))
            .collect();
        kv.push(("hostname".into(), self.lb_hostname.clone()));
        kv.push(("ip".into(), ip.to_string()));
        render_properties(kv.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// The node's address to install on: the first address its inventory reports.
fn address(ctx: &StepCtx<'_>, node_id: &str) -> Option<String> {
    ctx.observed
        .nodes
        .get(node_id)?
        .inventory
        .as_ref()?
        .addresses
        .first()
        .cloned()
}

fn installed(ctx: &StepCtx<'_>) -> bool {
    ctx.node_view()
        .and_then(|v| v.inventory.as_ref())
        .and_then(|i| i.gluu.as_ref())
        .is_some_and(|g| g.installed)
}

fn family(ctx: &StepCtx<'_>, node_id: &str) -> Option<&'static str> {
    let inv = ctx.observed.nodes.get(node_id)?.inventory.as_ref()?;
    FAMILIES
        .iter()
        .find(|(id, _)| *id == inv.os_id)
        .map(|(_, f)| *f)
}

impl Definition for GluuInstall {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn plan_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        let me = ctx.node.node_id.as_str();
        let primary = self.primary.as_str();
        let is_primary = me == primary;
        // The others start once the primary is installed and has recorded its properties.
        if !is_primary && !ctx.done(primary, "record-properties") {
            return StepPlan::Wait("waiting for the primary's install".into());
        }
        let Some(ip) = address(ctx, me) else {
            return StepPlan::Wait("waiting for the node's inventory (its address)".into());
        };
        match ctx.step().name.as_str() {
            "preflight" => {
                let inv = ctx.node_view().and_then(|v| v.inventory.as_ref());
                let os = inv.map(|i| i.os_id.clone()).unwrap_or_default();
                let mut problems = Vec::new();
                match family(ctx, me) {
                    None => problems.push(format!("OS {os:?} is not supported (Debian, Ubuntu, RHEL, CentOS, Rocky, AlmaLinux)")),
                    Some(f) if !is_primary && family(ctx, primary) != Some(f) => problems.push(
                        format!("OS {os:?} differs from the primary's family: every node must run the primary's OS"),
                    ),
                    Some(_) => {}
                }
                if let PackageSource::Pushed { .. } = &self.package
                    && let Some(f) = family(ctx, me)
                    && inv.is_some_and(|i| {
                        !i.package_manager.is_empty()
                            && (f == "deb") != (i.package_manager == "apt")
                    })
                {
                    problems.push("the node's package manager does not match its OS".into());
                }
                if problems.is_empty() {
                    StepPlan::Skip(format!("OS {os}, address {ip}"))
                } else {
                    StepPlan::Fail(problems.join("; "))
                }
            }
            "package" => {
                if installed(ctx) && !self.force {
                    return StepPlan::Skip("Gluu Server is installed".into());
                }
                let present = ctx
                    .node_view()
                    .and_then(|v| v.inventory.as_ref())
                    .and_then(|i| i.gluu.as_ref())
                    .is_some_and(|g| g.present);
                if present && !self.force {
                    return StepPlan::Skip("the Gluu Server package is present".into());
                }
                let (source, summary, repository) = match &self.package {
                    PackageSource::Pushed { sha256, summary } => (
                        install_package::Source::CachedSha256(sha256.clone()),
                        format!("install {summary} (pushed)"),
                        None,
                    ),
                    PackageSource::Online { name, repository } => (
                        install_package::Source::Name(name.clone()),
                        format!("install {name} from the repositories"),
                        repository.clone(),
                    ),
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
            "setup" => {
                if installed(ctx) {
                    return StepPlan::Skip("setup has run on this node".into());
                }
                let props = if is_primary {
                    self.primary_properties(&ip)
                } else {
                    let Some(last) = ctx.observed.kept.get(PRIMARY_PROPERTIES) else {
                        return StepPlan::Wait(
                            "waiting for the primary's setup.properties.last".into(),
                        );
                    };
                    self.secondary_properties(&String::from_utf8_lossy(last), &ip)
                };
                self.job(
                    operation::Kind::RunGluuSetup(RunGluuSetup {
                        properties: props.into_bytes(),
                        no_data: !is_primary,
                    }),
                    format!(
                        "run setup.py for {} on {ip}{}",
                        self.lb_hostname,
                        if is_primary { "" } else { " --no-data" }
                    ),
                    60 * 60_000,
                )
            }
            "directory-ready" => self.job(
                operation::Kind::Probe(Probe {
                    target: Some(probe::Target::Ldaps(LdapsBind {
                        host: ip.clone(),
                        port: 1636,
                        bind_dn: DIRECTORY_ADMIN_DN.into(),
                        password: self.ldap_admin_password.clone().into_bytes(),
                        ca_pem: String::new(),
                    })),
                    within_ms: self.probe_within_ms,
                }),
                format!("wait for the directory: LDAPS bind to {ip}:1636"),
                self.probe_within_ms.saturating_add(30_000),
            ),
            "web-ready" => {
                // A --no-data node's oxAuth has no configuration until replication brings it:
                // there the web tier's liveness is probed, on the primary oxAuth's health.
                let path = if is_primary {
                    "/oxauth/restv1/health-check"
                } else {
                    "/identity/restv1/health-check"
                };
                let url = self.web_url(&ip, path);
                self.job(
                    operation::Kind::Probe(Probe {
                        target: Some(probe::Target::Https(HttpsGet {
                            url: url.clone(),
                            ca_pem: String::new(),
                        })),
                        within_ms: self.probe_within_ms,
                    }),
                    format!("wait for {url}"),
                    self.probe_within_ms.saturating_add(30_000),
                )
            }
            "record-properties" => StepPlan::Run(JobSpec {
                operation: Operation {
                    kind: Some(operation::Kind::ReadSetupProperties(ReadSetupProperties {
                        password: self.ldap_admin_password.clone().into_bytes(),
                    })),
                },
                timeout_ms: 60_000,
                summary: "read setup.properties.last for the other nodes".into(),
                rerunnable: true,
                keep_output_as: Some(PRIMARY_PROPERTIES.into()),
            }),
            other => StepPlan::Fail(format!("unknown step {other:?}")),
        }
    }

    fn check(&self, ctx: &StepCtx<'_>, job: &JobView) -> Result<(), String> {
        if ctx.step().name == "record-properties" && job.output.is_none() {
            return Err("the node returned no setup.properties.last".into());
        }
        Ok(())
    }
}

/// Services control, for workflows that restart Gluu.
pub fn services(action: clustermgr_proto::gluu_services::Action) -> Operation {
    Operation {
        kind: Some(operation::Kind::GluuServices(GluuServices {
            action: action as i32,
        })),
    }
}

/// `key=value` lines with Java properties escaping (what setup.py reads back).
pub fn render_properties<'a>(kv: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in kv {
        out.push_str(&escape(k, true));
        out.push('=');
        out.push_str(&escape(v, false));
        out.push('\n');
    }
    out
}

fn escape(s: &str, key: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '=' | ':' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            ' ' if key || i == 0 => out.push_str("\\ "),
            c => out.push(c),
        }
    }
    out
}

/// Parses Java `.properties` text (comments, `=`/`:` separators, backslash escapes; no line
/// continuations, which setup never writes).
pub fn parse_properties(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') || l.starts_with('!') {
            continue;
        }
        let mut key = String::new();
        let mut chars = l.chars();
        let mut escaped = false;
        let mut rest = String::new();
        for c in chars.by_ref() {
            if escaped {
                key.push(unescape(c));
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '=' || c == ':' || c.is_whitespace() {
                break;
            } else {
                key.push(c);
            }
        }
        rest.extend(chars);
        let rest = rest.trim_start();
        let rest = rest
            .strip_prefix('=')
            .or_else(|| rest.strip_prefix(':'))
            .unwrap_or(rest)
            .trim_start();
        let mut value = String::new();
        let mut escaped = false;
        for c in rest.chars() {
            if escaped {
                value.push(unescape(c));
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else {
                value.push(c);
            }
        }
        out.push((key, value));
    }
    out
}

fn unescape(c: char) -> char {
    match c {
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        c => c,
    }
}

#[cfg(test)]
mod tests;
