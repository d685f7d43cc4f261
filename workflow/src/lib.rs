//! The planning half of clustermgr's workflows: observed state in, decisions out.
//!
//! A workflow (install Gluu on the primary then the others, deploy replication, ...) is a
//! persisted [`Workflow`] record: steps per node, each carried out by one job on that node. This
//! crate knows no network and no storage engine. The controller's driver gathers what it
//! observes ([`Observed`]: nodes, their inventories, the jobs the steps started), calls
//! [`advance`], persists the record it returns and dispatches the jobs it asks for. Because the
//! step → job mapping is persisted before a job is sent, a restarted controller re-observes a
//! running step's job instead of starting it again.
//!
//! Rules [`advance`] keeps, whatever the workflow kind:
//! - a node runs one step at a time, in order; nodes progress independently;
//! - a step starts only when its node is online and approved, and only when the kind's
//!   [`Definition::plan_step`] says its preconditions hold (readiness is observed, never slept on);
//! - a node going offline never advances or fails anything: its steps wait;
//! - a step whose job ended without a known outcome (interrupted) is sent again only when the kind
//!   declared it safe to re-run, at most [`MAX_ATTEMPTS`] times;
//! - a failed step stops its node (the other nodes go on), except for the steps the kind declares
//!   clean-up ([`Definition::cleanup`], e.g. a rollback); the workflow fails once nothing runs;
//! - cancelling lets running steps finish and starts nothing new.
#![forbid(unsafe_code)]

pub mod agent_upgrade;
pub mod backup;
pub mod cache;
pub mod certs;
pub mod drain;
mod engine;
pub mod gluu_adopt;
pub mod gluu_install;
pub mod gluu_restart;
pub mod hosts;
pub mod inputs;
pub mod keys;
pub mod lb;
pub mod queue;
pub mod readiness;
pub mod replication;
pub mod schema;

pub use engine::*;
