//! Operators: people and integrations holding an operator certificate with a role.

use crate::audit::Audit;
use crate::auth::{Principal, Role};
use crate::ctl::Ctl;
use crate::error::{Classify, Kind};
use crate::records;
use crate::store::{OperatorRemoval, StoreError};
use clustermgr_proto::{OperatorInfo, OperatorRecord};
use clustermgr_shared::pki::{CertInfo, Usage, validity_from_now};
use clustermgr_shared::util::now_ms;
use std::time::Duration;

/// The longest lifetime an operator certificate may be given.
pub const MAX_TTL: Duration = Duration::from_secs(2 * 365 * 86_400);

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("operator names are 1-64 characters of letters, digits, '-', '_' or '.'")]
    BadName,
    #[error("unknown role {0:?}; expected admin, operator or viewer")]
    UnknownRole(String),
    #[error("operator {0:?} already exists")]
    Exists(String),
    #[error("no operator {0:?}")]
    NotFound(String),
    #[error("refusing to remove the last admin")]
    LastAdmin,
    #[error("a certificate lifetime of {0} s is too long; the limit is {max} s (2 years)", max = MAX_TTL.as_secs())]
    TtlTooLong(u64),
    #[error("invalid certificate request: {0}")]
    BadCsr(String),
    #[error("cannot read the issued certificate: {0}")]
    Cert(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for OperatorError {
    fn kind(&self) -> Kind {
        match self {
            Self::BadName | Self::UnknownRole(_) | Self::TtlTooLong(_) | Self::BadCsr(_) => {
                Kind::InvalidArgument
            }
            Self::Exists(_) => Kind::AlreadyExists,
            Self::NotFound(_) => Kind::NotFound,
            Self::LastAdmin => Kind::FailedPrecondition,
            Self::Cert(_) | Self::Store(_) => Kind::Internal,
        }
    }
}

pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Issues an operator certificate from the caller's CSR and registers the operator (the
/// existence check is inside the transaction). Returns the certificate PEM.
pub async fn create(
    ctl: &Ctl,
    name: &str,
    role: &str,
    csr_der: &[u8],
    ttl_secs: u64,
    by: &str,
    audit: &Audit,
) -> Result<String, OperatorError> {
    if !valid_name(name) {
        return Err(OperatorError::BadName);
    }
    let role_v = Role::parse(role).ok_or_else(|| OperatorError::UnknownRole(role.into()))?;
    let ttl = match ttl_secs {
        0 => ctl.rt.operator_cert_ttl,
        s if Duration::from_secs(s) > MAX_TTL => return Err(OperatorError::TtlTooLong(s)),
        s => Duration::from_secs(s),
    };
    if ctl.store.operator(name)?.is_some() {
        return Err(OperatorError::Exists(name.into()));
    }
    let pem = ctl
        .ca
        .sign_csr(csr_der, name, Usage::Client, validity_from_now(ttl))
        .map_err(|e| OperatorError::BadCsr(e.to_string()))?;
    let info = CertInfo::from_pem(&pem).map_err(|e| OperatorError::Cert(e.to_string()))?;
    let rec = OperatorRecord {
        name: name.into(),
        role: role_v.to_record() as i32,
        created_unix_ms: now_ms(),
        created_by: by.into(),
    };
    let pr = crate::records::principal(clustermgr_proto::PrincipalKind::Operator, name, &info);
    let created = ctl
        .store
        .create_operator(
            rec,
            info.fingerprint.clone(),
            pr,
            Some(audit.ok(format!("role={}", role_v.as_str()))),
        )
        .await?;
    if !created {
        return Err(OperatorError::Exists(name.into()));
    }
    ctl.auth.insert(
        info.fingerprint,
        Principal::Operator {
            name: name.into(),
            role: role_v,
        },
        info.not_after_unix,
    );
    Ok(pem)
}

pub fn list(ctl: &Ctl) -> Result<Vec<OperatorInfo>, OperatorError> {
    Ok(ctl
        .store
        .operators()?
        .into_iter()
        .map(records::operator)
        .collect())
}

/// Removes an operator: every credential it holds is revoked at once, and its open streams and
/// waiting calls end.
pub async fn remove(ctl: &Ctl, name: &str, audit: &Audit) -> Result<OperatorInfo, OperatorError> {
    let a = audit.clone();
    let r = ctl
        .store
        .remove_operator(name, move |rec| {
            a.ok(format!(
                "role={}",
                Role::from_record(rec.role()).map_or("unknown", |r| r.as_str())
            ))
        })
        .await?;
    match r {
        OperatorRemoval::Removed(rec) => {
            ctl.auth.remove_operator(name);
            Ok(records::operator(rec))
        }
        OperatorRemoval::NotFound => Err(OperatorError::NotFound(name.into())),
        OperatorRemoval::LastAdmin => Err(OperatorError::LastAdmin),
    }
}

/// The first admin, registered by `clustermgr init` (offline, before the daemon runs).
pub async fn register_initial_admin(
    store: &crate::store::Store,
    info: &CertInfo,
) -> Result<(), OperatorError> {
    let rec = OperatorRecord {
        name: "admin".into(),
        role: Role::Admin.to_record() as i32,
        created_unix_ms: now_ms(),
        created_by: "init".into(),
    };
    let pr = crate::records::principal(clustermgr_proto::PrincipalKind::Operator, "admin", info);
    let audit = Audit::new("init", "operator.create", "admin").ok("role=admin");
    if !store
        .create_operator(rec, info.fingerprint.clone(), pr, Some(audit))
        .await?
    {
        return Err(OperatorError::Exists("admin".into()));
    }
    Ok(())
}
