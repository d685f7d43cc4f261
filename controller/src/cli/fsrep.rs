//! `clustermgr fsrep enable|disable|status|paths|excludes|actions`: file replication between
//! the Gluu servers (the agents watch the paths, the controller relays the changes).

use super::client::{channel, explain};
use super::output::{Render, render, table};
use super::{Ctx, Exit};
use anyhow::Result;
use clap::Subcommand;
use clustermgr_proto::file_replication_admin_client::FileReplicationAdminClient;
use clustermgr_proto::fsrep_change_request::Change;
use clustermgr_proto::{
    FsrepAction, FsrepChangeRequest, FsrepGetRequest, FsrepSettings, FsrepStatus, FsrepVersion,
};
use clustermgr_shared::util::fmt_ms;
use serde_json::{Value, json};
use std::io::Write;

#[derive(Subcommand)]
pub enum FsrepCmd {
    /// Start replicating the configured paths between every Gluu server (`server list`).
    Enable,
    /// Stop replicating (files stay as they are on every node).
    Disable,
    /// Settings, nodes (connected, queued changes, paths behind), conflicts, latency.
    Status,
    /// The replicated directories (defaults: the csync2 set-up's list).
    #[command(subcommand)]
    Paths(ListCmd),
    /// File name globs (`*~`, `.*`) or absolute path globs never replicated.
    Excludes {
        #[command(subcommand)]
        cmd: Option<ListCmd>,
    },
    /// Restart a Gluu service on a node when replication wrote a file matching a pattern.
    Actions {
        #[command(subcommand)]
        cmd: Option<ActionCmd>,
    },
}

#[derive(Subcommand)]
pub enum ListCmd {
    List,
    Add { value: String },
    Remove { value: String },
}

#[derive(Subcommand)]
pub enum ActionCmd {
    List,
    /// `--pattern '/opt/gluu/jetty/identity/conf/shibboleth3/idp/**' --service idp`
    Add {
        #[arg(long)]
        pattern: String,
        #[arg(long)]
        service: String,
    },
    /// Every action of the service, or only the one with this pattern.
    Remove {
        service: String,
        #[arg(long)]
        pattern: Option<String>,
    },
}

type Client = FileReplicationAdminClient<tonic::transport::Channel>;

async fn change(c: &mut Client, change: Change) -> Result<FsrepSettings> {
    Ok(c.change(FsrepChangeRequest {
        change: Some(change),
    })
    .await
    .map_err(explain)?
    .into_inner())
}

struct Lines(&'static str, Vec<String>);

impl Render for Lines {
    fn json(&self) -> Value {
        json!(self.1)
    }
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if self.1.is_empty() {
            return writeln!(out, "(no {})", self.0);
        }
        for l in &self.1 {
            writeln!(out, "{l}")?;
        }
        Ok(())
    }
}

struct Actions(Vec<FsrepAction>);

impl Render for Actions {
    fn json(&self) -> Value {
        json!(
            self.0
                .iter()
                .map(|a| json!({"pattern": a.pattern, "service": a.service}))
                .collect::<Vec<_>>()
        )
    }
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut t = table(&["PATTERN", "RESTARTS"]);
        for a in &self.0 {
            t.add_row(vec![a.pattern.clone(), a.service.clone()]);
        }
        writeln!(out, "{t}")
    }
}

fn version(v: &Option<FsrepVersion>) -> Value {
    v.as_ref()
        .map_or(Value::Null, |v| json!({"hlc": v.hlc, "node_id": v.node_id}))
}

impl Render for FsrepStatus {
    fn json(&self) -> Value {
        let s = self.settings.clone().unwrap_or_default();
        json!({
            "enabled": s.enabled,
            "paths": s.paths,
            "excludes": s.excludes,
            "actions": Actions(s.actions.clone()).json(),
            "backups": s.backups,
            "max_file_bytes": s.max_file_bytes,
            "files": self.files,
            "tombstones": self.tombstones,
            "changes": self.changes,
            "latency_ms": {
                "p50": self.latency_p50_ms,
                "p99": self.latency_p99_ms,
                "bounds": self.latency_bounds_ms,
                "counts": self.latency_counts,
            },
            "nodes": self.nodes.iter().map(|n| json!({
                "node_id": n.node_id,
                "hostname": n.hostname,
                "connected": n.connected,
                "queued": n.queued,
                "behind": n.behind,
                "watch_error": n.watch_error,
                "watched_dirs": n.watched_dirs,
                "action_runs": n.action_runs.iter().map(|r| json!({
                    "service": r.service, "unix_ms": r.unix_ms, "error": r.error,
                })).collect::<Vec<_>>(),
                "refused": n.refused,
                "actions_pending": n.actions_pending,
                "last_error": n.last_error,
            })).collect::<Vec<_>>(),
            "conflicts": self.conflicts.iter().map(|c| json!({
                "path": c.path,
                "winner": c.winner_host,
                "loser": c.loser_host,
                "winner_version": version(&c.winner),
                "loser_version": version(&c.loser),
                "unix_ms": c.unix_ms,
            })).collect::<Vec<_>>(),
        })
    }
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let s = self.settings.clone().unwrap_or_default();
        writeln!(
            out,
            "file replication: {}",
            if s.enabled { "enabled" } else { "disabled" }
        )?;
        writeln!(
            out,
            "paths: {}   files: {}   tombstones: {}   changes: {}",
            s.paths.len(),
            self.files,
            self.tombstones,
            self.changes
        )?;
        writeln!(
            out,
            "propagation latency: p50 {} ms, p99 {} ms",
            self.latency_p50_ms, self.latency_p99_ms
        )?;
        let mut t = table(&[
            "NODE",
            "CONNECTED",
            "QUEUED",
            "BEHIND",
            "WATCH",
            "ACTIONS",
            "ERROR",
        ]);
        for n in &self.nodes {
            t.add_row(vec![
                n.hostname.clone(),
                if n.connected { "yes" } else { "no" }.into(),
                n.queued.to_string(),
                n.behind.to_string(),
                if n.watch_error.is_empty() {
                    format!("{} dirs", n.watched_dirs)
                } else {
                    format!("scanning: {}", n.watch_error)
                },
                n.action_runs
                    .iter()
                    .map(crate::fsrep::action_label)
                    .collect::<Vec<_>>()
                    .join(", "),
                n.last_error.clone(),
            ]);
        }
        writeln!(out, "{t}")?;
        if !self.conflicts.is_empty() {
            let mut t = table(&["CONFLICT", "WINNER", "LOSER (kept as backup)", "AT"]);
            for c in &self.conflicts {
                t.add_row(vec![
                    c.path.clone(),
                    c.winner_host.clone(),
                    c.loser_host.clone(),
                    fmt_ms(c.unix_ms),
                ]);
            }
            writeln!(out, "{t}")?;
        }
        Ok(())
    }
}

pub async fn run(cmd: FsrepCmd, ctx: &Ctx) -> Result<Exit> {
    let mut c = FileReplicationAdminClient::new(channel(&ctx.target).await?);
    let shown = match cmd {
        FsrepCmd::Enable => Some(change(&mut c, Change::Enable(true)).await?),
        FsrepCmd::Disable => Some(change(&mut c, Change::Enable(false)).await?),
        FsrepCmd::Status => {
            let s = c
                .status(FsrepGetRequest {})
                .await
                .map_err(explain)?
                .into_inner();
            render(ctx.output, &s)?;
            None
        }
        FsrepCmd::Paths(l) => {
            let s = match l {
                ListCmd::List => settings(&mut c).await?,
                ListCmd::Add { value } => change(&mut c, Change::AddPath(value)).await?,
                ListCmd::Remove { value } => change(&mut c, Change::RemovePath(value)).await?,
            };
            render(ctx.output, &Lines("paths", s.paths))?;
            None
        }
        FsrepCmd::Excludes { cmd } => {
            let s = match cmd.unwrap_or(ListCmd::List) {
                ListCmd::List => settings(&mut c).await?,
                ListCmd::Add { value } => change(&mut c, Change::AddExclude(value)).await?,
                ListCmd::Remove { value } => change(&mut c, Change::RemoveExclude(value)).await?,
            };
            render(ctx.output, &Lines("excludes", s.excludes))?;
            None
        }
        FsrepCmd::Actions { cmd } => {
            let s = match cmd.unwrap_or(ActionCmd::List) {
                ActionCmd::List => settings(&mut c).await?,
                ActionCmd::Add { pattern, service } => {
                    change(&mut c, Change::AddAction(FsrepAction { pattern, service })).await?
                }
                ActionCmd::Remove { service, pattern } => {
                    change(
                        &mut c,
                        Change::RemoveAction(FsrepAction {
                            pattern: pattern.unwrap_or_default(),
                            service,
                        }),
                    )
                    .await?
                }
            };
            render(ctx.output, &Actions(s.actions))?;
            None
        }
    };
    if let Some(s) = shown {
        let st = FsrepStatus {
            settings: Some(s),
            ..Default::default()
        };
        render(ctx.output, &st)?;
    }
    Ok(Exit::Ok)
}

async fn settings(c: &mut Client) -> Result<FsrepSettings> {
    Ok(c.status(FsrepGetRequest {})
        .await
        .map_err(explain)?
        .into_inner()
        .settings
        .unwrap_or_default())
}
