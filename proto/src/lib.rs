//! Generated gRPC types for `clustermgr.v1`.
//!
//! * `Enrollment` — the one call served without a client certificate (a join token authenticates it).
//! * `AgentSession` — the agent's long-lived bidirectional stream and certificate renewal.
//! * `Operator` — the CLI / integration API.
//! * store records (`*Record`) — internal persisted forms, never sent on the wire.
//!
//! Written here beside the generated types: `catalogue` (each operation kind's name, lock,
//! summary and secrets), `gluu` (Gluu setup's shared facts), `labels` (the words for stored
//! enums) and `redact` (Debug for the messages that carry secrets).
#![forbid(unsafe_code)]
#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("clustermgr.v1");
}

/// Encoded `FileDescriptorSet` of every clustermgr proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/clustermgr_descriptor.bin"));

pub use catalogue::OpName;
pub use v1::*;

// Written by hand: linted as the other crates are (the allow above is for generated code).
#[warn(clippy::all)]
pub mod catalogue;
pub mod gluu;
mod labels;
mod redact;

impl v1::AgentMessage {
    /// An event about one job (log line, progress or result), as the agent sends it.
    pub fn job_event(job_id: &str, event: v1::job_event::Event) -> Self {
        Self {
            msg: Some(v1::agent_message::Msg::JobEvent(v1::JobEvent {
                job_id: job_id.to_string(),
                event: Some(event),
            })),
        }
    }
}
