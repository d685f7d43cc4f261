//! `clustermgr keys configure|rotate|status`: oxAuth's signing and encryption keys, rotated with
//! an overlap window by the `key-rotation` workflow (now, or on the configured interval).

use crate::args::KeysCmd;
use crate::client::{channel, explain};
use crate::context::{Ctx, Exit};
use crate::output::{Render, render, table};
use anyhow::Result;
use clustermgr_proto::keys_client::KeysClient;
use clustermgr_proto::{
    ConfigureKeysRequest, KeysSettings, KeysStatus, KeysStatusRequest, RotateKeysRequest,
};
use clustermgr_shared::duration::parse_duration;
use clustermgr_shared::util::fmt_ms;
use serde_json::Value;
use std::io::Write;

fn ms(s: &str) -> Result<u64> {
    Ok(parse_duration(s)?.as_millis() as u64)
}

fn secs(ms: u64) -> String {
    let s = ms / 1000;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (h, 0, 0) if h > 0 => format!("{h}h"),
        (0, m, 0) if m > 0 => format!("{m}m"),
        (0, 0, s) => format!("{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

struct Settings<'a>(&'a KeysSettings);

impl Render for Settings<'_> {
    fn json(&self) -> Value {
        crate::view::keys_settings(self.0)
    }
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let s = self.0;
        writeln!(
            out,
            "scheduled   {}",
            if s.enabled { "enabled" } else { "disabled" }
        )?;
        writeln!(out, "interval    {}", secs(s.interval_ms))?;
        writeln!(out, "overlap     {}", secs(s.overlap_ms))?;
        writeln!(out, "backup      {}", if s.backup { "yes" } else { "no" })
    }
}

pub(crate) struct Status<'a>(pub(crate) &'a KeysStatus);

impl Render for Status<'_> {
    fn json(&self) -> Value {
        crate::view::keys_status(self.0)
    }
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let s = self.0;
        if let Some(x) = &s.settings {
            Settings(x).human(out)?;
        }
        writeln!(out, "last        {}", fmt_ms(s.last_rotation_unix_ms))?;
        writeln!(
            out,
            "next        {}",
            if s.next_rotation_unix_ms == 0 {
                "- (not scheduled)".to_string()
            } else {
                fmt_ms(s.next_rotation_unix_ms)
            }
        )?;
        if !s.running_workflow_id.is_empty() {
            writeln!(out, "running     workflow {}", s.running_workflow_id)?;
        }
        let retiring = match &s.retirement {
            Some(p) => {
                writeln!(
                    out,
                    "retirement  {} old keys go at {}{}",
                    p.retiring.len(),
                    fmt_ms(p.due_unix_ms),
                    if p.workflow_id.is_empty() {
                        String::new()
                    } else {
                        format!(" (workflow {})", p.workflow_id)
                    }
                )?;
                p.retiring.as_slice()
            }
            None => &[],
        };
        let mut t = table(&["", "ALG", "USE", "KID", "EXPIRES"]);
        for (what, keys) in [
            ("current", s.current.as_slice()),
            ("upcoming", s.upcoming.as_slice()),
            ("retiring", retiring),
        ] {
            for k in keys.iter() {
                t.add_row(vec![
                    what.to_string(),
                    k.alg.clone(),
                    k.r#use.clone(),
                    k.kid.clone(),
                    fmt_ms(k.exp_unix_ms),
                ]);
            }
        }
        writeln!(out, "{t}")?;
        let mut t = table(&["NODE", "SIGNS WITH", "SERVES"]);
        for n in &s.nodes {
            t.add_row(vec![
                n.hostname.clone(),
                n.signing_kid.clone(),
                if n.error.is_empty() {
                    n.served_kids.join(" ")
                } else {
                    n.error.clone()
                },
            ]);
        }
        writeln!(out, "{t}")
    }
}

pub async fn run(cmd: KeysCmd, ctx: &Ctx) -> Result<Exit> {
    let mut c = KeysClient::new(channel(&ctx.target).await?);
    match cmd {
        KeysCmd::Configure {
            interval,
            enable,
            disable,
            backup,
            no_backup,
            overlap,
        } => {
            let req = ConfigureKeysRequest {
                enabled: (enable || disable).then_some(enable),
                interval_ms: interval.as_deref().map(ms).transpose()?,
                backup: (backup || no_backup).then_some(backup),
                overlap_ms: overlap.as_deref().map(ms).transpose()?,
            };
            let s = c.configure_keys(req).await.map_err(explain)?.into_inner();
            render(ctx.output, &Settings(&s))?;
            Ok(Exit::Ok)
        }
        KeysCmd::Rotate { start } => {
            let r = c
                .rotate_keys(RotateKeysRequest {
                    dry_run: start.dry_run,
                    no_wait: start.no_wait,
                })
                .await
                .map_err(explain)?
                .into_inner();
            let mut cl = ctx.cluster().await?;
            let id = r.workflow.as_ref().map(|w| w.id.clone());
            let exit = crate::workflow::started(&mut cl, r, start.detach, ctx).await?;
            // Every node's configuration holds the new keys: say when the old ones go.
            if let (Some(id), false) = (id, start.detach) {
                let w = cl
                    .get_workflow(clustermgr_proto::WorkflowRef { id })
                    .await
                    .map_err(explain)?
                    .into_inner();
                if let Some(due) = clustermgr_workflow::keys::KeyRotation::retirement_due(&w) {
                    eprintln!(
                        "every node's configuration signs with the new keys (oxAuth uses them from its next reload on the bumped oxRevision); the old keys are retired at {} UTC by a key-retirement workflow (clustermgr keys status)",
                        fmt_ms(due)
                    );
                }
            }
            Ok(exit)
        }
        KeysCmd::Status => {
            let s = c
                .get_keys_status(KeysStatusRequest {})
                .await
                .map_err(explain)?
                .into_inner();
            render(ctx.output, &Status(&s))?;
            Ok(Exit::Ok)
        }
    }
}
