//! Test-only stand-in for a Gluu Server 4.x node.
//!
//! One binary, several roles:
//! - `setup`   : what `setup.py` does on a Gluu node (directory, certificates, keys, config files);
//! - `serverd` : what `/sbin/gluu-serverd start|stop|restart|status` does;
//! - `service` : one service's init script (`opendj`, `oxauth`, `identity`);
//! - `oxauth`  : the oxAuth-like HTTPS service itself (run in the background by `serverd`);
//! - `keytool` : the JRE's keytool for the trust store (`/opt/jre/bin/keytool`).
#![forbid(unsafe_code)]

mod certs;
mod keytool;
mod layout;
mod oxauth;
mod props;
mod schema;
mod serverd;
mod setup;
mod slapd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Package version string of the stand-in `gluu-server` package.
pub const PACKAGE_VERSION: &str = "4.2.3~standin1";

#[derive(Parser)]
#[command(name = "gluu-standin", version = PACKAGE_VERSION, about = "Gluu Server 4.x stand-in for tests")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the node (the behaviour of Gluu's setup.py).
    Setup(setup::SetupArgs),
    /// Start, stop or query all services of the node (the behaviour of /sbin/gluu-serverd).
    Serverd(serverd::ServerdArgs),
    /// Start, stop or query one service (the behaviour of an init script inside the chroot).
    Service(serverd::ServiceArgs),
    /// Run the oxAuth-like HTTPS service in the foreground.
    Oxauth {
        /// Act on a tree extracted under DIR instead of `/`.
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// The JRE's keytool, for the trust store commands (-import, -delete, -list).
    Keytool {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Keytool { args } => return keytool::run(&args),
        Cmd::Setup(args) => setup::run(args).map(|()| ExitCode::SUCCESS),
        Cmd::Serverd(args) => serverd::run_serverd(args),
        Cmd::Service(args) => serverd::run_service(args),
        Cmd::Oxauth { root } => layout::Layout::resolve(root.as_deref())
            .and_then(oxauth::run)
            .map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ERROR: {err:#}");
            ExitCode::FAILURE
        }
    }
}
