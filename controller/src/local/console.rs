//! `clustermgr console oidc register|show|remove`: the web console's client at an OpenID
//! Provider, kept in `DATA/oidc.toml` (the secret sealed). Run on the controller's host as the
//! controller's user; `serve` reads the file again when it changes.

use crate::sealing::Sealer;
use crate::web::oidc::config::{self, DEFAULT_ROLE_CLAIM, DEFAULT_ROLE_MAP, OidcSettings, RoleMap};
use crate::web::oidc::http::{Body, brief};
use crate::web::oidc::{cluster_issuer, op_client};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use clustermgr_cli::client::explain;
use clustermgr_cli::{Ctx, Exit};
use clustermgr_proto::GetSettingsRequest;
use serde_json::{Value, json};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ConsoleCmd {
    /// OpenID Connect sign-in to the console ("Sign in with OpenID Connect").
    #[command(subcommand)]
    Oidc(OidcCmd),
}

#[derive(Subcommand)]
pub enum OidcCmd {
    /// Register the console as a client at the OP (dynamic registration), or record a client
    /// registered by hand (--client-id with --client-secret-file). The console uses it from the
    /// next sign-in.
    Register(Box<RegisterArgs>),
    /// Show the console's OpenID Connect settings (never the secret).
    Show,
    /// Remove the settings: the console offers local sign-in only and ends every OpenID Connect
    /// session (from the next page).
    Remove,
}

#[derive(Args)]
pub struct RegisterArgs {
    /// The OP's issuer URL (default: the cluster's own Gluu, https://LB_HOSTNAME[:PORT], asked
    /// from the controller; then the console follows the cluster's hostname).
    #[arg(long)]
    pub issuer: Option<String>,
    /// The console's callback as the browser reaches it: https://CONSOLE[:PORT]/login/oidc/callback.
    #[arg(long)]
    pub redirect_uri: String,
    /// A client registered at the OP by hand (with --client-secret-file): no registration.
    #[arg(long, requires = "client_secret_file")]
    pub client_id: Option<String>,
    /// The file holding that client's secret (its first line).
    #[arg(long, requires = "client_id")]
    pub client_secret_file: Option<PathBuf>,
    /// The client's name at the OP.
    #[arg(long, default_value = "clustermgr console")]
    pub client_name: String,
    /// The claim holding the user's roles.
    #[arg(long, default_value = DEFAULT_ROLE_CLAIM)]
    pub role_claim: String,
    /// Claim values and the console roles they give, e.g.
    /// clusteradmin=admin,clusterops=operator,clusterview=viewer.
    #[arg(long, default_value = DEFAULT_ROLE_MAP)]
    pub role_map: String,
    /// PEM CA certificates that verify the OP's TLS certificate (default: the cluster's CA);
    /// kept as an absolute path.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Dial ADDRESS:PORT for the OP's host instead of resolving its name (the certificate is
    /// still verified for the name).
    #[arg(long)]
    pub connect_to: Option<String>,
}

pub async fn run(cmd: ConsoleCmd, ctx: &Ctx) -> Result<Exit> {
    let ConsoleCmd::Oidc(cmd) = cmd;
    let root = ctx.data.root.clone();
    match cmd {
        OidcCmd::Register(a) => register(*a, ctx).await?,
        OidcCmd::Show => {
            let s = OidcSettings::load(&root)?.with_context(|| {
                format!(
                    "OpenID Connect sign-in is not configured ({} does not exist)",
                    config::path(&root).display()
                )
            })?;
            let mut v = serde_json::to_value(&s)?;
            if let Some(o) = v.as_object_mut() {
                o.remove("client_secret_sealed");
                o.insert("client_secret".into(), json!("(sealed)"));
                o.entry("issuer")
                    .or_insert(json!("(the cluster's own Gluu)"));
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        OidcCmd::Remove => {
            let p = config::path(&root);
            match std::fs::remove_file(&p) {
                Ok(()) => println!(
                    "removed {}: the console offers local sign-in only",
                    p.display()
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    println!("{} does not exist: nothing to remove", p.display())
                }
                Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
            }
        }
    }
    Ok(Exit::Ok)
}

fn read_secret(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the client secret file {}", path.display()))?;
    let secret = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if secret.is_empty() {
        bail!("the client secret file {} is empty", path.display());
    }
    Ok(secret.to_string())
}

/// `--ca-file` as an absolute path (`serve` reads it from its own working directory).
fn ca_path(p: &std::path::Path) -> Result<String> {
    let abs = std::fs::canonicalize(p)
        .with_context(|| format!("--ca-file {}: cannot find it", p.display()))?;
    if !abs.is_file() {
        bail!("--ca-file {}: not a file", p.display());
    }
    Ok(abs.to_string_lossy().into_owned())
}

async fn register(a: RegisterArgs, ctx: &Ctx) -> Result<()> {
    let root = ctx.data.root.clone();
    RoleMap::parse(&a.role_map).map_err(|e| anyhow::anyhow!("--role-map: {e}"))?;
    if !a.redirect_uri.starts_with("https://") || !a.redirect_uri.ends_with("/login/oidc/callback")
    {
        bail!("--redirect-uri must be https://CONSOLE[:PORT]/login/oidc/callback");
    }
    let sealer = Sealer::load_or_create(&ctx.data.sealing_key())
        .with_context(|| format!("the sealing key in {}", root.display()))?;
    let ca_file = match &a.ca_file {
        Some(p) => ca_path(p)?,
        None => String::new(),
    };
    let connect_to = a.connect_to.clone().unwrap_or_default();
    let (id, secret, issuer) = match (a.client_id.clone(), &a.client_secret_file) {
        (Some(id), Some(f)) => (id, read_secret(f)?, a.issuer.clone()),
        _ => {
            let issuer = match &a.issuer {
                Some(i) => i.clone(),
                None => {
                    let mut c = ctx.cluster().await?;
                    let s = c
                        .get_settings(GetSettingsRequest {})
                        .await
                        .map_err(explain)?
                        .into_inner();
                    cluster_issuer(&s).context(
                        "the cluster has no load balancer hostname: give --issuer or run \
                         `cluster configure --lb-hostname` first",
                    )?
                }
            };
            let client = op_client(&ca_file, &connect_to, &root)?;
            let (id, secret) = dynamic(&client, &issuer, &a).await?;
            println!("registered the console at {issuer} as client {id}");
            (id, secret, a.issuer.clone())
        }
    };
    let s = OidcSettings {
        issuer: issuer.unwrap_or_default(),
        client_id: id,
        client_secret_sealed: OidcSettings::seal_secret(&sealer, &secret)?,
        redirect_uri: a.redirect_uri,
        role_claim: a.role_claim,
        role_map: a.role_map,
        ca_file,
        connect_to,
    };
    s.save(&root)?;
    println!(
        "wrote {} (client secret sealed); the console offers \"Sign in with OpenID Connect\" \
         from the next sign-in",
        config::path(&root).display()
    );
    Ok(())
}

/// Dynamic registration at the OP's `registration_endpoint`: (client id, secret).
async fn dynamic(
    client: &crate::web::oidc::http::OpClient,
    issuer: &str,
    a: &RegisterArgs,
) -> Result<(String, String)> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let doc = client.get_json(&url, None).await?;
    let endpoint = doc
        .get("registration_endpoint")
        .and_then(Value::as_str)
        .with_context(|| {
            format!(
                "the OP at {issuer} offers no dynamic registration: register the console there \
                 by hand and give --client-id and --client-secret-file"
            )
        })?;
    let body = json!({
        "client_name": a.client_name,
        "redirect_uris": [a.redirect_uri],
        "application_type": "web",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": format!("openid profile user_name {}", a.role_claim),
    });
    let (status, answer) = client.post(endpoint, Body::Json(&body), None).await?;
    if !(200..300).contains(&status) {
        bail!(
            "{endpoint} refused the registration ({status}): {}",
            brief(&answer)
        );
    }
    let field = |k: &str| {
        answer
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .with_context(|| format!("{endpoint} answered without {k}"))
    };
    Ok((field("client_id")?, field("client_secret")?))
}
