//! `clustermgr ca pin|status|rotate` and the credential command that goes with them:
//! `operator renew` (a new credential from the current CA for the caller). `ca renew-server`,
//! which falls back to the data directory, and `operator recover` (offline) are the
//! controller's (`clustermgr::local::ca`).

use crate::args::CaCmd;
use crate::client::{self, Target, explain};
use crate::context::{Ctx, Exit};
use crate::output;
use anyhow::{Context, Result};
use clustermgr_proto::certificate_authority_client::CertificateAuthorityClient;
use clustermgr_proto::{
    CaStatusRequest, CaStatusResponse, RenewCredentialRequest, RetirePreviousRequest, RotateRequest,
};
use clustermgr_shared::config::ClientBundle;
use clustermgr_shared::duration::parse_duration;
use clustermgr_shared::pki::{self, CertInfo};
use clustermgr_shared::util::fmt_unix;
use serde_json::json;
use std::path::PathBuf;
use tonic::transport::Channel;

pub type CaClient = CertificateAuthorityClient<Channel>;

pub async fn ca_client(target: &Target) -> Result<CaClient> {
    Ok(CertificateAuthorityClient::new(
        client::channel(target).await?,
    ))
}

pub async fn run(cmd: CaCmd, ctx: &Ctx) -> Result<Exit> {
    let (data, target, format) = (&ctx.data, &ctx.target, ctx.output);
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
    Ok(Exit::Ok)
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
