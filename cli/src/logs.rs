//! `clustermgr logs`: one line per match, `TIME HOST TYPE | LINE` (or one JSON object per line
//! with `--output json`), then a summary per node on standard error.

use crate::args::{LogKind, LogsArgs};
use crate::client::{channel, explain};
use crate::context::{Ctx, Exit};
use crate::output::{Render, render_item};
use anyhow::{Context, Result};
use clustermgr_proto::logs_client::LogsClient;
use clustermgr_proto::{LogEntry, LogType, SearchLogsRequest, log_search_event};
use clustermgr_shared::util::fmt_ms;
use serde_json::{Value, json};
use std::io::Write;

/// One matching line: `TIME HOST TYPE | LINE`, or one compact JSON object.
impl Render for LogEntry {
    fn json(&self) -> Value {
        json!({
            "time": fmt_ms(self.unix_ms), "node_id": self.node_id,
            "hostname": self.hostname, "type": entry_type(self), "file": self.file,
            "line": self.line,
        })
    }

    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{} {} {} | {}",
            fmt_ms(self.unix_ms),
            self.hostname,
            entry_type(self),
            self.line
        )
    }
}

fn entry_type(e: &LogEntry) -> &'static str {
    LogType::try_from(e.r#type).unwrap_or_default().label()
}

fn log_type(k: LogKind) -> LogType {
    match k {
        LogKind::Oxauth => LogType::Oxauth,
        LogKind::Oxtrust => LogType::Oxtrust,
        LogKind::Httpd => LogType::Httpd,
        LogKind::Ldap => LogType::Ldap,
        LogKind::Redis => LogType::Redis,
        LogKind::Agent => LogType::Agent,
    }
}

pub async fn run(a: LogsArgs, ctx: &Ctx) -> Result<Exit> {
    let since_ms = match &a.since {
        Some(s) => clustermgr_shared::duration::parse_duration(s)
            .with_context(|| format!("--since {s}"))?
            .as_millis() as u64,
        None => 0,
    };
    let req = SearchLogsRequest {
        types: a.types.iter().map(|t| log_type(*t) as i32).collect(),
        nodes: a.nodes.clone(),
        grep: a.grep.clone().unwrap_or_default(),
        since_ms,
        follow: a.follow,
        limit: a.limit,
    };
    let mut c = LogsClient::new(channel(&ctx.target).await?)
        .max_decoding_message_size(clustermgr_shared::MAX_MESSAGE_BYTES);
    let mut stream = c.search(req).await.map_err(explain)?.into_inner();
    let mut failed = false;
    while let Some(ev) = stream.message().await.map_err(explain)? {
        match ev.event {
            // Standard output closed (e.g. piped into head): stop quietly.
            Some(log_search_event::Event::Entry(e)) if render_item(ctx.output, &e).is_err() => {
                return Ok(Exit::Ok);
            }
            Some(log_search_event::Event::Entry(_)) => {}
            Some(log_search_event::Event::NodeDone(d)) => {
                if d.error.is_empty() {
                    eprintln!(
                        "{}: {} line(s) matched, {} shown{}",
                        d.hostname,
                        d.matched,
                        d.sent,
                        if d.truncated {
                            " (the oldest were left out: raise --limit or narrow the search)"
                        } else {
                            ""
                        }
                    );
                } else {
                    failed = true;
                    eprintln!(
                        "{}: not searched: {}",
                        d.hostname,
                        crate::output::printable(&d.error)
                    );
                }
            }
            None => {}
        }
    }
    Ok(if failed { Exit::JobFailed } else { Exit::Ok })
}
