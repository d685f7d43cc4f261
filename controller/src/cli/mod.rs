//! The `clustermgr` command line: the daemon (`init`, `serve`), the operator commands (talking
//! to the operator API like any integration would) and the local sandbox.

pub mod ca;
pub mod client;
pub mod init;
pub mod output;

use crate::config::{DataDir, default_data_dir, parse_duration};
use crate::sandbox;
use crate::server::{self, ServeOptions};
use anyhow::{Context, Result, bail};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use client::{Target, connect, explain};
use clustermgr_proto::*;
use clustermgr_shared::config::ClientBundle;
use clustermgr_shared::{MAX_FILE_BYTES, pki};
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "clustermgr",
    version,
    about = "Cluster manager for Gluu Server: controller daemon and operator CLI",
    long_about = "clustermgr turns a handful of machines into a highly available Gluu Server cluster. \
                  The controller holds cluster state and is the certificate authority; an agent on \
                  every node dials it over mutual TLS and carries out typed operations."
)]
pub struct Cli {
    /// Controller data directory (CA, store, admin credential).
    #[arg(long, global = true, env = "CLUSTERMGR_DATA_DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// Operator credential file (default: DATA_DIR/admin.toml).
    #[arg(long, global = true, env = "CLUSTERMGR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Controller address HOST:PORT (default: the one in the credential).
    #[arg(long, global = true, env = "CLUSTERMGR_CONTROLLER")]
    pub controller: Option<String>,
    /// Output format for commands that print records.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Create the data directory, the cluster CA, the server certificate and the admin credential.
    /// Prints the CA pin on stdout.
    Init {
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:7443")]
        listen: String,
        /// Address clients and agents dial (default: the listen address, or 127.0.0.1 when listening on all).
        #[arg(long)]
        advertise: Option<String>,
        /// Extra DNS name or IP address for the server certificate (repeatable).
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Start over in an initialised directory (discards the CA and all identities).
        #[arg(long)]
        force: bool,
    },
    /// Run the controller daemon.
    Serve {
        /// Listen address (default: from controller.toml).
        #[arg(long)]
        listen: Option<String>,
        /// New nodes wait as pending until `clustermgr node approve`.
        #[arg(long)]
        require_approval: bool,
        /// Lifetime of node certificates (default 30d).
        #[arg(long)]
        node_cert_ttl: Option<String>,
        /// Agent heartbeat interval (default 5s); a node is offline after three missed.
        #[arg(long)]
        heartbeat_interval: Option<String>,
    },
    /// The cluster CA.
    #[command(subcommand)]
    Ca(CaCmd),
    /// Join tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Nodes.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Jobs: typed operations on nodes.
    #[command(subcommand)]
    Job(JobCmd),
    /// Operator credentials.
    #[command(subcommand)]
    Operator(OperatorCmd),
    /// Show the audit log.
    Audit {
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show who the current credential is.
    Whoami,
    /// A local sandbox cluster: a controller plus agents, each "host" on its own loopback address.
    #[command(subcommand)]
    Sandbox(SandboxCmd),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (one per command) into a directory, or the main page to stdout.
    Man {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

pub use ca::CaCmd;

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create a join token; prints the token alone on stdout.
    Create {
        #[arg(long, value_parser = ["gluu-node", "cache", "lb"])]
        role: String,
        #[arg(long, default_value = "30m")]
        ttl: String,
        #[arg(long, default_value_t = 1)]
        uses: u32,
    },
    /// List join tokens (ids, roles, expiry, uses left; never the secret).
    List,
    /// Revoke a join token by id, so that it can no longer be used.
    Revoke { id: String },
}

#[derive(Subcommand)]
pub enum NodeCmd {
    /// List nodes.
    List,
    /// Show one node's inventory (by id or hostname).
    Show { node: String },
    /// Approve a pending node.
    Approve { node: String },
    /// Remove a node: drop its session, revoke its certificates, purge its identity.
    Remove { node: String },
}

#[derive(Subcommand)]
pub enum JobCmd {
    /// List recent jobs.
    List {
        #[arg(long)]
        node: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show a job.
    Show { id: String },
    /// Print a job's log lines.
    Logs {
        id: String,
        /// Keep printing until the job ends.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Run an operation on a node and wait for it.
    Run {
        /// Node id or hostname.
        node: String,
        #[command(subcommand)]
        op: RunOp,
        /// Job timeout.
        #[arg(long, default_value = "60s", global = true)]
        timeout: String,
        /// Print the job id and return at once.
        #[arg(long, global = true)]
        no_wait: bool,
    },
}

#[derive(Subcommand)]
pub enum RunOp {
    /// Round trip to the agent.
    Ping,
    /// Collect the node's facts (inventory).
    Facts,
    /// Read a managed file; its content goes to stdout (or --out).
    ReadFile {
        path: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a managed file from a local file.
    WriteFile {
        path: String,
        #[arg(long)]
        from: PathBuf,
        /// Octal permission bits.
        #[arg(long, default_value = "644")]
        mode: String,
    },
}

#[derive(Subcommand)]
pub enum OperatorCmd {
    /// Issue a credential bundle (the key is made here and written only to --out).
    Create {
        name: String,
        #[arg(long, value_parser = ["admin", "operator", "viewer"])]
        role: String,
        /// Where to write the bundle (default: ./NAME.toml).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Credential lifetime (default 365d).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// List operators.
    List,
    /// Remove an operator: every credential issued to it is refused from now on.
    Remove { name: String },
    /// Replace this credential (--config) with a new one from the current CA: same name and
    /// role, a new key. Run it before the credential expires and during a CA rotation.
    Renew {
        /// Where to write the new credential (default: over the current one).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Credential lifetime (default: the controller's, 365d).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Offline, on the controller host with the controller stopped: issue a new admin
    /// credential from the data directory (CA key and store), e.g. after the admin credential
    /// expired or was lost. Audited.
    Recover {
        #[arg(long, default_value = "admin")]
        name: String,
        /// Where to write it (default: DATA_DIR/admin.toml for admin, else DATA_DIR/NAME.toml).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum SandboxCmd {
    /// Start a controller, N Gluu-node agents, a cache host and a load-balancer host.
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        #[arg(long, default_value_os_t = sandbox::default_dir())]
        dir: PathBuf,
    },
    /// Show the sandbox's processes and nodes.
    Status {
        #[arg(long, default_value_os_t = sandbox::default_dir())]
        dir: PathBuf,
    },
    /// Stop every process the sandbox started.
    Down {
        #[arg(long, default_value_os_t = sandbox::default_dir())]
        dir: PathBuf,
        /// Also delete the sandbox directory.
        #[arg(long)]
        purge: bool,
    },
}

impl Cli {
    pub fn target(&self) -> Target {
        Target {
            bundle_path: self
                .config
                .clone()
                .unwrap_or_else(|| DataDir::new(&self.data_dir).admin_bundle()),
            controller: self.controller.clone(),
        }
    }
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn run(cli: Cli) -> Result<i32> {
    let data = DataDir::new(&cli.data_dir);
    let target = cli.target();
    let json = cli.output == Output::Json;
    match cli.cmd {
        Cmd::Init {
            listen,
            advertise,
            sans,
            force,
        } => {
            let pin = init::run(
                &data,
                init::InitArgs {
                    listen,
                    advertise,
                    sans,
                    force,
                },
            )
            .await?;
            println!("{pin}");
        }
        Cmd::Serve {
            listen,
            require_approval,
            node_cert_ttl,
            heartbeat_interval,
        } => {
            server::serve(
                data,
                ServeOptions {
                    listen,
                    require_approval,
                    node_cert_ttl,
                    heartbeat_interval,
                },
            )
            .await?;
        }
        Cmd::Ca(cmd) => return ca::run(cmd, &data, &target, json).await,
        Cmd::Operator(OperatorCmd::Recover { name, out }) => {
            ca::operator_recover(&data, &name, out).await?
        }
        Cmd::Operator(OperatorCmd::Renew { out, ttl }) => {
            ca::operator_renew(&target, out, ttl).await?
        }
        Cmd::Token(TokenCmd::Create { role, ttl, uses }) => {
            let ttl = parse_duration(&ttl)?;
            let mut c = connect(&target).await?;
            let r = c
                .create_token(CreateTokenRequest {
                    role,
                    ttl_seconds: ttl.as_secs().max(1),
                    uses,
                })
                .await
                .map_err(explain)?
                .into_inner();
            eprintln!(
                "join token {} (expires {}, {} use{})",
                r.token_id,
                clustermgr_shared::util::fmt_unix(r.expires_unix),
                uses.max(1),
                if uses > 1 { "s" } else { "" }
            );
            println!("{}", r.token);
        }
        Cmd::Token(TokenCmd::List) => {
            let mut c = connect(&target).await?;
            let tokens = c
                .list_tokens(ListTokensRequest {})
                .await
                .map_err(explain)?
                .into_inner()
                .tokens;
            if json {
                print_json(&serde_json::Value::Array(
                    tokens.iter().map(output::token_json).collect(),
                ))?;
            } else {
                println!("{}", output::tokens_table(&tokens));
            }
        }
        Cmd::Token(TokenCmd::Revoke { id }) => {
            let mut c = connect(&target).await?;
            let t = c
                .revoke_token(RevokeTokenRequest { token_id: id })
                .await
                .map_err(explain)?
                .into_inner();
            eprintln!("revoked join token {} (role {})", t.id, t.role);
        }
        Cmd::Node(cmd) => {
            let mut c = connect(&target).await?;
            match cmd {
                NodeCmd::List => {
                    let nodes = c
                        .list_nodes(ListNodesRequest {})
                        .await
                        .map_err(explain)?
                        .into_inner()
                        .nodes;
                    if json {
                        print_json(&serde_json::Value::Array(
                            nodes.iter().map(output::node_json).collect(),
                        ))?;
                    } else {
                        println!("{}", output::nodes_table(&nodes));
                    }
                }
                NodeCmd::Show { node } => {
                    let n = c
                        .get_node(NodeRef { node })
                        .await
                        .map_err(explain)?
                        .into_inner();
                    if json {
                        print_json(&output::node_json(&n))?;
                    } else {
                        print!("{}", output::details(&output::node_json(&n)));
                    }
                }
                NodeCmd::Approve { node } => {
                    let n = c
                        .approve_node(NodeRef { node })
                        .await
                        .map_err(explain)?
                        .into_inner();
                    eprintln!("approved node {} ({})", n.id, n.hostname);
                }
                NodeCmd::Remove { node } => {
                    let r = c
                        .remove_node(NodeRef { node })
                        .await
                        .map_err(explain)?
                        .into_inner();
                    eprintln!(
                        "removed node {}: certificates revoked, identity purged{}",
                        r.id,
                        if r.session_dropped {
                            ", live session dropped"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        Cmd::Job(cmd) => return job(cmd, &target, json).await,
        Cmd::Operator(cmd) => {
            let mut c = connect(&target).await?;
            match cmd {
                OperatorCmd::Create {
                    name,
                    role,
                    out,
                    ttl,
                } => {
                    let out = out.unwrap_or_else(|| PathBuf::from(format!("{name}.toml")));
                    if out.exists() {
                        bail!("{} exists; choose another --out", out.display());
                    }
                    let ttl_seconds = match ttl {
                        Some(t) => parse_duration(&t)?.as_secs(),
                        None => 0,
                    };
                    let (key, csr) = pki::new_key_and_csr(&name)?;
                    let r = c
                        .create_operator(CreateOperatorRequest {
                            name: name.clone(),
                            role: role.clone(),
                            csr_der: csr,
                            ttl_seconds,
                        })
                        .await
                        .map_err(explain)?
                        .into_inner();
                    let current = client::load_bundle(&target.bundle_path)?;
                    ClientBundle {
                        controller: target.controller.clone().unwrap_or(current.controller),
                        name: name.clone(),
                        ca_pem: r.ca_pem,
                        cert_pem: r.certificate_pem,
                        key_pem: key,
                    }
                    .save(&out)?;
                    eprintln!(
                        "operator {name} ({role}) created; credential written to {} (mode 0600). Use it with --config {}",
                        out.display(),
                        out.display()
                    );
                }
                OperatorCmd::Remove { name } => {
                    let o = c
                        .remove_operator(RemoveOperatorRequest { name })
                        .await
                        .map_err(explain)?
                        .into_inner();
                    eprintln!(
                        "removed operator {} ({}); its credentials are revoked",
                        o.name, o.role
                    );
                }
                OperatorCmd::Renew { .. } | OperatorCmd::Recover { .. } => {}
                OperatorCmd::List => {
                    let ops = c
                        .list_operators(ListOperatorsRequest {})
                        .await
                        .map_err(explain)?
                        .into_inner()
                        .operators;
                    if json {
                        print_json(&serde_json::json!(
                            ops.iter()
                                .map(|o| serde_json::json!({"name": o.name, "role": o.role,
                                "created": clustermgr_shared::util::fmt_ms(o.created_unix_ms),
                                "created_by": o.created_by}))
                                .collect::<Vec<_>>()
                        ))?;
                    } else {
                        println!("{}", output::operators_table(&ops));
                    }
                }
            }
        }
        Cmd::Audit { limit } => {
            let mut c = connect(&target).await?;
            let entries = c
                .list_audit(ListAuditRequest { limit })
                .await
                .map_err(explain)?
                .into_inner()
                .entries;
            if json {
                print_json(&serde_json::Value::Array(
                    entries.iter().map(output::audit_json).collect(),
                ))?;
            } else {
                println!("{}", output::audit_table(&entries));
            }
        }
        Cmd::Whoami => {
            let mut c = connect(&target).await?;
            let w = c
                .who_am_i(WhoAmIRequest {})
                .await
                .map_err(explain)?
                .into_inner();
            if json {
                print_json(&serde_json::json!({"name": w.name, "role": w.role,
                    "certificate_not_after": clustermgr_shared::util::fmt_unix(w.certificate_not_after_unix)}))?;
            } else {
                println!(
                    "{} ({}), credential valid until {}",
                    w.name,
                    w.role,
                    clustermgr_shared::util::fmt_unix(w.certificate_not_after_unix)
                );
            }
        }
        Cmd::Sandbox(cmd) => match cmd {
            SandboxCmd::Up { nodes, dir } => sandbox::up(&dir, nodes).await?,
            SandboxCmd::Status { dir } => return sandbox::status(&dir, json).await,
            SandboxCmd::Down { dir, purge } => sandbox::down(&dir, purge)?,
        },
        Cmd::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "clustermgr", &mut std::io::stdout());
        }
        Cmd::Man { dir } => {
            let cmd = Cli::command();
            match dir {
                Some(d) => {
                    std::fs::create_dir_all(&d)?;
                    clap_mangen::generate_to(cmd, &d)
                        .with_context(|| format!("cannot write man pages to {}", d.display()))?;
                    eprintln!("man pages written to {}", d.display());
                }
                None => {
                    let mut buf = Vec::new();
                    clap_mangen::Man::new(cmd).render(&mut buf)?;
                    std::io::stdout().write_all(&buf)?;
                }
            }
        }
    }
    Ok(0)
}

async fn job(cmd: JobCmd, target: &Target, json: bool) -> Result<i32> {
    let mut c = connect(target).await?;
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
            if json {
                print_json(&serde_json::Value::Array(
                    jobs.iter().map(output::job_json).collect(),
                ))?;
            } else {
                println!("{}", output::jobs_table(&jobs));
            }
        }
        JobCmd::Show { id } => {
            let j = c
                .get_job(GetJobRequest { id })
                .await
                .map_err(explain)?
                .into_inner();
            if json {
                print_json(&output::job_json(&j))?;
            } else {
                print!("{}", output::details(&output::job_json(&j)));
            }
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
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"seq": line.seq, "line": line.line})
                    );
                } else {
                    println!("{}", line.line);
                }
            }
        }
        JobCmd::Run {
            node,
            op,
            timeout,
            no_wait,
        } => {
            let timeout = parse_duration(&timeout)?;
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
                RunOp::WriteFile { path, from, mode } => {
                    target_path.clone_from(&path);
                    let meta = std::fs::metadata(&from)
                        .with_context(|| format!("cannot read {}", from.display()))?;
                    if meta.len() > MAX_FILE_BYTES as u64 {
                        bail!(
                            "{} is {} bytes; files up to {MAX_FILE_BYTES} bytes can be written",
                            from.display(),
                            meta.len()
                        );
                    }
                    let content = std::fs::read(&from)
                        .with_context(|| format!("cannot read {}", from.display()))?;
                    let mode = u32::from_str_radix(mode.trim_start_matches("0o"), 8)
                        .context("--mode must be octal, e.g. 644")?;
                    operation::Kind::WriteFile(WriteFile {
                        path,
                        content,
                        mode,
                        ..Default::default()
                    })
                }
            };
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
                return Ok(0);
            }
            if json {
                print_json(&output::job_json(&job))?;
            } else if job.state == crate::jobs::SUCCEEDED {
                match job.output.as_ref().and_then(|o| o.kind.as_ref()) {
                    Some(operation_output::Kind::ReadFile(_)) => match out_file {
                        Some(p) => {
                            std::fs::write(&p, &r.content)
                                .with_context(|| format!("cannot write {}", p.display()))?;
                            eprintln!("wrote {} bytes to {}", r.content.len(), p.display());
                        }
                        None => std::io::stdout().write_all(&r.content)?,
                    },
                    Some(operation_output::Kind::Ping(_)) => println!(
                        "pong from {} in {} ms (job {})",
                        job.node_hostname,
                        started.elapsed().as_millis(),
                        job.id
                    ),
                    Some(operation_output::Kind::WriteFile(w)) => println!(
                        "{} {} ({} bytes, sha256 {}) on {} (job {})",
                        if w.changed { "wrote" } else { "unchanged:" },
                        target_path,
                        w.size,
                        w.sha256,
                        job.node_hostname,
                        job.id
                    ),
                    _ => print!("{}", output::details(&output::job_json(&job))),
                }
            }
            if job.state != crate::jobs::SUCCEEDED {
                eprintln!("job {} {}: {}", job.id, job.state, job.error);
                return Ok(1);
            }
        }
    }
    Ok(0)
}
