//! The forms of the operator API's common records (nodes, jobs and their output, audit rows,
//! operators, tokens): their JSON and their table rows, and the labels of their enums.

use crate::output::{Render, Row};
use clustermgr_proto::{
    AuditEntry, GluuFlavor, GluuInstallation, GluuMachineState, Job, JobLogLine, Node,
    OperatorInfo, TokenInfo, WhoAmIResponse, operation_output,
};
use clustermgr_shared::util::{fmt_ms, fmt_unix};
use serde_json::{Value, json};
use std::io::Write;

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

/// The label of a node's Gluu packaging (`-` when unknown or absent).
pub fn gluu_flavor_label(flavor: i32) -> &'static str {
    match GluuFlavor::try_from(flavor) {
        Ok(GluuFlavor::NspawnMachine) => "nspawn-machine",
        Ok(GluuFlavor::InitdChroot) => "initd-chroot",
        Ok(GluuFlavor::Nochroot) => "nochroot",
        Ok(GluuFlavor::Unspecified) | Err(_) => "-",
    }
}

/// The label of a node's Gluu machine state (`-` when not applicable or unknown).
pub fn machine_state_label(state: i32) -> &'static str {
    match GluuMachineState::try_from(state) {
        Ok(GluuMachineState::Stopped) => "stopped",
        Ok(GluuMachineState::Starting) => "starting",
        Ok(GluuMachineState::Running) => "running",
        Ok(GluuMachineState::Degraded) => "degraded",
        Ok(GluuMachineState::NotApplicable | GluuMachineState::Unspecified) | Err(_) => "-",
    }
}

/// The Gluu facts of an inventory as JSON (labels for the packaging and the machine's state;
/// null when they do not apply).
pub fn gluu_json(g: &GluuInstallation) -> Value {
    let label = |s: &'static str| if s == "-" { Value::Null } else { json!(s) };
    json!({
        "present": g.present,
        "installed": g.installed,
        "chroot": g.chroot,
        "version": g.version,
        "components": g.components,
        "flavor": label(gluu_flavor_label(g.flavor)),
        "machine_state": label(machine_state_label(g.machine_state)),
    })
}

pub fn node_json(n: &Node) -> Value {
    let inv = n.inventory.clone().unwrap_or_default();
    let g = inv.gluu.clone().unwrap_or_default();
    json!({
        "id": n.id,
        "hostname": n.hostname,
        // What the agent reports; the enrolled hostname above is the one that counts.
        "reported_hostname": n.reported_hostname,
        "role": n.role,
        "status": n.status,
        // Why its last session was refused (an agent older than the controller's minimum).
        "refused": if n.refused.is_empty() { Value::Null } else { json!(n.refused) },
        "approved": n.approved,
        "os": os_of(n),
        "os_pretty_name": inv.os_pretty_name,
        "addresses": inv.addresses,
        "kernel": inv.kernel,
        "arch": inv.arch,
        "package_manager": inv.package_manager,
        "agent_version": inv.agent_version,
        // The package the running agent was started from (empty: not installed from one).
        "agent_package_version": inv.agent_package_version,
        "gluu": gluu_json(&g),
        "enrolled": fmt_ms(n.enrolled_unix_ms),
        "last_seen": fmt_ms(n.last_seen_unix_ms),
        "remote_address": n.remote_address,
        "certificate_not_after": fmt_unix(n.certificate_not_after_unix),
    })
}

impl Row for Node {
    const HEADER: &'static [&'static str] = &[
        "ID",
        "HOSTNAME",
        "ROLE",
        "STATUS",
        "AGENT",
        "OS",
        "ADDRESSES",
        "GLUU",
        "LAST SEEN",
    ];
    fn json(&self) -> Value {
        node_json(self)
    }
    fn cells(&self) -> Vec<String> {
        let n = self;
        let inv = n.inventory.clone().unwrap_or_default();
        let g = inv.gluu.unwrap_or_default();
        let gluu = if !g.present {
            "-".to_string()
        } else {
            let set_up = if g.installed {
                "installed"
            } else {
                "not set up"
            };
            match machine_state_label(g.machine_state) {
                "-" => format!("{} {set_up}", g.version),
                state => format!("{} {set_up}, machine {state}", g.version),
            }
        };
        vec![
            n.id.clone(),
            n.hostname.clone(),
            n.role.clone(),
            n.status.clone(),
            match (
                inv.agent_version.as_str(),
                inv.agent_package_version.as_str(),
            ) {
                ("", _) => "-".to_string(),
                (v, p) if p.is_empty() || p == v => v.to_string(),
                (v, p) => format!("{v} (package {p})"),
            },
            os_of(n),
            inv.addresses.join(","),
            gluu,
            fmt_ms(n.last_seen_unix_ms),
        ]
    }
}

/// `key  value` lines of a JSON object, for people.
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

/// A job's stored output as JSON.
// Long: one flat table, a JSON object per output kind; the match is exhaustive, so a new output
// kind does not build until it has its object here.
pub fn output_json(j: &Job) -> Value {
    match j.output.as_ref().and_then(|o| o.kind.as_ref()) {
        Some(operation_output::Kind::Ping(p)) => {
            json!({"payload": p.payload, "agent_time": fmt_ms(p.agent_unix_ms)})
        }
        Some(operation_output::Kind::Facts(f)) => json!({
            "hostname": f.hostname, "addresses": f.addresses, "os_id": f.os_id,
            "os_version": f.os_version, "kernel": f.kernel, "package_manager": f.package_manager,
            "agent_version": f.agent_version,
            "gluu": f.gluu.as_ref().map(gluu_json),
        }),
        Some(operation_output::Kind::ReadFile(r)) => {
            json!({"size": r.size, "mode": format!("{:o}", r.mode), "sha256": r.sha256})
        }
        Some(operation_output::Kind::WriteFile(w)) => {
            json!({"size": w.size, "changed": w.changed})
        }
        Some(operation_output::Kind::InstallPackage(p)) => {
            json!({"package": p.package, "version": p.version, "changed": p.changed})
        }
        Some(operation_output::Kind::RunGluuSetup(s)) => json!({"changed": s.changed}),
        Some(operation_output::Kind::GluuServices(s)) => json!({"running": s.running}),
        // The content is the caller's only; it is never stored.
        Some(operation_output::Kind::ReadSetupProperties(r)) => {
            json!({"was_encrypted": r.was_encrypted})
        }
        Some(operation_output::Kind::Probe(p)) => {
            json!({"attempts": p.attempts, "elapsed_ms": p.elapsed_ms})
        }
        Some(operation_output::Kind::ReceivePackage(r)) => json!({
            "already_cached": r.already_cached,
            "resumed_from": r.resumed_from,
            "received_bytes": r.received_bytes,
        }),
        Some(operation_output::Kind::Preflight(p)) => {
            json!({"problems": p.problems, "free_bytes": p.free_bytes})
        }
        Some(operation_output::Kind::ReadGluuCertificates(c)) => {
            json!({"files": c.files.iter().map(|f| f.path.clone()).collect::<Vec<_>>()})
        }
        Some(operation_output::Kind::InstallGluuCertificates(c)) => json!({
            "written": c.written, "unchanged": c.unchanged, "imported": c.imported,
        }),
        Some(operation_output::Kind::SetOxAuthConfig(c)) => {
            json!({"changed": c.changed, "revision": c.revision})
        }
        Some(operation_output::Kind::InstallHttpdCertificate(c)) => {
            json!({"changed": c.changed, "imported": c.imported})
        }
        Some(operation_output::Kind::ReadServedCertificate(c)) => {
            json!({"certificates": c.chain_der.len()})
        }
        Some(operation_output::Kind::ApplyLdapSchema(a)) => json!({
            "directory": a.directory, "files": a.files, "changed": a.changed,
            "restarted": a.restarted,
        }),
        Some(operation_output::Kind::VerifyLdapSchema(v)) => json!({
            "attribute_types": v.attribute_types, "object_classes": v.object_classes,
            "written": v.written, "not_written": v.not_written,
        }),
        Some(operation_output::Kind::DirectoryInfo(d)) => {
            json!({"kind": d.kind, "bases": d.bases, "certificate_pem": d.certificate_pem})
        }
        Some(operation_output::Kind::ConfigureReplication(c)) => {
            json!({"changed": c.changed, "restarted": c.restarted})
        }
        Some(operation_output::Kind::ReplicationStatus(r)) => json!({
            "server_id": r.server_id,
            "bases": r.bases.iter().map(|b| json!({
                "base": b.base, "reachable": b.reachable, "error": b.error,
                "context_csn": b.context_csn, "partners": b.partners,
            })).collect::<Vec<_>>(),
        }),
        Some(operation_output::Kind::ReplicationProbe(p)) => json!({"elapsed_ms": p.elapsed_ms}),
        Some(operation_output::Kind::SetLdapServers(s)) => json!({"changed": s.changed}),
        Some(operation_output::Kind::SetHosts(h)) => json!({"changed": h.changed}),
        Some(operation_output::Kind::SearchLogs(s)) => json!({
            "files": s.files, "matched": s.matched, "sent": s.sent, "truncated": s.truncated,
            "skipped_compressed": s.skipped_compressed,
        }),
        Some(operation_output::Kind::ConfigureRedis(r)) => {
            json!({"address": r.address, "changed": r.changed, "running": r.running})
        }
        Some(operation_output::Kind::ConfigureStunnel(s)) => {
            json!({"accepts": s.accepts, "running": s.running})
        }
        Some(operation_output::Kind::ConfigureNutcracker(n)) => {
            json!({"listen": n.listen, "running": n.running})
        }
        Some(operation_output::Kind::CacheStatus(c)) => json!({
            "redis_running": c.redis_running, "stunnel_running": c.stunnel_running,
            "nutcracker_running": c.nutcracker_running, "ping_ok": c.ping_ok,
            "ping_address": c.ping_address, "ping_error": c.ping_error,
        }),
        Some(operation_output::Kind::SetCacheConfiguration(c)) => {
            json!({"changed": c.changed, "revision": c.revision})
        }
        Some(operation_output::Kind::ConfigureNginx(c)) => json!({
            "changed": c.changed, "started": c.started, "config_path": c.config_path,
        }),
        Some(operation_output::Kind::NginxStatus(n)) => crate::view::nginx_json(n),
        Some(operation_output::Kind::ProbeNginx(p)) => {
            json!({"attempts": p.attempts, "elapsed_ms": p.elapsed_ms})
        }
        Some(operation_output::Kind::RemoveNginx(r)) => {
            json!({"was_running": r.was_running, "removed": r.removed})
        }
        Some(operation_output::Kind::SetBackendRotation(r)) => json!({
            "changed": r.changed, "drained": r.drained, "drained_in_ms": r.drained_in_ms,
        }),
        Some(operation_output::Kind::RenameGluuHost(r)) => json!({
            "ldap_entries_changed": r.ldap_entries_changed, "files_changed": r.files_changed,
        }),
        Some(operation_output::Kind::UpdateOxauthKeystore(k)) => {
            json!({"kids": k.kids, "changed": k.changed})
        }
        Some(operation_output::Kind::SetWebKeys(w)) => {
            json!({"changed": w.changed, "revision": w.revision, "kids": w.kids})
        }
        Some(operation_output::Kind::ProbeJwks(p)) => {
            json!({"served_kids": p.served_kids, "attempts": p.attempts})
        }
        Some(operation_output::Kind::UpgradeAgent(u)) => {
            json!({"from_version": u.from_version, "to_version": u.to_version, "changed": u.changed})
        }
        Some(operation_output::Kind::BackupNode(b)) => json!({
            "backup": b.backup_id, "sha256": b.sha256, "size": b.size,
            "parts": b.manifest.iter().flat_map(|m| &m.parts)
                .map(|p| json!({"name": p.name, "size": p.size, "entries": p.entries}))
                .collect::<Vec<_>>(),
        }),
        Some(operation_output::Kind::RestoreNode(r)) => json!({
            "backup": r.backup_id, "files": r.files,
            "bases": r.bases.iter().map(|b| json!({
                "base": b.base, "expected_entries": b.expected_entries,
                "entries": b.entries, "base_entry": b.base_entry,
            })).collect::<Vec<_>>(),
        }),
        None => Value::Null,
    }
}

impl Row for Job {
    const HEADER: &'static [&'static str] = &[
        "ID", "NODE", "KIND", "STATE", "CREATED", "DURATION", "SUMMARY",
    ];
    fn json(&self) -> Value {
        job_json(self)
    }
    fn cells(&self) -> Vec<String> {
        let j = self;
        vec![
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
        ]
    }
}

impl Row for AuditEntry {
    const HEADER: &'static [&'static str] =
        &["SEQ", "TIME", "WHO", "ACTION", "TARGET", "RESULT", "DETAIL"];
    fn json(&self) -> Value {
        let e = self;
        json!({"seq": e.seq, "time": fmt_ms(e.unix_ms), "who": e.who, "action": e.action,
               "target": e.target, "detail": e.detail, "result": e.result,
               "count": e.count.max(1), "last": fmt_ms(e.unix_ms.max(e.last_unix_ms))})
    }
    fn cells(&self) -> Vec<String> {
        let e = self;
        vec![
            e.seq.to_string(),
            fmt_ms(e.unix_ms),
            e.who.clone(),
            e.action.clone(),
            e.target.clone(),
            e.result.clone(),
            // A merged routine row: how many it stands for, and the latest's time.
            if e.count > 1 {
                format!(
                    "({} times, last {}) {}",
                    e.count,
                    fmt_ms(e.last_unix_ms),
                    e.detail
                )
            } else {
                e.detail.clone()
            },
        ]
    }
}

impl Row for OperatorInfo {
    const HEADER: &'static [&'static str] = &["NAME", "ROLE", "CREATED", "CREATED BY"];
    fn json(&self) -> Value {
        let o = self;
        json!({"name": o.name, "role": o.role, "created": fmt_ms(o.created_unix_ms),
               "created_by": o.created_by})
    }
    fn cells(&self) -> Vec<String> {
        let o = self;
        vec![
            o.name.clone(),
            o.role.clone(),
            fmt_ms(o.created_unix_ms),
            o.created_by.clone(),
        ]
    }
}

impl Row for TokenInfo {
    const HEADER: &'static [&'static str] =
        &["ID", "ROLE", "STATE", "USES LEFT", "EXPIRES", "CREATED BY"];
    fn json(&self) -> Value {
        let t = self;
        json!({"id": t.id, "role": t.role, "state": t.state, "uses_left": t.uses_left,
               "expires": fmt_unix(t.expires_unix),
               "created": fmt_ms(t.created_unix_ms), "created_by": t.created_by})
    }
    fn cells(&self) -> Vec<String> {
        let k = self;
        vec![
            k.id.clone(),
            k.role.clone(),
            k.state.clone(),
            k.uses_left.to_string(),
            fmt_unix(k.expires_unix),
            k.created_by.clone(),
        ]
    }
}

/// `whoami`: one line for people.
impl Render for WhoAmIResponse {
    fn json(&self) -> Value {
        json!({"name": self.name, "role": self.role,
               "certificate_not_after": fmt_unix(self.certificate_not_after_unix)})
    }
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{} ({}), credential valid until {}",
            self.name,
            self.role,
            fmt_unix(self.certificate_not_after_unix)
        )
    }
}

/// A job's log line: the line alone for people, `{"seq", "line"}` for scripts.
impl Render for JobLogLine {
    fn json(&self) -> Value {
        json!({"seq": self.seq, "line": self.line})
    }
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "{}", self.line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{Details, Printable, printable};

    #[test]
    fn reported_text_reaches_the_terminal_without_control_sequences() {
        let line = JobLogLine {
            seq: 1,
            line: "ok\x1b]0;owned\x07\x1b[2J\rfake prompt\u{9b}31m\tend".into(),
            ..Default::default()
        };
        let mut out = Printable(Vec::new());
        line.human(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out.0).unwrap(),
            "ok]0;owned[2Jfake prompt31m\tend\n"
        );
        assert_eq!(printable("a\x1b[31mb\u{9b}c"), "a[31mbc");
    }

    #[test]
    fn a_node_shows_the_hostname_its_agent_reports_beside_the_enrolled_one() {
        let n = Node {
            hostname: "gluu1.example.org".into(),
            reported_hostname: "localhost".into(),
            ..Default::default()
        };
        let v = Row::json(&n);
        assert_eq!(v["hostname"], "gluu1.example.org");
        assert_eq!(v["reported_hostname"], "localhost");
    }

    #[test]
    fn a_node_with_absurd_timestamps_renders_instead_of_panicking() {
        // A node reports its own times; a bogus one must not take the CLI down.
        let n = Node {
            id: "n1".into(),
            hostname: "h1".into(),
            enrolled_unix_ms: u64::MAX,
            last_seen_unix_ms: u64::MAX,
            certificate_not_after_unix: u64::MAX,
            ..Default::default()
        };
        let v = Row::json(&n);
        assert_eq!(v["last_seen"], u64::MAX.to_string());
        assert_eq!(v["certificate_not_after"], u64::MAX.to_string());
        let mut table = Vec::new();
        [n.clone()].human(&mut table).unwrap();
        assert!(String::from_utf8(table).unwrap().contains("h1"));
        let mut shown = Vec::new();
        Details(&n).human(&mut shown).unwrap();
        assert!(
            String::from_utf8(shown)
                .unwrap()
                .contains(&u64::MAX.to_string())
        );
    }

    #[test]
    fn lists_are_arrays_and_tables_with_a_header() {
        let ops = vec![OperatorInfo {
            name: "alice".into(),
            role: "viewer".into(),
            created_unix_ms: 86_400_000,
            created_by: "admin".into(),
        }];
        let v = ops.as_slice().json();
        assert_eq!(
            v,
            json!([{"name": "alice", "role": "viewer", "created": "1970-01-02T00:00:00Z",
                    "created_by": "admin"}])
        );
        let mut out = Vec::new();
        ops.as_slice().human(&mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("CREATED BY") && out.contains("alice"), "{out}");
        assert!(out.ends_with('\n'));
    }

    #[test]
    fn a_nodes_gluu_packaging_and_machine_state_are_shown() {
        let mut n = Node {
            id: "n1".into(),
            hostname: "gluu1".into(),
            inventory: Some(clustermgr_proto::Inventory {
                gluu: Some(GluuInstallation {
                    present: true,
                    installed: true,
                    chroot: true,
                    version: "4.2.3~standin1".into(),
                    flavor: GluuFlavor::NspawnMachine.into(),
                    machine_state: GluuMachineState::Degraded.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = Row::json(&n);
        assert_eq!(v["gluu"]["flavor"], "nspawn-machine");
        assert_eq!(v["gluu"]["machine_state"], "degraded");
        assert!(Row::cells(&n).contains(&"4.2.3~standin1 installed, machine degraded".to_string()));
        // An init.d chroot has no machine; an agent's unknown value shows as unknown.
        if let Some(g) = n.inventory.as_mut().and_then(|i| i.gluu.as_mut()) {
            g.flavor = GluuFlavor::InitdChroot.into();
            g.machine_state = GluuMachineState::NotApplicable.into();
        }
        let v = Row::json(&n);
        assert_eq!(v["gluu"]["flavor"], "initd-chroot");
        assert_eq!(v["gluu"]["machine_state"], Value::Null);
        assert!(Row::cells(&n).contains(&"4.2.3~standin1 installed".to_string()));
        assert_eq!(gluu_flavor_label(99), "-");
        assert_eq!(machine_state_label(-1), "-");
    }
}
