//! Domain errors and the one conversion to a gRPC status.
//!
//! Each domain module (`nodes`, `tokens`, `operators`, `jobs`) returns its own thiserror enum;
//! each says which [`Kind`] of failure it is, and [`status`] turns any of them into a
//! `tonic::Status`. Internal failures (store, CA) are logged with their detail and reach the
//! caller only as a generic "internal error".

use crate::store::StoreError;

/// The category of a failure, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    PermissionDenied,
    Unauthenticated,
    ResourceExhausted,
    Unavailable,
    Internal,
}

pub trait Classify: std::fmt::Display {
    fn kind(&self) -> Kind;
}

impl Classify for StoreError {
    fn kind(&self) -> Kind {
        Kind::Internal
    }
}

/// The one conversion from a domain error to a gRPC status.
pub fn status<E: Classify>(e: E) -> tonic::Status {
    use tonic::Status;
    let msg = e.to_string();
    match e.kind() {
        Kind::InvalidArgument => Status::invalid_argument(msg),
        Kind::NotFound => Status::not_found(msg),
        Kind::AlreadyExists => Status::already_exists(msg),
        Kind::FailedPrecondition => Status::failed_precondition(msg),
        Kind::PermissionDenied => Status::permission_denied(msg),
        Kind::Unauthenticated => Status::unauthenticated(msg),
        Kind::ResourceExhausted => Status::resource_exhausted(msg),
        Kind::Unavailable => Status::unavailable(msg),
        Kind::Internal => internal(msg),
    }
}

/// Logs the detail; the caller sees only that something went wrong inside.
pub fn internal(detail: impl std::fmt::Display) -> tonic::Status {
    tracing::error!(error = %detail, "internal error");
    tonic::Status::internal("internal error (the controller's log has the details)")
}
