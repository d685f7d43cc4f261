//! OpenDJ replication (Gluu 4.x's directory, `/opt/opendj/bin/dsreplication` under the
//! container root), what Gluu's cluster manager ran, every tool inside Gluu through the layout
//! with `OPENDJ_JAVA_HOME` set as Gluu's setup sets it:
//!
//! - every node first trusts its peers' directory certificates (the request's CA bundle) in its
//!   OpenDJ truststore and oxAuth's LDAP truststore ([`super::truststore`]); when OpenDJ's
//!   truststore changed the directory restarts (the `opendj` service) and the module waits for
//!   LDAPS;
//! - the primary: the crypto manager's `ssl-encryption:true`, as on every other node;
//! - another node: `dsreplication enable` against the primary per base, the crypto manager,
//!   `dsreplication initialize-all` from the primary per base;
//! - a node leaving replication (no peer): `dsreplication disable --disableAll`.
//!
//! Passwords go in 0600 files under the container's `/root` (`--bindPasswordFile1/2`,
//! `--adminPasswordFile`, `--bindPasswordFile`) removed after, never in argv. Each node keeps
//! its own OpenDJ certificate and keystore (the old cluster manager copied the primary's
//! keystore and truststore instead); trust is by the peers' certificates.

use super::{
    DSCONFIG, DSREPLICATION, OPENDJ_REPLICATION_PORT, TempFiles, base_hook, check_host,
    restart_directory, truststore,
};
use crate::host::Command;
use crate::ops::gluu::Layout;
use crate::ops::ldap::ADMIN_DN;
use crate::ops::tls_certs::served_chain;
use crate::ops::{Ctx, Log, OpError, run_checked};
use clustermgr_proto::{AdminConnector, ConfigureReplication, ConfigureReplicationOutput};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// Gluu's OpenDJ administration connector port.
const DEFAULT_ADMIN_PORT: u16 = 4444;
/// How long a starting directory's administration connector has to accept connections.
const ADMIN_WAIT: Duration = Duration::from_secs(60);

/// The JRE OpenDJ's tools run on (Gluu's setup runs them with `OPENDJ_JAVA_HOME=/opt/jre`).
pub const OPENDJ_JAVA_HOME: &str = "/opt/jre";

fn enable_argv(
    layout: &Layout,
    port: &str,
    node: &str,
    primary: &str,
    base: &str,
    admin_pw_file: &str,
    repl_pw_file: &str,
) -> Result<Vec<String>, OpError> {
    layout.exec(
        DSREPLICATION,
        &[
            "enable",
            "--host1",
            primary,
            "--port1",
            port,
            "--bindDN1",
            ADMIN_DN,
            "--bindPasswordFile1",
            admin_pw_file,
            "--replicationPort1",
            OPENDJ_REPLICATION_PORT,
            "--host2",
            node,
            "--port2",
            port,
            "--bindDN2",
            ADMIN_DN,
            "--bindPasswordFile2",
            admin_pw_file,
            "--replicationPort2",
            OPENDJ_REPLICATION_PORT,
            "--adminUID",
            "admin",
            "--adminPasswordFile",
            repl_pw_file,
            "--baseDN",
            base,
            "-X",
            "-n",
        ],
    )
}

fn initialize_argv(
    layout: &Layout,
    port: &str,
    primary: &str,
    base: &str,
    repl_pw_file: &str,
) -> Result<Vec<String>, OpError> {
    layout.exec(
        DSREPLICATION,
        &[
            "initialize-all",
            "--baseDN",
            base,
            "--hostname",
            primary,
            "--port",
            port,
            "--adminUID",
            "admin",
            "--adminPasswordFile",
            repl_pw_file,
            "-X",
            "-n",
        ],
    )
}

/// The crypto manager's `ssl-encryption:true` on the directory at `host` (every node's, the
/// primary's too), as the directory manager.
pub fn crypto_manager_argv(
    layout: &Layout,
    port: &str,
    host: &str,
    admin_pw_file: &str,
) -> Result<Vec<String>, OpError> {
    layout.exec(
        DSCONFIG,
        &[
            "--hostname",
            host,
            "--port",
            port,
            "--bindDN",
            ADMIN_DN,
            "--bindPasswordFile",
            admin_pw_file,
            "--trustAll",
            "--no-prompt",
            "set-crypto-manager-prop",
            "--set",
            "ssl-encryption:true",
        ],
    )
}

/// Takes the directory at `node` out of replication (every base), as the directory manager.
pub fn disable_argv(
    layout: &Layout,
    port: &str,
    node: &str,
    admin_pw_file: &str,
) -> Result<Vec<String>, OpError> {
    layout.exec(
        DSREPLICATION,
        &[
            "disable",
            "--disableAll",
            "--hostname",
            node,
            "--port",
            port,
            "--bindDN",
            ADMIN_DN,
            "--adminPasswordFile",
            admin_pw_file,
            "-X",
            "-n",
        ],
    )
}

/// The commands that make a node replicate with the primary, given the password files as the
/// tools see them, each with what it does: `enable` per base, the crypto manager,
/// `initialize-all` per base.
fn member_commands(
    layout: &Layout,
    port: &str,
    node: &str,
    primary: &str,
    bases: &[String],
    admin_pw_file: &str,
    repl_pw_file: &str,
) -> Result<Vec<(String, Vec<String>)>, OpError> {
    let mut cmds = Vec::new();
    for base in bases {
        cmds.push((
            format!("dsreplication enable {base}"),
            enable_argv(
                layout,
                port,
                node,
                primary,
                base,
                admin_pw_file,
                repl_pw_file,
            )?,
        ));
    }
    cmds.push((
        "dsconfig set-crypto-manager-prop".into(),
        crypto_manager_argv(layout, port, node, admin_pw_file)?,
    ));
    for base in bases {
        cmds.push((
            format!("dsreplication initialize-all {base}"),
            initialize_argv(layout, port, primary, base, repl_pw_file)?,
        ));
    }
    Ok(cmds)
}

/// What this node is in the replication set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The node the others are enabled against and initialized from.
    Primary,
    /// A node that replicates with the primary.
    Member,
    /// A node taken out of replication (no peer).
    Leaving,
}

/// This node's role in the replication `req` asks for, and the primary's host; an error when
/// the request is incomplete.
fn role_of(req: &ConfigureReplication) -> Result<(Role, String), OpError> {
    let primary = req
        .primary
        .as_ref()
        .map(|p| p.host.trim().to_string())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| OpError("OpenDJ replication needs the primary".into()))?;
    check_host("primary", &primary)?;
    let node = req.host.trim();
    check_host("host", node)?;
    for p in &req.peers {
        check_host("peer", p.host.trim())?;
    }
    let role = if primary == node {
        Role::Primary
    } else if req.peers.is_empty() {
        Role::Leaving
    } else {
        Role::Member
    };
    if req.admin_password.is_empty() {
        return Err(OpError(
            "the directory manager's password is required".into(),
        ));
    }
    if role == Role::Member && req.replicator_password.is_empty() {
        return Err(OpError(
            "the replication administrator's password is required".into(),
        ));
    }
    for b in &req.bases {
        base_hook(b)?;
    }
    Ok((role, primary))
}

pub(super) async fn configure(
    ctx: &Ctx,
    layout: &Layout,
    req: &ConfigureReplication,
    ready_within: Duration,
    log: &mut Log,
) -> Result<ConfigureReplicationOutput, OpError> {
    let (role, primary) = role_of(req)?;
    let node = req.host.trim();
    let wanted = truststore::peer_certs(&req.ca_pem, !req.peers.is_empty())?;
    // Every tool below runs inside Gluu: its machine must run.
    layout.ensure_running(&ctx.host, log).await?;

    // Trust first, so the directory's restart comes before replication is touched.
    let trusted = truststore::trust_peers(ctx, layout, req, &wanted, log).await?;
    let mut restarted = false;
    if trusted.directory {
        log.line("OpenDJ's truststore changed: restarting the directory to load it");
        restart_directory(ctx, layout, super::DirectoryAt::of(req), ready_within, log).await?;
        restarted = true;
    }
    if trusted.services {
        log.line(format!(
            "{} changed: oxAuth and oxTrust load it when they restart",
            truststore::LDAP_TRUSTSTORE
        ));
    }

    // The tools run with -X/--trustAll (see `check_admin_connectors`): before any password goes
    // to a directory, its administration connector must present the certificate its own node
    // read from itself.
    let contacted: Vec<&str> = match role {
        Role::Primary | Role::Leaving => vec![node],
        Role::Member => vec![primary.as_str(), node],
    };
    check_admin_connectors(
        &req.admin_connectors,
        &contacted,
        admin_port(req.admin_port),
        log,
    )
    .await?;

    run_role_commands(ctx, layout, req, (role, &primary), log).await?;
    Ok(ConfigureReplicationOutput {
        changed: true,
        restarted,
    })
}

/// The tools this node's role runs, with the passwords in temporary files inside Gluu (removed
/// after): the primary's crypto manager, a leaving node's disable, a member's enable and
/// initialize.
async fn run_role_commands(
    ctx: &Ctx,
    layout: &Layout,
    req: &ConfigureReplication,
    (role, primary): (Role, &str),
    log: &mut Log,
) -> Result<(), OpError> {
    let node = req.host.trim();
    let port = admin_port(req.admin_port).to_string();
    let tag = hex::encode(rand::random::<[u8; 8]>());
    let admin_file = format!("/root/.clustermgr-dm-{tag}");
    let repl_file = format!("/root/.clustermgr-repl-{tag}");
    let mut files = TempFiles::default();
    files.write(layout, &admin_file, &req.admin_password)?;
    let admin_seen = layout.seen(&admin_file);
    let commands = match role {
        Role::Primary => {
            log.line("this node is the primary: its crypto manager is set as the others' are");
            vec![(
                "dsconfig set-crypto-manager-prop".to_string(),
                crypto_manager_argv(layout, &port, node, &admin_seen)?,
            )]
        }
        Role::Leaving => {
            log.line("no peer: this node's directory leaves replication");
            vec![(
                "dsreplication disable".to_string(),
                disable_argv(layout, &port, node, &admin_seen)?,
            )]
        }
        Role::Member => {
            files.write(layout, &repl_file, &req.replicator_password)?;
            member_commands(
                layout,
                &port,
                node,
                primary,
                &req.bases,
                &admin_seen,
                &layout.seen(&repl_file),
            )?
        }
    };
    let java_home = layout.seen(OPENDJ_JAVA_HOME);
    for (what, argv) in commands {
        let cmd = Command::new(argv).env("OPENDJ_JAVA_HOME", &java_home);
        run_checked(&ctx.host, &cmd, log, &what).await?;
    }
    drop(files);
    Ok(())
}

/// The administration connectors' port (`0`: Gluu's 4444).
pub fn admin_port(requested: u32) -> u16 {
    u16::try_from(requested)
        .ok()
        .filter(|p| *p != 0)
        .unwrap_or(DEFAULT_ADMIN_PORT)
}

/// `host:port`, IPv6 hosts in brackets.
fn socket_address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn fingerprint(der: &[u8]) -> String {
    hex::encode(&Sha256::digest(der)[..8])
}

/// The leaf certificate the administration connector at `address` presents, waiting (up to
/// [`ADMIN_WAIT`]) for a directory that is still starting to accept connections.
async fn served_leaf(address: &str) -> Result<Vec<u8>, OpError> {
    let deadline = Instant::now() + ADMIN_WAIT;
    loop {
        match served_chain(address, "").await {
            Ok(chain) => {
                return chain
                    .into_iter()
                    .next()
                    .ok_or_else(|| OpError(format!("{address} presented no certificate")));
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(OpError(format!(
                    "OpenDJ's administration connector at {address} does not answer: {}",
                    e.0
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The certificate this node's OpenDJ administration connector presents, read over loopback
/// (the node reading itself: nothing in between to trust).
pub(super) async fn own_admin_certificate(port: u16, log: &mut Log) -> Result<Vec<u8>, OpError> {
    let leaf = served_leaf(&socket_address("127.0.0.1", port)).await?;
    log.line(format!(
        "OpenDJ's administration connector (port {port}) presents certificate {}",
        fingerprint(&leaf)
    ));
    Ok(leaf)
}

/// OpenDJ's tools cannot verify a peer's administration connector: Gluu's setup makes its
/// certificate self-signed for `localhost`, and the tools compare the subject's name with the
/// host they contact (`ApplicationTrustManager`), so a truststore holding the peers'
/// certificates still fails for every peer; Gluu's own setup and cluster manager run them with
/// `--trustAll`/`-X`, and so must we. What the tools do not check is checked here instead:
/// every connector the tools contact is reached first and must present exactly the
/// certificate its own node read from itself ([`own_admin_certificate`], gathered by the
/// workflow); otherwise no password file is written and nothing runs.
async fn check_admin_connectors(
    known: &[AdminConnector],
    contacted: &[&str],
    port: u16,
    log: &mut Log,
) -> Result<(), OpError> {
    for host in contacted {
        let expected = known
            .iter()
            .find(|c| c.host == *host && !c.certificate_der.is_empty())
            .ok_or_else(|| {
                OpError(format!(
                    "no administration certificate is known for {host}: refusing to send the \
                     directory manager's password to it unverified"
                ))
            })?;
        let address = socket_address(host, port);
        let served = served_leaf(&address).await?;
        if served != expected.certificate_der {
            return Err(OpError(format!(
                "{address} presents certificate {} where its node read {} from itself: \
                 refusing to send the directory manager's password there",
                fingerprint(&served),
                fingerprint(&expected.certificate_der)
            )));
        }
        log.line(format!(
            "{address}: the administration connector presents the certificate its node read ({})",
            fingerprint(&served)
        ));
    }
    Ok(())
}
