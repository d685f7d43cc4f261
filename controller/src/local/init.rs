//! `clustermgr init`: data directory, cluster CA, the controller's server certificate, the admin
//! operator credential.

use crate::config::{DataDir, Settings, SettingsFile};
use crate::store::Store;
use anyhow::{Context, Result, bail};
use clustermgr_shared::config::ClientBundle;
use clustermgr_shared::dial::split_host_port;
use clustermgr_shared::fsutil::{create_private_dir, write_atomic, write_private};
use clustermgr_shared::pki::{self, Ca, CertInfo, Usage, validity_from_now};
use std::time::Duration;

pub struct InitArgs {
    pub listen: String,
    pub advertise: Option<String>,
    pub sans: Vec<String>,
    pub force: bool,
}

const DAY: u64 = 86_400;

pub async fn run(data: &DataDir, a: InitArgs) -> Result<String> {
    clustermgr_shared::tls::install_crypto_provider();
    if data.settings().exists() && !a.force {
        bail!(
            "{} is already initialised (pass --force to start over: this discards the cluster's CA and every node identity)",
            data.root.display()
        );
    }
    let (listen_host, port) = split_host_port(&a.listen)?;
    let advertise = match a.advertise {
        Some(adv) => adv,
        None if listen_host == "0.0.0.0" || listen_host == "::" => format!("127.0.0.1:{port}"),
        None => a.listen.clone(),
    };
    let (adv_host, _) = split_host_port(&advertise)?;

    create_private_dir(&data.root)
        .with_context(|| format!("cannot create {}", data.root.display()))?;
    if a.force {
        for p in [data.store(), data.admin_bundle()] {
            let _ = std::fs::remove_file(p);
        }
    }

    let ca = Ca::generate("clustermgr cluster CA", Duration::from_secs(10 * 365 * DAY))?;
    let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        sans.push(h.trim().to_string());
    }
    for h in [listen_host, adv_host] {
        if h != "0.0.0.0" && h != "::" {
            sans.push(h);
        }
    }
    sans.extend(a.sans);
    sans.retain(|s| !s.is_empty());
    sans.sort();
    sans.dedup();
    let (server_pem, server_key) = ca.issue_with_new_key(
        "clustermgr controller",
        &sans,
        Usage::Server,
        Duration::from_secs(2 * 365 * DAY),
    )?;
    // The chain carries the CA so joining agents can check it against their pin.
    let chain = format!("{}{}", server_pem, ca.cert_pem());

    write_atomic(&data.ca_cert(), ca.cert_pem().as_bytes(), 0o644)?;
    write_private(&data.ca_key(), ca.key_pem().expose().as_bytes())?;
    write_atomic(&data.server_cert(), chain.as_bytes(), 0o644)?;
    write_private(&data.server_key(), server_key.expose().as_bytes())?;

    // The admin credential: key made here, signed by the CA, registered in the store.
    let (admin_key, csr) = pki::new_key_and_csr("admin")?;
    let admin_cert = ca.sign_csr(
        &csr,
        "admin",
        Usage::Client,
        validity_from_now(Duration::from_secs(365 * DAY)),
    )?;
    let info = CertInfo::from_pem(&admin_cert)?;
    let store = Store::open(&data.store())?;
    crate::operators::register_initial_admin(&store, &info).await?;
    drop(store);

    ClientBundle {
        controller: advertise.clone(),
        name: "admin".into(),
        ca_pem: ca.cert_pem().into(),
        cert_pem: admin_cert,
        key_pem: admin_key,
    }
    .save(&data.admin_bundle())?;

    data.save_settings(&Settings {
        listen: a.listen,
        advertise: advertise.clone(),
        node_cert_ttl: "30d".into(),
        operator_cert_ttl: "365d".into(),
        heartbeat_interval: "5s".into(),
        require_approval: false,
        min_agent_version: String::new(),
        listener: Default::default(),
    })?;
    let pin = ca.pin();
    eprintln!("initialised {}", data.root.display());
    eprintln!("  controller address:  {advertise}");
    eprintln!("  server names:        {}", sans.join(", "));
    eprintln!("  admin credential:    {}", data.admin_bundle().display());
    eprintln!("  CA pin (agents pass it to `clustermgr-agent join --ca-pin`):");
    Ok(pin)
}
