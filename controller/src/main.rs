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
        // The reader of our output stopped reading (`| head -1`, `| sed ...;q`): what it wanted
        // is printed; not an error.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
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

fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
