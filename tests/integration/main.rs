//! One integration-test binary (each file under tests/ would link everything again).
//! Every test runs the real binaries on loopback.

mod ca_rotation;
mod cache;
mod certs;
mod cli_files;
mod cluster;
mod enrollment;
mod fake_peer;
mod file_safety;
mod fsrep;
mod gluu_cluster;
mod gluu_install;
mod gluu_ops;
mod hardening;
mod health;
mod hosts;
mod inventory;
mod jobs;
mod keys;
mod lb;
mod listener_limits;
mod logs;
mod machine;
mod metrics;
mod operators;
mod packages;
mod packaging;
mod python_client;
mod reconcile;
mod replication;
mod replication_ops;
mod root_install;
mod sandbox;
mod schema;
mod sessions;
mod tls;
