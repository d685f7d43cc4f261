//! `clustermgr`: controller daemon and operator CLI.
#![forbid(unsafe_code)]

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = clustermgr::local::Cli::parse();
    clustermgr_shared::logging::init_tracing();
    match clustermgr::local::run(cli).await {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(code.clamp(1, 255) as u8),
        Err(e) => {
            // The message may carry text a node or agent reported: printable only.
            eprintln!(
                "error: {}",
                clustermgr_cli::output::printable(&format!("{e:#}"))
            );
            ExitCode::from(2)
        }
    }
}
