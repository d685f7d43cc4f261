//! `clustermgr cluster show|configure` and `clustermgr server add|list|make-primary|remove`.

use crate::args::{ClusterCmd, ConfigureArgs, ServerCmd};
use crate::client::explain;
use crate::context::{Ctx, Exit};
use crate::output::{Details, Render, Row, render};
use crate::records::{gluu_flavor_label, machine_state_label};
use anyhow::{Context, Result, bail};
use clustermgr_proto::{
    AddServerRequest, ClusterSettings, ConfigureRequest, GetSettingsRequest, ListServersRequest,
    NodeRef, Server,
};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;

impl Row for ClusterSettings {
    const HEADER: &'static [&'static str] = &[];
    fn json(&self) -> Value {
        let set = |b: bool| if b { "set" } else { "unset" };
        json!({
            "gluu_version": self.gluu_version,
            "lb_hostname": self.lb_hostname,
            "lb_hostname_locked": self.lb_hostname_locked,
            "lb_ip": self.lb_ip,
            "external_lb": self.external_lb,
            "external_lb_health_wait": format!("{}s", self.external_lb_health_wait_secs),
            "ldap_cache": self.ldap_cache,
            "offline": self.offline,
            "ldap_check_period": if self.ldap_check_period_ms == 0 {
                Value::Null
            } else {
                json!(format!("{}s", self.ldap_check_period_ms / 1000))
            },
            "manage_hosts": self.manage_hosts,
            "org": self.org,
            "country": self.country,
            "city": self.city,
            "state": self.state,
            "admin_email": self.admin_email,
            "https_port": if self.https_port == 0 { 443 } else { self.https_port },
            "gluu_repo_url": self.gluu_repo_url,
            "gluu_repo_suite": self.gluu_repo_suite,
            "gluu_repo_key": set(self.gluu_repo_key_set),
            "components": self.components,
            "ldap_admin_password": set(self.ldap_admin_password_set),
            "replication_password": set(self.replication_password_set),
        })
    }
    fn cells(&self) -> Vec<String> {
        Vec::new()
    }
}

/// `server add`: the server, then the follow-up workflows it started.
struct Added<'a>(&'a Server);

fn started_json(w: &clustermgr_proto::StartedWorkflow) -> Value {
    json!({
        "id": w.id,
        "kind": w.kind,
        "status": clustermgr_workflow::status_name(w.status()),
        "queued_behind": w.queued_behind,
    })
}

impl Render for Added<'_> {
    fn json(&self) -> Value {
        let mut v = self.0.json();
        if let Value::Object(m) = &mut v {
            m.insert(
                "started_workflows".into(),
                self.0.started_workflows.iter().map(started_json).collect(),
            );
        }
        v
    }
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        out.write_all(crate::output::details(&self.0.json()).as_bytes())?;
        if self.0.started_workflows.is_empty() {
            return writeln!(out, "follow-ups  none");
        }
        for w in &self.0.started_workflows {
            let status = clustermgr_workflow::status_name(w.status());
            if w.queued_behind.is_empty() {
                writeln!(out, "follow-up   workflow {} ({}) {status}", w.id, w.kind)?;
            } else {
                writeln!(
                    out,
                    "follow-up   workflow {} ({}) {status} behind {}",
                    w.id,
                    w.kind,
                    w.queued_behind.join(", ")
                )?;
            }
        }
        Ok(())
    }
}

impl Row for Server {
    const HEADER: &'static [&'static str] = &[
        "HOSTNAME",
        "PRIMARY",
        "STATUS",
        "ADDRESS",
        "OS",
        "GLUU",
        "FLAVOR",
        "MACHINE",
        "COMPONENTS",
        "INSTALL",
        "REPLICATION",
        "LAST WORKFLOW",
    ];
    fn json(&self) -> Value {
        let label = |s: &'static str| if s == "-" { Value::Null } else { json!(s) };
        json!({
            "node_id": self.node_id,
            "hostname": self.hostname,
            "primary": self.primary,
            "role": "gluu-node",
            "status": self.status,
            "address": self.address,
            "os": self.os,
            "gluu_version": self.gluu_version,
            "gluu_flavor": label(gluu_flavor_label(self.gluu_flavor)),
            "machine_state": label(machine_state_label(self.machine_state)),
            "components": self.configured_components,
            "installed_components": self.components,
            "install_state": self.install_state,
            "replication": self.replication,
            "replication_checked": clustermgr_shared::util::fmt_ms(self.replication_checked_unix_ms),
            "last_workflow": if self.last_workflow_id.is_empty() { Value::Null } else {
                json!({"id": self.last_workflow_id, "status": self.last_workflow_status})
            },
        })
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.hostname.clone(),
            if self.primary { "yes" } else { "" }.into(),
            self.status.clone(),
            self.address.clone(),
            self.os.clone(),
            self.gluu_version.clone(),
            gluu_flavor_label(self.gluu_flavor).into(),
            machine_state_label(self.machine_state).into(),
            self.configured_components.join(","),
            self.install_state.clone(),
            self.replication.clone(),
            if self.last_workflow_id.is_empty() {
                String::new()
            } else {
                format!(
                    "{} {}",
                    &self.last_workflow_id[..self.last_workflow_id.len().min(13)],
                    self.last_workflow_status
                )
            },
        ]
    }
}

/// A password from a file (one line) or a prompt; never from a flag's value.
fn password(file: Option<&Path>, ask: bool, what: &str) -> Result<Option<Vec<u8>>> {
    if let Some(f) = file {
        let b = std::fs::read(f)
            .with_context(|| format!("cannot read the {what} file {}", f.display()))?;
        return Ok(Some(b));
    }
    if ask {
        let first = rpassword::prompt_password(format!("{what}: "))
            .with_context(|| format!("cannot read the {what} from the terminal"))?;
        let again = rpassword::prompt_password(format!("{what} (again): "))
            .with_context(|| format!("cannot read the {what} from the terminal"))?;
        if first != again {
            bail!("the two {what}s differ; nothing was changed");
        }
        return Ok(Some(first.into_bytes()));
    }
    Ok(None)
}

fn configure_request(a: ConfigureArgs) -> Result<ConfigureRequest> {
    Ok(ConfigureRequest {
        ldap_admin_password: password(
            a.ldap_admin_password_file.as_deref(),
            a.ask_ldap_admin_password,
            "LDAP admin password",
        )?,
        replication_password: password(
            a.replication_password_file.as_deref(),
            a.ask_replication_password,
            "replication password",
        )?,
        gluu_version: a.gluu_version,
        lb_hostname: a.lb_hostname,
        lb_ip: a.lb_ip,
        external_lb: a.external_lb,
        external_lb_health_wait_secs: a.external_lb_health_wait,
        ldap_cache: a.ldap_cache,
        offline: a.offline,
        ldap_check_period: a.ldap_check_period,
        manage_hosts: a.manage_hosts,
        org: a.org,
        country: a.country,
        city: a.city,
        state: a.state,
        admin_email: a.admin_email,
        https_port: a.https_port,
        gluu_repo_url: a.gluu_repo_url,
        gluu_repo_suite: a.gluu_repo_suite,
        gluu_repo_key: match &a.gluu_repo_key_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read the repository key {}", f.display()))?,
            ),
            None => None,
        },
        components: a.components,
    })
}

pub async fn run_cluster(cmd: ClusterCmd, ctx: &Ctx) -> Result<Exit> {
    let mut c = ctx.cluster().await?;
    let s = match cmd {
        ClusterCmd::Show => c.get_settings(GetSettingsRequest {}).await,
        ClusterCmd::Configure(a) => {
            let req = configure_request(*a)?;
            c.configure(req).await
        }
    }
    .map_err(explain)?
    .into_inner();
    render(ctx.output, &Details(&s))?;
    Ok(Exit::Ok)
}

pub async fn run_server(cmd: ServerCmd, ctx: &Ctx) -> Result<Exit> {
    let mut c = ctx.cluster().await?;
    match cmd {
        ServerCmd::Add { node, primary } => {
            let s = c
                .add_server(AddServerRequest {
                    node: Some(NodeRef { node }),
                    primary,
                })
                .await
                .map_err(explain)?
                .into_inner();
            eprintln!(
                "added {}{}",
                s.hostname,
                if s.primary { " (primary)" } else { "" }
            );
            render(ctx.output, &Added(&s))?;
        }
        ServerCmd::List => {
            let servers = c
                .list_servers(ListServersRequest {})
                .await
                .map_err(explain)?
                .into_inner()
                .servers;
            render(ctx.output, servers.as_slice())?;
        }
        ServerCmd::MakePrimary { node } => {
            let s = c
                .make_primary(NodeRef { node })
                .await
                .map_err(explain)?
                .into_inner();
            eprintln!("{} is the primary", s.hostname);
        }
        ServerCmd::Remove { node } => {
            let s = c
                .remove_server(NodeRef { node })
                .await
                .map_err(explain)?
                .into_inner();
            if !s.removal_workflow_id.is_empty() {
                eprintln!(
                    "{} replicates: workflow {} takes it out of replication, then out of the cluster",
                    s.hostname, s.removal_workflow_id
                );
                return crate::workflow::follow(&mut c, &s.removal_workflow_id, ctx.output).await;
            }
            eprintln!(
                "removed {} from the cluster (the node stays enrolled)",
                s.hostname
            );
        }
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clustermgr_proto::{GluuFlavor, GluuMachineState};

    #[test]
    fn server_list_shows_the_gluu_packaging_and_the_machine_state() {
        let s = Server {
            hostname: "gluu1".into(),
            gluu_version: "4.2.3".into(),
            gluu_flavor: GluuFlavor::NspawnMachine.into(),
            machine_state: GluuMachineState::Running.into(),
            ..Default::default()
        };
        let v = Row::json(&s);
        assert_eq!(v["gluu_flavor"], "nspawn-machine");
        assert_eq!(v["machine_state"], "running");
        let cells = Row::cells(&s);
        assert_eq!(cells.len(), Server::HEADER.len());
        let at = |h: &str| Server::HEADER.iter().position(|x| *x == h).unwrap();
        assert_eq!(cells[at("FLAVOR")], "nspawn-machine");
        assert_eq!(cells[at("MACHINE")], "running");
        let none = Row::json(&Server::default());
        assert_eq!(none["gluu_flavor"], Value::Null);
        assert_eq!(none["machine_state"], Value::Null);
    }
}
