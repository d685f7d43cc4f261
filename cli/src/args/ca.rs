//! Arguments of the `clustermgr ca` commands that talk to the controller (`ca renew-server`,
//! which can fall back to the data directory, is the controller's).

use clap::Subcommand;

#[derive(Subcommand)]
pub enum CaCmd {
    /// Print the CA pin (sha256 of the CA certificate) agents pass to `join --ca-pin`.
    Pin,
    /// Show the CAs (pins, expiry), the server certificate, and which CA each node's
    /// certificate is from.
    Status,
    /// Start a CA rotation: a new CA beside the current one (both trusted), agents renew over
    /// their sessions, this credential is renewed. `--finish` retires the previous CA once
    /// every node has a certificate from the new one.
    Rotate {
        /// Retire the previous CA (ends the overlap).
        #[arg(long, alias = "retire-old")]
        finish: bool,
        /// With --finish: retire even though some nodes still have a certificate from the
        /// previous CA (they lose their session and must re-join).
        #[arg(long, requires = "finish")]
        force: bool,
    },
}
