//! `clustermgr ca …` (pin, status, renew-server, rotate) and the credential commands that go
//! with them: `operator renew` (a new credential from the current CA for the caller) and
//! `operator recover` (offline: a new admin credential from the data directory).

use super::Output;
use super::client::{self, Target, explain};
use super::output;
use crate::audit;
use crate::ca::{Authority, issue_server, merge_sans, server_leaf};
use crate::config::{DataDir, parse_duration};
use crate::store::Store;
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use clustermgr_proto::certificate_authority_client::CertificateAuthorityClient;
use clustermgr_proto::{
    CaStatusRequest, CaStatusResponse, OperatorRecord, RenewCredentialRequest, RenewServerRequest,
    RetirePreviousRequest, RotateRequest,
};
use clustermgr_shared::config::ClientBundle;
use clustermgr_shared::pki::{self, CertInfo, Usage, validity_from_now};
use clustermgr_shared::util::{fmt_unix, now_ms};
use serde_json::json;
use std::path::PathBuf;
use tonic::transport::Channel;

#[derive(Subcommand)]
pub enum CaCmd {
    /// Print the CA pin (sha256 of the CA certificate) agents pass to `join --ca-pin`.
    Pin,
    /// Show the CAs (pins, expiry), the server certificate, and which CA each node's
    /// certificate is from.
    Status,
    /// Issue a new server certificate from the CA with the same names (plus --san). The running
    /// controller switches to it without a restart.
    RenewServer {
        /// Extra DNS name or IP address (repeatable).
        #[arg(long = "san")]
        sans: Vec<String>,
    },
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

type CaClient = CertificateAuthorityClient<Channel>;

async fn ca_client(target: &Target) -> Result<CaClient> {
    Ok(CertificateAuthorityClient::new(
        client::channel(target).await?,
    ))
}

pub async fn run(cmd: CaCmd, data: &DataDir, target: &Target, format: Output) -> Result<()> {
    match cmd {
        CaCmd::Pin => {
            let pem = std::fs::read_to_string(data.ca_cert())
                .with_context(|| format!("cannot read {}", data.ca_cert().display()))?;
            println!("{}", pki::pin_of(&pki::pem_to_der(&pem, "CERTIFICATE")?));
            if let Ok(prev) = std::fs::read_to_string(data.root.join("ca-previous.crt")) {
                eprintln!(
                    "a CA rotation is in progress: joining with the previous CA's pin {} also works until `clustermgr ca rotate --finish`",
                    pki::pin_of(&pki::pem_to_der(&prev, "CERTIFICATE")?)
                );
            }
        }
        CaCmd::Status => {
            let s = ca_client(target)
                .await?
                .status(CaStatusRequest {})
                .await
                .map_err(explain)?
                .into_inner();
            output::render(format, &Status(s))?;
        }
        CaCmd::RenewServer { sans } => renew_server(data, target, sans).await?,
        CaCmd::Rotate { finish: false, .. } => {
            let mut c = ca_client(target).await?;
            let r = c
                .rotate(RotateRequest {})
                .await
                .map_err(explain)?
                .into_inner();
            eprintln!(
                "new CA {} issued; the previous CA {} stays trusted until `clustermgr ca rotate --finish`",
                r.new_pin, r.previous_pin
            );
            eprintln!(
                "{} connected agent(s) told to renew; agents that connect later are told then",
                r.agents_notified
            );
            let out = renew_own(&mut c, target, None, None).await?;
            eprintln!(
                "this credential ({}) now comes from the new CA; other operators run `clustermgr operator renew --config THEIR.toml`",
                out.display()
            );
            eprintln!(
                "when `clustermgr ca status` shows every node on the current CA, run `clustermgr ca rotate --finish`"
            );
            println!("{}", r.new_pin);
        }
        CaCmd::Rotate {
            finish: true,
            force,
        } => {
            let r = ca_client(target)
                .await?
                .retire_previous(RetirePreviousRequest { force })
                .await
                .map_err(explain)?
                .into_inner();
            eprintln!(
                "retired the previous CA {}: certificates it issued are refused from now on",
                r.retired_pin
            );
            if !r.stragglers.is_empty() {
                eprintln!(
                    "these nodes had no certificate from the current CA and must re-join: {}",
                    r.stragglers.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// `ca status`: the CAs, the server certificate, and which CA each node's certificate is from.
struct Status(CaStatusResponse);

impl output::Render for Status {
    fn json(&self) -> serde_json::Value {
        status_json(&self.0)
    }
    fn human(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        print_status(&self.0, out)
    }
}

fn status_json(s: &CaStatusResponse) -> serde_json::Value {
    json!({
        "overlap": s.overlap,
        "cas": s.cas.iter().map(|c| json!({
            "state": c.state, "pin": c.pin, "subject": c.subject,
            "not_after": fmt_unix(c.not_after_unix),
        })).collect::<Vec<_>>(),
        "server": {
            "not_after": fmt_unix(s.server_not_after_unix),
            "ca_pin": s.server_ca_pin,
            "names": s.server_sans,
        },
        "nodes": s.nodes.iter().map(|n| json!({
            "id": n.node_id, "hostname": n.hostname, "ca": n.ca_state, "ca_pin": n.ca_pin,
            "certificate_not_after": fmt_unix(n.certificate_not_after_unix),
        })).collect::<Vec<_>>(),
    })
}

fn print_status(s: &CaStatusResponse, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut t = output::table(&["CA", "PIN", "SUBJECT", "VALID UNTIL"]);
    for c in &s.cas {
        t.add_row(vec![
            c.state.clone(),
            c.pin.clone(),
            c.subject.clone(),
            fmt_unix(c.not_after_unix),
        ]);
    }
    writeln!(out, "{t}")?;
    writeln!(
        out,
        "server certificate: valid until {}, issued by {}, names {}",
        fmt_unix(s.server_not_after_unix),
        if s.server_ca_pin.is_empty() {
            "an unknown CA"
        } else {
            &s.server_ca_pin
        },
        s.server_sans.join(", ")
    )?;
    let mut t = output::table(&["HOSTNAME", "NODE", "CERTIFICATE FROM", "VALID UNTIL"]);
    for n in &s.nodes {
        t.add_row(vec![
            n.hostname.clone(),
            n.node_id.clone(),
            n.ca_state.clone(),
            fmt_unix(n.certificate_not_after_unix),
        ]);
    }
    writeln!(out, "{t}")?;
    if s.overlap {
        let left = s.nodes.iter().filter(|n| n.ca_state != "current").count();
        writeln!(
            out,
            "rotation in progress: {left} node(s) still without a certificate from the current CA"
        )?;
    }
    Ok(())
}

/// Renews the server certificate through the running controller (which switches to it at
/// once); when the controller cannot be reached, writes it from the data directory and says
/// whether a restart is needed.
async fn renew_server(data: &DataDir, target: &Target, extra: Vec<String>) -> Result<()> {
    let online = match ca_client(target).await {
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

/// A new credential for the caller from the current CA, written over the current one (or to
/// `out`). Returns where it was written.
async fn renew_own(
    c: &mut CaClient,
    target: &Target,
    out: Option<PathBuf>,
    ttl: Option<String>,
) -> Result<PathBuf> {
    let current = client::load_bundle(&target.bundle_path)?;
    let ttl_seconds = match ttl {
        Some(t) => parse_duration(&t)?.as_secs().max(1),
        None => 0,
    };
    let (key, csr) = pki::new_key_and_csr(&current.name)?;
    let r = c
        .renew_credential(RenewCredentialRequest {
            csr_der: csr,
            ttl_seconds,
        })
        .await
        .map_err(explain)?
        .into_inner();
    let out = out.unwrap_or_else(|| target.bundle_path.clone());
    ClientBundle {
        controller: current.controller,
        name: r.name,
        ca_pem: r.ca_bundle_pem,
        cert_pem: r.certificate_pem,
        key_pem: key,
    }
    .save(&out)?;
    Ok(out)
}

/// `clustermgr operator renew`.
pub async fn operator_renew(
    target: &Target,
    out: Option<PathBuf>,
    ttl: Option<String>,
) -> Result<()> {
    let mut c = ca_client(target).await?;
    let out = renew_own(&mut c, target, out, ttl).await?;
    let info = CertInfo::from_pem(&client::load_bundle(&out)?.cert_pem)?;
    eprintln!(
        "credential renewed: {} (mode 0600), valid until {}",
        out.display(),
        fmt_unix(info.not_after_unix)
    );
    Ok(())
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
