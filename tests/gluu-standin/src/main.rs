//! Test-only stand-in for a Gluu Server 4.2.3 node: a systemd-nspawn machine.
//!
//! One binary (`/opt/gluu/bin/gluu-standin` in the container), several roles:
//! - on the host, `serverd`: what `/sbin/gluu-serverd VERB` does (the machine's control);
//! - inside the machine:
//!   - `setup`   : what `setup.py` does (directory, certificates, keys, config files, units);
//!   - `opendj`  : `opendj.service`, the directory (OpenLDAP slapd) in the foreground;
//!   - `oxauth`  : `oxauth.service`, the oxAuth-like HTTPS service in the foreground;
//!   - `identity`: `identity.service`, ready once /identity answers (served by oxauth);
//!   - `keytool` : the JRE's keytool for the trust store (`/opt/jre/bin/keytool`);
//!   - `show-version`: what Gluu's `show_version.py` prints.
#![forbid(unsafe_code)]

mod certs;
mod components;
mod docroot;
mod keytool;
mod layout;
mod machine;
mod notify;
mod oxauth;
mod props;
mod schema;
mod serverd;
mod services;
mod setup;
mod slapd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Package version string of the stand-in `gluu-server` package.
pub const PACKAGE_VERSION: &str = "4.2.3~standin1";
/// The Gluu Server version the stand-in stands for.
pub const GLUU_VERSION: &str = "4.2.3.Final";

#[derive(Parser)]
#[command(name = "gluu-standin", version = PACKAGE_VERSION, about = "Gluu Server 4.2.3 stand-in for tests")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the node (the behaviour of Gluu's setup.py); runs inside the machine.
    Setup(setup::SetupArgs),
    /// The host's /sbin/gluu-serverd (verbs and output of Gluu 4.2.3's).
    #[command(disable_help_flag = true)]
    Serverd {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// opendj.service: the directory in the foreground (systemd readiness protocol).
    Opendj,
    /// oxauth.service: the oxAuth-like HTTPS service in the foreground.
    Oxauth,
    /// identity.service: wait until /identity (served by oxauth) answers.
    Identity,
    /// The JRE's keytool, for the trust store commands (-import, -delete, -list).
    Keytool {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// What Gluu's show_version.py prints for the installed web applications.
    ShowVersion,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Keytool { args } => return keytool::run(&args),
        Cmd::Serverd { args } => return serverd::run(&args),
        Cmd::Setup(args) => setup::run(args),
        Cmd::Opendj => services::opendj(),
        Cmd::Oxauth => layout::Layout::resolve().and_then(oxauth::run),
        Cmd::Identity => services::identity(),
        Cmd::ShowVersion => {
            show_version();
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ERROR: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The lines Gluu's printVersion.py prints for each web application it finds.
fn show_version() {
    for title in ["oxAuth", "oxTrust"] {
        println!("Title: {title} (gluu-server stand-in {PACKAGE_VERSION})");
        println!("Version: {GLUU_VERSION}");
        println!("Builddate: ");
        println!("Build: standin");
        println!();
    }
}
