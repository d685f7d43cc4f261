//! The controller's core context (see the layering rules in ARCHITECTURE.md): what every
//! domain module may use. It imports only core modules, never a domain module or the transport.

use crate::auth::Auth;
use crate::jobs::Jobs;
use crate::limits::EnrollGuard;
use crate::registry::Registry;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Settings in force for this process.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub node_cert_ttl: Duration,
    pub operator_cert_ttl: Duration,
    pub heartbeat: Duration,
    pub require_approval: bool,
    /// Agents older than this are refused at session start.
    pub min_agent_version: Option<clustermgr_shared::version::AgentVersion>,
}

/// The core every domain module works through: the store, the job dispatcher, the node
/// registry, the sealer, the CA's state and the workflow event hub. It knows no feature:
/// a domain module's own state (packages, logs, health, metrics, file replication, the
/// cache CA) is its own and is handed to it by the caller (`app::App` holds them all).
pub struct Ctl {
    pub store: Store,
    pub ca: crate::authority::CaState,
    pub auth: Arc<Auth>,
    pub registry: Arc<Registry>,
    pub jobs: Arc<Jobs>,
    pub rt: Runtime,
    pub enroll_guard: EnrollGuard,
    /// Seals secrets at rest (cluster passwords, kept workflow outputs).
    pub sealer: crate::sealing::Sealer,
    pub workflows: crate::hub::Hub,
}
