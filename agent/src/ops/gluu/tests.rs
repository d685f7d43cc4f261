use super::layout::fixture::{install, nsenter, start_machine, stop_machine};
use super::*;
use crate::host::{Host, PackageFormat, PackageMode, Recorder, Runner};
use crate::ops::tests::{ctx_with, log};
use std::path::PathBuf;
use std::sync::Arc;

const LEADER: u32 = 4242;
const SETUP_PY: &str = "/install/community-edition-setup/setup.py";

/// A host holding a Gluu Server of `flavor`, its /proc a fake tree under the root, its commands
/// recorded.
fn gluu_host(root: &Path, flavor: Flavor) -> (Host, Arc<Recorder>) {
    install(root, flavor);
    let rec = Arc::new(Recorder::default());
    (
        Host {
            root: root.to_path_buf(),
            packages: PackageMode::System,
            format: Some(PackageFormat::Deb),
            runner: Runner::Recording(rec.clone()),
            proc: root.join("proc"),
        },
        rec,
    )
}

fn serverd(root: &Path, verb: &str) -> Vec<String> {
    vec![
        root.join("sbin/gluu-serverd").display().to_string(),
        verb.to_string(),
    ]
}

fn is_system_running() -> Vec<String> {
    nsenter(LEADER, "/bin/systemctl", &["is-system-running"])
}

/// `gluu-serverd start` brings the fake machine's leader up, as the real one does.
fn starts_on_serverd_start(rec: &Recorder, root: &Path, proc: PathBuf) {
    let root = root.to_path_buf();
    rec.on(
        |argv| argv.len() == 2 && argv[0].ends_with("/sbin/gluu-serverd") && argv[1] == "start",
        move || start_machine(&root, &proc, LEADER),
    );
}

fn setup_argv_of(no_data: bool) -> Vec<String> {
    let mut args = vec![
        "-f",
        "/root/setup.properties",
        "--listen_all_interfaces",
        "-n",
        "-c",
    ];
    if no_data {
        args.push("--no-data");
    }
    nsenter(LEADER, SETUP_PY, &args)
}

fn properties(root: &Path) -> PathBuf {
    root.join("opt/gluu-server/root/setup.properties")
}

fn enc(root: &Path) -> PathBuf {
    root.join("opt/gluu-server/install/community-edition-setup/setup.properties.last.enc")
}

/// setup.py's effect: it finds its 0600 properties and records the install.
fn setup_records_the_install(rec: &Recorder, root: &Path) -> Arc<std::sync::Mutex<Option<u32>>> {
    use std::os::unix::fs::PermissionsExt;
    let seen_mode = Arc::new(std::sync::Mutex::new(None));
    let (seen, props, last) = (seen_mode.clone(), properties(root), enc(root));
    rec.on(
        |argv| argv.iter().any(|a| a == SETUP_PY),
        move || {
            let mode = std::fs::metadata(&props).map(|m| m.permissions().mode() & 0o777);
            *seen.lock().unwrap() = mode.ok();
            std::fs::write(&last, "Salted__").unwrap();
        },
    );
    seen_mode
}

#[tokio::test]
async fn setup_on_a_stopped_machine_enables_and_starts_it_waits_for_its_boot_then_runs_inside() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::Machine);
    starts_on_serverd_start(&rec, d.path(), h.proc.clone());
    let mode = setup_records_the_install(&rec, d.path());
    rec.answer(0, ""); // enable
    rec.answer(0, ""); // start
    rec.answer(1, "starting\n"); // still booting
    rec.answer(0, "running\n");
    let (mut l, mut rx) = log();
    let out = setup(
        &ctx_with(h),
        RunGluuSetup {
            properties: b"hostname=lb.example.org\nldapPass=Pa$$ w0rd!\n".to_vec(),
            no_data: true,
        },
        &mut l,
    )
    .await
    .unwrap();
    assert!(out.changed);
    assert_eq!(
        rec.argvs(),
        [
            serverd(d.path(), "enable"),
            serverd(d.path(), "start"),
            is_system_running(),
            is_system_running(),
            setup_argv_of(true),
        ]
    );
    assert_eq!(*mode.lock().unwrap(), Some(0o600), "0600 while setup runs");
    assert!(!properties(d.path()).exists(), "removed after the run");
    drop(l);
    let mut all = String::new();
    while let Ok((_, line)) = rx.try_recv() {
        all.push_str(&line);
        all.push('\n');
    }
    assert!(!all.contains("w0rd"), "{all}");
    assert!(all.contains("systemd: starting"), "{all}");
}

#[tokio::test]
async fn setup_on_a_running_machine_starts_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::Machine);
    start_machine(d.path(), &h.proc, LEADER);
    setup_records_the_install(&rec, d.path());
    let (mut l, _rx) = log();
    let out = setup(&ctx_with(h), RunGluuSetup::default(), &mut l)
        .await
        .unwrap();
    assert!(out.changed);
    assert_eq!(rec.argvs(), [is_system_running(), setup_argv_of(false)]);
}

#[tokio::test]
async fn a_machine_that_cannot_start_gets_no_password_written() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::Machine);
    rec.answer(0, ""); // enable
    rec.answer(1, "Job for systemd-nspawn@gluu-server.service failed\n");
    let (mut l, _rx) = log();
    let e = setup(
        &ctx_with(h),
        RunGluuSetup {
            properties: b"ldapPass=secret\n".to_vec(),
            no_data: false,
        },
        &mut l,
    )
    .await
    .unwrap_err();
    assert!(e.0.contains("gluu-serverd start failed"), "{e}");
    assert!(!properties(d.path()).exists());
    assert_eq!(
        rec.argvs(),
        [serverd(d.path(), "enable"), serverd(d.path(), "start")]
    );
}

#[tokio::test]
async fn a_machine_whose_boot_ends_in_rescue_mode_runs_no_setup() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::Machine);
    start_machine(d.path(), &h.proc, LEADER);
    rec.answer(1, "maintenance\n");
    let (mut l, _rx) = log();
    let e = setup(&ctx_with(h), RunGluuSetup::default(), &mut l)
        .await
        .unwrap_err();
    assert!(e.0.contains("rescue"), "{e}");
    assert_eq!(rec.argvs(), [is_system_running()]);
}

#[test]
fn the_chroot_packaging_runs_setup_and_openssl_through_chroot() {
    let d = tempfile::tempdir().unwrap();
    let (h, _) = gluu_host(d.path(), Flavor::InitdChroot);
    let l = Layout::detect(&h).unwrap();
    let c = d.path().join("opt/gluu-server").display().to_string();
    assert_eq!(
        setup_argv(&l, true).unwrap(),
        [
            "chroot",
            c.as_str(),
            SETUP_PY,
            "-f",
            "/root/setup.properties",
            "--listen_all_interfaces",
            "-n",
            "-c",
            "--no-data"
        ]
    );
    assert_eq!(
        decrypt_argv(&l).unwrap(),
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
fn nochroot_runs_setup_by_host_path_and_the_hosts_openssl() {
    let d = tempfile::tempdir().unwrap();
    let (h, _) = gluu_host(d.path(), Flavor::NoChroot);
    let l = Layout::detect(&h).unwrap();
    let p = |x: &str| d.path().join(x).display().to_string();
    assert_eq!(
        setup_argv(&l, false).unwrap(),
        [
            p("install/community-edition-setup/setup.py"),
            "-f".into(),
            p("root/setup.properties"),
            "--listen_all_interfaces".into(),
            "-n".into(),
            "-c".into(),
        ]
    );
    assert_eq!(decrypt_argv(&l).unwrap()[..2], ["openssl", "enc"]);
}

/// The real runner on a nochroot layout: the properties file, its mode and removal, the
/// password kept out of the job log whatever setup.py prints.
#[tokio::test]
async fn setup_writes_0600_properties_removes_them_and_keeps_passwords_out_of_the_log() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let (mut h, _) = gluu_host(d.path(), Flavor::NoChroot);
    h.runner = Runner::Real;
    let dir = d.path().join("install/community-edition-setup");
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
    assert!(!d.path().join("root/setup.properties").exists());
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
    let (h, rec) = gluu_host(d.path(), Flavor::Machine);
    std::fs::write(enc(d.path()), "x").unwrap();
    let (mut l, _rx) = log();
    let out = setup(&ctx_with(h), RunGluuSetup::default(), &mut l)
        .await
        .unwrap();
    assert!(!out.changed);
    assert!(rec.argvs().is_empty(), "the machine is not even started");
}

async fn services_of(h: &Host, action: gluu_services::Action) -> Result<bool, OpError> {
    let (mut l, _rx) = log();
    services(
        &ctx_with(h.clone()),
        GluuServices {
            action: action as i32,
            ..Default::default()
        },
        &mut l,
    )
    .await
    .map(|o| o.running)
}

#[tokio::test]
async fn machine_services_are_the_machines_own_life() {
    use gluu_services::Action;
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::Machine);
    let root = d.path();

    // Status of a stopped machine: nothing to ask inside.
    assert!(!services_of(&h, Action::Status).await.unwrap());
    assert!(rec.argvs().is_empty());

    // Start: enabled, started, booted.
    starts_on_serverd_start(&rec, root, h.proc.clone());
    assert!(services_of(&h, Action::Start).await.unwrap());
    assert_eq!(
        rec.argvs(),
        [
            serverd(root, "enable"),
            serverd(root, "start"),
            is_system_running()
        ]
    );

    // Status: what its systemd says; a degraded machine lists its failed units.
    rec.calls.lock().unwrap().clear();
    assert!(services_of(&h, Action::Status).await.unwrap());
    rec.answer(1, "degraded\n");
    rec.answer(0, "oxauth.service loaded failed failed oxAuth\n");
    assert!(services_of(&h, Action::Status).await.unwrap());
    rec.answer(1, "starting\n");
    assert!(!services_of(&h, Action::Status).await.unwrap());
    assert_eq!(
        rec.argvs(),
        [
            is_system_running(),
            is_system_running(),
            nsenter(
                LEADER,
                "/bin/systemctl",
                &["--failed", "--plain", "--no-legend", "--no-pager"]
            ),
            is_system_running(),
        ]
    );

    // Restart: gluu-serverd restart, then the new boot.
    rec.calls.lock().unwrap().clear();
    assert!(services_of(&h, Action::Restart).await.unwrap());
    assert_eq!(rec.argvs(), [serverd(root, "restart"), is_system_running()]);

    // Stop: gluu-serverd stop; the leader is gone.
    rec.calls.lock().unwrap().clear();
    let proc = h.proc.clone();
    rec.on(
        |argv| argv.last().is_some_and(|a| a == "stop"),
        move || stop_machine(&proc, LEADER),
    );
    assert!(!services_of(&h, Action::Stop).await.unwrap());
    assert_eq!(rec.argvs(), [serverd(root, "stop")]);

    // A failing gluu-serverd fails the job with its exit code.
    rec.answer(1, "Failed to stop systemd-nspawn@gluu-server.service\n");
    let e = services_of(&h, Action::Stop).await.unwrap_err();
    assert!(
        e.0.contains("gluu-serverd stop failed (exit code 1)"),
        "{e}"
    );
    assert!(services_of(&h, Action::Unspecified).await.is_err());
}

#[tokio::test]
async fn initd_services_map_lsb_codes() {
    use gluu_services::Action;
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::InitdChroot);
    let initd = d
        .path()
        .join("etc/init.d/gluu-server")
        .display()
        .to_string();
    rec.answer(3, "oxauth: stopped\n");
    assert!(!services_of(&h, Action::Status).await.unwrap());
    rec.answer(0, "");
    assert!(services_of(&h, Action::Status).await.unwrap());
    rec.answer(1, "");
    assert!(services_of(&h, Action::Status).await.is_err());
    assert!(services_of(&h, Action::Restart).await.unwrap());
    assert!(!services_of(&h, Action::Stop).await.unwrap());
    let argvs = rec.argvs();
    let verbs: Vec<&str> = argvs.iter().map(|a| a[1].as_str()).collect();
    assert_eq!(verbs, ["status", "status", "status", "restart", "stop"]);
    assert!(
        argvs.iter().all(|a| a.len() == 2 && a[0] == initd),
        "{argvs:?}"
    );
}

#[tokio::test]
async fn nochroot_services_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::NoChroot);
    let e = services_of(&h, gluu_services::Action::Restart)
        .await
        .unwrap_err();
    assert!(e.0.contains("nochroot"), "{e}");
    assert!(rec.argvs().is_empty());
}

async fn decrypt(h: &Host, password: &[u8]) -> Result<ReadSetupPropertiesOutput, OpError> {
    let (mut l, _rx) = log();
    read_setup_properties(
        &ctx_with(h.clone()),
        ReadSetupProperties {
            password: password.to_vec(),
        },
        &mut l,
    )
    .await
}

#[tokio::test]
async fn encrypted_properties_are_decrypted_inside_the_machine_with_the_password_on_stdin() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::Machine);
    std::fs::write(enc(d.path()), "Salted__...").unwrap();
    starts_on_serverd_start(&rec, d.path(), h.proc.clone());
    rec.answer(0, ""); // enable
    rec.answer(0, ""); // start
    rec.answer(0, "running\n");
    rec.answer(0, "hostname=lb\n");
    let out = decrypt(&h, b"s3cret").await.unwrap();
    assert!(out.was_encrypted);
    assert_eq!(out.content, b"hostname=lb\n");
    assert_eq!(
        rec.argvs(),
        [
            serverd(d.path(), "enable"),
            serverd(d.path(), "start"),
            is_system_running(),
            nsenter(
                LEADER,
                "/usr/bin/openssl",
                &[
                    "enc",
                    "-d",
                    "-aes-256-cbc",
                    "-in",
                    "/install/community-edition-setup/setup.properties.last.enc",
                    "-pass",
                    "stdin"
                ]
            ),
        ]
    );
    {
        let calls = rec.calls.lock().unwrap();
        let c = calls.last().unwrap();
        assert_eq!(c.stdin.as_ref().unwrap().expose(), b"s3cret\n");
        assert!(
            calls
                .iter()
                .all(|c| !c.argv.iter().any(|a| a.contains("s3cret")))
        );
    }

    // A wrong password: openssl's "bad decrypt", the job fails.
    rec.answer(0, "running\n");
    rec.answer(1, "");
    let e = decrypt(&h, b"wrong").await.unwrap_err();
    assert!(e.0.contains("cannot decrypt"), "{e}");
    // No password, no command.
    let n = rec.argvs().len();
    assert!(decrypt(&h, b"").await.is_err());
    assert_eq!(rec.argvs().len(), n);
}

/// The real openssl: what Gluu's setup does (`-k PASSWORD`) is undone by the argv above.
#[tokio::test]
async fn decrypts_what_openssl_enc_k_encrypted() {
    let d = tempfile::tempdir().unwrap();
    let (mut h, _) = gluu_host(d.path(), Flavor::NoChroot);
    h.runner = Runner::Real;
    let dir = d.path().join("install/community-edition-setup");
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
    let out = decrypt(&h, password.as_bytes()).await.unwrap();
    assert_eq!(out.content, b"ldapPass=x y!$'\"\n");
    let e = decrypt(&h, b"wrong").await.unwrap_err();
    assert!(e.0.contains("cannot decrypt"), "{e}");
}

#[tokio::test]
async fn setup_output_never_shows_a_salt_a_pw_key_or_an_escaped_secret() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::Machine);
    start_machine(d.path(), &h.proc, LEADER);
    setup_records_the_install(&rec, d.path());
    rec.answer(0, "running\n");
    // What setup.py prints back: its repr of the settings, JSON it renders, the raw file line.
    rec.answer(
        0,
        "encode_salt : 'SaltSaltSalt42'\n\
         pairwiseCalculationKey = 'PairwiseKey0099'\n\
         oxauthClient_pw: ClientPw5566\n\
         encoded_ox_ldap_pw: EncLdapPw+/==\n\
         ldapPass: 'Pa$$ w0rd!\\'\"q'\n\
         {\"ldapPass\": \"Pa$$ w0rd!'\\\"q\"}\n\
         ldapPass=Pa$$ w0rd\\!'\"q\n\
         installPassport : False\n",
    );
    let (mut l, mut rx) = log();
    setup(
        &ctx_with(h),
        RunGluuSetup {
            properties: b"ldapPass=Pa$$ w0rd\\!'\"q\nencode_salt=SaltSaltSalt42\npairwiseCalculationKey=PairwiseKey0099\noxauthClient_pw=ClientPw5566\nencoded_ox_ldap_pw=EncLdapPw+/==\ninstallPassport=False\n".to_vec(),
            no_data: false,
        },
        &mut l,
    )
    .await
    .unwrap();
    drop(l);
    let mut all = String::new();
    while let Ok((_, line)) = rx.try_recv() {
        all.push_str(&line);
        all.push('\n');
    }
    for secret in ["SaltSalt", "PairwiseKey", "ClientPw", "EncLdapPw", "w0rd"] {
        assert!(!all.contains(secret), "{secret} in {all}");
    }
    assert!(all.contains("installPassport : False"), "{all}");
}

#[tokio::test]
async fn a_restart_of_services_restarts_each_unit_inside_gluu_not_the_server() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::Machine);
    let req = |services: &[&str], action: gluu_services::Action| GluuServices {
        action: action as i32,
        services: services.iter().map(|s| s.to_string()).collect(),
    };
    let (mut l, _rx) = log();
    let ctx = ctx_with(h.clone());
    // A stopped machine: refused, nothing run.
    let e = services(&ctx, req(&["idp"], gluu_services::Action::Restart), &mut l)
        .await
        .unwrap_err();
    assert!(e.0.contains("not running"), "{e}");
    assert!(rec.argvs().is_empty());
    start_machine(d.path(), &h.proc, LEADER);
    let out = services(
        &ctx,
        req(&["idp", "oxauth"], gluu_services::Action::Restart),
        &mut l,
    )
    .await
    .unwrap();
    assert!(out.running);
    assert_eq!(
        rec.argvs(),
        [
            nsenter(LEADER, "/bin/systemctl", &["restart", "idp"]),
            nsenter(LEADER, "/bin/systemctl", &["restart", "oxauth"])
        ]
    );
    // The directory alone is stopped and started (a restore's workflow); a status names no
    // service; a name that is not one is refused.
    let out = services(&ctx, req(&["opendj"], gluu_services::Action::Stop), &mut l)
        .await
        .unwrap();
    assert!(!out.running);
    let out = services(&ctx, req(&["opendj"], gluu_services::Action::Start), &mut l)
        .await
        .unwrap();
    assert!(out.running);
    assert_eq!(
        rec.argvs()[2..],
        [
            nsenter(LEADER, "/bin/systemctl", &["stop", "opendj"]),
            nsenter(LEADER, "/bin/systemctl", &["start", "opendj"])
        ]
    );
    let e = services(&ctx, req(&["idp"], gluu_services::Action::Status), &mut l)
        .await
        .unwrap_err();
    assert!(e.0.contains("only to start, stop or restart"), "{e}");
    let e = services(
        &ctx,
        req(&["idp; reboot"], gluu_services::Action::Restart),
        &mut l,
    )
    .await
    .unwrap_err();
    assert!(e.0.contains("not a service name"), "{e}");
    assert_eq!(rec.argvs().len(), 4);
}
