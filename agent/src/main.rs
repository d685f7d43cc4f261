//! `clustermgr-agent`: join a cluster, then run.
#![forbid(unsafe_code)]

use anyhow::Result;
use clap::{Parser, Subcommand};
use clustermgr_agent::session::RunOptions;
use clustermgr_agent::{StateDir, join, session, state};
use clustermgr_shared::Secret;
use clustermgr_shared::duration::parse_duration;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "clustermgr-agent",
    version,
    about = "clustermgr node agent: dials the controller over mutual TLS and carries out typed operations on this host. It never listens on a port."
)]
struct Cli {
    /// State directory (identity, CA, config).
    #[arg(long, global = true, env = "CLUSTERMGR_AGENT_STATE_DIR", default_value_os_t = state::default_state_dir())]
    state_dir: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Join a cluster with a one-time token; the key is made here and never leaves this host.
    Join {
        /// Controller address HOST:PORT.
        #[arg(long)]
        controller: String,
        /// Join token from `clustermgr token create` (or set CLUSTERMGR_JOIN_TOKEN).
        #[arg(long, env = "CLUSTERMGR_JOIN_TOKEN", hide_env_values = true)]
        token: String,
        /// Expected CA pin, sha256:<hex>, as printed by `clustermgr init`.
        #[arg(long)]
        ca_pin: String,
        /// Re-join even if this host already has an identity (e.g. after its certificate expired).
        #[arg(long)]
        force: bool,
        /// Root directory for every path the agent manages ("/" on a real host).
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Hostname to report (default: the kernel's).
        #[arg(long)]
        hostname: Option<String>,
        /// Address to report and to connect from (default: all interface addresses).
        #[arg(long)]
        address: Option<String>,
    },
    /// Run the agent: keep the session to the controller and carry out jobs.
    Run {
        /// Longest wait between reconnection attempts.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        max_backoff: Duration,
        /// HTTP/2 keep-alive interval; a silent connection is dropped after about twice this.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        keepalive: Duration,
        /// How often host metrics are sampled and sent (0s: never).
        #[arg(long, default_value = "15s", value_parser = parse_duration)]
        metrics_interval: Duration,
    },
    /// Show this host's identity and certificate validity.
    Status,
    /// Print the man page (roff) on stdout; the packages install it as clustermgr-agent(1).
    #[command(hide = true)]
    Man,
}

fn main() -> ExitCode {
    // First, before any thread or allocation that matters: the allocator's settings.
    clustermgr_agent::allocator::settle(std::env::args_os());
    clustermgr_shared::logging::init_tracing();
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(real_main()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Worker threads at most: the agent's work is I/O on one session and a few reads of files;
/// each worker beyond these only costs memory (its stack and an allocator arena) on a node with
/// many cores.
const MAX_WORKERS: usize = 2;
/// How long an idle blocking thread (a log search, a file read) is kept for the next one; after
/// that it exits and its stack is returned.
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(2);

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.min(MAX_WORKERS))
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .enable_all()
        .build()
}

async fn real_main() -> Result<()> {
    let cli = Cli::parse();
    let state = StateDir::new(cli.state_dir);
    match cli.cmd {
        Cmd::Join {
            controller,
            token,
            ca_pin,
            force,
            root,
            hostname,
            address,
        } => {
            let cfg = join::join(join::JoinArgs {
                controller,
                token: Secret::new(token),
                ca_pin,
                state,
                force,
                root,
                hostname,
                address,
            })
            .await?;
            println!("{}", cfg.node_id);
            Ok(())
        }
        Cmd::Run {
            max_backoff,
            keepalive,
            metrics_interval,
        } => {
            session::run(
                state,
                RunOptions {
                    max_backoff,
                    keepalive,
                    metrics_interval,
                    ..Default::default()
                },
            )
            .await
        }
        Cmd::Status => {
            let cfg = state.load_config()?;
            let id = state.load_identity()?;
            println!("node id:      {}", cfg.node_id);
            println!("role:         {}", cfg.role);
            println!("controller:   {}", cfg.controller);
            println!("root:         {}", cfg.root.display());
            println!(
                "certificate:  valid until {}",
                clustermgr_shared::util::fmt_unix(id.info.not_after_unix)
            );
            session::check_not_expired(&id.info)
        }
        Cmd::Man => {
            use clap::CommandFactory;
            use std::io::Write;
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            std::io::stdout().write_all(&page)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_flags(args: &[&str]) -> Result<(Duration, Duration), clap::Error> {
        let mut all = vec!["clustermgr-agent", "run"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all)?.cmd {
            Cmd::Run {
                max_backoff,
                keepalive,
                ..
            } => Ok((max_backoff, keepalive)),
            _ => Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand)),
        }
    }

    #[test]
    fn durations_read_like_the_controllers() {
        assert_eq!(
            run_flags(&[]).unwrap(),
            (Duration::from_secs(30), Duration::from_secs(10))
        );
        // The controller accepts days for its settings; so does the agent.
        assert_eq!(
            run_flags(&["--max-backoff", "1d", "--keepalive", "1m30s"]).unwrap(),
            (Duration::from_secs(86_400), Duration::from_secs(90))
        );
        assert_eq!(
            run_flags(&["--max-backoff", "500ms", "--keepalive", "15"]).unwrap(),
            (Duration::from_millis(500), Duration::from_secs(15))
        );
        assert!(run_flags(&["--max-backoff", "soon"]).is_err());
    }
}
