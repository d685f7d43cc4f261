//! `clustermgr backup [--node N] [--keep K]`, `backup list`, `backup restore ID --node N`:
//! online backups of the Gluu servers' directories (OpenLDAP's slapcat, OpenDJ's export-ldif)
//! and their configuration, streamed to the controller and kept there sealed; a restore is a
//! drained workflow on one node. Starting commands follow their workflow like every other
//! (exit 0 succeeded, 1 failed or cancelled, 2 not started; `--detach`, `--dry-run`).

use crate::args::{BackupArgs, BackupCmd};
use crate::client::{channel, explain};
use crate::context::{Ctx, Exit};
use crate::fsrep::human_bytes;
use crate::output::{Render, render, table};
use anyhow::Result;
use clustermgr_proto::backups_client::BackupsClient;
use clustermgr_proto::{
    BackupDirectory, BackupInfo, BackupList, BackupPartKind, BackupWorkflowStarted,
    ListBackupsRequest, RestoreBackupRequest, StartBackupRequest, StartWorkflowResponse,
};
use clustermgr_shared::util::fmt_ms;
use serde_json::{Value, json};
use std::io::Write;

fn directory(d: BackupDirectory) -> &'static str {
    match d {
        BackupDirectory::Openldap => "openldap",
        BackupDirectory::Opendj => "opendj",
        BackupDirectory::Unspecified => "unknown",
    }
}

/// The entries of every LDIF part.
fn entries(b: &BackupInfo) -> u64 {
    b.parts
        .iter()
        .filter(|p| p.kind() == BackupPartKind::Ldif)
        .map(|p| p.entries)
        .sum()
}

struct Listed<'a>(&'a BackupList);

impl Render for Listed<'_> {
    fn json(&self) -> Value {
        Value::Array(
            self.0
                .backups
                .iter()
                .map(|b| {
                    json!({
                        "id": b.id,
                        "node_id": b.node_id,
                        "hostname": b.hostname,
                        "created_unix_ms": b.created_unix_ms,
                        "sha256": b.sha256,
                        "size": b.size,
                        "directory": directory(b.directory()),
                        "parts": b.parts.iter().map(|p| json!({
                            "name": p.name,
                            "base": p.base,
                            "size": p.size,
                            "sha256": p.sha256,
                            "entries": p.entries,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    }

    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if self.0.backups.is_empty() {
            return writeln!(out, "no backups held (clustermgr backup)");
        }
        let mut t = table(&["ID", "NODE", "TAKEN", "DIRECTORY", "ENTRIES", "SIZE"]);
        for b in &self.0.backups {
            t.add_row(vec![
                b.id.clone(),
                b.hostname.clone(),
                fmt_ms(b.created_unix_ms),
                directory(b.directory()).to_string(),
                entries(b).to_string(),
                human_bytes(b.size),
            ]);
        }
        writeln!(out, "{t}")
    }
}

fn as_started(r: BackupWorkflowStarted) -> StartWorkflowResponse {
    StartWorkflowResponse {
        workflow: r.workflow,
        plan: r.plan,
    }
}

pub async fn run(args: BackupArgs, ctx: &Ctx) -> Result<Exit> {
    let mut c = BackupsClient::new(channel(&ctx.target).await?);
    let (r, detach) = match args.cmd {
        None => {
            let r = c
                .start_backup(StartBackupRequest {
                    node: args.node.unwrap_or_default(),
                    dry_run: args.start.dry_run,
                    keep: args.keep,
                    no_wait: args.start.no_wait,
                })
                .await
                .map_err(explain)?
                .into_inner();
            (r, args.start.detach)
        }
        Some(BackupCmd::List { node }) => {
            let l = c
                .list_backups(ListBackupsRequest {
                    node: node.unwrap_or_default(),
                })
                .await
                .map_err(explain)?
                .into_inner();
            render(ctx.output, &Listed(&l))?;
            return Ok(Exit::Ok);
        }
        Some(BackupCmd::Restore { id, node, start }) => {
            let r = c
                .restore_backup(RestoreBackupRequest {
                    id,
                    node,
                    dry_run: start.dry_run,
                    no_wait: start.no_wait,
                })
                .await
                .map_err(explain)?
                .into_inner();
            (r, start.detach)
        }
    };
    let mut cl = ctx.cluster().await?;
    crate::workflow::started(&mut cl, as_started(r), detach, ctx).await
}
