//! clustermgr agent: joins the cluster with a one-time token, then keeps one outbound mutual-TLS
//! stream to the controller and carries out typed operations on this host.
//!
//! Architecture invariants: the agent never listens on a port; no operation carries a shell
//! command; every path it touches is resolved under its root and checked against the managed
//! allow-list.
#![forbid(unsafe_code)]

pub mod allocator;
pub mod facts;
pub mod fsrep;
pub mod health;
pub mod host;
pub mod join;
pub mod ldap_stats;
pub mod metrics;
pub mod ops;
pub mod runner;
pub mod session;
pub mod state;

pub use state::{AgentConfig, StateDir};
