//! `clustermgr package add|list|remove|push`.

use crate::args::PackageCmd;
use crate::client::{channel, explain};
use crate::context::{Ctx, Exit};
use crate::output::{Details, Render, Row, render, table};
use crate::records::{job_json, output_json};
use anyhow::{Context, Result};
use clustermgr_proto::operator_client::OperatorClient;
use clustermgr_proto::packages_client::PackagesClient;
use clustermgr_proto::*;
use clustermgr_shared::MAX_MESSAGE_BYTES;
use clustermgr_shared::duration::parse_duration;
use clustermgr_shared::util::fmt_ms;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::io::Write;
use tokio::io::AsyncReadExt;
use tonic::transport::Channel;

/// Bytes per upload message.
const UPLOAD_CHUNK: usize = 1 << 20;
/// `Job.state` of a job that succeeded, as the operator API sends it.
const SUCCEEDED: &str = "succeeded";

pub async fn run(cmd: PackageCmd, ctx: &Ctx) -> Result<Exit> {
    let ch = channel(&ctx.target).await?;
    let mut c = PackagesClient::new(ch.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    match cmd {
        PackageCmd::Add { file } => {
            let info = add(&mut c, &file).await?;
            render(ctx.output, &Details(&info))?;
        }
        PackageCmd::List => {
            let list = c
                .list_packages(ListPackagesRequest {})
                .await
                .map_err(explain)?
                .into_inner()
                .packages;
            render(ctx.output, list.as_slice())?;
        }
        PackageCmd::Remove { package } => {
            let info = c
                .remove_package(RemovePackageRequest { package })
                .await
                .map_err(explain)?
                .into_inner();
            render(ctx.output, &Details(&info))?;
        }
        PackageCmd::Push {
            package,
            nodes,
            timeout,
            no_wait,
        } => {
            let timeout = parse_duration(&timeout)?;
            let r = c
                .push_package(PushPackageRequest {
                    package,
                    nodes,
                    timeout_ms: timeout.as_millis().min(u32::MAX as u128) as u32,
                })
                .await
                .map_err(explain)?
                .into_inner();
            if no_wait {
                render(ctx.output, r.jobs.as_slice())?;
                return Ok(Exit::Ok);
            }
            let size = r.package.as_ref().map_or(0, |p| p.size);
            let ops = OperatorClient::new(ch)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
            let finished =
                follow(ops, r.jobs, size, ctx.output == crate::args::Output::Table).await?;
            render(ctx.output, &PushResult(&finished))?;
            if finished.iter().any(|j| j.state != SUCCEEDED) {
                for j in finished.iter().filter(|j| j.state != SUCCEEDED) {
                    eprintln!("{}: job {} {}: {}", j.node_hostname, j.id, j.state, j.error);
                }
                return Ok(Exit::JobFailed);
            }
        }
    }
    Ok(Exit::Ok)
}

/// Streams a local file to the controller: its name and size, then 1 MiB messages.
pub async fn add(c: &mut PackagesClient<Channel>, path: &std::path::Path) -> Result<PackageInfo> {
    let mut f = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    let size = f.metadata().await?.len();
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let (tx, rx) = tokio::sync::mpsc::channel::<AddPackageRequest>(4);
    let reader = tokio::spawn(async move {
        let start = AddPackageRequest {
            msg: Some(add_package_request::Msg::Start(AddPackageStart {
                file_name,
                size,
            })),
        };
        if tx.send(start).await.is_err() {
            return Ok(());
        }
        loop {
            let mut buf = vec![0u8; UPLOAD_CHUNK];
            let mut n = 0;
            while n < buf.len() {
                let got = f.read(&mut buf[n..]).await?;
                if got == 0 {
                    break;
                }
                n += got;
            }
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            buf.truncate(n);
            let msg = AddPackageRequest {
                msg: Some(add_package_request::Msg::Data(buf)),
            };
            if tx.send(msg).await.is_err() {
                return Ok(());
            }
        }
    });
    let r = c
        .add_package(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(explain);
    reader
        .await
        .context("the upload task failed")?
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(r?.into_inner())
}

/// Follows every job to its end, with a progress bar per node (from the agents' progress lines);
/// returns the finished jobs in the order given.
async fn follow(
    ops: OperatorClient<Channel>,
    jobs: Vec<Job>,
    size: u64,
    bars: bool,
) -> Result<Vec<Job>> {
    let multi = MultiProgress::new();
    if !bars {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template(
        "{prefix:>16} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let mut tasks = Vec::new();
    for job in jobs {
        let bar = multi.add(ProgressBar::new(size));
        bar.set_style(style.clone());
        bar.set_prefix(job.node_hostname.clone());
        let mut ops = ops.clone();
        tasks.push(tokio::spawn(async move {
            let stream = ops
                .job_logs(JobLogsRequest {
                    id: job.id.clone(),
                    follow: true,
                    after_seq: 0,
                })
                .await;
            if let Ok(s) = stream {
                let mut s = s.into_inner();
                while let Ok(Some(line)) = s.message().await {
                    if let Some(at) = progress_of(&line.line) {
                        bar.set_position(at);
                    }
                }
            }
            let done = ops
                .get_job(GetJobRequest { id: job.id.clone() })
                .await
                .map(|r| r.into_inner())
                .unwrap_or(job);
            if done.state == SUCCEEDED {
                bar.set_position(bar.length().unwrap_or(0));
                bar.finish_with_message(summary(&done));
            } else {
                bar.abandon_with_message(format!("{}: {}", done.state, done.error));
            }
            done
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.context("following a job failed")?);
    }
    Ok(out)
}

/// `progress: DONE/TOTAL bytes ...` from the agent's log.
fn progress_of(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("progress: ")?;
    rest.split('/').next()?.parse().ok()
}

fn receive_output(j: &Job) -> Option<&ReceivePackageOutput> {
    match j.output.as_ref().and_then(|o| o.kind.as_ref()) {
        Some(operation_output::Kind::ReceivePackage(r)) => Some(r),
        _ => None,
    }
}

fn summary(j: &Job) -> String {
    match receive_output(j) {
        Some(r) if r.already_cached => "already cached".into(),
        Some(r) if r.resumed_from > 0 => format!(
            "received {} bytes (resumed at {})",
            r.received_bytes, r.resumed_from
        ),
        Some(r) => format!("received {} bytes", r.received_bytes),
        None => j.state.clone(),
    }
}

/// What `package push` prints: one row (or JSON object) per node.
struct PushResult<'a>(&'a [Job]);

impl Render for PushResult<'_> {
    fn json(&self) -> Value {
        Value::Array(
            self.0
                .iter()
                .map(|j| {
                    let mut v = job_json(j);
                    // The receive-package output, flat, for scripts.
                    v["already_cached"] =
                        json!(receive_output(j).is_some_and(|r| r.already_cached));
                    v["resumed_from"] = json!(receive_output(j).map_or(0, |r| r.resumed_from));
                    v["received_bytes"] = json!(receive_output(j).map_or(0, |r| r.received_bytes));
                    v["output"] = output_json(j);
                    v
                })
                .collect(),
        )
    }
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut t = table(&["NODE", "STATE", "RESULT", "JOB"]);
        for j in self.0 {
            let result = if j.state == SUCCEEDED {
                summary(j)
            } else {
                j.error.clone()
            };
            t.add_row(vec![
                j.node_hostname.clone(),
                j.state.clone(),
                result,
                j.id.clone(),
            ]);
        }
        writeln!(out, "{t}")
    }
}

impl Row for PackageInfo {
    const HEADER: &'static [&'static str] = &[
        "NAME", "VERSION", "ARCH", "FORMAT", "SIZE", "SHA256", "ADDED",
    ];
    fn json(&self) -> Value {
        json!({
            "name": self.name,
            "version": self.version,
            "arch": self.arch,
            "format": self.format,
            "sha256": self.sha256,
            "size": self.size,
            "added": fmt_ms(self.added_unix_ms),
            "added_by": self.added_by,
        })
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.version.clone(),
            self.arch.clone(),
            self.format.clone(),
            self.size.to_string(),
            self.sha256.clone(),
            fmt_ms(self.added_unix_ms),
        ]
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_lines_are_read() {
        assert_eq!(
            super::progress_of("progress: 1048576/67108864 bytes (1%)"),
            Some(1_048_576)
        );
        assert_eq!(super::progress_of("receiving x"), None);
    }
}
