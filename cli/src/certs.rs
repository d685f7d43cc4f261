//! `clustermgr cert show|install`. `install` validates on the controller (before any node is
//! touched), starts the cert-install workflow and follows it like every starting command (exit 0
//! succeeded, 1 failed or cancelled, 2 not started; `--detach`, `--dry-run`). The key file is
//! read here and sent once over the operator connection; it is never printed.

use crate::args::CertCmd;
use crate::client::{channel, explain};
use crate::context::{Ctx, Exit};
use crate::output::{Render, render, table};
use anyhow::{Context, Result};
use clustermgr_proto::certificates_client::CertificatesClient;
use clustermgr_proto::{CertificatesShown, InstallCertificateRequest, ShowCertificatesRequest};
use clustermgr_shared::util::fmt_unix;
use serde_json::Value;
use std::io::Write;

pub(crate) struct Shown<'a>(pub(crate) &'a CertificatesShown);

impl Render for Shown<'_> {
    fn json(&self) -> Value {
        crate::view::certs_shown(self.0)
    }

    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "load balancer hostname: {}", self.0.lb_hostname)?;
        let mut t = table(&[
            "NODE", "ROLE", "ADDRESS", "SUBJECT", "NAMES", "ISSUER", "EXPIRES", "SHA-256",
        ]);
        for s in &self.0.served {
            let (subject, names, issuer, exp, fp) = match &s.certificate {
                Some(c) => (
                    c.subject.clone(),
                    c.sans.join(", "),
                    c.issuer.clone(),
                    fmt_unix(c.not_after_unix),
                    c.fingerprint.clone(),
                ),
                None => (
                    format!("ERROR: {}", s.error),
                    "".into(),
                    "".into(),
                    "".into(),
                    "".into(),
                ),
            };
            t.add_row(vec![
                s.hostname.clone(),
                s.role.clone(),
                s.address.clone(),
                subject,
                names,
                issuer,
                exp,
                fp,
            ]);
        }
        writeln!(out, "{t}")
    }
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

pub async fn run(cmd: CertCmd, ctx: &Ctx) -> Result<Exit> {
    let mut c = CertificatesClient::new(channel(&ctx.target).await?);
    match cmd {
        CertCmd::Show => {
            let s = c
                .show_certificates(ShowCertificatesRequest {})
                .await
                .map_err(explain)?
                .into_inner();
            render(ctx.output, &Shown(&s))?;
            Ok(if s.served.iter().all(|x| x.error.is_empty()) {
                Exit::Ok
            } else {
                Exit::JobFailed
            })
        }
        CertCmd::Install {
            cert,
            key,
            chain,
            start,
        } => {
            let certificate_pem = String::from_utf8(read(&cert, "certificate")?)
                .context("the certificate is not text")?;
            let chain_pem = match chain {
                Some(p) => {
                    String::from_utf8(read(&p, "chain")?).context("the chain is not text")?
                }
                None => String::new(),
            };
            let r = c
                .install_certificate(InstallCertificateRequest {
                    certificate_pem,
                    key_pem: read(&key, "key")?,
                    chain_pem,
                    dry_run: start.dry_run,
                    no_wait: start.no_wait,
                })
                .await
                .map_err(explain)?
                .into_inner();
            if let Some(f) = &r.certificate {
                eprintln!(
                    "certificate {} (names {}; issuer {}; expires {}) is valid for the cluster",
                    f.subject,
                    f.sans.join(", "),
                    f.issuer,
                    fmt_unix(f.not_after_unix)
                );
            }
            let started = clustermgr_proto::StartWorkflowResponse {
                workflow: r.workflow,
                plan: r.plan,
            };
            let mut cl = ctx.cluster().await?;
            crate::workflow::started(&mut cl, started, start.detach, ctx).await
        }
    }
}
