//! Scale benchmark: a real controller process on loopback and N simulated agents in this process
//! (each with its own key, certificate, loopback source address and TLS connection), for each N
//! given (`--agents 1000,5000,10000`, a fresh controller per N).
//!
//! Prints, for each N, the enrollment rate, the controller's resident memory once every agent is
//! connected and at its peak, the latency of a ping fan-out to every agent through the operator
//! API, failures, and the store file's size after the run; then the idle resident memory of one
//! real `clustermgr-agent`. It exits non-zero only on errors; missed targets are reported, not
//! failed.
//!
//! Each mode lives in its own module under `bench/` (the scale fan-out in `scale.rs`).
#![forbid(unsafe_code)]

#[path = "bench/common.rs"]
mod common;
#[path = "bench/console.rs"]
mod console;
#[path = "bench/day2.rs"]
mod day2;
#[path = "bench/footprint.rs"]
mod footprint;
#[path = "bench/fsrep.rs"]
mod fsrep;
#[path = "bench/fsrep_flood.rs"]
mod fsrep_flood;
#[path = "bench/idle_flood.rs"]
mod idle_flood;
#[path = "bench/keys.rs"]
mod keys;
#[path = "bench/lb.rs"]
mod lb;
#[path = "bench/log_search.rs"]
mod log_search;
#[path = "bench/metrics_flood.rs"]
mod metrics_flood;
#[path = "bench/metrics_ingest.rs"]
mod metrics_ingest;
#[path = "bench/packaging.rs"]
mod packaging;
#[path = "bench/push.rs"]
mod push;
#[path = "bench/replication.rs"]
mod replication;
#[path = "bench/sandbox.rs"]
mod sandbox;
#[path = "bench/scale.rs"]
mod scale;
#[path = "bench/scale_report.rs"]
mod scale_report;

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::Parser;
use clustermgr_proto::operator_client::OperatorClient;
use clustermgr_proto::{
    Inventory, ListNodesRequest, NodeRef, Operation, Ping, SubmitJobRequest, operation,
};
use clustermgr_shared::config::ClientBundle;
use clustermgr_shared::dial::{self, DialOptions};
use clustermgr_shared::{MAX_MESSAGE_BYTES, Secret, pki, tls};
use clustermgr_tests::fake_peer::{Enrollment, PeerStats};
use clustermgr_tests::{Agent, Controller, eventually, procfs};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tonic::transport::Channel;
use {
    common::*, footprint::*, fsrep::*, keys::*, lb::*, log_search::*, metrics_ingest::*, push::*,
    replication::*, sandbox::*, scale::*, scale_report::*,
};

/// Targets from the scale requirement: 10,000 agents on one controller (2-core machine).
const TARGET_AGENTS: usize = 10_000;
const RSS_TARGET_MB: f64 = 1536.0;
const P99_TARGET_MS: f64 = 1000.0;
/// Heartbeat interval given to the controller (`serve --heartbeat-interval`).
const HEARTBEAT: &str = "10s";
/// One join token allows at most this many uses.
const MAX_AGENTS: usize = 10_000;

#[derive(Parser, Debug)]
#[command(
    name = "clustermgr-bench",
    about = "Connect N simulated agents to one controller on loopback (for each N given) and print \
             enrollment rate, controller RSS, ping fan-out latency and store size, then the idle \
             RSS of one real agent"
)]
struct Args {
    /// Numbers of simulated agents, comma-separated; each gets a fresh controller (at most
    /// 10000 each, the most uses one join token allows).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    agents: Vec<usize>,
    /// Ping fan-out rounds (one ping job to every agent per round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Enrollments / session connects in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections the fan-out's operator calls are spread over (default: enough that
    /// none carries more than 48 calls at once, at least 8; the controller caps concurrent
    /// streams per connection).
    #[arg(long)]
    channels: Option<usize>,
    /// Also send the "pong" log line the real agent sends before each ping result.
    #[arg(long)]
    log_lines: bool,
    /// Seconds one real clustermgr-agent idles, connected, before its RSS is read (0: skip).
    #[arg(long, default_value_t = 5)]
    agent_idle_secs: u64,
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(clap::Subcommand, Debug)]
enum Mode {
    /// Package push throughput: a controller and N real agents on loopback, one package pushed
    /// to all of them at once; then the same file copied with scp to one sshd on loopback.
    Push {
        /// Package size in MB (random, uncompressed payload).
        #[arg(long, default_value_t = 200)]
        size_mb: usize,
        /// Agents pushed to at once.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
    },
    /// Wall time of `clustermgr sandbox up` with the full Gluu install (the stand-in package,
    /// pushed and installed offline on every node), then of `sandbox down`.
    Sandbox {
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        /// Runs (the figures of each, then the median).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// LDAP replication latency: a 3-node sandbox (install and replication deploy timed), N
    /// writes on node 1 each timed until visible on nodes 2 and 3; then the floor, two plain
    /// slapd wired by hand with the same syncrepl settings, the same N writes; then the ratio.
    Replication {
        #[arg(long, default_value_t = 200)]
        writes: usize,
    },
    /// Load balancer throughput: a sandbox (Gluu on N nodes, replication, nginx on lb.sandbox),
    /// then GET /.well-known/openid-configuration for S seconds over C keep-alive connections
    /// through the balancer, and the same directly to one node; requests/s of each and the
    /// ratio (printed, not asserted).
    Lb {
        #[arg(long, default_value_t = 2)]
        nodes: u8,
        /// Seconds each target is measured.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Connections (each sends its next request when the last one was answered).
        #[arg(long, default_value_t = 16)]
        connections: usize,
    },
    /// File replication latency: one origin and N receivers (real agents on sandbox roots);
    /// single small-file changes timed until on every receiver (p50/p99), a burst of files, and
    /// the agent's idle CPU and RSS while watching the default paths.
    Fsrep {
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        #[arg(long, default_value_t = 200)]
        changes: usize,
        #[arg(long, default_value_t = 1000)]
        burst: usize,
        /// Seconds the origin agent idles before its CPU and RSS are read (0: skip).
        #[arg(long, default_value_t = 10)]
        idle_secs: u64,
    },
    /// oxAuth key rotation: a sandbox (Gluu on N nodes, replicated), `keys rotate` timed while
    /// a client requests a token from a random node and verifies it against a random node's
    /// JWKS every 50 ms; the verification failures counted (target: 0).
    /// The web console: the dashboard's server time and page weight with `--nodes` simulated
    /// agents (10 nodes for comparison; the page must list every node), and the live workflow
    /// page's events per second during a replication deploy on a 3-node sandbox, to one browser
    /// and to `--watchers` at once.
    Console {
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        #[arg(long, default_value_t = 20)]
        watchers: usize,
    },
    Keys {
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        /// How long the old keys stay published after the switch.
        #[arg(long, default_value = "10s")]
        overlap: String,
    },
    /// Idle connections without a client certificate held against a real controller (each
    /// closed one opened again), and the time a real agent takes to join and be online, and an
    /// operator call, without and during the flood.
    IdleFlood {
        #[arg(long, default_value_t = 20_000)]
        idle: usize,
        /// Loopback source addresses the connections come from (127.4.x.y).
        #[arg(long, default_value_t = 1000)]
        sources: usize,
        /// Real agents timed without, and then during, the flood.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Milliseconds before a connection the controller closed is opened again.
        #[arg(long, default_value_t = 1000)]
        reopen_ms: u64,
    },
    /// A process of the idle flood (started by `idle-flood`).
    #[command(hide = true)]
    IdleFloodHold {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        first: usize,
        #[arg(long)]
        sources: usize,
        #[arg(long)]
        reopen_ms: u64,
    },
    /// One node's credential sending metrics at full speed (new series, old series) while a
    /// well-behaved node sends its own: the store's growth and the controller's RSS against the
    /// documented bound, what was stored and refused, an operator call's latency before and
    /// during.
    MetricsFlood {
        #[arg(long, default_value_t = 60)]
        secs: u64,
    },
    /// Day-2 operations through a sandbox's load balancer: a client (a round every
    /// --period-ms from 8 source addresses) through cert install, cache password set,
    /// replication deploy --all, schema add and server remove; failed/total rounds per
    /// operation, its wall time and its draining's; then one node's oxAuth frozen and killed
    /// without draining.
    Day2 {
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        #[arg(long, default_value_t = 50)]
        period_ms: u64,
    },
    /// One node's credential floods file replication: `--files` new small files (inline), then
    /// `--uploads` streamed ones of `--upload-mb`, at the default limits, while a real agent
    /// receives. Printed: the controller's RSS before, at its peak and after, what it kept
    /// (paths, bytes, its blob directory and store on disk), how long the rate limit made the
    /// flood take, and the limits' status entries.
    FsrepFlood {
        #[arg(long, default_value_t = 3000)]
        files: usize,
        #[arg(long, default_value_t = 60)]
        size_kb: usize,
        #[arg(long, default_value_t = 40)]
        uploads: usize,
        #[arg(long, default_value_t = 8)]
        upload_mb: usize,
        /// Lower the bytes the controller keeps for the run (`fsrep limits --max-total-bytes`).
        #[arg(long)]
        max_total_bytes: Option<String>,
    },
    /// Metrics ingest: N simulated agents each sending a 40-point metrics batch every
    /// `--every` (15 s on a real agent; compressed here), the controller's CPU and RSS sampled
    /// every second over `--secs`; the load printed with its real-time equivalent.
    MetricsIngest {
        #[arg(long, default_value_t = 1000)]
        agents: usize,
        /// Seconds between two batches of one agent (1.5 = 10x a real agent's 15 s).
        #[arg(long, default_value_t = 1.5)]
        every_secs: f64,
        /// Seconds the controller is measured once every agent is online.
        #[arg(long, default_value_t = 60)]
        secs: u64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Log search: 3 real agents on sandbox roots, each with `--size-mb` of oxAuth-style logs;
    /// wall time of `clustermgr logs --grep P --type oxauth` over all three against
    /// `grep -c P` over one node's files, in the same run.
    LogSearch {
        /// Log volume per node, in MB.
        #[arg(long, default_value_t = 1024)]
        size_mb: usize,
        /// A literal (the same meaning to the Rust regex and to grep).
        #[arg(long, default_value = "invalid_grant")]
        pattern: String,
        /// Runs of each (the median is printed).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Agent footprint: one idle agent (metrics every 15 s, no health checks) beside
    /// prometheus-node-exporter (scraped every 15 s, as Prometheus would), RSS and CPU of each
    /// sampled every second over `--secs`.
    AgentFootprint {
        #[arg(long, default_value_t = 30)]
        secs: u64,
        #[arg(long, default_value = "/usr/bin/prometheus-node-exporter")]
        node_exporter: PathBuf,
    },
    /// The packages in booted systemd machines (as root): package sizes, `apt-get install` of
    /// the agent to the node online, and a rolling `agent upgrade` of every node.
    Packaging {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    match args.mode {
        Some(Mode::Push { size_mb, nodes }) => return push_bench(size_mb, nodes),
        Some(Mode::Sandbox { nodes, runs }) => return sandbox_bench(nodes, runs),
        Some(Mode::Replication { writes }) => return replication_bench(writes),
        Some(Mode::Lb {
            nodes,
            secs,
            connections,
        }) => return lb_bench(nodes, secs, connections),
        Some(Mode::Fsrep {
            nodes,
            changes,
            burst,
            idle_secs,
        }) => return fsrep_bench(nodes, changes, burst, idle_secs),
        Some(Mode::Keys { nodes, overlap }) => return keys_bench(nodes, &overlap),
        Some(Mode::IdleFlood {
            idle,
            sources,
            runs,
            reopen_ms,
        }) => return idle_flood::idle_flood_bench(idle, sources, runs, reopen_ms),
        Some(Mode::IdleFloodHold {
            ref addr,
            ref ca,
            count,
            first,
            sources,
            reopen_ms,
        }) => return idle_flood::hold_worker(addr, ca, count, first, sources, reopen_ms),
        Some(Mode::MetricsFlood { secs }) => return metrics_flood::run(secs),
        Some(Mode::Day2 { nodes, period_ms }) => return day2::run(nodes, period_ms),
        Some(Mode::FsrepFlood {
            files,
            size_kb,
            uploads,
            upload_mb,
            max_total_bytes,
        }) => return fsrep_flood::run(files, size_kb, uploads, upload_mb, max_total_bytes),
        Some(Mode::MetricsIngest {
            agents,
            every_secs,
            secs,
            concurrency,
        }) => return metrics_ingest_bench(agents, every_secs, secs, concurrency),
        Some(Mode::LogSearch {
            size_mb,
            ref pattern,
            runs,
        }) => return log_search_bench(size_mb, pattern, runs),
        Some(Mode::AgentFootprint {
            secs,
            ref node_exporter,
        }) => return agent_footprint_bench(secs, node_exporter),
        Some(Mode::Packaging { nodes }) => return packaging::run(nodes),
        Some(Mode::Console { nodes, watchers }) => return console::run(nodes, watchers),
        None => {}
    }
    scale::run(&args)
}
