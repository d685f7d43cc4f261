//! `clustermgr status`: the cluster overview (every node, its session and its services, the
//! last change of each) and the latest service events.

use crate::client::{channel, explain};
use crate::context::{Ctx, Exit};
use crate::output::{Render, render, table};
use anyhow::Result;
use clustermgr_proto::monitor_client::MonitorClient;
use clustermgr_proto::{ClusterStatus, GetStatusRequest};
use clustermgr_shared::util::fmt_ms;
use serde_json::Value;
use std::io::Write;

impl Render for ClusterStatus {
    fn json(&self) -> Value {
        crate::view::cluster_status(self)
    }

    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut t = table(&[
            "NODE", "ROLE", "SESSION", "SERVICE", "STATE", "SINCE", "DETAIL",
        ]);
        for n in &self.nodes {
            if n.services.is_empty() {
                t.add_row(vec![
                    n.hostname.clone(),
                    n.role.clone(),
                    n.status.clone(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    String::new(),
                ]);
            }
            for (i, s) in n.services.iter().enumerate() {
                let first = i == 0;
                t.add_row(vec![
                    if first {
                        n.hostname.clone()
                    } else {
                        String::new()
                    },
                    if first { n.role.clone() } else { String::new() },
                    if first {
                        n.status.clone()
                    } else {
                        String::new()
                    },
                    s.service.clone(),
                    s.state.clone(),
                    fmt_ms(s.since_unix_ms),
                    s.detail.clone(),
                ]);
            }
        }
        writeln!(out, "{t}")?;
        if !self.events.is_empty() {
            let mut e = table(&["TIME", "NODE", "SERVICE", "CHANGE", "DETAIL"]);
            for ev in &self.events {
                e.add_row(vec![
                    fmt_ms(ev.unix_ms),
                    ev.hostname.clone(),
                    ev.service.clone(),
                    if ev.up { "up" } else { "down" }.into(),
                    ev.detail.clone(),
                ]);
            }
            writeln!(out, "Recent events:\n{e}")?;
        }
        Ok(())
    }
}

pub async fn run(events: u32, ctx: &Ctx) -> Result<Exit> {
    let mut c = MonitorClient::new(channel(&ctx.target).await?)
        .max_decoding_message_size(clustermgr_shared::MAX_MESSAGE_BYTES);
    let s = c
        .get_status(GetStatusRequest { events })
        .await
        .map_err(explain)?
        .into_inner();
    render(ctx.output, &s)?;
    Ok(Exit::Ok)
}
