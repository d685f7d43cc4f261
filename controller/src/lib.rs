//! clustermgr controller: daemon, store, CA, jobs and the operator CLI.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod ca;
pub mod cache;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod components;
pub mod config;
pub mod error;
pub mod fsrep;
pub mod health;
pub mod hosts;
pub mod ids;
pub mod jobs;
pub mod keys;
pub mod lb;
pub mod limits;
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
pub mod sandbox;
pub mod schema;
pub mod sealing;
pub mod server;
pub mod store;
pub mod tokens;
pub mod workflows;
