//! The controller daemon: one mutual-TLS gRPC listener serving enrollment (join token), the
//! agent session API (node certificates) and the operator API (operator certificates), plus
//! gRPC health and reflection for authenticated callers.

mod backup;
mod ca;
mod cache;
mod certs;
mod cluster;
mod enroll;
mod fsrep;

mod keys;
mod lb;
pub mod listener;
mod logs;
mod operator;
mod packages;
mod prometheus;
mod schema;
mod session;

pub use crate::ctl::{Ctl, Runtime};
use crate::https;

use crate::auth::{Accept, Auth, Authn};
use crate::config::{DataDir, SettingsFile, parse_duration};
use crate::jobs::Jobs;
use crate::limits::{EnrollGuard, LimitSettings};
use crate::registry::Registry;
use crate::store::Store;
use anyhow::{Context, Result};
use clustermgr_proto::certificate_authority_server::CertificateAuthorityServer;
use clustermgr_proto::{
    agent_session_server::AgentSessionServer, enrollment_server::EnrollmentServer,
    operator_server::OperatorServer,
};
use clustermgr_shared::{MAX_MESSAGE_BYTES, Secret};
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic::transport::server::Router;

pub use crate::error::internal;

/// Runs a mutating call after the role check. A refused or failed call gets an audit row of its
/// own; a successful one wrote its row with the change, in the same transaction.
pub(crate) async fn audited<T, Fut>(
    store: &Store,
    p: &crate::auth::Principal,
    min: crate::auth::Role,
    a: &crate::audit::Audit,
    call: Fut,
) -> Result<T, Status>
where
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let r = match crate::auth::require(p, min, a.action) {
        Ok(()) => call.await,
        Err(e) => Err(e),
    };
    crate::audit::record_failure(store, a, &r.as_ref().map_err(|s| s.message())).await;
    r
}

/// The caller, who must be an operator of at least role viewer.
pub(crate) fn viewer<T>(req: &tonic::Request<T>) -> Result<crate::auth::Principal, Status> {
    let p = crate::auth::caller(req)?;
    crate::auth::require(&p, crate::auth::Role::Viewer, "reading")?;
    Ok(p)
}

/// Command-line overrides of the settings file.
#[derive(Debug, Default, Clone)]
pub struct ServeOptions {
    pub listen: Option<String>,
    pub require_approval: bool,
    pub node_cert_ttl: Option<String>,
    pub heartbeat_interval: Option<String>,
    pub metrics_retention: Option<String>,
    pub metrics_limits: Option<String>,
    pub metrics_listen: Option<String>,
    pub web_listen: Option<String>,
    pub min_agent_version: Option<String>,
}

/// Loads state and serves until SIGINT/SIGTERM.
pub async fn serve(data: DataDir, opts: ServeOptions) -> Result<()> {
    clustermgr_shared::tls::install_crypto_provider();
    raise_open_files_limit();
    let settings = data.load_settings()?;
    let listen = opts.listen.clone().unwrap_or(settings.listen.clone());
    let rt = runtime(&settings, &opts)?;
    let limits = settings.listener.limits()?;
    let (tls, ca) = load_tls(&data)?;
    let (ctl, parts) = open_state(&data, &opts, rt, ca).await?;
    start_background(&ctl, &parts, &data);
    serve_https(&ctl, &parts, &tls, &data, &opts).await?;
    spawn_enroll_audit(ctl.clone());
    let router = grpc_router(&ctl, &parts, &data, &tls, &limits).await?;
    spawn_session_reaper(ctl.clone());

    let listener = listener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, approval = ctl.rt.require_approval, max_connections = limits.max_connections, "controller listening (mutual TLS)");
    eprintln!("clustermgr controller listening on {local}");

    let (shutdown, drained_rx) = on_shutdown_signal(ctl, parts.fsrep.clone());
    let server =
        router.serve_with_incoming_shutdown(listener::incoming(listener, tls, limits), shutdown);
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r.context("server error")?,
        _ = async {
            let _ = drained_rx.await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        } => tracing::warn!("connections did not close within 5 s; exiting anyway"),
    }
    eprintln!("clustermgr controller stopped");
    Ok(())
}

/// The settings file with the command line's overrides.
fn runtime(settings: &crate::config::Settings, opts: &ServeOptions) -> Result<Runtime> {
    Ok(Runtime {
        node_cert_ttl: parse_duration(
            opts.node_cert_ttl
                .as_deref()
                .unwrap_or(&settings.node_cert_ttl),
        )?,
        operator_cert_ttl: parse_duration(&settings.operator_cert_ttl)?,
        heartbeat: parse_duration(
            opts.heartbeat_interval
                .as_deref()
                .unwrap_or(&settings.heartbeat_interval),
        )?,
        require_approval: opts.require_approval || settings.require_approval,
        min_agent_version: match opts
            .min_agent_version
            .as_deref()
            .unwrap_or(&settings.min_agent_version)
        {
            "" => None,
            v => Some(v.parse().context("--min-agent-version")?),
        },
    })
}

fn read(p: std::path::PathBuf) -> Result<String> {
    std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))
}

/// The listener's TLS (the server certificate and the trusted CAs) and the authority's state.
fn load_tls(data: &DataDir) -> Result<(Arc<listener::TlsSwitch>, crate::ca::CaState)> {
    let authority = crate::ca::Authority::load(data)?;
    let server_chain = read(data.server_cert())?;
    let server_key = Secret::new(read(data.server_key())?);
    let tls = Arc::new(listener::TlsSwitch::new(
        crate::ca::server_tls(&authority, &server_chain, &server_key)
            .context("invalid server certificate or key")?,
    ));
    Ok((tls, crate::ca::CaState::new(authority)))
}

/// Each domain's own state, handed to what uses it (nothing reaches it through `Ctl`).
struct Parts {
    packages: Arc<crate::packages::Repository>,
    logs: Arc<crate::logs::Broker>,
    health: Arc<crate::health::Health>,
    metrics: Arc<crate::metrics::Metrics>,
    cache_ca: Arc<clustermgr_shared::pki::Ca>,
    fsrep: Arc<crate::fsrep::Fsrep>,
    backups: Arc<crate::backup::Backups>,
}

/// Opens the store and everything kept in the data directory: the core (`Ctl`, with its jobs
/// recovered and their flusher and the retention sweeper started) and each domain's state.
async fn open_state(
    data: &DataDir,
    opts: &ServeOptions,
    rt: Runtime,
    ca: crate::ca::CaState,
) -> Result<(Arc<Ctl>, Parts)> {
    let kept = LimitSettings::from_toml(&read(data.settings())?)
        .with_context(|| format!("invalid settings in {}", data.settings().display()))?;
    let sweep_every = parse_duration(&kept.retention.sweep_interval)?;
    let enroll_window = parse_duration(&kept.enroll.window)?;

    let store = Store::open(&data.store())
        .with_context(|| format!("cannot open the store {}", data.store().display()))?;
    let auth = Arc::new(Auth::load(&store)?);
    let registry = Arc::new(Registry::default());
    let jobs = Arc::new(Jobs::new(store.clone(), registry.clone()));
    let recovered = jobs.recover().await?;
    if recovered > 0 {
        tracing::warn!(
            count = recovered,
            "jobs left running by a previous run marked interrupted"
        );
    }
    jobs.start_flusher();
    crate::limits::start_sweeper(store.clone(), kept.retention.clone(), sweep_every);
    let sealer = crate::sealing::Sealer::load_or_create(&data.sealing_key())?;
    let fsrep = Arc::new(
        crate::fsrep::Fsrep::load(&store, &sealer, &data.root.join("fsrep-blobs"))
            .context("cannot load the file replication state")?,
    );
    let backups = Arc::new(
        crate::backup::Backups::open(&data.root).context("cannot open the backups' directory")?,
    );
    let ctl = Arc::new(Ctl {
        store,
        ca,
        auth,
        registry,
        jobs,
        rt,
        enroll_guard: EnrollGuard::new(kept.enroll.max_failures_per_window, enroll_window),
        sealer: Arc::new(sealer),
        workflows: crate::hub::Hub::default(),
        kinds: crate::kinds::all(backups.clone())?,
    });
    crate::backup::settle(&ctl, &backups)
        .await
        .map_err(|e| anyhow::anyhow!("cannot settle the backups' directory: {e}"))?;
    let parts = Parts {
        packages: Arc::new(
            crate::packages::Repository::open(data.root.join("packages"))
                .context("cannot open the package repository")?,
        ),
        logs: Arc::new(crate::logs::Broker::default()),
        health: Arc::new(crate::health::Health::default()),
        metrics: Arc::new(crate::metrics::Metrics::new(
            match &opts.metrics_retention {
                Some(r) => crate::metrics::Retention::parse(r)?,
                None => crate::metrics::Retention::default(),
            },
            match &opts.metrics_limits {
                Some(l) => crate::metrics::Limits::parse(l)?,
                None => crate::metrics::Limits::default(),
            },
        )),
        cache_ca: Arc::new(crate::cache::load_or_create_ca(&data.root)?),
        fsrep,
        backups,
    };
    Ok((ctl, parts))
}

/// The driver and the domains' periodic tasks.
fn start_background(ctl: &Arc<Ctl>, parts: &Parts, data: &DataDir) {
    crate::workflows::start_driver(ctl.clone());
    crate::replication::start_checker(ctl.clone());
    crate::keys::start(ctl.clone(), data.root.clone());
    crate::fsrep::start_membership_check(ctl.clone(), parts.fsrep.clone());
    crate::health::start(ctl.clone(), parts.health.clone());
    let metrics_sweep = (parts.metrics.retention.raw / 4)
        .clamp(Duration::from_millis(200), Duration::from_secs(60));
    crate::metrics::start_sweeper(ctl.clone(), parts.metrics.clone(), metrics_sweep);
    crate::fsrep::start_tombstone_sweeper(ctl.clone(), parts.fsrep.clone());
}

fn socket_addr(addr: &str, flag: &str) -> Result<std::net::SocketAddr> {
    addr.parse()
        .with_context(|| format!("{flag} {addr}: not an address:port"))
}

/// The optional HTTPS listeners: Prometheus metrics and the web console.
async fn serve_https(
    ctl: &Arc<Ctl>,
    parts: &Parts,
    tls: &Arc<listener::TlsSwitch>,
    data: &DataDir,
    opts: &ServeOptions,
) -> Result<()> {
    let derived = |certs| Arc::new(https::DerivedTls::new(ctl.clone(), tls.clone(), certs));
    if let Some(addr) = &opts.metrics_listen {
        let addr = socket_addr(addr, "--metrics-listen")?;
        let tls = derived(https::ClientCerts::Required);
        prometheus::serve(
            ctl.clone(),
            parts.metrics.clone(),
            parts.health.clone(),
            addr,
            tls,
        )
        .await?;
    }
    if let Some(addr) = &opts.web_listen {
        let addr = socket_addr(addr, "--web-listen")?;
        let web = Arc::new(crate::web::Web::new(
            ctl.clone(),
            crate::web::Parts {
                logs: parts.logs.clone(),
                health: parts.health.clone(),
                metrics: parts.metrics.clone(),
                fsrep: parts.fsrep.clone(),
            },
            data.root.clone(),
        )?);
        crate::web::serve(web, addr, derived(https::ClientCerts::None)).await?;
    }
    Ok(())
}

/// Failed enrollments: one audit row per source and window.
fn spawn_enroll_audit(ctl: Arc<Ctl>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            ctl.enroll_guard.audit_ended(&ctl.store, false).await;
        }
    });
}

/// Half-open sessions: no message for three heartbeat intervals ends the session.
fn spawn_session_reaper(ctl: Arc<Ctl>) {
    tokio::spawn(async move {
        let grace = (ctl.rt.heartbeat * 3).as_millis() as u64;
        let mut tick = tokio::time::interval(ctl.rt.heartbeat);
        loop {
            tick.tick().await;
            for id in ctl.registry.reap(grace) {
                tracing::warn!(node = %id, "no heartbeat within the grace period; session ended");
            }
        }
    });
}

/// On SIGTERM/SIGINT: end the agents' streams (they reconnect with backoff), then let the
/// server finish what is in flight, for at most 5 s (a stream to an agent that stopped reading
/// never drains). Returns the server's shutdown future and the signal that it has begun.
fn on_shutdown_signal(
    ctl: Arc<Ctl>,
    fsrep: Arc<crate::fsrep::Fsrep>,
) -> (
    impl std::future::Future<Output = ()>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        shutdown_signal().await;
        let n = ctl
            .registry
            .close_all(Status::unavailable("the controller is shutting down"));
        tracing::info!(sessions = n, "shutting down");
        fsrep.close_all();
        ctl.enroll_guard.audit_ended(&ctl.store, true).await;
        if let Err(e) = ctl.jobs.flush_logs().await {
            tracing::error!(error = %e, "cannot write job log lines");
        }
        let _ = stopped_tx.send(());
    });
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped_rx.await;
        let _ = drained_tx.send(());
    };
    (shutdown, drained_rx)
}

/// The gRPC server with every service behind its authentication: enrollment open, the agents'
/// services for node certificates, the operators' for operator certificates, health and
/// reflection for either.
async fn grpc_router(
    ctl: &Arc<Ctl>,
    parts: &Parts,
    data: &DataDir,
    tls: &Arc<listener::TlsSwitch>,
    limits: &listener::Limits,
) -> Result<Router> {
    let authn = |accept| Authn {
        auth: ctl.auth.clone(),
        accept,
    };
    let enroll_svc = EnrollmentServer::new(enroll::EnrollApi { ctl: ctl.clone() })
        .max_decoding_message_size(64 * 1024);
    let router = Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .initial_stream_window_size(limits.stream_window_bytes)
        .initial_connection_window_size(limits.connection_window_bytes)
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(enroll_svc);
    let router = add_node_services(router, ctl, parts, authn(Accept::Nodes));
    let router = add_operator_services(router, ctl, parts, data, tls, authn(Accept::Operators));
    add_open_services(router, authn(Accept::Any)).await
}

/// The agents' services: the session, the cache's certificates, file replication and backup
/// transfers.
fn add_node_services(router: Router, ctl: &Arc<Ctl>, parts: &Parts, nodes: Authn) -> Router {
    let session_svc = AgentSessionServer::new(session::SessionApi {
        ctl: ctl.clone(),
        packages: parts.packages.clone(),
        logs: parts.logs.clone(),
        health: parts.health.clone(),
        metrics: parts.metrics.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let cache_agent_svc =
        clustermgr_proto::cache_agent_server::CacheAgentServer::new(cache::CacheAgentApi {
            ctl: ctl.clone(),
            cache_ca: parts.cache_ca.clone(),
        });
    let fsrep_svc = clustermgr_proto::file_replication_server::FileReplicationServer::new(
        fsrep_api(ctl, parts),
    )
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let backup_transfer_svc =
        clustermgr_proto::backup_transfer_server::BackupTransferServer::new(backup_api(ctl, parts))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
    router
        .add_service(InterceptedService::new(session_svc, nodes.clone()))
        .add_service(InterceptedService::new(cache_agent_svc, nodes.clone()))
        .add_service(InterceptedService::new(fsrep_svc, nodes.clone()))
        .add_service(InterceptedService::new(backup_transfer_svc, nodes))
}

fn fsrep_api(ctl: &Arc<Ctl>, parts: &Parts) -> fsrep::FsrepApi {
    fsrep::FsrepApi {
        ctl: ctl.clone(),
        fsrep: parts.fsrep.clone(),
    }
}

fn backup_api(ctl: &Arc<Ctl>, parts: &Parts) -> backup::BackupsApi {
    backup::BackupsApi {
        ctl: ctl.clone(),
        backups: parts.backups.clone(),
    }
}

/// The operators' services, one per domain.
fn add_operator_services(
    router: Router,
    ctl: &Arc<Ctl>,
    parts: &Parts,
    data: &DataDir,
    tls: &Arc<listener::TlsSwitch>,
    operators: Authn,
) -> Router {
    use clustermgr_proto::*;
    let operator_svc = OperatorServer::new(operator::OperatorApi { ctl: ctl.clone() })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let cluster_svc = cluster_server::ClusterServer::new(cluster::ClusterApi {
        ctl: ctl.clone(),
        fsrep: parts.fsrep.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let packages_svc = packages_server::PackagesServer::new(packages::PackagesApi {
        ctl: ctl.clone(),
        packages: parts.packages.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let logs_svc = logs_server::LogsServer::new(logs::LogsApi {
        ctl: ctl.clone(),
        logs: parts.logs.clone(),
    })
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let monitor_svc = monitor_server::MonitorServer::new(logs::MonitorApi {
        ctl: ctl.clone(),
        health: parts.health.clone(),
    })
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let metrics_svc = metrics_server::MetricsServer::new(logs::MetricsApi {
        ctl: ctl.clone(),
        metrics: parts.metrics.clone(),
    })
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let ca_svc = CertificateAuthorityServer::new(ca::CaApi {
        ctl: ctl.clone(),
        data: data.clone(),
        tls: tls.clone(),
    });
    let cache_svc = cache_server::CacheServer::new(cache::CacheApi { ctl: ctl.clone() });
    let fsrep_admin_svc =
        file_replication_admin_server::FileReplicationAdminServer::new(fsrep_api(ctl, parts));
    let backups_svc = backups_server::BackupsServer::new(backup_api(ctl, parts));
    let lb_svc =
        load_balancer_server::LoadBalancerServer::new(lb::LoadBalancerApi { ctl: ctl.clone() });
    let certs_svc =
        certificates_server::CertificatesServer::new(certs::CertificatesApi { ctl: ctl.clone() });
    let keys_svc = keys_server::KeysServer::new(keys::KeysApi { ctl: ctl.clone() });
    let schema_svc = schema_server::SchemaServer::new(schema::SchemaApi { ctl: ctl.clone() });
    let op = operators;
    router
        .add_service(InterceptedService::new(cache_svc, op.clone()))
        .add_service(InterceptedService::new(fsrep_admin_svc, op.clone()))
        .add_service(InterceptedService::new(backups_svc, op.clone()))
        .add_service(InterceptedService::new(operator_svc, op.clone()))
        .add_service(InterceptedService::new(cluster_svc, op.clone()))
        .add_service(InterceptedService::new(packages_svc, op.clone()))
        .add_service(InterceptedService::new(logs_svc, op.clone()))
        .add_service(InterceptedService::new(monitor_svc, op.clone()))
        .add_service(InterceptedService::new(metrics_svc, op.clone()))
        .add_service(InterceptedService::new(lb_svc, op.clone()))
        .add_service(InterceptedService::new(certs_svc, op.clone()))
        .add_service(InterceptedService::new(keys_svc, op.clone()))
        .add_service(InterceptedService::new(schema_svc, op.clone()))
        .add_service(InterceptedService::new(ca_svc, op))
}

/// gRPC health and reflection, for any authenticated caller.
async fn add_open_services(router: Router, any: Authn) -> Result<Router> {
    let (health_reporter, grpc_health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<OperatorServer<operator::OperatorApi>>()
        .await;
    health_reporter
        .set_serving::<AgentSessionServer<session::SessionApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(clustermgr_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("cannot build the reflection service")?;
    Ok(router
        .add_service(InterceptedService::new(grpc_health, any.clone()))
        .add_service(InterceptedService::new(reflection, any)))
}

/// Each agent holds one connection: lift the soft open-files limit to the hard one.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err()
    {
        tracing::warn!(soft, hard, "cannot raise the open-files limit");
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

#[cfg(test)]
mod tests;
