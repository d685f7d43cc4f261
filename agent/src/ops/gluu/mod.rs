//! Gluu Server 4.x on this node: setup.py, the whole server's services, and the properties
//! setup recorded. How Gluu is packaged (a systemd-nspawn machine, an init.d chroot, nochroot)
//! and how programs and services are run inside it is [`layout`]'s; [`machine`] finds the
//! running machine.

pub mod layout;
pub mod machine;

pub use layout::{CONTAINER, Flavor, Layout, SETUP_DIR, ServiceAction};
pub use machine::MachineState;

use super::{Ctx, Log, OpError, run_checked, run_logged};
use crate::host::Command;
use clustermgr_proto::{
    GluuServices, GluuServicesOutput, ReadSetupProperties, ReadSetupPropertiesOutput, RunGluuSetup,
    RunGluuSetupOutput, gluu_services,
};
use clustermgr_shared::fsutil::write_private;
use std::path::Path;

/// Where the properties file for a run goes, inside the container (as Gluu's own tools put it).
const PROPERTIES: &str = "/root/setup.properties";
/// Largest setup.properties(.last) accepted.
const MAX_PROPERTIES: u64 = 256 * 1024;

/// The argv of a setup run (the flags the reference gives for a cluster node).
pub fn setup_argv(layout: &Layout, no_data: bool) -> Result<Vec<String>, OpError> {
    let props = layout.seen(PROPERTIES);
    let mut args = vec!["-f", props.as_str(), "--listen_all_interfaces", "-n", "-c"];
    if no_data {
        args.push("--no-data");
    }
    layout.exec(&format!("{SETUP_DIR}/setup.py"), &args)
}

/// Values in a properties text that are secrets (keys naming a password, pin or secret).
pub fn secret_values(props: &str) -> Vec<String> {
    props
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, v)| {
            let k = k.trim().to_ascii_lowercase();
            !v.trim().is_empty()
                && (k.contains("pass") || k.contains("pin") || k.contains("secret"))
        })
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

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
    let file = layout.host_path(PROPERTIES);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| OpError(format!("cannot create {}: {e}", dir.display())))?;
    }
    write_private(&file, text.as_bytes())
        .map_err(|e| OpError(format!("cannot write {}: {e}", file.display())))?;
    // Gluu's own order: the machine enabled and started, then setup inside it.
    layout.ensure_running(host, log).await?;
    let cmd = Command::new(setup_argv(&layout, req.no_data)?);
    let result = run_checked(host, &cmd, log, "setup.py").await;
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
            log.line(format!("machine: {}", state.label()));
            Ok(GluuServicesOutput {
                running: state == MachineState::Running,
            })
        }
        ServiceAction::Start => {
            layout.ensure_running(host, log).await?;
            Ok(GluuServicesOutput { running: true })
        }
        ServiceAction::Stop | ServiceAction::Restart => {
            let verb = action.verb();
            run_checked(
                host,
                &Command::new(layout.serverd(verb)?),
                log,
                &format!("gluu-serverd {verb}"),
            )
            .await?;
            if action == ServiceAction::Stop {
                return Ok(GluuServicesOutput { running: false });
            }
            layout.wait_booted(host, log).await?;
            Ok(GluuServicesOutput { running: true })
        }
    }
}

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
    let mut stdin = req.password;
    stdin.push(b'\n');
    layout.ensure_running(host, log).await?;
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
mod tests {
    use super::*;
    use crate::host::{PackageFormat, Recorder, Runner};
    use crate::ops::tests::{ctx_with, log};
    use std::sync::Arc;

    /// A host with a Gluu layout: `userland` gives the container its own /bin/sh.
    fn gluu_host(root: &Path, mode: PackageMode, userland: bool) -> (Host, Arc<Recorder>) {
        let c = root.join("opt/gluu-server");
        std::fs::create_dir_all(c.join("install/community-edition-setup")).unwrap();
        std::fs::write(c.join("install/community-edition-setup/setup.py"), "").unwrap();
        if userland {
            std::fs::create_dir_all(c.join("bin")).unwrap();
            std::fs::write(c.join("bin/sh"), "").unwrap();
        }
        let rec = Arc::new(Recorder::default());
        (
            Host {
                root: root.to_path_buf(),
                packages: mode,
                format: Some(PackageFormat::Deb),
                runner: Runner::Recording(rec.clone()),
                proc: std::path::PathBuf::from("/proc"),
            },
            rec,
        )
    }

    #[test]
    fn real_gluu_runs_setup_inside_its_container() {
        let d = tempfile::tempdir().unwrap();
        let (h, _) = gluu_host(d.path(), PackageMode::System, true);
        let l = Layout::detect(&h).unwrap();
        assert!(l.chroot_exec);
        let c = d.path().join("opt/gluu-server").display().to_string();
        assert_eq!(
            setup_argv(&l, true),
            [
                "chroot",
                c.as_str(),
                "/install/community-edition-setup/setup.py",
                "-f",
                "/root/setup.properties",
                "--listen_all_interfaces",
                "-n",
                "-c",
                "--no-data"
            ]
        );
        assert_eq!(
            decrypt_argv(&l),
            [
                "chroot",
                c.as_str(),
                "/usr/bin/openssl",
                "enc",
                "-d",
                "-aes-256-cbc",
                "-in",
                "/install/community-edition-setup/setup.properties.last.enc",
                "-pass",
                "stdin"
            ]
        );
    }

    #[test]
    fn a_container_without_userland_or_a_sandbox_runs_by_host_path() {
        let d = tempfile::tempdir().unwrap();
        for (mode, userland) in [(PackageMode::System, false), (PackageMode::UnderRoot, true)] {
            let (h, _) = gluu_host(d.path(), mode, userland);
            let l = Layout::detect(&h).unwrap();
            assert!(!l.chroot_exec);
            let c = d.path().join("opt/gluu-server");
            assert_eq!(
                setup_argv(&l, false),
                [
                    c.join("install/community-edition-setup/setup.py")
                        .display()
                        .to_string(),
                    "-f".into(),
                    c.join("root/setup.properties").display().to_string(),
                    "--listen_all_interfaces".into(),
                    "-n".into(),
                    "-c".into(),
                ]
            );
        }
    }

    #[tokio::test]
    async fn setup_writes_0600_properties_removes_them_and_keeps_passwords_out_of_the_log() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let (mut h, _) = gluu_host(d.path(), PackageMode::UnderRoot, false);
        h.runner = Runner::Real;
        let dir = d
            .path()
            .join("opt/gluu-server/install/community-edition-setup");
        // A setup.py that checks what it is given, echoes its input (as a chatty installer
        // might) and records the install as Gluu 4.2.3 does.
        let script = format!(
            "#!/bin/sh\n[ \"$1\" = -f ] || exit 9\n[ \"$(stat -c %a \"$2\")\" = 600 ] || exit 8\n\
             echo \"args: $*\"\ncat \"$2\"\ntouch {}/setup.properties.last.enc\n",
            dir.display()
        );
        let setup_py = dir.join("setup.py");
        std::fs::write(&setup_py, script).unwrap();
        std::fs::set_permissions(&setup_py, std::fs::Permissions::from_mode(0o755)).unwrap();
        let ctx = ctx_with(h);
        let (mut l, mut rx) = log();
        let props = "hostname=lb.example.org\nldapPass=Pa$$ w0rd!'\"\n";
        let out = setup(
            &ctx,
            RunGluuSetup {
                properties: props.as_bytes().to_vec(),
                no_data: true,
            },
            &mut l,
        )
        .await
        .unwrap();
        assert!(out.changed);
        assert!(
            !d.path()
                .join("opt/gluu-server/root/setup.properties")
                .exists(),
            "properties removed after the run"
        );
        drop(l);
        let mut lines = Vec::new();
        while let Ok((_, line)) = rx.try_recv() {
            lines.push(line);
        }
        let all = lines.join("\n");
        assert!(all.contains("--no-data"), "{all}");
        assert!(all.contains("hostname=lb.example.org"), "{all}");
        assert!(
            !all.contains("w0rd"),
            "a password reached the job log: {all}"
        );

        // Setup that exits 0 without recording the install is a failure.
        std::fs::remove_file(dir.join("setup.properties.last.enc")).unwrap();
        std::fs::write(&setup_py, "#!/bin/sh\nexit 0\n").unwrap();
        let (mut l, _rx) = log();
        let e = setup(&ctx, RunGluuSetup::default(), &mut l)
            .await
            .unwrap_err();
        assert!(e.0.contains("left no setup.properties.last"), "{e}");
        // A failing setup reports its exit code and output.
        std::fs::write(
            &setup_py,
            "#!/bin/sh\necho 'ip=10.0.0.1 is not valid' >&2\nexit 1\n",
        )
        .unwrap();
        let (mut l, _rx) = log();
        let e = setup(&ctx, RunGluuSetup::default(), &mut l)
            .await
            .unwrap_err();
        assert!(
            e.0.contains("exit code 1") && e.0.contains("is not valid"),
            "{e}"
        );
        assert_eq!(l.take_exit_code(), Some(1));
    }

    #[tokio::test]
    async fn setup_is_skipped_on_an_installed_node() {
        let d = tempfile::tempdir().unwrap();
        let (h, rec) = gluu_host(d.path(), PackageMode::UnderRoot, false);
        std::fs::write(
            d.path()
                .join("opt/gluu-server/install/community-edition-setup/setup.properties.last.enc"),
            "x",
        )
        .unwrap();
        let (mut l, _rx) = log();
        let out = setup(&ctx_with(h), RunGluuSetup::default(), &mut l)
            .await
            .unwrap();
        assert!(!out.changed);
        assert!(rec.argvs().is_empty());
    }

    #[tokio::test]
    async fn services_status_maps_lsb_codes() {
        let d = tempfile::tempdir().unwrap();
        let (h, rec) = gluu_host(d.path(), PackageMode::UnderRoot, false);
        let ctx = ctx_with(h);
        let (mut l, _rx) = log();
        let req = GluuServices {
            action: gluu_services::Action::Status as i32,
        };
        rec.answer(3, "oxauth: stopped\n");
        assert!(!services(&ctx, req, &mut l).await.unwrap().running);
        rec.answer(0, "");
        assert!(services(&ctx, req, &mut l).await.unwrap().running);
        rec.answer(1, "");
        assert!(services(&ctx, req, &mut l).await.is_err());
        let argv = rec.argvs().pop().unwrap();
        assert_eq!(
            argv,
            [
                d.path().join("sbin/gluu-serverd").display().to_string(),
                "status".into(),
                "--root".into(),
                d.path().display().to_string()
            ]
        );
    }

    #[tokio::test]
    async fn encrypted_properties_are_decrypted_with_the_password_on_stdin() {
        let d = tempfile::tempdir().unwrap();
        let (h, rec) = gluu_host(d.path(), PackageMode::UnderRoot, false);
        std::fs::write(
            d.path()
                .join("opt/gluu-server/install/community-edition-setup/setup.properties.last.enc"),
            "Salted__...",
        )
        .unwrap();
        rec.answer(0, "hostname=lb\n");
        let (mut l, _rx) = log();
        let out = read_setup_properties(
            &ctx_with(h),
            ReadSetupProperties {
                password: b"s3cret".to_vec(),
            },
            &mut l,
        )
        .await
        .unwrap();
        assert!(out.was_encrypted);
        assert_eq!(out.content, b"hostname=lb\n");
        let calls = rec.calls.lock().unwrap();
        let c = calls.last().unwrap();
        assert_eq!(c.stdin.as_ref().unwrap().expose(), b"s3cret\n");
        assert!(
            !c.argv.iter().any(|a| a.contains("s3cret")),
            "never in argv"
        );
        assert_eq!(c.argv[0], "openssl");
    }

    /// The real openssl: what Gluu's setup does (`-k PASSWORD`) is undone by the argv above.
    #[tokio::test]
    async fn decrypts_what_openssl_enc_k_encrypted() {
        let d = tempfile::tempdir().unwrap();
        let (mut h, _) = gluu_host(d.path(), PackageMode::UnderRoot, false);
        h.runner = Runner::Real;
        let dir = d
            .path()
            .join("opt/gluu-server/install/community-edition-setup");
        std::fs::write(dir.join("setup.properties.last"), "ldapPass=x y!$'\"\n").unwrap();
        let password = "p@ss w0rd!$'\"";
        let st = std::process::Command::new("openssl")
            .args(["enc", "-aes-256-cbc", "-in"])
            .arg(dir.join("setup.properties.last"))
            .arg("-out")
            .arg(dir.join("setup.properties.last.enc"))
            .args(["-k", password])
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::remove_file(dir.join("setup.properties.last")).unwrap();
        let ctx = ctx_with(h);
        let (mut l, _rx) = log();
        let out = read_setup_properties(
            &ctx,
            ReadSetupProperties {
                password: password.as_bytes().to_vec(),
            },
            &mut l,
        )
        .await
        .unwrap();
        assert_eq!(out.content, b"ldapPass=x y!$'\"\n");
        let e = read_setup_properties(
            &ctx,
            ReadSetupProperties {
                password: b"wrong".to_vec(),
            },
            &mut l,
        )
        .await
        .unwrap_err();
        assert!(e.0.contains("cannot decrypt"), "{e}");
    }
}
