//! Generated gRPC types for `clustermgr.v1`.
//!
//! * `Enrollment` — the one call served without a client certificate (a join token authenticates it).
//! * `AgentSession` — the agent's long-lived bidirectional stream and certificate renewal.
//! * `Operator` — the CLI / integration API.
//! * store records (`*Record`) — internal persisted forms, never sent on the wire.
#![forbid(unsafe_code)]
#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("clustermgr.v1");
}

/// Encoded `FileDescriptorSet` of every clustermgr proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/clustermgr_descriptor.bin"));

pub use v1::*;
