//! Arguments of the node and job commands: tokens, nodes, packages, jobs, operators.

use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create a join token; prints the token alone on stdout.
    Create {
        #[arg(long, value_parser = ["gluu-node", "cache", "lb"])]
        role: String,
        #[arg(long, default_value = "30m")]
        ttl: String,
        #[arg(long, default_value_t = 1)]
        uses: u32,
    },
    /// List join tokens (ids, roles, expiry, uses left; never the secret).
    List,
    /// Revoke a join token by id, so that it can no longer be used.
    Revoke { id: String },
}

#[derive(Subcommand)]
pub enum NodeCmd {
    /// List nodes.
    List,
    /// Show one node's inventory (by id or hostname).
    Show { node: String },
    /// Approve a pending node.
    Approve { node: String },
    /// Remove a node: drop its session, revoke its certificates, purge its identity.
    Remove { node: String },
}

#[derive(Subcommand)]
pub enum PackageCmd {
    /// Add a .deb or .rpm file (name, version and architecture are read from the file).
    Add { file: PathBuf },
    /// List the packages in the repository.
    List,
    /// Remove a package and its file: NAME or NAME=VERSION.
    Remove { package: String },
    /// Copy a package into the cache of one or more nodes, all at once (NAME or NAME=VERSION,
    /// then node ids or hostnames); exits 1 if any node failed.
    Push {
        package: String,
        #[arg(required = true)]
        nodes: Vec<String>,
        /// Per-node job timeout.
        #[arg(long, default_value = "1h")]
        timeout: String,
        /// Print the job ids and return at once.
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Subcommand)]
pub enum JobCmd {
    /// List recent jobs.
    List {
        #[arg(long)]
        node: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show a job.
    Show { id: String },
    /// Print a job's log lines.
    Logs {
        id: String,
        /// Keep printing until the job ends.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Run an operation on a node and wait for it.
    Run {
        /// Node id or hostname.
        node: String,
        #[command(subcommand)]
        op: RunOp,
        /// Job timeout.
        #[arg(long, default_value = "60s", global = true)]
        timeout: String,
        /// Print the job id and return at once.
        #[arg(long, global = true)]
        no_wait: bool,
    },
}

#[derive(Subcommand)]
pub enum RunOp {
    /// Round trip to the agent.
    Ping,
    /// Collect the node's facts (inventory).
    Facts,
    /// Read a managed file; its content goes to stdout (or --out).
    ReadFile {
        path: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a managed file from a local file. Without --mode, --owner and --group the file
    /// keeps the existing one's mode, owner and group (0644 and the agent's user for a new file).
    WriteFile {
        path: String,
        #[arg(long)]
        from: PathBuf,
        /// Octal permission bits, e.g. 600 or 0600 (default: keep the existing file's mode).
        #[arg(long, value_parser = parse_mode)]
        mode: Option<u32>,
        /// Owner: a user name or numeric id (default: keep the existing file's owner).
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
        /// Group: a group name or numeric id (default: keep the existing file's group).
        #[arg(long, value_name = "GROUP")]
        group: Option<String>,
        /// Allow setuid, setgid and sticky bits in --mode (refused otherwise).
        #[arg(long)]
        allow_setid: bool,
    },
    /// Install a package pushed into the node's cache (`package push`), chosen by its SHA-256
    /// (as `package list` shows it), with the node's package manager.
    InstallPackage {
        /// SHA-256 of the pushed file (64 lowercase hex digits).
        #[arg(long)]
        sha256: String,
        /// Install even when the same version is already installed.
        #[arg(long)]
        force: bool,
    },
}

/// `--mode`: octal permission bits (`600`, `0600`, `0o600`), at most 7777. Zero is refused: on
/// the wire it means "keep the existing mode", which is what leaving --mode out does.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.trim().trim_start_matches("0o");
    let bad = || format!("invalid mode {s:?}: octal permission bits expected, e.g. 644 or 0600");
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad());
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|_| bad())?;
    if mode > 0o7777 {
        return Err(bad());
    }
    if mode == 0 {
        return Err(format!(
            "invalid mode {s:?}: a file with no permission bits cannot be written \
             (leave --mode out to keep the existing file's mode)"
        ));
    }
    Ok(mode)
}

#[derive(Subcommand)]
pub enum OperatorCmd {
    /// Issue a credential bundle (the key is made here and written only to --out).
    Create {
        name: String,
        #[arg(long, value_parser = ["admin", "operator", "viewer"])]
        role: String,
        /// Where to write the bundle (default: ./NAME.toml).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Credential lifetime (default 365d).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// List operators.
    List,
    /// Remove an operator: every credential issued to it is refused from now on.
    Remove { name: String },
    /// Replace this credential (--config) with a new one from the current CA: same name and
    /// role, a new key. Run it before the credential expires and during a CA rotation.
    Renew {
        /// Where to write the new credential (default: over the current one).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Credential lifetime (default: the controller's, 365d).
        #[arg(long)]
        ttl: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The remote commands alone, as the `clustermgr` binary parses them.
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: crate::args::RemoteCmd,
    }
    use crate::args::RemoteCmd as Cmd;

    fn write_file(extra: &[&str]) -> RunOp {
        let mut args = vec![
            "clustermgr",
            "job",
            "run",
            "n1",
            "write-file",
            "/etc/hosts",
            "--from",
            "./hosts",
        ];
        args.extend_from_slice(extra);
        match Cli::try_parse_from(args).map(|c| c.cmd) {
            Ok(Cmd::Job(JobCmd::Run { op, .. })) => op,
            Ok(_) => panic!("not a job run"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn modes_are_octal_with_or_without_a_leading_zero() {
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert_eq!(parse_mode("0o644"), Ok(0o644));
        assert_eq!(parse_mode("4755"), Ok(0o4755));
        for bad in [
            "",
            "0",
            "000",
            "8",
            "64a",
            "-644",
            "17777",
            "0x1ff",
            "rw-r--r--",
        ] {
            assert!(parse_mode(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn write_file_flags_are_optional() {
        match write_file(&[]) {
            RunOp::WriteFile {
                mode,
                owner,
                group,
                allow_setid,
                ..
            } => {
                assert_eq!(mode, None);
                assert_eq!(owner, None);
                assert_eq!(group, None);
                assert!(!allow_setid);
            }
            _ => panic!("not write-file"),
        }
        match write_file(&[
            "--mode",
            "0640",
            "--owner",
            "jetty",
            "--group",
            "1001",
            "--allow-setid",
        ]) {
            RunOp::WriteFile {
                mode,
                owner,
                group,
                allow_setid,
                ..
            } => {
                assert_eq!(mode, Some(0o640));
                assert_eq!(owner.as_deref(), Some("jetty"));
                assert_eq!(group.as_deref(), Some("1001"));
                assert!(allow_setid);
            }
            _ => panic!("not write-file"),
        }
    }

    #[test]
    fn a_bad_mode_is_a_usage_error() {
        let e = Cli::try_parse_from([
            "clustermgr",
            "job",
            "run",
            "n1",
            "write-file",
            "/etc/hosts",
            "--from",
            "x",
            "--mode",
            "999",
        ])
        .err()
        .map(|e| e.kind());
        assert_eq!(e, Some(clap::error::ErrorKind::ValueValidation));
    }
}
