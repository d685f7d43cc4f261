//! Who is calling. Every call except enrollment carries a client certificate issued by the
//! cluster CA (rustls verifies the chain and validity at the handshake); this module maps the
//! certificate's SHA-256 fingerprint to a principal the controller issued it to. A fingerprint
//! that is not in the table (a removed node, a purged operator) is refused even though the
//! chain is valid: that is how revocation takes effect at once. The certificate's expiry is
//! checked on every call too, so a connection opened before expiry cannot outlive it.
//!
//! Streams and waiting calls also watch [`Auth::revocations`]: when their caller's certificate
//! is revoked they end.

use crate::store::{Store, StoreError};
use clustermgr_proto::{OperatorRecord, PrincipalKind, PrincipalRecord};
use clustermgr_shared::pki::fingerprint;
use clustermgr_shared::util::now_unix;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::watch;
use tonic::service::Interceptor;
use tonic::{Request, Status};

pub use crate::roles::Role;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Node { id: String },
    Operator { name: String, role: Role },
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Node { id } => write!(f, "node:{id}"),
            Self::Operator { name, .. } => write!(f, "operator:{name}"),
        }
    }
}

/// Why a certificate stopped being accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Revoked,
    Expired,
}

/// The fingerprint of the certificate a call came with (set by the interceptor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFingerprint(pub String);

#[derive(Debug, Clone)]
struct Entry {
    principal: Principal,
    not_after_unix: u64,
}

/// The accepted certificates, by fingerprint, with an index of each node's fingerprints (so a
/// session start does not scan every certificate of the cluster).
#[derive(Default)]
struct Table {
    by_fp: HashMap<String, Entry>,
    node_fps: HashMap<String, HashSet<String>>,
}

impl Table {
    fn insert(&mut self, fp: String, e: Entry) {
        if let Some(old) = self.by_fp.get(&fp) {
            self.unindex(&fp, &old.principal.clone());
        }
        if let Principal::Node { id } = &e.principal {
            self.node_fps
                .entry(id.clone())
                .or_default()
                .insert(fp.clone());
        }
        self.by_fp.insert(fp, e);
    }

    fn unindex(&mut self, fp: &str, p: &Principal) {
        if let Principal::Node { id } = p
            && let Some(set) = self.node_fps.get_mut(id)
        {
            set.remove(fp);
            if set.is_empty() {
                self.node_fps.remove(id);
            }
        }
    }

    /// Removes the node's certificates except those in `keep`.
    fn drop_node(&mut self, node_id: &str, keep: &[&str]) {
        let fps: Vec<String> = self
            .node_fps
            .get(node_id)
            .map(|s| {
                s.iter()
                    .filter(|fp| !keep.contains(&fp.as_str()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for fp in fps {
            if let Some(e) = self.by_fp.remove(&fp) {
                self.unindex(&fp, &e.principal);
            }
        }
    }
}

/// Certificate fingerprint -> principal, mirrored from the store.
pub struct Auth {
    map: RwLock<Table>,
    /// Bumped on every revocation: streams re-check their caller when it changes.
    revoked: watch::Sender<u64>,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            map: RwLock::new(Table::default()),
            revoked: watch::channel(0).0,
        }
    }
}

impl Auth {
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        let operators: HashMap<String, OperatorRecord> = store
            .operators()?
            .into_iter()
            .map(|o| (o.name.clone(), o))
            .collect();
        let auth = Self::default();
        {
            let mut map = auth.write();
            for (fp, rec) in store.principals()? {
                if let Some(p) = principal_of(&rec, &operators) {
                    map.insert(
                        fp,
                        Entry {
                            principal: p,
                            not_after_unix: rec.not_after_unix,
                        },
                    );
                }
            }
        }
        Ok(auth)
    }

    // A poisoned lock still holds a consistent map (every change is one insert or retain).
    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }
    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, fp: String, p: Principal, not_after_unix: u64) {
        self.write().insert(
            fp,
            Entry {
                principal: p,
                not_after_unix,
            },
        );
    }

    /// Forgets every certificate of a node (revocation takes effect for the next call).
    pub fn remove_node(&self, node_id: &str) {
        self.write().drop_node(node_id, &[]);
        self.revoked.send_modify(|g| *g += 1);
    }

    /// Forgets every certificate of a node except those in `keep`.
    pub fn retain_node_certificates(&self, node_id: &str, keep: &[&str]) {
        self.write().drop_node(node_id, keep);
        self.revoked.send_modify(|g| *g += 1);
    }

    /// How many certificates of a node are accepted.
    pub fn node_certificates(&self, node_id: &str) -> usize {
        self.read().node_fps.get(node_id).map_or(0, HashSet::len)
    }

    /// Forgets every certificate of an operator; its open streams and waiting calls end.
    pub fn remove_operator(&self, op: &str) {
        self.write()
            .by_fp
            .retain(|_, e| !matches!(&e.principal, Principal::Operator { name, .. } if name == op));
        self.revoked.send_modify(|g| *g += 1);
    }

    pub fn lookup(&self, fp: &str) -> Option<Principal> {
        self.read().by_fp.get(fp).map(|e| e.principal.clone())
    }

    /// Whether a certificate is still accepted (known and not expired).
    pub fn is_valid(&self, fp: &str) -> bool {
        self.read()
            .by_fp
            .get(fp)
            .is_some_and(|e| now_unix() < e.not_after_unix)
    }

    /// Changes whenever a certificate is revoked.
    pub fn revocations(&self) -> watch::Receiver<u64> {
        self.revoked.subscribe()
    }

    /// Resolves when the certificate `fp` is revoked or expires (never for `None`), saying which.
    pub async fn until_revoked(self: Arc<Self>, fp: Option<CertFingerprint>) -> Ended {
        let Some(CertFingerprint(fp)) = fp else {
            return std::future::pending().await;
        };
        let mut rx = self.revocations();
        let not_after = self
            .read()
            .by_fp
            .get(&fp)
            .map(|e| e.not_after_unix)
            .unwrap_or(0);
        let expiry = std::time::Duration::from_secs(not_after.saturating_sub(now_unix()));
        let expired = tokio::time::sleep(expiry);
        tokio::pin!(expired);
        loop {
            if !self.read().by_fp.contains_key(&fp) {
                return Ended::Revoked;
            }
            if now_unix() >= not_after {
                return Ended::Expired;
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return std::future::pending().await },
                _ = &mut expired => {
                    // Let the clock pass not_after (the sleep has second granularity).
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    expired.set(tokio::time::sleep(std::time::Duration::from_secs(1)));
                }
            }
        }
    }
}

pub fn principal_of(
    rec: &PrincipalRecord,
    operators: &HashMap<String, OperatorRecord>,
) -> Option<Principal> {
    match rec.kind() {
        PrincipalKind::Node => Some(Principal::Node { id: rec.id.clone() }),
        PrincipalKind::Operator => operators.get(&rec.id).and_then(|o| {
            Role::from_record(o.role()).map(|role| Principal::Operator {
                name: rec.id.clone(),
                role,
            })
        }),
        PrincipalKind::Unspecified => None,
    }
}

/// Which principals a service accepts.
#[derive(Debug, Clone, Copy)]
pub enum Accept {
    Nodes,
    Operators,
    Any,
}

/// tonic interceptor: resolves the caller from its certificate and stores the [`Principal`]
/// (and the certificate's fingerprint) in the request extensions, or refuses the call.
#[derive(Clone)]
pub struct Authn {
    pub auth: Arc<Auth>,
    pub accept: Accept,
}

impl Interceptor for Authn {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let certs = req.peer_certs().ok_or_else(|| {
            Status::unauthenticated(
                "a client certificate issued by this cluster's CA is required for this call",
            )
        })?;
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("empty client certificate chain"))?;
        let fp = fingerprint(leaf);
        let entry = self.auth.read().by_fp.get(&fp).cloned().ok_or_else(|| {
            Status::unauthenticated(
                "this certificate has been revoked (its node or operator was removed) or was never issued by this controller",
            )
        })?;
        if now_unix() >= entry.not_after_unix {
            return Err(Status::unauthenticated(
                "this certificate has expired; renew or re-issue it",
            ));
        }
        let principal = entry.principal;
        match (self.accept, &principal) {
            (Accept::Any, _)
            | (Accept::Nodes, Principal::Node { .. })
            | (Accept::Operators, Principal::Operator { .. }) => {}
            (Accept::Nodes, _) => {
                return Err(Status::permission_denied("this API is for agents only"));
            }
            (Accept::Operators, _) => {
                return Err(Status::permission_denied(
                    "this API needs an operator credential, not a node certificate",
                ));
            }
        }
        req.extensions_mut().insert(principal);
        req.extensions_mut().insert(CertFingerprint(fp));
        Ok(req)
    }
}

/// The principal the interceptor attached.
pub fn caller<T>(req: &Request<T>) -> Result<Principal, Status> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no authenticated caller"))
}

/// The fingerprint of the caller's certificate.
pub fn caller_fingerprint<T>(req: &Request<T>) -> Option<CertFingerprint> {
    req.extensions().get::<CertFingerprint>().cloned()
}

/// Requires an operator principal with at least `min` role.
pub fn require(p: &Principal, min: Role, action: &str) -> Result<(), Status> {
    match p {
        Principal::Operator { role, .. } if *role >= min => Ok(()),
        Principal::Operator { role, name } => Err(Status::permission_denied(format!(
            "operator {name:?} has role {}; {action} needs role {} or higher",
            role.as_str(),
            min.as_str()
        ))),
        Principal::Node { .. } => Err(Status::permission_denied("nodes may not call this")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> Principal {
        Principal::Node { id: id.into() }
    }

    #[test]
    fn the_per_node_index_follows_every_change() {
        let a = Auth::default();
        a.insert("fp1".into(), node("n1"), u64::MAX);
        a.insert("fp2".into(), node("n1"), u64::MAX);
        a.insert("fp2".into(), node("n1"), u64::MAX); // the same certificate again
        a.insert("fp3".into(), node("n2"), u64::MAX);
        a.insert(
            "op".into(),
            Principal::Operator {
                name: "n1".into(),
                role: Role::Admin,
            },
            u64::MAX,
        );
        assert_eq!(a.node_certificates("n1"), 2);
        assert_eq!(a.node_certificates("n2"), 1);
        a.retain_node_certificates("n1", &["fp2"]);
        assert_eq!(a.node_certificates("n1"), 1);
        assert!(a.lookup("fp1").is_none() && a.lookup("fp2").is_some());
        assert!(
            a.lookup("op").is_some(),
            "an operator named like a node is not touched"
        );
        // A fingerprint re-assigned to another principal leaves the first one's index.
        a.insert("fp2".into(), node("n2"), u64::MAX);
        assert_eq!(a.node_certificates("n1"), 0);
        assert_eq!(a.node_certificates("n2"), 2);
        a.remove_node("n2");
        assert_eq!(a.node_certificates("n2"), 0);
        assert!(a.lookup("fp3").is_none() && a.lookup("fp2").is_none());
        a.remove_operator("n1");
        assert!(a.lookup("op").is_none());
    }
}
