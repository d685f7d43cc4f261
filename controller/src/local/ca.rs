//! `clustermgr ca renew-server` (through the running controller, else from the data directory)
//! and `clustermgr operator recover` (offline: a new admin credential from the data directory
//! and the store); the other `ca` and `operator` commands are the CLI crate's.

use crate::audit;
use crate::ca::{Authority, issue_server, merge_sans, server_leaf};
use crate::config::{DataDir, SettingsFile, parse_duration};
use crate::store::Store;
use anyhow::{Result, bail};
use clap::Subcommand;
use clustermgr_cli::client::{Target, explain};
use clustermgr_cli::{Ctx, Exit};
use clustermgr_proto::{OperatorRecord, RenewServerRequest};
use clustermgr_shared::config::ClientBundle;
use clustermgr_shared::pki::{self, CertInfo, Usage, validity_from_now};
use clustermgr_shared::util::{fmt_unix, now_ms};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum CaCmd {
    #[command(flatten)]
    Remote(clustermgr_cli::args::CaCmd),
    /// Issue a new server certificate from the CA with the same names (plus --san). The running
    /// controller switches to it without a restart.
    // Listed before `rotate`, as it always was.
    #[command(display_order = 2)]
    RenewServer {
        /// Extra DNS name or IP address (repeatable).
        #[arg(long = "san")]
        sans: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum OperatorCmd {
    #[command(flatten)]
    Remote(clustermgr_cli::args::OperatorCmd),
    /// Offline, on the controller host with the controller stopped: issue a new admin
    /// credential from the data directory (CA key and store), e.g. after the admin credential
    /// expired or was lost. Audited.
    Recover {
        #[arg(long, default_value = "admin")]
        name: String,
        /// Where to write it (default: DATA_DIR/admin.toml for admin, else DATA_DIR/NAME.toml).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub async fn run(cmd: CaCmd, ctx: &Ctx) -> Result<Exit> {
    match cmd {
        CaCmd::Remote(cmd) => clustermgr_cli::ca::run(cmd, ctx).await,
        CaCmd::RenewServer { sans } => {
            renew_server(&ctx.data, &ctx.target, sans).await?;
            Ok(Exit::Ok)
        }
    }
}

pub async fn run_operator(cmd: OperatorCmd, ctx: &Ctx) -> Result<Exit> {
    match cmd {
        OperatorCmd::Remote(cmd) => clustermgr_cli::operator::run(cmd, ctx).await,
        OperatorCmd::Recover { name, out } => {
            operator_recover(&ctx.data, &name, out).await?;
            Ok(Exit::Ok)
        }
    }
}

/// Renews the server certificate through the running controller (which switches to it at
/// once); when the controller cannot be reached, writes it from the data directory and says
/// whether a restart is needed.
async fn renew_server(data: &DataDir, target: &Target, extra: Vec<String>) -> Result<()> {
    let online = match clustermgr_cli::ca::ca_client(target).await {
        Ok(mut c) => Ok(c
            .renew_server(RenewServerRequest {
                extra_sans: extra.clone(),
            })
            .await
            .map_err(explain)?
            .into_inner()),
        Err(e) => Err(e),
    };
    match online {
        Ok(r) => {
            eprintln!(
                "server certificate renewed (valid until {}; names {}); the running controller switched to it, no restart needed",
                fmt_unix(r.not_after_unix),
                r.sans.join(", ")
            );
        }
        Err(unreachable) => {
            let a = Authority::load(data)?;
            let sans = merge_sans(&server_leaf(data)?.sans, &extra).map_err(anyhow::Error::msg)?;
            // The running controller holds the store's lock.
            let store = Store::open(&data.store()).ok();
            let (_, _, info) = issue_server(data, &a, &sans)?;
            let detail = format!("sans={} offline", sans.join(","));
            match store {
                Some(store) => {
                    audit::record(
                        &store,
                        local_who(),
                        "ca.renew-server",
                        String::new(),
                        detail,
                        "ok".into(),
                    )
                    .await?;
                    eprintln!(
                        "server certificate renewed (valid until {}; names {}); the controller is not running: `clustermgr serve` uses it when started",
                        fmt_unix(info.not_after_unix),
                        sans.join(", ")
                    );
                }
                None => eprintln!(
                    "server certificate written to {} (valid until {}), but the running controller could not be reached ({unreachable:#}): restart it to use the new certificate",
                    data.server_cert().display(),
                    fmt_unix(info.not_after_unix)
                ),
            }
        }
    }
    Ok(())
}

fn local_who() -> String {
    format!(
        "local:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

/// `clustermgr operator recover`: offline, from the data directory (CA key) and the store,
/// which only a stopped controller leaves unlocked.
pub async fn operator_recover(data: &DataDir, name: &str, out: Option<PathBuf>) -> Result<()> {
    clustermgr_shared::tls::install_crypto_provider();
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !valid {
        bail!("invalid operator name {name:?}");
    }
    let settings = data.load_settings()?;
    let store = Store::open(&data.store()).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the store {} ({e}). Is the controller running? It locks the store: \
             stop it first (`operator recover` registers the new credential in the store), or, \
             with a working admin credential, use `clustermgr operator create` or `operator renew`",
            data.store().display()
        )
    })?;
    let a = Authority::load(data)?;
    let existing = store
        .ensure_operator(OperatorRecord {
            name: name.to_string(),
            role: clustermgr_proto::OperatorRole::Admin as i32,
            created_unix_ms: now_ms(),
            created_by: "recover".into(),
        })
        .await?;
    if existing.role() != clustermgr_proto::OperatorRole::Admin {
        bail!(
            "operator {name:?} has role {}; `operator recover` issues admin credentials (choose another --name)",
            crate::records::operator(existing).role
        );
    }
    let ttl = parse_duration(&settings.operator_cert_ttl)?;
    let (key, csr) = pki::new_key_and_csr(name)?;
    let cert = a
        .current
        .sign_csr(&csr, name, Usage::Client, validity_from_now(ttl))?;
    let info = CertInfo::from_pem(&cert)?;
    store
        .add_principal(
            info.fingerprint.clone(),
            crate::records::principal(clustermgr_proto::PrincipalKind::Operator, name, &info),
        )
        .await?;
    audit::record(
        &store,
        local_who(),
        "operator.recover",
        name.to_string(),
        format!("role=admin not_after={}", fmt_unix(info.not_after_unix)),
        "ok".into(),
    )
    .await?;
    drop(store);
    let out = out.unwrap_or_else(|| {
        if name == "admin" {
            data.admin_bundle()
        } else {
            data.root.join(format!("{name}.toml"))
        }
    });
    ClientBundle {
        controller: settings.advertise,
        name: name.to_string(),
        ca_pem: a.trusted_pem(),
        cert_pem: cert,
        key_pem: key,
    }
    .save(&out)?;
    eprintln!(
        "new admin credential for {name:?} written to {} (mode 0600), valid until {}; earlier credentials of {name:?} stay valid until they expire or the operator is removed",
        out.display(),
        fmt_unix(info.not_after_unix)
    );
    Ok(())
}
