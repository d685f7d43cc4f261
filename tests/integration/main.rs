//! One integration-test binary (each file under tests/ would link everything again).
//! Every test runs the real binaries on loopback.

mod enrollment;
mod fake_peer;
mod hardening;
mod inventory;
mod jobs;
mod operators;
mod packaging;
mod python_client;
mod sandbox;
mod sessions;
mod tls;
