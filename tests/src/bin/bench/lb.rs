use super::*;

/// One target's figures.
pub(crate) struct Rate {
    ok: u64,
    /// Answers other than 200, and connections that could not be opened.
    failed: u64,
    /// Kept-alive connections the server closed under a request (nginx's keepalive_requests
    /// limit): opened again, the request not counted.
    reopened: u64,
    secs: f64,
}

impl Rate {
    fn per_sec(&self) -> f64 {
        self.ok as f64 / self.secs.max(1e-9)
    }
}

/// GETs of `path` on `addr:port` for `secs` over `connections` keep-alive connections, TLS
/// verified as exactly `cert` (the cluster's httpd certificate, which both the balancer and the
/// nodes serve).
pub(crate) fn http_rate(
    addr: &str,
    port: u16,
    host: &str,
    path: &str,
    cert: &str,
    secs: u64,
    connections: usize,
) -> Result<Rate> {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use std::sync::atomic::AtomicU64;
    use tokio_rustls::rustls::{self, pki_types::ServerName};
    let der = tls::certs_from_pem(cert)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no certificate"))?;
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(tls::ExactCertVerifier::new(der))
            .with_no_client_auth(),
    );
    let ip: std::net::IpAddr = addr.parse()?;
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let reopened = Arc::new(AtomicU64::new(0));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (config, ok, failed, reopened) =
                (config.clone(), ok.clone(), failed.clone(), reopened.clone());
            let (host, path) = (host.to_string(), path.to_string());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let conn = async {
                        let tcp = tokio::net::TcpStream::connect((ip, port)).await?;
                        let tls = tokio_rustls::TlsConnector::from(config.clone())
                            .connect(ServerName::IpAddress(ip.into()), tcp)
                            .await?;
                        let (sender, conn) = hyper::client::conn::http1::handshake(
                            hyper_util::rt::TokioIo::new(tls),
                        )
                        .await?;
                        tokio::spawn(conn);
                        anyhow::Ok(sender)
                    };
                    let Ok(mut sender) = conn.await else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    while Instant::now() < deadline {
                        let req = http::Request::get(path.as_str())
                            .header(http::header::HOST, host.as_str())
                            .body(Empty::<Bytes>::new());
                        let Ok(req) = req else { return };
                        let answered = async {
                            let resp = sender.send_request(req).await?;
                            let status = resp.status();
                            resp.into_body().collect().await?;
                            anyhow::Ok(status)
                        };
                        match answered.await {
                            Ok(s) if s == http::StatusCode::OK => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(_) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => {
                                reopened.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    Ok(Rate {
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        reopened: reopened.load(Ordering::Relaxed),
        secs: start.elapsed().as_secs_f64(),
    })
}

/// A sandbox with the load balancer, then requests/s through it and directly to one node.
pub(crate) fn lb_bench(nodes: u8, secs: u64, connections: usize) -> Result<()> {
    tls::install_crypto_provider();
    let deb = clustermgr_tests::standin_deb();
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("sandbox");
    let start = Instant::now();
    let up = sandbox_up(&dir, nodes.max(1), &deb)?;
    let up_wall = start.elapsed();
    let result = (|| {
        ensure!(
            up.status.success(),
            "sandbox up failed: {}",
            String::from_utf8_lossy(&up.stderr)
        );
        println!(
            "sandbox up (Gluu on {nodes} nodes, replication, load balancer): {:.2} s",
            up_wall.as_secs_f64()
        );
        let cert = std::fs::read_to_string(
            dir.join("hosts/gluu1.sandbox/root/opt/gluu-server/etc/certs/httpd.crt"),
        )?;
        let path = "/.well-known/openid-configuration";
        let host = "idp.sandbox.test:8443";
        let through = http_rate("127.0.0.2", 8443, host, path, &cert, secs, connections)?;
        let direct = http_rate("127.0.0.11", 8443, host, path, &cert, secs, connections)?;
        for (what, r) in [
            ("through the load balancer (127.0.0.2)", &through),
            ("directly to gluu1 (127.0.0.11)", &direct),
        ] {
            println!(
                "GET {path} {what}: {:.0} requests/s ({} answered 200, {} failed, {connections} \
                 connections, {} closed by the server and reopened, {:.1} s)",
                r.per_sec(),
                r.ok,
                r.failed,
                r.reopened,
                r.secs
            );
        }
        println!(
            "ratio through the balancer / direct: {:.2}",
            through.per_sec() / direct.per_sec().max(1e-9)
        );
        Ok(())
    })();
    let _ = std::process::Command::new(clustermgr_tests::clustermgr_bin())
        .args(["sandbox", "down", "--dir"])
        .arg(&dir)
        .output();
    result
}
