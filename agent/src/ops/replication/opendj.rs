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
    DSCONFIG, DSREPLICATION, OPENDJ_ADMIN_PORT, OPENDJ_REPLICATION_PORT, TempFiles, base_hook,
    check_host, restart_directory, truststore,
};
use crate::host::Command;
use crate::ops::gluu::Layout;
use crate::ops::ldap::ADMIN_DN;
use crate::ops::{Ctx, Log, OpError, run_checked};
use clustermgr_proto::{ConfigureReplication, ConfigureReplicationOutput};
use std::time::Duration;

/// The JRE OpenDJ's tools run on (Gluu's setup runs them with `OPENDJ_JAVA_HOME=/opt/jre`).
pub const OPENDJ_JAVA_HOME: &str = "/opt/jre";

fn enable_argv(
    layout: &Layout,
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
            OPENDJ_ADMIN_PORT,
            "--bindDN1",
            ADMIN_DN,
            "--bindPasswordFile1",
            admin_pw_file,
            "--replicationPort1",
            OPENDJ_REPLICATION_PORT,
            "--host2",
            node,
            "--port2",
            OPENDJ_ADMIN_PORT,
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
            OPENDJ_ADMIN_PORT,
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
    host: &str,
    admin_pw_file: &str,
) -> Result<Vec<String>, OpError> {
    layout.exec(
        DSCONFIG,
        &[
            "--hostname",
            host,
            "--port",
            OPENDJ_ADMIN_PORT,
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
            OPENDJ_ADMIN_PORT,
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
/// tools see them: `enable` per base, the crypto manager, `initialize-all` per base.
pub fn opendj_argv(
    layout: &Layout,
    node: &str,
    primary: &str,
    bases: &[String],
    admin_pw_file: &str,
    repl_pw_file: &str,
) -> Result<Vec<Vec<String>>, OpError> {
    Ok(
        member_commands(layout, node, primary, bases, admin_pw_file, repl_pw_file)?
            .into_iter()
            .map(|(_, argv)| argv)
            .collect(),
    )
}

/// (what, argv) of a replicating node's commands.
fn member_commands(
    layout: &Layout,
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
            enable_argv(layout, node, primary, base, admin_pw_file, repl_pw_file)?,
        ));
    }
    cmds.push((
        "dsconfig set-crypto-manager-prop".into(),
        crypto_manager_argv(layout, node, admin_pw_file)?,
    ));
    for base in bases {
        cmds.push((
            format!("dsreplication initialize-all {base}"),
            initialize_argv(layout, primary, base, repl_pw_file)?,
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

pub(super) async fn configure(
    ctx: &Ctx,
    layout: &Layout,
    req: &ConfigureReplication,
    ready_within: Duration,
    log: &mut Log,
) -> Result<ConfigureReplicationOutput, OpError> {
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
    let wanted = truststore::peer_certs(&req.ca_pem, !req.peers.is_empty())?;
    // Every tool below runs inside Gluu: its machine must run.
    layout.ensure_running(&ctx.host, log).await?;

    // Trust first, so the directory's restart comes before replication is touched.
    let trusted = truststore::trust_peers(ctx, layout, req, &wanted, log).await?;
    let mut restarted = false;
    if trusted.directory {
        log.line("OpenDJ's truststore changed: restarting the directory to load it");
        restart_directory(
            ctx,
            layout,
            super::DirectoryAt {
                host: &req.host,
                port: req.port,
                admin_password: &req.admin_password,
            },
            ready_within,
            log,
        )
        .await?;
        restarted = true;
    }
    if trusted.services {
        log.line(format!(
            "{} changed: oxAuth and oxTrust load it when they restart",
            truststore::LDAP_TRUSTSTORE
        ));
    }

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
                crypto_manager_argv(layout, node, &admin_seen)?,
            )]
        }
        Role::Leaving => {
            log.line("no peer: this node's directory leaves replication");
            vec![(
                "dsreplication disable".to_string(),
                disable_argv(layout, node, &admin_seen)?,
            )]
        }
        Role::Member => {
            files.write(layout, &repl_file, &req.replicator_password)?;
            member_commands(
                layout,
                node,
                &primary,
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
    Ok(ConfigureReplicationOutput {
        changed: true,
        restarted,
    })
}
