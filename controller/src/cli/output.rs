//! Rendering for people (tables) and for scripts (`--output json`).

use clustermgr_proto::{AuditEntry, Job, Node, OperatorInfo, TokenInfo, operation_output};
use clustermgr_shared::util::fmt_ms;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::{Value, json};

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(header.iter().copied());
    t
}

pub fn os_of(n: &Node) -> String {
    n.inventory
        .as_ref()
        .map(|i| {
            if i.os_id.is_empty() {
                String::new()
            } else {
                format!("{} {}", i.os_id, i.os_version)
            }
        })
        .unwrap_or_default()
}

pub fn node_json(n: &Node) -> Value {
    let inv = n.inventory.clone().unwrap_or_default();
    let g = inv.gluu.clone().unwrap_or_default();
    json!({
        "id": n.id,
        "hostname": n.hostname,
        "role": n.role,
        "status": n.status,
        "approved": n.approved,
        "os": os_of(n),
        "os_pretty_name": inv.os_pretty_name,
        "addresses": inv.addresses,
        "kernel": inv.kernel,
        "arch": inv.arch,
        "package_manager": inv.package_manager,
        "agent_version": inv.agent_version,
        "gluu": {
            "present": g.present,
            "installed": g.installed,
            "chroot": g.chroot,
            "version": g.version,
            "components": g.components,
        },
        "enrolled": fmt_ms(n.enrolled_unix_ms),
        "last_seen": fmt_ms(n.last_seen_unix_ms),
        "remote_address": n.remote_address,
        "certificate_not_after": fmt_ms(n.certificate_not_after_unix * 1000),
    })
}

pub fn nodes_table(nodes: &[Node]) -> String {
    let mut t = table(&[
        "ID",
        "HOSTNAME",
        "ROLE",
        "STATUS",
        "OS",
        "ADDRESSES",
        "GLUU",
        "LAST SEEN",
    ]);
    for n in nodes {
        let inv = n.inventory.clone().unwrap_or_default();
        let g = inv.gluu.unwrap_or_default();
        let gluu = if !g.present {
            "-".to_string()
        } else if g.installed {
            format!("{} installed", g.version)
        } else {
            format!("{} not set up", g.version)
        };
        t.add_row(vec![
            n.id.clone(),
            n.hostname.clone(),
            n.role.clone(),
            n.status.clone(),
            os_of(n),
            inv.addresses.join(","),
            gluu,
            fmt_ms(n.last_seen_unix_ms),
        ]);
    }
    t.to_string()
}

/// `key  value` lines of a JSON object, for people.
pub fn details(v: &Value) -> String {
    let mut out = String::new();
    if let Value::Object(map) = v {
        let width = map.keys().map(String::len).max().unwrap_or(0) + 2;
        for (k, v) in map {
            let shown = match v {
                Value::String(s) => s.clone(),
                Value::Null => "-".into(),
                other => other.to_string(),
            };
            out.push_str(&format!("{k:<width$}{shown}\n"));
        }
    }
    out
}

pub fn job_json(j: &Job) -> Value {
    json!({
        "id": j.id,
        "node_id": j.node_id,
        "node": j.node_hostname,
        "kind": j.kind,
        "summary": j.summary,
        "state": j.state,
        "created": fmt_ms(j.created_unix_ms),
        "finished": fmt_ms(j.finished_unix_ms),
        "duration_ms": j.duration_ms,
        "timeout_ms": j.timeout_ms,
        "exit_code": j.exit_code,
        "error": j.error,
        "progress_percent": j.progress_percent,
        "submitted_by": j.submitted_by,
        "log_lines": j.log_lines,
        "output": output_json(j),
    })
}

pub fn output_json(j: &Job) -> Value {
    match j.output.as_ref().and_then(|o| o.kind.as_ref()) {
        Some(operation_output::Kind::Ping(p)) => {
            json!({"payload": p.payload, "agent_time": fmt_ms(p.agent_unix_ms)})
        }
        Some(operation_output::Kind::Facts(f)) => json!({
            "hostname": f.hostname, "addresses": f.addresses, "os_id": f.os_id,
            "os_version": f.os_version, "kernel": f.kernel, "package_manager": f.package_manager,
            "agent_version": f.agent_version,
            "gluu": f.gluu.as_ref().map(|g| json!({"present": g.present, "installed": g.installed,
                "chroot": g.chroot, "version": g.version, "components": g.components})),
        }),
        Some(operation_output::Kind::ReadFile(r)) => {
            json!({"size": r.size, "mode": format!("{:o}", r.mode), "sha256": r.sha256})
        }
        Some(operation_output::Kind::WriteFile(w)) => {
            json!({"size": w.size, "sha256": w.sha256, "changed": w.changed})
        }
        None => Value::Null,
    }
}

pub fn jobs_table(jobs: &[Job]) -> String {
    let mut t = table(&[
        "ID", "NODE", "KIND", "STATE", "CREATED", "DURATION", "SUMMARY",
    ]);
    for j in jobs {
        t.add_row(vec![
            j.id.clone(),
            j.node_hostname.clone(),
            j.kind.clone(),
            j.state.clone(),
            fmt_ms(j.created_unix_ms),
            if j.finished_unix_ms == 0 {
                "-".into()
            } else {
                format!("{} ms", j.duration_ms)
            },
            j.summary.clone(),
        ]);
    }
    t.to_string()
}

pub fn audit_json(e: &AuditEntry) -> Value {
    json!({"seq": e.seq, "time": fmt_ms(e.unix_ms), "who": e.who, "action": e.action,
           "target": e.target, "detail": e.detail, "result": e.result})
}

pub fn audit_table(entries: &[AuditEntry]) -> String {
    let mut t = table(&["SEQ", "TIME", "WHO", "ACTION", "TARGET", "RESULT", "DETAIL"]);
    for e in entries {
        t.add_row(vec![
            e.seq.to_string(),
            fmt_ms(e.unix_ms),
            e.who.clone(),
            e.action.clone(),
            e.target.clone(),
            e.result.clone(),
            e.detail.clone(),
        ]);
    }
    t.to_string()
}

pub fn operators_table(ops: &[OperatorInfo]) -> String {
    let mut t = table(&["NAME", "ROLE", "CREATED", "CREATED BY"]);
    for o in ops {
        t.add_row(vec![
            o.name.clone(),
            o.role.clone(),
            fmt_ms(o.created_unix_ms),
            o.created_by.clone(),
        ]);
    }
    t.to_string()
}

pub fn token_json(t: &TokenInfo) -> Value {
    json!({"id": t.id, "role": t.role, "state": t.state, "uses_left": t.uses_left,
           "expires": clustermgr_shared::util::fmt_unix(t.expires_unix),
           "created": fmt_ms(t.created_unix_ms), "created_by": t.created_by})
}

pub fn tokens_table(tokens: &[TokenInfo]) -> String {
    let mut t = table(&["ID", "ROLE", "STATE", "USES LEFT", "EXPIRES", "CREATED BY"]);
    for k in tokens {
        t.add_row(vec![
            k.id.clone(),
            k.role.clone(),
            k.state.clone(),
            k.uses_left.to_string(),
            clustermgr_shared::util::fmt_unix(k.expires_unix),
            k.created_by.clone(),
        ]);
    }
    t.to_string()
}
