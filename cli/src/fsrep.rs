//! `clustermgr fsrep enable|disable|status|paths|excludes|actions|owners|max-file-size|limits`: file
//! replication between the Gluu servers (the agents watch the paths, the controller relays the
//! changes).

use crate::args::{ActionCmd, FsrepCmd, ListCmd, PathCmd};
use crate::client::{channel, explain};
use crate::context::{Ctx, Exit};
use crate::output::{Render, render, table};
use anyhow::Result;
use clustermgr_proto::file_replication_admin_client::FileReplicationAdminClient;
use clustermgr_proto::fsrep_change_request::Change;
use clustermgr_proto::{
    FsrepAction, FsrepChangeRequest, FsrepGetRequest, FsrepLimits, FsrepSettings, FsrepStatus,
};
use clustermgr_shared::util::fmt_ms;
use serde_json::{Value, json};
use std::io::Write;

struct LimitsView(FsrepLimits);

impl Render for LimitsView {
    fn json(&self) -> Value {
        crate::view::fsrep_limits(&self.0)
    }
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let l = &self.0;
        writeln!(out, "max files: {}", l.max_files)?;
        writeln!(out, "max total bytes: {}", human_bytes(l.max_total_bytes))?;
        writeln!(out, "changes per second per node: {}", l.changes_per_second)?;
        writeln!(
            out,
            "action interval: {} s",
            l.action_interval_ms as f64 / 1000.0
        )?;
        writeln!(
            out,
            "backup bytes per file: {}",
            human_bytes(l.backup_bytes)
        )
    }
}

/// `300MiB`, `1G`, `40MB`, `1048576`: a size in bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (bytes, or a number and K, M, G, KB, MB, GB)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        u => {
            return Err(format!(
                "unknown unit {u:?} in {s:?} (K, M, G, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A byte count as people read it: `256 MiB`, `1.5 GiB`, `900 bytes`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, name) in UNITS {
        if n >= size {
            let v = n as f64 / size as f64;
            return if n.is_multiple_of(size) {
                format!("{} {name}", n / size)
            } else {
                format!("{v:.1} {name}")
            };
        }
    }
    format!("{n} bytes")
}

struct Limit(u64);

impl Render for Limit {
    fn json(&self) -> Value {
        json!({ "max_file_bytes": self.0 })
    }
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "max file size: {} ({} bytes)",
            human_bytes(self.0),
            self.0
        )
    }
}

type Client = FileReplicationAdminClient<tonic::transport::Channel>;

async fn change(c: &mut Client, change: Change) -> Result<FsrepSettings> {
    change_forced(c, change, false).await
}

async fn change_forced(c: &mut Client, change: Change, force: bool) -> Result<FsrepSettings> {
    Ok(c.change(FsrepChangeRequest {
        change: Some(change),
        force,
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
        crate::view::fsrep_actions(&self.0)
    }
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut t = table(&["PATTERN", "RESTARTS"]);
        for a in &self.0 {
            t.add_row(vec![a.pattern.clone(), a.service.clone()]);
        }
        writeln!(out, "{t}")
    }
}

impl Render for FsrepStatus {
    fn json(&self) -> Value {
        crate::view::fsrep_status(self)
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
            "paths: {}   files: {} ({})   tombstones: {}   changes: {}",
            s.paths.len(),
            self.files,
            human_bytes(self.bytes),
            self.tombstones,
            self.changes
        )?;
        writeln!(
            out,
            "max file size: {}   propagation latency: p50 {} ms, p99 {} ms",
            human_bytes(s.max_file_bytes),
            self.latency_p50_ms,
            self.latency_p99_ms
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
                if !n.inactive.is_empty() {
                    format!("off: {}", n.inactive)
                } else if n.watch_error.is_empty() {
                    format!("{} dirs under {} ({})", n.watched_dirs, n.base, n.flavor)
                } else {
                    format!("scanning: {}", n.watch_error)
                },
                n.action_runs
                    .iter()
                    .map(action_label)
                    .collect::<Vec<_>>()
                    .join(", "),
                n.last_error.clone(),
            ]);
        }
        writeln!(out, "{t}")?;
        for n in &self.nodes {
            for r in &n.refused {
                writeln!(out, "not replicated from {}: {r}", n.hostname)?;
            }
            for r in &n.capped {
                writeln!(out, "limit for {}: {r}", n.hostname)?;
            }
        }
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
                PathCmd::List => settings(&mut c).await?,
                PathCmd::Add { value, force } => {
                    change_forced(&mut c, Change::AddPath(value), force).await?
                }
                PathCmd::Remove { value } => change(&mut c, Change::RemovePath(value)).await?,
            };
            render(ctx.output, &Lines("paths", s.paths))?;
            None
        }
        FsrepCmd::Excludes { cmd } => {
            let s = list_cmd(&mut c, cmd, Change::AddExclude, Change::RemoveExclude).await?;
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
        FsrepCmd::Owners { cmd } => {
            let s = list_cmd(&mut c, cmd, Change::AddOwner, Change::RemoveOwner).await?;
            render(ctx.output, &Lines("owners", s.owners))?;
            None
        }
        FsrepCmd::Limits {
            max_files,
            max_total_bytes,
            changes_per_second,
            action_interval,
            backup_bytes,
        } => {
            let l = limits(
                max_files,
                max_total_bytes,
                changes_per_second,
                action_interval,
                backup_bytes,
            )?;
            let s = if l == FsrepLimits::default() {
                settings(&mut c).await?
            } else {
                change(&mut c, Change::Limits(l)).await?
            };
            render(ctx.output, &LimitsView(s.limits.unwrap_or_default()))?;
            None
        }
        FsrepCmd::MaxFileSize { size } => {
            let s = match size {
                None => settings(&mut c).await?,
                Some(v) => {
                    let n = parse_size(&v).map_err(|e| anyhow::anyhow!(e))?;
                    change(&mut c, Change::MaxFileBytes(n)).await?
                }
            };
            render(ctx.output, &Limit(s.max_file_bytes))?;
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

/// A list's command: list it, add to it or remove from it.
async fn list_cmd(
    c: &mut Client,
    cmd: Option<ListCmd>,
    add: fn(String) -> Change,
    remove: fn(String) -> Change,
) -> Result<FsrepSettings> {
    match cmd.unwrap_or(ListCmd::List) {
        ListCmd::List => settings(c).await,
        ListCmd::Add { value } => change(c, add(value)).await,
        ListCmd::Remove { value } => change(c, remove(value)).await,
    }
}

/// The limits as the command line gives them (0: unchanged).
fn limits(
    max_files: Option<u64>,
    max_total_bytes: Option<String>,
    changes_per_second: Option<u32>,
    action_interval: Option<String>,
    backup_bytes: Option<String>,
) -> Result<FsrepLimits> {
    let size = |v: Option<String>| -> Result<u64> {
        v.map_or(Ok(0), |v| parse_size(&v).map_err(|e| anyhow::anyhow!(e)))
    };
    Ok(FsrepLimits {
        max_files: max_files.unwrap_or(0),
        max_total_bytes: size(max_total_bytes)?,
        changes_per_second: changes_per_second.unwrap_or(0),
        action_interval_ms: match action_interval {
            None => 0,
            Some(d) => clustermgr_shared::duration::parse_duration(&d)
                .map_err(|e| anyhow::anyhow!(e.to_string()))?
                .as_millis()
                .max(1) as u64,
        },
        backup_bytes: size(backup_bytes)?,
    })
}

async fn settings(c: &mut Client) -> Result<FsrepSettings> {
    Ok(c.status(FsrepGetRequest {})
        .await
        .map_err(explain)?
        .into_inner()
        .settings
        .unwrap_or_default())
}

/// An action run as the API shows it.
fn action_label(r: &clustermgr_proto::FsrepActionRun) -> String {
    if r.error.is_empty() {
        r.service.clone()
    } else {
        format!("{} ({})", r.service, r.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_their_units() {
        for (s, want) in [
            ("1048576", 1 << 20),
            ("256MiB", 256 << 20),
            ("256M", 256 << 20),
            ("40MB", 40_000_000),
            ("1G", 1 << 30),
            ("2KB", 2000),
            (" 3 K", 3 << 10),
        ] {
            assert_eq!(parse_size(s), Ok(want), "{s}");
        }
        for s in ["", "MB", "12 parsecs", "-1", "99999999999999999999G"] {
            assert!(parse_size(s).is_err(), "{s}");
        }
        assert_eq!(human_bytes(256 << 20), "256 MiB");
        assert_eq!(human_bytes(1536 << 20), "1.5 GiB");
        assert_eq!(human_bytes(900), "900 bytes");
    }
}
