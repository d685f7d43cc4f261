//! clustermgr controller: daemon, store, CA, jobs, and the commands that need them on the
//! controller host (`local`); the operator commands that talk gRPC are `clustermgr_cli`.
#![forbid(unsafe_code)]

/// The JSON forms of the API's status records (the CLI's `--output json`; the web console).
pub use clustermgr_cli::view;
/// Record ids and their short forms (shared with the CLI).
pub use clustermgr_shared::ids;

pub mod agent_upgrade;
pub mod agent_version;
pub mod audit;
pub mod auth;
pub mod authority;
pub mod backup;
pub mod ca;
pub mod cache;
pub mod certs;
pub mod cluster;

pub mod config;
pub mod ctl;
pub mod drain;
pub mod error;
pub mod fsrep;
pub mod gluu;
pub mod health;
pub mod hosts;
pub mod https;
pub mod hub;
pub mod jobs;
pub mod keys;
pub mod kinds;
pub mod lb;
pub mod limits;
pub mod local;
pub mod logs;
pub mod metrics;
pub mod nodes;
pub mod operators;
pub mod package_check;
pub mod packages;
pub mod prometheus;
pub mod records;
pub mod registry;
pub mod replication;
pub mod roles;
pub mod schema;
pub mod sealing;
pub mod server;
pub mod settings;
pub mod store;
pub mod tokens;
pub mod web;
pub mod workflows;
