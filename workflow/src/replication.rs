//! `ldap-replication`: multi-provider replication of `o=gluu` and `o=site` between the cluster's
//! Gluu nodes (deploy, and removal of a node).
//!
//! Per node, in the cluster's order (the primary first):
//! `inspect` (the directory's kind and certificate, every node at once), `schema` (the custom
//! schema added with `schema add`, so a node that joins later knows the attribute types of the
//! entries replication brings it; nothing when it holds them already), `configure` (server id,
//! the peers, a CA bundle of the peers' directory certificates — the directory restarts), then
//! `directory-ready`, `servers` (gluu-ldap.properties, oxIDPAuthentication and Shibboleth list the
//! node first, then the others), `restart` (Gluu reads the lists) and `web-ready`. A node starts
//! `configure` only once the node before it is back (`web-ready`): restarts are rolling and the
//! cluster keeps serving. Then every node writes a marker (`mark`), reads every peer's marker
//! (`verify`: a write on any node is seen on all) and removes its own (`unmark`).
//!
//! A node being removed (`leaving`) is configured with no peers and lists only itself; the
//! others drop it from their peers and lists.
//!
//! From `schema` (which may restart the directory) to `web-ready` a node is out of the load
//! balancer's rotation: `drain` before, `rejoin` after ([`crate::drain`]); a leaving node stays
//! out.

use crate::engine::{Definition, JobSpec, JobView, StepCtx, StepPlan};
use crate::gluu_install::LDAPS_PORT;
use crate::inputs::KindInputs;
use crate::readiness;
use clustermgr_proto::{
    AdminConnector, ConfigureReplication, DirectoryInfo, GluuServices, ReplicationPeer,
    ReplicationProbe, SetLdapServers, gluu_services, operation, operation_output,
    replication_probe,
};
use std::collections::BTreeMap;

pub const KIND: &str = "ldap-replication";
pub const BASES: [&str; 2] = ["o=gluu", "o=site"];
/// The identity the nodes replicate as.
pub const REPLICATOR_DN: &str = "cn=replicator,o=site";

pub const STEPS: [&str; 12] = [
    "inspect",
    crate::drain::DRAIN,
    "schema",
    "configure",
    "directory-ready",
    "servers",
    "restart",
    "web-ready",
    crate::drain::REJOIN,
    "mark",
    "verify",
    "unmark",
];

/// One node of the replication set.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub node_id: String,
    pub server_id: u32,
}

/// The workflow's inputs (no secrets): the set after it (rolling order, the primary first),
/// the servers leaving it, and whether the leaving server leaves the cluster too.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Inputs {
    pub members: Vec<Member>,
    #[serde(default)]
    pub leaving: Vec<Member>,
    pub primary: String,
    #[serde(default)]
    pub remove_server: bool,
}

impl KindInputs for Inputs {
    const KIND: &'static str = KIND;

    fn read_legacy(m: &mut BTreeMap<String, String>) {
        for key in ["members", "leaving"] {
            crate::inputs::upgrade_entry(m, key, legacy_members);
        }
    }
}

/// Members as the previous release wrote them: `node:server_id,node:server_id`.
fn legacy_members(s: &str) -> serde_json::Value {
    let members: Vec<Member> = crate::inputs::legacy_comma_list(s)
        .iter()
        .filter_map(|s| {
            let (n, id) = s.rsplit_once(':')?;
            Some(Member {
                node_id: n.to_string(),
                server_id: id.parse().ok()?,
            })
        })
        .collect();
    serde_json::json!(members)
}

#[derive(Clone)]
pub struct Replication {
    /// The nodes that replicate after this workflow, in rolling order (the primary first).
    pub members: Vec<Member>,
    /// Nodes taken out of replication by this workflow.
    pub leaving: Vec<Member>,
    pub admin_password: String,
    pub replication_password: String,
    pub https_port: Option<u16>,
    pub primary: String,
    pub probe_within_ms: u32,
    /// Names the markers of this run (the workflow id).
    pub run_id: String,
    /// The custom schema every replicating directory must hold (`schema add`).
    pub schemas: Vec<clustermgr_proto::CustomSchema>,
    /// The load balancer a node is drained from while its directory and Gluu restart.
    pub balancer: crate::drain::Balancer,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication")
            .field("members", &self.members)
            .field("leaving", &self.leaving)
            .finish_non_exhaustive()
    }
}

impl Replication {
    /// Every node of the workflow in order: members, then those leaving.
    pub fn order(&self) -> Vec<&Member> {
        self.members.iter().chain(self.leaving.iter()).collect()
    }

    fn leaving(&self, node_id: &str) -> bool {
        self.leaving.iter().any(|m| m.node_id == node_id)
    }

    fn server_id(&self, node_id: &str) -> u32 {
        self.order()
            .into_iter()
            .find(|m| m.node_id == node_id)
            .map(|m| m.server_id)
            .unwrap_or(0)
    }

    fn marker(&self, node_id: &str) -> String {
        format!("clustermgr-{}-{}", self.run_id, self.server_id(node_id))
    }

    fn run(&self, kind: operation::Kind, summary: String, timeout_ms: u32) -> StepPlan {
        JobSpec::rerunnable(kind, timeout_ms, summary).into()
    }

    /// The directory certificate a node's `inspect` reported.
    fn certificate(&self, ctx: &StepCtx<'_>, node_id: &str) -> Option<String> {
        match ctx
            .job_of(node_id, "inspect")?
            .output
            .as_ref()?
            .kind
            .as_ref()?
        {
            operation_output::Kind::DirectoryInfo(d) => Some(d.certificate_pem.clone()),
            _ => None,
        }
    }

    /// OpenDJ: every node's administration connector with the certificate the node's
    /// `inspect` read from itself (OpenLDAP nodes report none).
    fn admin_connectors(&self, ctx: &StepCtx<'_>) -> Vec<AdminConnector> {
        self.order()
            .into_iter()
            .filter_map(|m| {
                let host = ctx.address(&m.node_id)?;
                match ctx
                    .job_of(&m.node_id, "inspect")?
                    .output
                    .as_ref()?
                    .kind
                    .as_ref()?
                {
                    operation_output::Kind::DirectoryInfo(d)
                        if !d.admin_certificate_der.is_empty() =>
                    {
                        Some(AdminConnector {
                            host,
                            certificate_der: d.admin_certificate_der.clone(),
                        })
                    }
                    _ => None,
                }
            })
            .collect()
    }

    fn probe(
        &self,
        ip: &str,
        action: replication_probe::Action,
        also: Vec<String>,
        me: &str,
    ) -> ReplicationProbe {
        ReplicationProbe {
            host: ip.to_string(),
            port: LDAPS_PORT,
            admin_password: self.admin_password.clone().into_bytes(),
            base: BASES[0].into(),
            marker: self.marker(me),
            action: action as i32,
            within_ms: self.probe_within_ms,
            also,
        }
    }
}

impl Definition for Replication {
    fn observed_nodes(&self, _wf: &clustermgr_proto::Workflow) -> Vec<String> {
        self.balancer.observed()
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn plan_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        let me = ctx.node.node_id.as_str();
        let Some(ip) = ctx.address(me) else {
            return StepPlan::Wait("waiting for the node's inventory (its address)".into());
        };
        let order = self.order();
        let pos = order.iter().position(|m| m.node_id == me).unwrap_or(0);
        let leaving = self.leaving(me);
        if leaving && ctx.step().name == crate::drain::REJOIN {
            return crate::drain::leaving_rejoin();
        }
        if let Some(plan) = crate::drain::plan(&self.balancer, ctx) {
            return plan;
        }
        // The peers this node replicates with after the workflow.
        let peers: Vec<&Member> = if leaving {
            Vec::new()
        } else {
            self.members.iter().filter(|m| m.node_id != me).collect()
        };
        let h = Here {
            me,
            ip: &ip,
            order,
            pos,
            leaving,
            peers,
        };
        match ctx.step().name.as_str() {
            "inspect" => self.run(
                operation::Kind::DirectoryInfo(DirectoryInfo::default()),
                "read the directory's kind and certificate".into(),
                60_000,
            ),
            "schema" => self.schema_plan(ctx, &h),
            "configure" => self.configure_plan(ctx, &h),
            "directory-ready" => {
                readiness::directory(&ip, &self.admin_password, self.probe_within_ms)
            }
            "servers" => self.servers_plan(ctx, &h),
            "restart" => self.run(
                operation::Kind::GluuServices(GluuServices {
                    action: gluu_services::Action::Restart as i32,
                    ..Default::default()
                }),
                "restart Gluu Server (it reads the directory list)".into(),
                15 * 60_000,
            ),
            "web-ready" => readiness::web(
                &ip,
                self.https_port,
                me == self.primary,
                self.probe_within_ms,
            ),
            "mark" | "verify" | "unmark" if leaving || self.members.len() < 2 => {
                StepPlan::Skip("no peer to verify with".into())
            }
            "mark" => self.run(
                operation::Kind::ReplicationProbe(self.probe(
                    &ip,
                    replication_probe::Action::Write,
                    Vec::new(),
                    me,
                )),
                format!("write the marker {}", self.marker(me)),
                60_000,
            ),
            "verify" => self.verify_plan(ctx, &h),
            "unmark" => self.unmark_plan(ctx, &h),
            other => StepPlan::Fail(format!("unknown step {other:?}")),
        }
    }

    fn check(&self, ctx: &StepCtx<'_>, job: &JobView) -> Result<(), String> {
        if ctx.step().name == "inspect" {
            match job.output.as_ref().and_then(|o| o.kind.as_ref()) {
                Some(operation_output::Kind::DirectoryInfo(d))
                    if d.certificate_pem.trim().is_empty() =>
                {
                    return Err("the directory serves no certificate".into());
                }
                Some(operation_output::Kind::DirectoryInfo(_)) => {}
                _ => return Err("the node did not describe its directory".into()),
            }
        }
        Ok(())
    }
}

/// Server ids for a replication set: the ones already given are kept; new nodes get the next
/// free ones (1-4095, OpenLDAP's range).
pub fn assign_server_ids(
    existing: &BTreeMap<String, u32>,
    nodes: &[String],
) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    let mut used: Vec<u32> = existing.values().copied().filter(|v| *v > 0).collect();
    for n in nodes {
        if let Some(id) = existing.get(n).filter(|v| **v > 0) {
            out.insert(n.clone(), *id);
        }
    }
    for n in nodes {
        if out.contains_key(n) {
            continue;
        }
        let mut id = 1;
        while used.contains(&id) {
            id += 1;
        }
        used.push(id);
        out.insert(n.clone(), id);
    }
    out
}

#[cfg(test)]
mod tests;

/// What every step of a node decides from: the node, its address, the rolling order and its
/// place in it, whether it leaves, and the peers it replicates with after the workflow.
struct Here<'a> {
    me: &'a str,
    ip: &'a str,
    order: Vec<&'a Member>,
    pos: usize,
    leaving: bool,
    peers: Vec<&'a Member>,
}

impl Replication {
    /// `schema`: the custom schemas the directory lacks, rolling (a node that lacks one
    /// restarts its directory).
    fn schema_plan(&self, ctx: &StepCtx<'_>, h: &Here<'_>) -> StepPlan {
        if h.leaving {
            return StepPlan::Skip("the node leaves replication".into());
        }
        if self.schemas.is_empty() {
            return StepPlan::Skip("no custom schema (clustermgr schema add)".into());
        }
        // Rolling: a node that lacks a schema restarts its directory.
        if h.pos > 0 && !ctx.done(&h.order[h.pos - 1].node_id, "schema") {
            return StepPlan::Wait(format!(
                "rolling: waiting for {} to hold the custom schema",
                ctx.hostname(&h.order[h.pos - 1].node_id)
            ));
        }
        let names: Vec<&str> = self.schemas.iter().map(|s| s.name.as_str()).collect();
        self.run(
            operation::Kind::ApplyLdapSchema(clustermgr_proto::ApplyLdapSchema {
                schemas: self.schemas.clone(),
                check_only: false,
                host: h.ip.to_string(),
                port: LDAPS_PORT,
                admin_password: self.admin_password.clone().into_bytes(),
                within_ms: self.probe_within_ms,
                only_missing: true,
            }),
            format!(
                "make the directory hold the custom schema {} before it replicates \
                 (only the ones it lacks are written; restarted only then)",
                names.join(", ")
            ),
            15 * 60_000,
        )
    }

    /// `configure`: replication with the peers (their certificates trusted), rolling.
    fn configure_plan(&self, ctx: &StepCtx<'_>, h: &Here<'_>) -> StepPlan {
        let ip = h.ip;
        for m in &h.order {
            if !ctx.done(&m.node_id, "inspect") {
                return StepPlan::Wait("waiting for every node's directory certificate".into());
            }
        }
        if h.pos > 0 && !ctx.done(&h.order[h.pos - 1].node_id, "web-ready") {
            let prev = ctx
                .observed
                .nodes
                .get(&h.order[h.pos - 1].node_id)
                .map(|n| n.hostname.clone())
                .unwrap_or_default();
            return StepPlan::Wait(format!("rolling: waiting for {prev} to be back"));
        }
        let mut peer_list = Vec::new();
        let mut bundle = String::new();
        for p in &h.peers {
            let Some(addr) = ctx.address(&p.node_id) else {
                return StepPlan::Wait("waiting for a peer's inventory".into());
            };
            match self.certificate(ctx, &p.node_id) {
                Some(c) if !c.trim().is_empty() => {
                    bundle.push_str(c.trim_end());
                    bundle.push('\n');
                }
                _ => {
                    return StepPlan::Fail(format!(
                        "{addr}: its directory reported no certificate"
                    ));
                }
            }
            peer_list.push(ReplicationPeer {
                host: addr,
                port: LDAPS_PORT,
                server_id: p.server_id,
            });
        }
        let primary = self
            .members
            .iter()
            .find(|m| m.node_id == self.primary)
            .and_then(|m| {
                ctx.address(&m.node_id).map(|a| ReplicationPeer {
                    host: a,
                    port: LDAPS_PORT,
                    server_id: m.server_id,
                })
            });
        let summary = if peer_list.is_empty() {
            format!("stop replicating on {ip} (server {})", self.server_id(h.me))
        } else {
            format!(
                "replicate {} on {ip} as server {} with {} (TLS verified), restart the directory",
                BASES.join(" and "),
                self.server_id(h.me),
                peer_list
                    .iter()
                    .map(|p| p.host.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        self.run(
            operation::Kind::ConfigureReplication(ConfigureReplication {
                host: h.ip.to_string(),
                port: LDAPS_PORT,
                server_id: self.server_id(h.me),
                peers: peer_list,
                bases: BASES.iter().map(|b| b.to_string()).collect(),
                replicator_dn: REPLICATOR_DN.into(),
                replicator_password: self.replication_password.clone().into_bytes(),
                admin_password: self.admin_password.clone().into_bytes(),
                ca_pem: bundle,
                primary,
                admin_connectors: self.admin_connectors(ctx),
                admin_port: 0,
            }),
            summary,
            15 * 60_000,
        )
    }

    /// `servers`: Gluu's list of directories, this node's first.
    fn servers_plan(&self, ctx: &StepCtx<'_>, h: &Here<'_>) -> StepPlan {
        let ip = h.ip;
        let mut servers = vec![format!("{ip}:{LDAPS_PORT}")];
        for p in &h.peers {
            if let Some(a) = ctx.address(&p.node_id) {
                servers.push(format!("{a}:{LDAPS_PORT}"));
            }
        }
        self.run(
            operation::Kind::SetLdapServers(SetLdapServers {
                servers: servers.clone(),
                host: h.ip.to_string(),
                port: LDAPS_PORT,
                admin_password: self.admin_password.clone().into_bytes(),
            }),
            format!("list the directories {}", servers.join(",")),
            5 * 60_000,
        )
    }

    /// `verify`: the peers' markers read here, once every peer wrote its own.
    fn verify_plan(&self, ctx: &StepCtx<'_>, h: &Here<'_>) -> StepPlan {
        for p in &h.peers {
            if !ctx.done(&p.node_id, "mark") {
                return StepPlan::Wait("waiting for the peers' markers".into());
            }
        }
        let markers: Vec<String> = h.peers.iter().map(|p| self.marker(&p.node_id)).collect();
        let mut probe = self.probe(h.ip, replication_probe::Action::Read, markers.clone(), h.me);
        // The first peer's marker is the main one; the rest come in `also`.
        probe.marker = markers.first().cloned().unwrap_or_default();
        probe.also = markers.iter().skip(1).cloned().collect();
        self.run(
            operation::Kind::ReplicationProbe(probe),
            format!("read the peers' markers {}", markers.join(", ")),
            self.probe_within_ms.saturating_add(30_000),
        )
    }

    /// `unmark`: this node's marker removed, once every peer saw the markers.
    fn unmark_plan(&self, ctx: &StepCtx<'_>, h: &Here<'_>) -> StepPlan {
        for p in &h.peers {
            if !ctx.done(&p.node_id, "verify") {
                return StepPlan::Wait("waiting for the peers to see the markers".into());
            }
        }
        self.run(
            operation::Kind::ReplicationProbe(self.probe(
                h.ip,
                replication_probe::Action::Remove,
                Vec::new(),
                h.me,
            )),
            format!("remove the marker {}", self.marker(h.me)),
            60_000,
        )
    }
}
