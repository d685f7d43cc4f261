//! `clustermgr status`: the cluster overview (every node, its session and its services, the
//! last change of each) and the latest service events.

use super::client::{channel, explain};
use super::output::{Render, render, table};
use super::{Ctx, Exit};
use anyhow::Result;
use clustermgr_proto::monitor_client::MonitorClient;
use clustermgr_proto::{ClusterStatus, GetStatusRequest};
use clustermgr_shared::util::fmt_ms;
use serde_json::{Value, json};
use std::io::Write;

impl Render for ClusterStatus {
    fn json(&self) -> Value {
        json!({
            "period_ms": self.period_ms,
            "nodes": self.nodes.iter().map(|n| json!({
                "node_id": n.node_id, "hostname": n.hostname, "role": n.role, "status": n.status,
                "services": n.services.iter().map(|s| json!({
                    "service": s.service, "state": s.state, "detail": s.detail,
                    "since": fmt_ms(s.since_unix_ms), "checked": fmt_ms(s.checked_unix_ms),
                    "latency_ms": s.latency_ms,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "events": self.events.iter().map(|e| json!({
                "time": fmt_ms(e.unix_ms), "node_id": e.node_id, "hostname": e.hostname,
                "service": e.service, "state": if e.up { "up" } else { "down" }, "detail": e.detail,
            })).collect::<Vec<_>>(),
        })
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
