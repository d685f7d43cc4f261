//! The one place where stored records (store.proto) become API messages (operator.proto). A
//! field added to a record for the controller's own use stays out of the API unless it is
//! mapped here.

use clustermgr_proto::{Job, JobRecord, Node, NodeRecord, OperatorInfo, OperatorRecord};

/// The API view of a node record; live fields (status, remote address) are filled by `nodes`.
pub fn node(n: NodeRecord) -> Node {
    let role = n.role().label().to_string();
    Node {
        id: n.id,
        hostname: n.hostname,
        role,
        status: String::new(),
        approved: n.approved,
        inventory: n.inventory,
        enrolled_unix_ms: n.enrolled_unix_ms,
        last_seen_unix_ms: n.last_seen_unix_ms,
        certificate_not_after_unix: n.certificate_not_after_unix,
        remote_address: String::new(),
        reported_hostname: n.reported_hostname,
        refused: n.refused,
    }
}

pub fn job(j: JobRecord) -> Job {
    let state = j.state().label().to_string();
    Job {
        id: j.id,
        node_id: j.node_id,
        node_hostname: j.node_hostname,
        kind: j.kind,
        summary: j.summary,
        state,
        created_unix_ms: j.created_unix_ms,
        finished_unix_ms: j.finished_unix_ms,
        duration_ms: j.duration_ms,
        exit_code: j.exit_code,
        error: j.error,
        progress_percent: j.progress_percent,
        progress_message: j.progress_message,
        timeout_ms: j.timeout_ms,
        submitted_by: j.submitted_by,
        output: j.output,
        log_lines: j.log_lines,
        workflow_id: j.workflow_id,
    }
}

pub fn operator(o: OperatorRecord) -> OperatorInfo {
    let role = crate::auth::Role::from_record(o.role())
        .map(|r| r.as_str())
        .unwrap_or("unknown")
        .to_string();
    OperatorInfo {
        name: o.name,
        role,
        created_unix_ms: o.created_unix_ms,
        created_by: o.created_by,
    }
}

/// The record of a certificate issued to a principal: who, until when, by which CA.
pub fn principal(
    kind: clustermgr_proto::PrincipalKind,
    id: &str,
    info: &clustermgr_shared::pki::CertInfo,
) -> clustermgr_proto::PrincipalRecord {
    clustermgr_proto::PrincipalRecord {
        kind: kind as i32,
        id: id.to_string(),
        not_after_unix: info.not_after_unix,
        ca_key_id: info.authority_key_id.clone(),
    }
}
