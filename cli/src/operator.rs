//! `clustermgr operator create|list|remove|renew` (`operator recover`, offline, is the
//! controller's).

use crate::args::OperatorCmd;
use crate::client::{explain, load_bundle};
use crate::context::{Ctx, Exit};
use crate::output::render;
use anyhow::{Result, bail};
use clustermgr_proto::{CreateOperatorRequest, ListOperatorsRequest, RemoveOperatorRequest};
use clustermgr_shared::config::ClientBundle;
use clustermgr_shared::duration::parse_duration;
use clustermgr_shared::pki;
use std::path::PathBuf;

pub async fn run(cmd: OperatorCmd, ctx: &Ctx) -> Result<Exit> {
    // The self-service command: no connection made with the current credential first.
    if let OperatorCmd::Renew { out, ttl } = cmd {
        crate::ca::operator_renew(&ctx.target, out, ttl).await?;
        return Ok(Exit::Ok);
    }
    let mut c = ctx.client().await?;
    match cmd {
        OperatorCmd::Create {
            name,
            role,
            out,
            ttl,
        } => {
            let out = out.unwrap_or_else(|| PathBuf::from(format!("{name}.toml")));
            if out.exists() {
                bail!("{} exists; choose another --out", out.display());
            }
            let ttl_seconds = match ttl {
                Some(t) => parse_duration(&t)?.as_secs(),
                None => 0,
            };
            let (key, csr) = pki::new_key_and_csr(&name)?;
            let r = c
                .create_operator(CreateOperatorRequest {
                    name: name.clone(),
                    role: role.clone(),
                    csr_der: csr,
                    ttl_seconds,
                })
                .await
                .map_err(explain)?
                .into_inner();
            let current = load_bundle(&ctx.target.bundle_path)?;
            // `save` writes with mode 0600 whatever the umask (fsutil::write_private).
            ClientBundle {
                controller: ctx.target.controller.clone().unwrap_or(current.controller),
                name: name.clone(),
                ca_pem: r.ca_pem,
                cert_pem: r.certificate_pem,
                key_pem: key,
            }
            .save(&out)?;
            eprintln!(
                "operator {name} ({role}) created; credential written to {} (mode 0600). Use it with --config {}",
                out.display(),
                out.display()
            );
        }
        OperatorCmd::Remove { name } => {
            let o = c
                .remove_operator(RemoveOperatorRequest { name })
                .await
                .map_err(explain)?
                .into_inner();
            eprintln!(
                "removed operator {} ({}); its credentials are revoked",
                o.name, o.role
            );
        }
        OperatorCmd::Renew { .. } => {}
        OperatorCmd::List => {
            let ops = c
                .list_operators(ListOperatorsRequest {})
                .await
                .map_err(explain)?
                .into_inner()
                .operators;
            render(ctx.output, ops.as_slice())?;
        }
    }
    Ok(Exit::Ok)
}
