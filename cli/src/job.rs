//! `clustermgr job list|show|logs|run`.

use crate::args::{JobCmd, Output, RunOp};
use crate::client::explain;
use crate::context::{Ctx, Exit};
use crate::output::{Details, Render, printable, render, render_item};
use crate::records::job_json;
use anyhow::{Context, Result, bail};
use clustermgr_proto::*;
use clustermgr_shared::MAX_FILE_BYTES;
use clustermgr_shared::duration::parse_duration;
use clustermgr_shared::fsutil::write_private;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// `Job.state` of a job that succeeded, as the operator API sends it.
const SUCCEEDED: &str = "succeeded";

pub async fn run(cmd: JobCmd, ctx: &Ctx) -> Result<Exit> {
    let mut c = ctx.client().await?;
    match cmd {
        JobCmd::List { node, limit } => {
            let jobs = c
                .list_jobs(ListJobsRequest {
                    node: node.unwrap_or_default(),
                    limit,
                })
                .await
                .map_err(explain)?
                .into_inner()
                .jobs;
            render(ctx.output, jobs.as_slice())?;
        }
        JobCmd::Show { id } => {
            let j = c
                .get_job(GetJobRequest { id })
                .await
                .map_err(explain)?
                .into_inner();
            render(ctx.output, &Details(&j))?;
        }
        JobCmd::Logs { id, follow } => {
            let mut s = c
                .job_logs(JobLogsRequest {
                    id,
                    follow,
                    after_seq: 0,
                })
                .await
                .map_err(explain)?
                .into_inner();
            while let Some(line) = s.message().await.map_err(explain)? {
                render_item(ctx.output, &line)?;
            }
        }
        JobCmd::Run {
            node,
            op,
            timeout,
            no_wait,
        } => return run_op(ctx, &mut c, node, op, &timeout, no_wait).await,
    }
    Ok(Exit::Ok)
}

async fn run_op(
    ctx: &Ctx,
    c: &mut crate::client::Client,
    node: String,
    op: RunOp,
    timeout: &str,
    no_wait: bool,
) -> Result<Exit> {
    let timeout = parse_duration(timeout)?;
    let (operation, out_file, target_path) = operation_of(op)?;
    let started = std::time::Instant::now();
    let r = c
        .submit_job(SubmitJobRequest {
            node: Some(NodeRef { node }),
            operation: Some(Operation {
                kind: Some(operation),
            }),
            timeout_ms: timeout.as_millis().min(u32::MAX as u128) as u32,
            wait: !no_wait,
        })
        .await
        .map_err(explain)?
        .into_inner();
    let job = r.job.unwrap_or_default();
    if no_wait {
        println!("{}", job.id);
        return Ok(Exit::Ok);
    }
    let succeeded = job.state == SUCCEEDED;
    let is_read = matches!(
        job.output.as_ref().and_then(|o| o.kind.as_ref()),
        Some(operation_output::Kind::ReadFile(_))
    );
    // With --out, the content goes to a private file (0600 whatever the umask), not stdout.
    let content_to_stdout = match out_file {
        Some(p) if succeeded && is_read => {
            write_private(&p, &r.content)
                .with_context(|| format!("cannot write {}", p.display()))?;
            eprintln!("wrote {} bytes to {}", r.content.len(), p.display());
            false
        }
        Some(_) => false,
        None => true,
    };
    // A read file piped or redirected is the file as it is; on a terminal it is printable.
    if content_to_stdout
        && succeeded
        && is_read
        && matches!(ctx.output, Output::Table)
        && !std::io::IsTerminal::is_terminal(&std::io::stdout())
    {
        let mut out = std::io::stdout().lock();
        out.write_all(&r.content)?;
        out.flush()?;
        return Ok(Exit::Ok);
    }
    render(
        ctx.output,
        &RunResult {
            job: &job,
            content: if content_to_stdout { &r.content } else { &[] },
            target_path: &target_path,
            elapsed: started.elapsed(),
        },
    )?;
    if !succeeded {
        eprintln!("job {} {}: {}", job.id, job.state, printable(&job.error));
        return Ok(Exit::JobFailed);
    }
    Ok(Exit::Ok)
}

/// The job's operation, with where a read file goes (`--out`) and the path a write targets.
fn operation_of(op: RunOp) -> Result<(operation::Kind, Option<std::path::PathBuf>, String)> {
    let mut out_file = None;
    let mut target_path = String::new();
    let operation = match op {
        RunOp::Ping => operation::Kind::Ping(Ping {
            payload: "ping".into(),
        }),
        RunOp::Facts => operation::Kind::CollectFacts(CollectFacts {}),
        RunOp::ReadFile { path, out } => {
            out_file = out;
            operation::Kind::ReadFile(ReadFile { path })
        }
        RunOp::WriteFile {
            path,
            from,
            mode,
            owner,
            group,
            allow_setid,
        } => {
            target_path.clone_from(&path);
            operation::Kind::WriteFile(WriteFile {
                path,
                content: read_local(&from)?,
                // 0: keep the existing file's mode (0644 for a new file).
                mode: mode.unwrap_or(0),
                owner: owner.unwrap_or_default(),
                group: group.unwrap_or_default(),
                allow_setid,
            })
        }
        RunOp::InstallPackage { sha256, force } => {
            operation::Kind::InstallPackage(InstallPackage {
                source: Some(install_package::Source::CachedSha256(sha256)),
                repository: None,
                force,
            })
        }
    };
    Ok((operation, out_file, target_path))
}

/// The local file a write-file job sends, refused early when it is too large.
fn read_local(from: &Path) -> Result<Vec<u8>> {
    let meta =
        std::fs::metadata(from).with_context(|| format!("cannot read {}", from.display()))?;
    if meta.len() > MAX_FILE_BYTES as u64 {
        bail!(
            "{} is {} bytes; files up to {MAX_FILE_BYTES} bytes can be written",
            from.display(),
            meta.len()
        );
    }
    std::fs::read(from).with_context(|| format!("cannot read {}", from.display()))
}

/// What `job run` prints once the job is over: the job record for scripts; for people, a line
/// per kind of operation (or a read file's content).
struct RunResult<'a> {
    job: &'a Job,
    /// A read file's content to print (empty when it went to --out).
    content: &'a [u8],
    target_path: &'a str,
    elapsed: Duration,
}

impl Render for RunResult<'_> {
    fn json(&self) -> Value {
        job_json(self.job)
    }

    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let job = self.job;
        if job.state != SUCCEEDED {
            return Ok(());
        }
        match job.output.as_ref().and_then(|o| o.kind.as_ref()) {
            Some(operation_output::Kind::ReadFile(_)) => out.write_all(self.content),
            Some(operation_output::Kind::Ping(_)) => writeln!(
                out,
                "pong from {} in {} ms (job {})",
                job.node_hostname,
                self.elapsed.as_millis(),
                job.id
            ),
            Some(operation_output::Kind::WriteFile(w)) => writeln!(
                out,
                "{} {} ({} bytes) on {} (job {})",
                if w.changed { "wrote" } else { "unchanged:" },
                self.target_path,
                w.size,
                job.node_hostname,
                job.id
            ),
            _ => Details(job).human(out),
        }
    }
}
