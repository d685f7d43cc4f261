//! The cluster's web certificate on a Gluu node: `install-httpd-certificate` (httpd.crt and
//! httpd.key replaced, the JRE trust store entry `<lb>_httpd` re-imported with Gluu's keytool
//! inside Gluu, Gluu restarted (`gluu-serverd restart` and the machine's boot waited for), the
//! node's health probed serving exactly the new certificate; on a failure after the first write,
//! the previous pair is put back) and `read-served-certificate` (the chain a TLS server presents).
//!
//! Files are written by [`super::certs`] (SHA-256 checked, directory handles, atomic rename,
//! mode and owner kept); the private key never reaches the job log (every line of it is
//! registered as a secret, and only names and sizes are logged).

use super::certs::{self, CERTS_DIR};
use super::gluu::{self, Layout};
use super::{Ctx, Log, OpError, probe};
use clustermgr_proto::{
    CertificateFile, GluuServices, HttpsGet, InstallGluuCertificates, InstallHttpdCertificate,
    InstallHttpdCertificateOutput, Probe, ReadServedCertificate, ServedCertificate, gluu_services,
};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

pub const HTTPD_CRT: &str = "etc/certs/httpd.crt";
pub const HTTPD_KEY: &str = "etc/certs/httpd.key";
/// Most bytes of a certificate chain or key.
const MAX_PEM: usize = 256 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Registers every line of a PEM key as a secret of the job's log.
fn mask_key(log: &mut Log, key: &str) {
    for line in key.lines().map(str::trim) {
        if !line.is_empty() && !line.starts_with("-----") {
            log.secret(line);
        }
    }
}

fn check(req: &InstallHttpdCertificate) -> Result<(), OpError> {
    if req.certificate_pem.len() > MAX_PEM || req.key_pem.len() > MAX_PEM {
        return Err(OpError("the certificate or key is too large".into()));
    }
    if !req.certificate_pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(OpError("the certificate is not PEM".into()));
    }
    if !String::from_utf8_lossy(&req.key_pem).contains("PRIVATE KEY-----") {
        return Err(OpError("the key is not a PEM private key".into()));
    }
    if !sha256_hex(req.certificate_pem.as_bytes()).eq_ignore_ascii_case(&req.certificate_sha256)
        || !sha256_hex(&req.key_pem).eq_ignore_ascii_case(&req.key_sha256)
    {
        return Err(OpError(
            "the certificate or key does not match its SHA-256 (corrupted in transfer?); nothing \
             was written"
                .into(),
        ));
    }
    if !req.probe_url.starts_with("https://") {
        return Err(OpError("the probe URL must be https://".into()));
    }
    Ok(())
}

fn file(path: &str, content: Vec<u8>, mode: u32) -> CertificateFile {
    CertificateFile {
        path: path.into(),
        sha256: sha256_hex(&content),
        content,
        mode,
    }
}

/// Writes a pair, imports it, restarts Gluu and waits until the node serves it.
async fn apply(
    ctx: &Ctx,
    pair: &[CertificateFile],
    req: &InstallHttpdCertificate,
    restart: bool,
    restarted: &mut bool,
    log: &mut Log,
) -> Result<u32, OpError> {
    let out = certs::install(
        ctx,
        InstallGluuCertificates {
            files: pair.to_vec(),
            alias_prefix: req.alias_prefix.clone(),
        },
        log,
    )
    .await?;
    if restart {
        *restarted = true;
        gluu::services(
            ctx,
            GluuServices {
                action: gluu_services::Action::Restart as i32,
                ..Default::default()
            },
            log,
        )
        .await?;
    }
    // Trust is the first certificate of httpd.crt, byte for byte: the node serves the new one.
    probe::run(
        ctx,
        Probe {
            target: Some(clustermgr_proto::probe::Target::Https(HttpsGet {
                url: req.probe_url.clone(),
                ca_pem: String::new(),
            })),
            within_ms: req.within_ms,
        },
        log,
    )
    .await?;
    Ok(out.imported)
}

pub async fn install(
    ctx: &Ctx,
    req: InstallHttpdCertificate,
    log: &mut Log,
) -> Result<InstallHttpdCertificateOutput, OpError> {
    mask_key(log, &String::from_utf8_lossy(&req.key_pem));
    check(&req)?;
    let layout = Layout::detect(&ctx.host)?;
    let root = ctx.root().clone();
    let l = layout.clone();
    let (set, _) = tokio::task::spawn_blocking(move || certs::read_set(&root, &l))
        .await
        .map_err(|e| OpError(format!("reading {CERTS_DIR}: {e}")))??;
    let old = |p: &str| set.iter().find(|f| f.path == p).cloned();
    let (old_crt, old_key) = (old(HTTPD_CRT), old(HTTPD_KEY));
    if let Some(k) = &old_key {
        mask_key(log, &String::from_utf8_lossy(&k.content));
    }
    let new = vec![
        file(
            HTTPD_CRT,
            req.certificate_pem.clone().into_bytes(),
            old_crt.as_ref().map_or(0o644, |f| f.mode),
        ),
        file(
            HTTPD_KEY,
            req.key_pem.clone(),
            old_key.as_ref().map_or(0o600, |f| f.mode),
        ),
    ];
    let unchanged = old_crt
        .as_ref()
        .is_some_and(|f| f.content == new[0].content)
        && old_key
            .as_ref()
            .is_some_and(|f| f.content == new[1].content);
    log.line(format!(
        "installing the web certificate ({} bytes) and key ({} bytes){}",
        req.certificate_pem.len(),
        req.key_pem.len(),
        if unchanged {
            ": already on the node"
        } else {
            ""
        }
    ));
    let mut restarted = false;
    match apply(ctx, &new, &req, !unchanged, &mut restarted, log).await {
        Ok(imported) => {
            log.line("the node serves the new certificate");
            Ok(InstallHttpdCertificateOutput {
                changed: !unchanged,
                imported,
            })
        }
        Err(e) => {
            let (Some(crt), Some(key)) = (old_crt, old_key) else {
                return Err(OpError(format!(
                    "{}; the node had no previous certificate and key to restore",
                    e.0
                )));
            };
            if unchanged {
                return Err(e);
            }
            if req.keep_on_failure {
                // A rollback: the "previous" pair is the one being rolled back from.
                return Err(OpError(format!(
                    "{}; the rolled-back certificate and key stay on the node",
                    e.0
                )));
            }
            log.line(format!(
                "install failed ({}); restoring the previous certificate and key",
                e.0
            ));
            let mut again = false;
            let restore = apply(ctx, &[crt, key], &req, restarted, &mut again, log).await;
            match restore {
                Ok(_) => {
                    log.line("the previous certificate and key are back");
                    Err(OpError(format!(
                        "{}; the node's previous certificate and key were restored",
                        e.0
                    )))
                }
                Err(r) => Err(OpError(format!(
                    "{}; restoring the previous certificate and key also failed: {}",
                    e.0, r.0
                ))),
            }
        }
    }
}

pub async fn read_served(
    _ctx: &Ctx,
    req: ReadServedCertificate,
    log: &mut Log,
) -> Result<ServedCertificate, OpError> {
    let chain = served_chain(&req.address, &req.server_name).await?;
    log.line(format!(
        "{} presents {} certificate(s)",
        req.address,
        chain.len()
    ));
    Ok(ServedCertificate { chain_der: chain })
}

/// The certificate chain (DER, leaf first) a TLS server at `address` (`host:port`) presents,
/// read without trusting it and without sending anything over the connection. `server_name`
/// is the SNI (empty: the address's host).
pub async fn served_chain(address: &str, server_name: &str) -> Result<Vec<Vec<u8>>, OpError> {
    let provider = clustermgr_shared::tls::provider();
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| OpError(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(clustermgr_shared::tls::CaptureVerifier::new())
        .with_no_client_auth();
    let host = address
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
        .unwrap_or_default();
    let sni = if server_name.is_empty() {
        host
    } else {
        server_name.to_string()
    };
    let name = ServerName::try_from(sni).map_err(|e| OpError(format!("server name: {e}")))?;
    tokio::time::timeout(CONNECT_TIMEOUT, async {
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| OpError(format!("cannot connect to {address}: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| OpError(format!("TLS with {address}: {e}")))?;
        Ok::<_, OpError>(
            tls.get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|d| d.as_ref().to_vec()).collect::<Vec<_>>())
                .unwrap_or_default(),
        )
    })
    .await
    .map_err(|_| OpError(format!("{address}: no TLS handshake within 10 s")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Host, Recorder};
    use crate::ops::gluu::Flavor;
    use crate::ops::gluu::layout::fixture::{nsenter, recorded_host, start_machine};
    use crate::ops::tests::{ctx_with, log};
    use std::path::Path;

    const LEADER: u32 = 4646;
    const STORE: &str = "/opt/jre/jre/lib/security/cacerts";

    /// A running Gluu machine holding an old web certificate and key.
    fn gluu_host(root: &Path) -> (Host, Arc<Recorder>) {
        let c = root.join("opt/gluu-server");
        std::fs::create_dir_all(c.join("etc/certs")).unwrap();
        std::fs::create_dir_all(c.join("opt/jre/bin")).unwrap();
        std::fs::write(c.join("opt/jre/bin/keytool"), "").unwrap();
        std::fs::create_dir_all(c.join("opt/jre/jre/lib/security")).unwrap();
        std::fs::write(c.join("opt/jre/jre/lib/security/cacerts"), "").unwrap();
        std::fs::write(c.join("etc/certs/httpd.crt"), "OLD CRT").unwrap();
        std::fs::write(c.join("etc/certs/httpd.key"), "OLD KEY").unwrap();
        let (h, rec) = recorded_host(root, Flavor::Machine);
        start_machine(root, &h.proc, LEADER);
        (h, rec)
    }

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nS3CR3TK3YMATERIAL\n-----END PRIVATE KEY-----\n";
    const CRT: &str = "-----BEGIN CERTIFICATE-----\nNEWCERT\n-----END CERTIFICATE-----\n";

    fn req() -> InstallHttpdCertificate {
        InstallHttpdCertificate {
            certificate_pem: CRT.into(),
            key_pem: KEY.as_bytes().to_vec(),
            certificate_sha256: sha256_hex(CRT.as_bytes()),
            key_sha256: sha256_hex(KEY.as_bytes()),
            alias_prefix: "lb.example.org".into(),
            probe_url: "https://127.0.0.1:1/identity/restv1/health-check".into(),
            within_ms: 200,
            keep_on_failure: false,
        }
    }

    /// One install of the pair on the machine: the machine checked, `lb.example.org_httpd`
    /// deleted and imported with its keytool, then (`restart`) the machine restarted and its boot
    /// waited for.
    fn install_argvs(root: &Path, restart: bool) -> Vec<Vec<String>> {
        let isr = nsenter(LEADER, "/bin/systemctl", &["is-system-running"]);
        let alias = "lb.example.org_httpd";
        let mut v = vec![
            isr.clone(),
            nsenter(
                LEADER,
                certs::KEYTOOL,
                &[
                    "-delete",
                    "-alias",
                    alias,
                    "-keystore",
                    STORE,
                    "-storepass",
                    "changeit",
                ],
            ),
            nsenter(
                LEADER,
                certs::KEYTOOL,
                &[
                    "-import",
                    "-trustcacerts",
                    "-alias",
                    alias,
                    "-file",
                    "/etc/certs/httpd.crt",
                    "-keystore",
                    STORE,
                    "-storepass",
                    "changeit",
                    "-noprompt",
                ],
            ),
        ];
        if restart {
            v.push(vec![
                root.join("sbin/gluu-serverd").display().to_string(),
                "restart".into(),
            ]);
            v.push(isr);
        }
        v
    }

    #[tokio::test]
    async fn a_rollback_whose_probe_fails_keeps_what_it_wrote() {
        let d = tempfile::tempdir().unwrap();
        let (h, rec) = gluu_host(d.path());
        let c = d.path().join("opt/gluu-server");
        let (mut l, _rx) = log();
        let mut r = req();
        r.keep_on_failure = true;
        let e = install(&ctx_with(h), r, &mut l).await.unwrap_err();
        assert!(e.0.contains("stay on the node"), "{}", e.0);
        assert_eq!(
            std::fs::read_to_string(c.join("etc/certs/httpd.crt")).unwrap(),
            CRT
        );
        // One import and one restart: nothing is put back.
        assert_eq!(rec.argvs(), install_argvs(d.path(), true));
    }

    #[tokio::test]
    async fn a_failed_health_check_puts_the_previous_pair_back_through_the_machines_keytool() {
        let d = tempfile::tempdir().unwrap();
        let (h, rec) = gluu_host(d.path());
        let c = d.path().join("opt/gluu-server");
        let (mut l, mut rx) = log();
        let e = install(&ctx_with(h), req(), &mut l).await.unwrap_err();
        assert!(
            e.0.contains("restoring the previous certificate"),
            "{}",
            e.0
        );
        assert_eq!(
            std::fs::read_to_string(c.join("etc/certs/httpd.crt")).unwrap(),
            "OLD CRT"
        );
        assert_eq!(
            std::fs::read_to_string(c.join("etc/certs/httpd.key")).unwrap(),
            "OLD KEY"
        );
        // Imported for the new pair, then again for the restored one; Gluu's machine restarted
        // for each.
        let mut want = install_argvs(d.path(), true);
        want.extend(install_argvs(d.path(), true));
        assert_eq!(rec.argvs(), want);
        drop(l);
        let mut lines = String::new();
        while let Ok((_, line)) = rx.try_recv() {
            lines.push_str(&line);
        }
        assert!(!lines.contains("S3CR3TK3YMATERIAL"), "{lines}");
    }

    #[tokio::test]
    async fn the_pair_already_there_is_imported_again_without_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let (h, rec) = gluu_host(d.path());
        let c = d.path().join("opt/gluu-server");
        std::fs::write(c.join("etc/certs/httpd.crt"), CRT).unwrap();
        std::fs::write(c.join("etc/certs/httpd.key"), KEY).unwrap();
        let (mut l, _rx) = log();
        // The probe cannot succeed here (nothing serves): the job fails, nothing is restored.
        let e = install(&ctx_with(h), req(), &mut l).await.unwrap_err();
        assert!(!e.0.contains("restor"), "{}", e.0);
        assert_eq!(rec.argvs(), install_argvs(d.path(), false));
    }

    #[tokio::test]
    async fn a_corrupted_pair_writes_and_runs_nothing() {
        let d = tempfile::tempdir().unwrap();
        let (h, rec) = gluu_host(d.path());
        let (mut l, _rx) = log();
        let mut r = req();
        r.key_sha256 = sha256_hex(b"other");
        let e = install(&ctx_with(h), r, &mut l).await.unwrap_err();
        assert!(e.0.contains("nothing was written"), "{}", e.0);
        assert!(rec.argvs().is_empty());
        assert_eq!(
            std::fs::read_to_string(d.path().join("opt/gluu-server/etc/certs/httpd.key")).unwrap(),
            "OLD KEY"
        );
    }
}
