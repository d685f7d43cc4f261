//! clustermgr controller: daemon, store, CA, jobs and the operator CLI.
#![forbid(unsafe_code)]

pub mod agent_upgrade;
pub mod agent_version;
pub mod audit;
pub mod auth;
pub mod authority;
pub mod ca;
pub mod cache;
pub mod certs;
pub mod cli;
pub mod cluster;

pub mod config;
pub mod ctl;
pub mod drain;
pub mod error;
pub mod fsrep;
pub mod health;
pub mod hosts;
pub mod https;
pub mod hub;
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
pub mod settings;
pub mod store;
pub mod tokens;
pub mod view;
pub mod web;
pub mod workflows;
