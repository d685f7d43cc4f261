//! Who is calling. Every call except enrollment carries a client certificate issued by the
//! cluster CA (rustls verifies the chain and validity); this module maps the certificate's
//! SHA-256 fingerprint to a principal the controller issued it to. A fingerprint that is not in
//! the table (a removed node, a purged operator) is refused even though the chain is valid:
//! that is how revocation takes effect at once.

use crate::store::{OPERATORS, PRINCIPALS, Store, StoreError};
use clustermgr_proto::{OperatorRecord, PrincipalRecord};
use clustermgr_shared::pki::fingerprint;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use tonic::service::Interceptor;
use tonic::{Request, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Self::Viewer),
            "operator" => Some(Self::Operator),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

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

/// Certificate fingerprint -> principal, mirrored from the store.
#[derive(Default)]
pub struct Auth {
    map: RwLock<HashMap<String, Principal>>,
}

impl Auth {
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        let operators: HashMap<String, OperatorRecord> = store
            .all_msgs::<OperatorRecord>(OPERATORS)?
            .into_iter()
            .collect();
        let mut map = HashMap::new();
        for (fp, rec) in store.all_msgs::<PrincipalRecord>(PRINCIPALS)? {
            if let Some(p) = principal_of(&rec, &operators) {
                map.insert(fp, p);
            }
        }
        Ok(Self {
            map: RwLock::new(map),
        })
    }

    pub fn insert(&self, fp: String, p: Principal) {
        if let Ok(mut m) = self.map.write() {
            m.insert(fp, p);
        }
    }

    /// Forgets every certificate of a node (revocation takes effect for the next call).
    pub fn remove_node(&self, node_id: &str) {
        if let Ok(mut m) = self.map.write() {
            m.retain(|_, p| !matches!(p, Principal::Node { id } if id == node_id));
        }
    }

    /// Forgets every certificate of an operator.
    pub fn remove_operator(&self, op: &str) {
        if let Ok(mut m) = self.map.write() {
            m.retain(|_, p| !matches!(p, Principal::Operator { name, .. } if name == op));
        }
    }

    pub fn lookup(&self, fp: &str) -> Option<Principal> {
        self.map.read().ok().and_then(|m| m.get(fp).cloned())
    }
}

pub fn principal_of(
    rec: &PrincipalRecord,
    operators: &HashMap<String, OperatorRecord>,
) -> Option<Principal> {
    match rec.kind.as_str() {
        "node" => Some(Principal::Node { id: rec.id.clone() }),
        "operator" => operators.get(&rec.id).and_then(|o| {
            Role::parse(&o.role).map(|role| Principal::Operator {
                name: rec.id.clone(),
                role,
            })
        }),
        _ => None,
    }
}

/// Which principals a service accepts.
#[derive(Debug, Clone, Copy)]
pub enum Accept {
    Nodes,
    Operators,
    Any,
}

/// tonic interceptor: resolves the caller from its certificate and stores the [`Principal`] in
/// the request extensions, or refuses the call.
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
        let principal = self.auth.lookup(&fingerprint(leaf)).ok_or_else(|| {
            Status::unauthenticated(
                "this certificate has been revoked or was never issued by this controller",
            )
        })?;
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
