//! Code both clustermgr binaries share: the cluster PKI, rustls configurations, the gRPC dialer,
//! `Secret<T>`, on-disk config formats, managed-path rules, file operations on directory handles
//! that never follow symbolic links, and small time helpers.
#![forbid(unsafe_code)]

pub mod config;
pub mod datadir;
pub mod dial;
pub mod duration;
pub mod exposition;
pub mod fsrep;
pub mod fsutil;
pub mod ids;
pub mod logging;
pub mod logpattern;
pub mod machine;
pub mod paths;
pub mod pki;
pub mod safefs;
pub mod secret;
pub mod tls;
pub mod util;
pub mod version;

pub use secret::Secret;

/// Roles a joining host can have.
pub const NODE_ROLES: &[&str] = &["gluu-node", "cache", "lb"];
/// Roles an operator credential can have, from least to most privileged.
pub const OPERATOR_ROLES: &[&str] = &["viewer", "operator", "admin"];
/// Version of this build, reported by agents in their inventory.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Largest file content a read-file / write-file job carries.
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;
/// Largest gRPC message either side decodes (file content plus framing).
pub const MAX_MESSAGE_BYTES: usize = MAX_FILE_BYTES + 1024 * 1024;
