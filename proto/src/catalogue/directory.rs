//! Summaries of the directory's operations: replication and schema (never a password).

use crate::v1::{ApplyLdapSchema, ConfigureReplication, ReplicationProbe, VerifyLdapSchema};

pub(super) fn configure_replication(c: &ConfigureReplication) -> String {
    format!(
        "replicate {} as server {} with {}",
        c.bases.join(", "),
        c.server_id,
        if c.peers.is_empty() {
            "no peer".to_string()
        } else {
            c.peers
                .iter()
                .map(|p| format!("{}:{}", p.host, p.port))
                .collect::<Vec<_>>()
                .join(", ")
        }
    )
}

pub(super) fn replication_probe(p: &ReplicationProbe) -> String {
    use crate::v1::replication_probe::Action;
    format!(
        "{} marker {} in {}",
        match p.action() {
            Action::Write => "write",
            Action::Read => "wait for",
            Action::Remove => "remove",
            Action::Unspecified => "probe",
        },
        p.marker,
        p.base
    )
}

/// The schemas' names and sizes (never their elements).
pub(super) fn apply_schema(a: &ApplyLdapSchema) -> String {
    format!(
        "{} schema {} in the directory",
        if a.check_only { "check" } else { "install" },
        a.schemas
            .iter()
            .map(|s| format!("{:?} ({} elements)", s.name, s.elements.len()))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

pub(super) fn verify_schema(v: &VerifyLdapSchema) -> String {
    format!(
        "verify schema {:?} in the directory",
        v.schema.as_ref().map(|s| s.name.as_str()).unwrap_or("")
    )
}
