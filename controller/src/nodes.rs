//! Nodes: enrollment, the names operators use for them, their inventory, approval, removal,
//! certificate renewal and the checks a session passes.
//!
//! The hostname given at enrollment is authoritative: node references resolve against it, and
//! the hostname an agent reports later is stored beside it (`reported_hostname`) for operators
//! to see, never in its place. Everything an agent reports is cleaned (no control characters or
//! escape sequences) and size-capped before it is stored.

use crate::audit::Audit;
use crate::auth::Principal;
use crate::ctl::Ctl;
use crate::error::{Classify, Kind};
use crate::records;
use crate::store::{Renewal, StoreError};
use crate::tokens::{self, TokenError};
use clustermgr_proto::{EnrollResponse, GluuInstallation, Inventory, Node, NodeRecord};
use clustermgr_shared::pki::{CertInfo, Usage, validity_from_now};
use clustermgr_shared::util::now_ms;
use std::time::Duration;
use tonic::Status;

/// The node's first address, as its inventory reports it.
pub fn address(n: &NodeRecord) -> Option<String> {
    n.inventory
        .as_ref()
        .and_then(|i| i.addresses.first().cloned())
}

/// Runs a check on a node as the controller (`who`, audited as `action`), waiting up to 30 s;
/// its output as `expect` takes it, or why there is none.
pub async fn check<T>(
    ctl: &std::sync::Arc<Ctl>,
    node: &NodeRecord,
    op: clustermgr_proto::Operation,
    (who, action): (&str, &'static str),
    expect: impl FnOnce(clustermgr_proto::operation_output::Kind) -> Option<T>,
) -> Result<T, String> {
    let spec = crate::jobs::JobSpec::new(op, Duration::from_secs(30), who.to_string());
    let audit = Audit::new("controller", action, node.id.clone());
    let f = match ctl.jobs.run(node, spec, &audit).await {
        Err(e) => return Err(e.to_string()),
        Ok(None) => return Err("no result".into()),
        Ok(Some(f)) => f,
    };
    match f.job.output.and_then(|o| o.kind).and_then(expect) {
        Some(t) => Ok(t),
        None if f.job.error.is_empty() => Err("no status".into()),
        None => Err(f.job.error),
    }
}

/// What operators see as a node's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    Online,
    Offline,
    Pending,
    /// Its last session was refused (its agent older than the controller's minimum).
    Refused,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Pending => "pending",
            Self::Refused => "refused",
        }
    }
}

/// Longest hostname (DNS limit).
pub const MAX_HOSTNAME: usize = 253;
/// Longest inventory string field kept; longer values are truncated.
pub const MAX_FIELD: usize = 256;
/// Most list entries kept (addresses, components).
pub const MAX_LIST: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("a node id or hostname is required")]
    NoReference,
    #[error("no node with id or hostname {0:?}")]
    NotFound(String),
    #[error("{count} nodes have hostname {name:?}; use the node id ({ids})")]
    Ambiguous {
        name: String,
        count: usize,
        ids: String,
    },
    #[error("{prefix:?} is the start of several node ids ({ids}); give more of the id")]
    AmbiguousId { prefix: String, ids: String },
    #[error("invalid hostname {0:?}: use 1-253 characters of letters, digits, '-', '_' and '.'")]
    BadHostname(String),
    #[error("invalid certificate request: {0}")]
    BadCsr(String),
    #[error("this node has been removed; re-join it")]
    Removed,
    #[error("certificate renewed too recently; retry in {0} s")]
    RenewTooSoon(u64),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("cannot read the issued certificate: {0}")]
    Cert(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for NodeError {
    fn kind(&self) -> Kind {
        match self {
            Self::NoReference | Self::BadHostname(_) | Self::BadCsr(_) => Kind::InvalidArgument,
            Self::NotFound(_) => Kind::NotFound,
            Self::Ambiguous { .. } => Kind::FailedPrecondition,
            Self::AmbiguousId { .. } => Kind::InvalidArgument,
            Self::Removed => Kind::PermissionDenied,
            Self::RenewTooSoon(_) => Kind::ResourceExhausted,
            Self::Token(t) => t.kind(),
            Self::Cert(_) | Self::Store(_) => Kind::Internal,
        }
    }
}

/// Checks the hostname a node enrolls with.
pub fn valid_hostname(s: &str) -> Result<String, NodeError> {
    let s = s.trim();
    let ok = !s.is_empty()
        && s.len() <= MAX_HOSTNAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(s.to_string())
    } else {
        Err(NodeError::BadHostname(clean(s, 64)))
    }
}

/// Printable, bounded text.
fn clean(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

fn clean_list(v: Vec<String>) -> Vec<String> {
    v.into_iter()
        .take(MAX_LIST)
        .map(|s| clean(&s, MAX_FIELD))
        .collect()
}

/// The reported addresses that are IP addresses, in canonical form; anything else is dropped
/// with a log line (they reach configurations and certificate SANs).
fn ip_addresses(v: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut refused = Vec::new();
    for a in v.into_iter().take(MAX_LIST) {
        match a.trim().parse::<std::net::IpAddr>() {
            Ok(ip) if !out.contains(&ip.to_string()) => out.push(ip.to_string()),
            Ok(_) => {}
            Err(_) => refused.push(clean(&a, 64)),
        }
    }
    if !refused.is_empty() {
        tracing::warn!(
            refused = ?refused,
            "reported addresses that are not IP addresses were ignored"
        );
    }
    out
}

/// An agent's inventory made safe to store and show: control characters dropped, strings
/// truncated, lists capped, addresses parsed as IP addresses.
pub fn sanitize_inventory(inv: Inventory) -> Inventory {
    let f = |s: String| clean(&s, MAX_FIELD);
    Inventory {
        hostname: clean(&inv.hostname, MAX_HOSTNAME),
        addresses: ip_addresses(inv.addresses),
        os_id: f(inv.os_id),
        os_version: f(inv.os_version),
        os_pretty_name: f(inv.os_pretty_name),
        kernel: f(inv.kernel),
        package_manager: f(inv.package_manager),
        agent_version: f(inv.agent_version),
        agent_package_version: f(inv.agent_package_version),
        arch: f(inv.arch),
        gluu: inv.gluu.map(|g| GluuInstallation {
            present: g.present,
            installed: g.installed,
            chroot: g.chroot,
            version: f(g.version),
            components: clean_list(g.components),
            flavor: g.flavor,
            machine_state: g.machine_state,
        }),
    }
}

/// A node record by id, by enrolled hostname when exactly one node has it, or by a prefix of
/// its id that no other node's id starts with.
pub fn find(ctl: &Ctl, r: &str) -> Result<NodeRecord, NodeError> {
    if r.is_empty() {
        return Err(NodeError::NoReference);
    }
    if let Some(n) = ctl.store.node(r)? {
        return Ok(n);
    }
    let all = ctl.store.nodes()?;
    let mut matches: Vec<&NodeRecord> = all.iter().filter(|n| n.hostname == r).collect();
    match matches.len() {
        // Not a hostname: a unique prefix of an id (as tables show them).
        0 => match crate::ids::unique_prefix(all.iter().map(|n| n.id.as_str()), r) {
            Ok(Some(id)) => all
                .into_iter()
                .find(|n| n.id == id)
                .ok_or(NodeError::NotFound(id)),
            Ok(None) => Err(NodeError::NotFound(clean(r, 256))),
            Err(ids) => Err(NodeError::AmbiguousId {
                prefix: clean(r, 64),
                ids: ids.join(", "),
            }),
        },
        1 => Ok(matches.remove(0).clone()),
        count => Err(NodeError::Ambiguous {
            name: r.into(),
            count,
            ids: matches
                .iter()
                .map(|n| n.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The API view of a node with its live fields (status, last seen, remote address).
pub fn view(ctl: &Ctl, rec: NodeRecord) -> Node {
    let mut n = records::node(rec);
    let session = ctl.registry.get(&n.id);
    if let Some(s) = &session {
        n.last_seen_unix_ms = s.last_seen();
        n.remote_address = s.remote.clone();
    }
    let status = match status_of(n.approved, session.is_some()) {
        NodeStatus::Offline if !n.refused.is_empty() => NodeStatus::Refused,
        s => s,
    };
    n.status = status.as_str().into();
    n
}

pub fn status_of(approved: bool, connected: bool) -> NodeStatus {
    match (approved, connected) {
        (false, _) => NodeStatus::Pending,
        (true, true) => NodeStatus::Online,
        (true, false) => NodeStatus::Offline,
    }
}

pub fn get(ctl: &Ctl, r: &str) -> Result<Node, NodeError> {
    Ok(view(ctl, find(ctl, r)?))
}

/// Every node, sorted by hostname then id.
pub fn list(ctl: &Ctl) -> Result<Vec<Node>, NodeError> {
    let mut nodes: Vec<Node> = ctl
        .store
        .nodes()?
        .into_iter()
        .map(|n| view(ctl, n))
        .collect();
    nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.id.cmp(&b.id)));
    Ok(nodes)
}

pub async fn approve(ctl: &Ctl, r: &str, audit: &Audit) -> Result<Node, NodeError> {
    let node = find(ctl, r)?;
    let row = audit.ok(format!("id={} hostname={}", node.id, node.hostname));
    let updated = ctl
        .store
        .update_node(&node.id, |n| n.approved = true, Some(row))
        .await?
        .ok_or_else(|| NodeError::NotFound(r.into()))?;
    Ok(view(ctl, updated))
}

/// Removes a node: its certificates are revoked at once, its record deleted, its session
/// dropped and its running jobs marked interrupted. Returns (id, whether a session was dropped).
pub async fn remove(ctl: &Ctl, r: &str, audit: &Audit) -> Result<(String, bool), NodeError> {
    let node = find(ctl, r)?;
    let id = node.id.clone();
    let gone = || {
        Status::permission_denied(
            "this node was removed from the cluster; re-join it with a new token",
        )
    };
    // Tell the agent why first, then revoke: from here on its certificates are refused.
    let session_before = ctl.registry.drop_session(&id, gone());
    ctl.auth.remove_node(&id);
    let row = audit.ok(format!(
        "id={id} hostname={} session_dropped={session_before}",
        node.hostname
    ));
    let removed = ctl.store.remove_node(&id, row).await?;
    if removed.is_none() {
        return Err(NodeError::NotFound(r.into()));
    }
    // A workflow with steps on it fails them (the others' go on).
    ctl.workflows.kick();
    // After the commit: a session registering now finds the node gone (see the re-check in
    // the session handler); one that registered meanwhile is dropped here.
    let dropped = ctl.registry.drop_session(&id, gone());
    ctl.jobs.node_removed(&id).await;
    Ok((id, dropped || session_before))
}

/// Enrollment: a join token plus a CSR buys a node certificate. The token is checked twice: once
/// before the (costly) signing, once inside the transaction that consumes it, so two concurrent
/// uses of a single-use token cannot both succeed.
pub async fn enroll(
    ctl: &Ctl,
    token: &str,
    csr_der: &[u8],
    hostname: &str,
    remote: &str,
) -> Result<EnrollResponse, NodeError> {
    let (token_id, secret) = tokens::split(token).ok_or(TokenError::Malformed)?;
    let hostname = valid_hostname(hostname)?;
    let rec = ctl.store.token(&token_id)?.ok_or(TokenError::Unknown)?;
    tokens::check(&rec, secret)?;
    let role = rec.role();

    let node_id = uuid::Uuid::new_v4().to_string();
    let cert_pem = ctl
        .ca
        .sign_csr(
            csr_der,
            &node_id,
            Usage::Client,
            validity_from_now(ctl.rt.node_cert_ttl),
        )
        .map_err(|e| NodeError::BadCsr(e.to_string()))?;
    let info = CertInfo::from_pem(&cert_pem).map_err(|e| NodeError::Cert(e.to_string()))?;
    let approved = !ctl.rt.require_approval;
    let node = NodeRecord {
        id: node_id.clone(),
        hostname: hostname.clone(),
        role: role as i32,
        approved,
        enrolled_unix_ms: now_ms(),
        certificate_not_after_unix: info.not_after_unix,
        ..Default::default()
    };
    let principal =
        crate::records::principal(clustermgr_proto::PrincipalKind::Node, &node_id, &info);
    let row = Audit::new(format!("token:{token_id}"), "node.enroll", node_id.clone()).ok(format!(
        "hostname={hostname} role={} from={}",
        role.label(),
        clean(remote, 64)
    ));
    let secret = clustermgr_shared::Secret::new(secret.to_string());
    ctl.store
        .enroll_node(
            token_id.clone(),
            move |rec| match rec {
                None => Err(TokenError::Unknown),
                Some(rec) => tokens::check(rec, secret.expose()),
            },
            node,
            info.fingerprint.clone(),
            principal,
            row,
        )
        .await??;
    ctl.auth.insert(
        info.fingerprint.clone(),
        Principal::Node {
            id: node_id.clone(),
        },
        info.not_after_unix,
    );
    tracing::info!(node = %node_id, role = %role.label(), token = %token_id, "node enrolled");
    Ok(EnrollResponse {
        node_id,
        certificate_pem: cert_pem,
        ca_pem: ctl.ca.cert_pem().to_string(),
        role: role.label().into(),
        pending_approval: !approved,
    })
}

/// Records an agent's hello: its inventory (cleaned) and the hostname it reports, beside the
/// enrolled one. `None` if the node was removed meanwhile.
pub async fn hello(ctl: &Ctl, id: &str, inv: Inventory) -> Result<Option<NodeRecord>, NodeError> {
    let inv = {
        let _node = tracing::warn_span!("inventory", node = %id).entered();
        sanitize_inventory(inv)
    };
    let now = now_ms();
    let rec = ctl
        .store
        .update_node(
            id,
            move |n| {
                n.reported_hostname = inv.hostname.clone();
                n.inventory = Some(inv.clone());
                n.last_seen_unix_ms = now;
                n.refused.clear();
            },
            None,
        )
        .await?;
    // A node that comes back (or reports a new inventory) may let a workflow go on.
    ctl.workflows.kick();
    Ok(rec)
}

/// The node a session belongs to, if it still exists.
pub fn check_exists(ctl: &Ctl, id: &str) -> Result<NodeRecord, NodeError> {
    ctl.store.node(id)?.ok_or(NodeError::Removed)
}

/// After a node connected with certificate `fp`: its older certificates are revoked (the agent
/// switched to the newest one).
pub async fn retire_old_certificates(ctl: &Ctl, id: &str, fp: &str) -> Result<(), NodeError> {
    if ctl.auth.node_certificates(id) > 1 {
        ctl.store.retire_node_certificates(id, fp).await?;
        ctl.auth.retain_node_certificates(id, &[fp]);
    }
    Ok(())
}

pub async fn seen(ctl: &Ctl, id: &str, last_seen_ms: u64) -> Result<(), NodeError> {
    ctl.store
        .update_node(id, move |n| n.last_seen_unix_ms = last_seen_ms, None)
        .await?;
    Ok(())
}

/// The shortest time between two renewals of one node. An agent renews at two thirds of its
/// certificate's life (counted from the backdated not-before, minus jitter), never sooner than
/// about a fifth of the lifetime after the previous renewal; an eighth leaves room for that.
pub fn min_renew_interval(cert_ttl: Duration) -> Duration {
    (cert_ttl / 8).min(Duration::from_secs(3600))
}

/// Certificate renewal from a CSR made with a fresh key. In one transaction: the node must still
/// exist and not have renewed within [`min_renew_interval`]; the new certificate is registered
/// and the node's other certificates, but the one this call came with, are revoked (that one
/// goes when the agent connects with the new one).
pub async fn renew(
    ctl: &Ctl,
    id: &str,
    csr_der: &[u8],
    caller_fp: Option<&str>,
) -> Result<String, NodeError> {
    let pem = ctl
        .ca
        .sign_csr(
            csr_der,
            id,
            Usage::Client,
            validity_from_now(ctl.rt.node_cert_ttl),
        )
        .map_err(|e| NodeError::BadCsr(e.to_string()))?;
    let info = CertInfo::from_pem(&pem).map_err(|e| NodeError::Cert(e.to_string()))?;
    let rec = crate::records::principal(clustermgr_proto::PrincipalKind::Node, id, &info);
    let min = min_renew_interval(ctl.rt.node_cert_ttl).as_millis() as u64;
    let r = ctl
        .store
        .renew_node(
            id,
            info.fingerprint.clone(),
            rec,
            caller_fp.map(str::to_string),
            now_ms(),
            min,
        )
        .await?;
    match r {
        Renewal::Renewed => {}
        Renewal::NodeGone => return Err(NodeError::Removed),
        Renewal::TooSoon { retry_in_secs } => return Err(NodeError::RenewTooSoon(retry_in_secs)),
    }
    let mut keep = vec![info.fingerprint.as_str()];
    keep.extend(caller_fp);
    ctl.auth.retain_node_certificates(id, &keep);
    ctl.auth.insert(
        info.fingerprint.clone(),
        Principal::Node { id: id.into() },
        info.not_after_unix,
    );
    tracing::info!(node = %id, "certificate renewed");
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventories_are_cleaned_and_capped() {
        let inv = Inventory {
            hostname: "evil\u{1b}[2J".into(),
            os_pretty_name: "x".repeat(9 * 1024 * 1024),
            addresses: (0..10_000).map(|i| format!("10.0.0.{i}")).collect(),
            kernel: "5.10\r\n\u{7}".into(),
            gluu: Some(GluuInstallation {
                components: vec!["\u{1b}]0;title\u{7}oxauth".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = sanitize_inventory(inv);
        assert_eq!(c.hostname, "evil[2J");
        assert_eq!(c.os_pretty_name.len(), MAX_FIELD);
        assert_eq!(c.addresses.len(), MAX_LIST);
        assert_eq!(c.kernel, "5.10");
        assert_eq!(c.gluu.unwrap().components[0], "]0;titleoxauth");
        // Only IP addresses, in canonical form, once each.
        let c = sanitize_inventory(Inventory {
            addresses: vec![
                "10.0.0.1".into(),
                "evil.example.org".into(),
                "10.0.0.1\n  - DNS:x".into(),
                "2001:DB8::0:1".into(),
                " 10.0.0.1 ".into(),
                "10.0.0.1/24".into(),
            ],
            ..Default::default()
        });
        assert_eq!(c.addresses, ["10.0.0.1", "2001:db8::1"]);
    }

    #[test]
    fn hostnames_are_validated() {
        assert_eq!(
            valid_hostname(" gluu1.example.org ").unwrap(),
            "gluu1.example.org"
        );
        assert!(valid_hostname("").is_err());
        assert!(valid_hostname("a b").is_err());
        assert!(valid_hostname("x\u{1b}[31m").is_err());
        assert!(valid_hostname(&"a".repeat(254)).is_err());
    }

    #[test]
    fn status_follows_approval_then_connection() {
        assert_eq!(status_of(false, true), NodeStatus::Pending);
        assert_eq!(status_of(true, true), NodeStatus::Online);
        assert_eq!(status_of(true, false), NodeStatus::Offline);
    }
}
