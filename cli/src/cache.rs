//! `clustermgr cache install|status|remove|password`: the cluster's Redis behind stunnel. The
//! starting commands follow their workflow like `gluu install` (`--dry-run`, `--detach`);
//! `status` exits 1 unless every node is healthy. A password is never a flag value: random, or
//! read from a file.

use crate::args::{CacheCmd, CachePasswordCmd};
use crate::client::{channel, explain};
use crate::context::{Ctx, Exit};
use crate::output::{Render, Row, render, table};
use anyhow::{Context, Result};
use clustermgr_proto::cache_client::CacheClient;
use clustermgr_proto::{
    CacheNodeState, CacheStatusReport, CacheStatusRequest, InstallCacheRequest, NodeRef,
    RemoveCacheRequest, SetCachePasswordRequest,
};
use clustermgr_shared::MAX_MESSAGE_BYTES;
use clustermgr_shared::util::fmt_ms;
use serde_json::Value;
use std::io::Write;

impl Row for CacheNodeState {
    const HEADER: &'static [&'static str] = &[
        "HOSTNAME",
        "ROLE",
        "ONLINE",
        "REDIS",
        "STUNNEL",
        "TWEMPROXY",
        "PING",
        "HEALTHY",
        "ERROR",
    ];
    fn json(&self) -> Value {
        crate::view::cache_node(self)
    }
    fn cells(&self) -> Vec<String> {
        let yn = |b: bool| if b { "yes" } else { "no" }.to_string();
        let up = |b: bool| if b { "up" } else { "down" }.to_string();
        vec![
            self.hostname.clone(),
            self.role.clone(),
            yn(self.online),
            if self.role == "cache" {
                up(self.redis_running)
            } else {
                "-".into()
            },
            up(self.stunnel_running),
            if self.nutcracker_running {
                "up".into()
            } else {
                "-".into()
            },
            if self.ping_ok {
                format!("PONG {}", self.ping_address)
            } else {
                "no".into()
            },
            yn(self.healthy),
            self.error.clone(),
        ]
    }
}

pub(crate) struct Report<'a>(pub(crate) &'a CacheStatusReport);

impl Render for Report<'_> {
    fn json(&self) -> Value {
        crate::view::cache_report(self.0)
    }
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if !self.0.installed {
            return writeln!(out, "no cache installed (clustermgr cache install NODE)");
        }
        let mut t = table(CacheNodeState::HEADER);
        for n in &self.0.nodes {
            t.add_row(n.cells());
        }
        writeln!(out, "{t}")?;
        writeln!(
            out,
            "Redis password {}; checked {}; {}",
            if self.0.password_set { "set" } else { "unset" },
            fmt_ms(self.0.checked_unix_ms),
            if self.0.healthy {
                "the cache is healthy"
            } else {
                "the cache is NOT healthy"
            }
        )
    }
}

async fn client(ctx: &Ctx) -> Result<CacheClient<tonic::transport::Channel>> {
    Ok(CacheClient::new(channel(&ctx.target).await?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// A password file's content without its line ending.
fn read_password(path: &std::path::Path) -> Result<Vec<u8>> {
    let mut b = std::fs::read(path)
        .with_context(|| format!("cannot read the password file {}", path.display()))?;
    while matches!(b.last(), Some(b'\n' | b'\r')) {
        b.pop();
    }
    if b.is_empty() {
        anyhow::bail!(
            "the password file {} is empty (use `cache password clear` for no password)",
            path.display()
        );
    }
    Ok(b)
}

pub async fn run(cmd: CacheCmd, ctx: &Ctx) -> Result<Exit> {
    let mut c = client(ctx).await?;
    let (r, start) = match cmd {
        CacheCmd::Install { nodes, start } => (
            c.install(InstallCacheRequest {
                nodes: nodes.into_iter().map(|node| NodeRef { node }).collect(),
                dry_run: start.dry_run,
                no_wait: start.no_wait,
            })
            .await,
            start,
        ),
        CacheCmd::Remove { start } => (
            c.remove(RemoveCacheRequest {
                dry_run: start.dry_run,
                no_wait: start.no_wait,
            })
            .await,
            start,
        ),
        CacheCmd::Password(CachePasswordCmd::Set {
            password_file,
            start,
        }) => {
            let password = match password_file {
                Some(f) => read_password(&f)?,
                None => Vec::new(),
            };
            (
                c.set_password(SetCachePasswordRequest {
                    password,
                    clear: false,
                    dry_run: start.dry_run,
                    no_wait: start.no_wait,
                })
                .await,
                start,
            )
        }
        CacheCmd::Password(CachePasswordCmd::Clear { start }) => (
            c.set_password(SetCachePasswordRequest {
                password: Vec::new(),
                clear: true,
                dry_run: start.dry_run,
                no_wait: start.no_wait,
            })
            .await,
            start,
        ),
        CacheCmd::Status => {
            let r = c
                .status(CacheStatusRequest {})
                .await
                .map_err(explain)?
                .into_inner();
            render(ctx.output, &Report(&r))?;
            return Ok(if r.healthy { Exit::Ok } else { Exit::JobFailed });
        }
    };
    let r = r.map_err(explain)?.into_inner();
    let mut wc = ctx.cluster().await?;
    crate::workflow::started(&mut wc, r, start.detach, ctx).await
}
