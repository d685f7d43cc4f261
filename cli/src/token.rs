//! `clustermgr token create|list|revoke`.

use crate::args::TokenCmd;
use crate::client::explain;
use crate::context::{Ctx, Exit};
use crate::output::render;
use anyhow::Result;
use clustermgr_proto::{CreateTokenRequest, ListTokensRequest, RevokeTokenRequest};
use clustermgr_shared::duration::parse_duration;
use clustermgr_shared::util::fmt_unix;

pub async fn run(cmd: TokenCmd, ctx: &Ctx) -> Result<Exit> {
    match cmd {
        TokenCmd::Create { role, ttl, uses } => {
            let ttl = parse_duration(&ttl)?;
            let r = ctx
                .client()
                .await?
                .create_token(CreateTokenRequest {
                    role,
                    ttl_seconds: ttl.as_secs().max(1),
                    uses,
                })
                .await
                .map_err(explain)?
                .into_inner();
            eprintln!(
                "join token {} (expires {}, {} use{})",
                r.token_id,
                fmt_unix(r.expires_unix),
                uses.max(1),
                if uses > 1 { "s" } else { "" }
            );
            // The secret alone on stdout, whatever --output says: scripts capture it as is.
            println!("{}", r.token);
        }
        TokenCmd::List => {
            let tokens = ctx
                .client()
                .await?
                .list_tokens(ListTokensRequest {})
                .await
                .map_err(explain)?
                .into_inner()
                .tokens;
            render(ctx.output, tokens.as_slice())?;
        }
        TokenCmd::Revoke { id } => {
            let t = ctx
                .client()
                .await?
                .revoke_token(RevokeTokenRequest { token_id: id })
                .await
                .map_err(explain)?
                .into_inner();
            eprintln!("revoked join token {} (role {})", t.id, t.role);
        }
    }
    Ok(Exit::Ok)
}
