//! Gluu Server 4.x on this node: setup.py, the whole server's services, and the properties
//! setup recorded. How Gluu is packaged (a systemd-nspawn machine, an init.d chroot, nochroot)
//! and how programs and services are run inside it is [`layout`]'s; [`machine`] finds the
//! running machine.

pub mod layout;
pub mod machine;

pub use layout::{CONTAINER, Flavor, Layout, SETUP_DIR, ServiceAction};
pub use machine::MachineState;

use self::layout::SYSTEMCTL;

use super::{Ctx, Log, OpError, run_checked, run_logged};
use crate::host::Command;
use clustermgr_proto::{
    GluuServices, GluuServicesOutput, ReadSetupProperties, ReadSetupPropertiesOutput, RunGluuSetup,
    RunGluuSetupOutput, gluu_services,
};
use clustermgr_shared::fsutil::write_private;
use std::path::Path;

use clustermgr_proto::gluu::{SETUP_PROPERTIES as PROPERTIES, setup_args};
/// Largest setup.properties(.last) accepted.
const MAX_PROPERTIES: u64 = 256 * 1024;

/// The argv of a setup run: [`setup_args`] (the flags the reference gives for a cluster node),
/// the properties file as the node's packaging sees it.
pub fn setup_argv(layout: &Layout, no_data: bool) -> Result<Vec<String>, OpError> {
    let props = layout.seen(PROPERTIES);
    let args: Vec<&str> = setup_args(no_data)
        .into_iter()
        .map(|a| if a == PROPERTIES { props.as_str() } else { a })
        .collect();
    layout.exec(&format!("{SETUP_DIR}/setup.py"), &args)
}

/// Values in a properties text that are secrets, in every form setup may print them (see
/// [`clustermgr_proto::gluu::secret_values`]).
pub use clustermgr_proto::gluu::secret_values;

pub async fn setup(
    ctx: &Ctx,
    req: RunGluuSetup,
    log: &mut Log,
) -> Result<RunGluuSetupOutput, OpError> {
    let host = &ctx.host;
    let layout = Layout::detect(host)?;
    if layout.installed() {
        log.line(
            "setup has already run on this node (setup.properties.last exists); nothing to do",
        );
        return Ok(RunGluuSetupOutput { changed: false });
    }
    if req.properties.len() as u64 > MAX_PROPERTIES {
        return Err(OpError("setup.properties is too large".into()));
    }
    let text = String::from_utf8(req.properties)
        .map_err(|_| OpError("setup.properties is not UTF-8 text".into()))?;
    for s in secret_values(&text) {
        log.secret(&s);
    }
    // Gluu's own order: the machine enabled and started, then setup inside it. Started before
    // the properties are written, so that a machine that cannot start leaves no password behind.
    layout.ensure_running(host, log).await?;
    let file = layout.host_path(PROPERTIES);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| OpError(format!("cannot create {}: {e}", dir.display())))?;
    }
    write_private(&file, text.as_bytes())
        .map_err(|e| OpError(format!("cannot write {}: {e}", file.display())))?;
    let result = match setup_argv(&layout, req.no_data) {
        Ok(argv) => run_checked(host, &Command::new(argv), log, "setup.py").await,
        Err(e) => Err(e),
    };
    // The plaintext properties (passwords) never outlive the run.
    if let Err(e) = std::fs::remove_file(&file)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        log.line(format!("warning: cannot remove {}: {e}", file.display()));
    }
    result?;
    if !layout.installed() {
        return Err(OpError(
            "setup.py exited 0 but left no setup.properties.last: the install did not complete"
                .into(),
        ));
    }
    log.line("setup finished");
    Ok(RunGluuSetupOutput { changed: true })
}

pub async fn services(
    ctx: &Ctx,
    req: GluuServices,
    log: &mut Log,
) -> Result<GluuServicesOutput, OpError> {
    use gluu_services::Action;
    let host = &ctx.host;
    let layout = Layout::detect(host)?;
    let action = match req.action() {
        Action::Start => ServiceAction::Start,
        Action::Stop => ServiceAction::Stop,
        Action::Restart => ServiceAction::Restart,
        Action::Status => ServiceAction::Status,
        Action::Unspecified => {
            return Err(OpError("gluu-services needs an action".into()));
        }
    };
    if !req.services.is_empty() {
        if action == ServiceAction::Status {
            return Err(OpError(
                "gluu-services names services only to start, stop or restart them".into(),
            ));
        }
        return act_on_services(host, &layout, &req.services, action, log).await;
    }
    match layout.flavor {
        Flavor::Machine => machine_services(host, &layout, action, log).await,
        Flavor::InitdChroot => initd_services(host, &layout, action, log).await,
        Flavor::NoChroot => Err(OpError(
            "a nochroot Gluu Server's services are the host's systemd units; \
             gluu-services acts on packaged (machine or chroot) installs"
                .into(),
        )),
    }
}

/// Starts, stops or restarts the Gluu services named, in order, inside Gluu
/// ([`Layout::service`]: the machine's systemd unit through its leader, the chroot's init
/// script, the host's unit for nochroot).
async fn act_on_services(
    host: &crate::host::Host,
    layout: &Layout,
    services: &[String],
    action: ServiceAction,
    log: &mut Log,
) -> Result<GluuServicesOutput, OpError> {
    for name in services {
        let cmd = Command::new(layout.service(name, action)?);
        run_checked(host, &cmd, log, &format!("{} {name}", action.verb())).await?;
    }
    Ok(GluuServicesOutput {
        running: action != ServiceAction::Stop,
    })
}

/// The machine: `gluu-serverd start|stop|restart` (the machine's own systemd starts the enabled
/// Gluu units), waiting for the boot to finish; status is the machine's systemd state.
async fn machine_services(
    host: &crate::host::Host,
    layout: &Layout,
    action: ServiceAction,
    log: &mut Log,
) -> Result<GluuServicesOutput, OpError> {
    match action {
        ServiceAction::Status => {
            let state = layout.machine_state(host, log).await?;
            log.line(format!("the Gluu Server machine: {}", state.label()));
            if state == MachineState::Degraded {
                // Which units failed: what an operator needs next.
                let cmd = Command::new(layout.exec(SYSTEMCTL, &FAILED_UNITS)?);
                let out = run_logged(host, &cmd, log, "systemctl --failed").await?;
                for l in out.tail(20) {
                    log.line(l);
                }
            }
            Ok(GluuServicesOutput {
                running: matches!(state, MachineState::Running | MachineState::Degraded),
            })
        }
        ServiceAction::Start => {
            layout.ensure_running(host, log).await?;
            Ok(GluuServicesOutput { running: true })
        }
        ServiceAction::Stop => {
            run_checked(
                host,
                &Command::new(layout.serverd("stop")?),
                log,
                "gluu-serverd stop",
            )
            .await?;
            let running = layout.leader().is_some();
            if running {
                log.line("warning: gluu-serverd stop returned but the machine's leader still runs");
            }
            Ok(GluuServicesOutput { running })
        }
        ServiceAction::Restart => {
            run_checked(
                host,
                &Command::new(layout.serverd("restart")?),
                log,
                "gluu-serverd restart",
            )
            .await?;
            layout.wait_booted(host, log).await?;
            Ok(GluuServicesOutput { running: true })
        }
    }
}

/// `systemctl` arguments listing the failed units, one a line.
const FAILED_UNITS: [&str; 4] = ["--failed", "--plain", "--no-legend", "--no-pager"];

/// The init.d chroot: `/etc/init.d/gluu-server VERB` (LSB status codes).
async fn initd_services(
    host: &crate::host::Host,
    layout: &Layout,
    action: ServiceAction,
    log: &mut Log,
) -> Result<GluuServicesOutput, OpError> {
    let verb = action.verb();
    let cmd = Command::new(layout.serverd(verb)?);
    if action == ServiceAction::Status {
        let out = run_logged(host, &cmd, log, "gluu-server status").await?;
        for l in out.tail(20) {
            log.line(l);
        }
        // LSB: 0 running, 3 not running; anything else is an error.
        return match out.code {
            Some(0) => Ok(GluuServicesOutput { running: true }),
            Some(3) => Ok(GluuServicesOutput { running: false }),
            code => {
                log.exit_code(code.unwrap_or(-1));
                Err(OpError(format!(
                    "gluu-server status failed (exit code {})",
                    code.map_or("none".into(), |c| c.to_string())
                )))
            }
        };
    }
    run_checked(host, &cmd, log, &format!("gluu-server {verb}")).await?;
    Ok(GluuServicesOutput {
        running: action != ServiceAction::Stop,
    })
}

/// The argv that decrypts setup.properties.last.enc (password on standard input).
pub fn decrypt_argv(layout: &Layout) -> Result<Vec<String>, OpError> {
    let enc = layout.seen(&format!("{SETUP_DIR}/setup.properties.last.enc"));
    let args = [
        "enc",
        "-d",
        "-aes-256-cbc",
        "-in",
        enc.as_str(),
        "-pass",
        "stdin",
    ];
    match layout.flavor {
        // The container's openssl encrypted it (its default digest decides the key).
        Flavor::Machine | Flavor::InitdChroot => layout.exec("/usr/bin/openssl", &args),
        Flavor::NoChroot => Ok(std::iter::once("openssl")
            .chain(args)
            .map(String::from)
            .collect()),
    }
}

pub async fn read_setup_properties(
    ctx: &Ctx,
    req: ReadSetupProperties,
    log: &mut Log,
) -> Result<ReadSetupPropertiesOutput, OpError> {
    let host = &ctx.host;
    let layout = Layout::detect(host)?;
    let plain = layout.setup_last();
    if plain.exists() {
        let content = read_capped(&plain)?;
        log.line(format!(
            "read {} ({} bytes)",
            plain.display(),
            content.len()
        ));
        return Ok(ReadSetupPropertiesOutput {
            content,
            was_encrypted: false,
        });
    }
    if !layout.setup_last_enc().exists() {
        return Err(OpError(
            "setup has not run on this node: no setup.properties.last(.enc)".into(),
        ));
    }
    if req.password.is_empty() {
        return Err(OpError(
            "setup.properties.last is encrypted; its password is required".into(),
        ));
    }
    // The container's openssl runs inside the machine: it must run.
    layout.ensure_running(host, log).await?;
    let mut stdin = req.password;
    stdin.push(b'\n');
    let cmd = Command::new(decrypt_argv(&layout)?).stdin(stdin);
    let out = run_logged(host, &cmd, log, "openssl enc -d").await?;
    if !out.success() {
        let code = out.code.unwrap_or(-1);
        log.exit_code(code);
        // openssl's stderr says "bad decrypt" and nothing secret.
        return Err(OpError(format!(
            "cannot decrypt setup.properties.last.enc (exit code {code}): wrong password? {}",
            out.stderr.lines().next().unwrap_or("").trim()
        )));
    }
    log.line(format!(
        "decrypted {} ({} bytes)",
        layout.setup_last_enc().display(),
        out.stdout.len()
    ));
    Ok(ReadSetupPropertiesOutput {
        content: out.stdout.into_bytes(),
        was_encrypted: true,
    })
}

fn read_capped(p: &Path) -> Result<Vec<u8>, OpError> {
    use std::io::Read;
    let f =
        std::fs::File::open(p).map_err(|e| OpError(format!("cannot read {}: {e}", p.display())))?;
    let mut buf = Vec::new();
    f.take(MAX_PROPERTIES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| OpError(format!("cannot read {}: {e}", p.display())))?;
    if buf.len() as u64 > MAX_PROPERTIES {
        return Err(OpError(format!("{} is too large", p.display())));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests;
