use super::*;

pub(crate) fn keys_curl(args: &[&str]) -> Result<String> {
    let o = std::process::Command::new("curl")
        .args(["-sk", "--fail", "--max-time", "5"])
        .args(args)
        .output()?;
    ensure!(o.status.success(), "curl {}", o.status);
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Requests a token from node `from` and verifies it against node `with`'s JWKS.
pub(crate) fn keys_token_verifies(from: u8, with: u8) -> Result<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let url = |n: u8, p: &str| format!("https://127.0.0.{}:8443/oxauth/restv1/{p}", 10 + n);
    let body = keys_curl(&[
        "-u",
        "bench:bench",
        "-d",
        "grant_type=client_credentials",
        &url(from, "token"),
    ])?;
    let v: serde_json::Value = serde_json::from_str(&body)?;
    let jwt = v["access_token"].as_str().context("no access_token")?;
    let jwks: serde_json::Value = serde_json::from_str(&keys_curl(&[&url(with, "jwks")])?)?;
    let (input, sig) = jwt.rsplit_once('.').context("not a JWT")?;
    let header: serde_json::Value =
        serde_json::from_slice(&B64.decode(jwt.split('.').next().unwrap_or(""))?)?;
    let kid = header["kid"].as_str().context("no kid")?;
    let key = jwks["keys"]
        .as_array()
        .and_then(|a| a.iter().find(|k| k["kid"] == kid))
        .with_context(|| format!("kid {kid} not served by node {with}"))?;
    let n = B64.decode(key["n"].as_str().context("no n")?)?;
    let e = B64.decode(key["e"].as_str().context("no e")?)?;
    ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            input.as_bytes(),
            &B64.decode(sig)?,
        )
        .map_err(|_| anyhow!("bad signature (kid {kid})"))?;
    Ok(kid.to_string())
}

pub(crate) fn keys_bench(nodes: u8, overlap: &str) -> Result<()> {
    ensure!(nodes >= 2, "--nodes is at least 2");
    let deb = clustermgr_tests::standin_deb();
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("sandbox");
    let up = std::process::Command::new(clustermgr_tests::clustermgr_bin())
        .args(["sandbox", "up", "--nodes", &nodes.to_string(), "--dir"])
        .arg(&dir)
        .arg("--gluu-package")
        .arg(&deb)
        .output()
        .context("run clustermgr sandbox up")?;
    let cli = |args: &[&str]| {
        std::process::Command::new(clustermgr_tests::clustermgr_bin())
            .arg("--data-dir")
            .arg(dir.join("controller"))
            .args(args)
            .output()
    };
    let result = (|| -> Result<()> {
        ensure!(
            up.status.success(),
            "sandbox up failed: {}",
            String::from_utf8_lossy(&up.stderr)
        );
        let c = cli(&["keys", "configure", "--overlap", overlap])?;
        ensure!(
            c.status.success(),
            "keys configure: {}",
            String::from_utf8_lossy(&c.stderr)
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let client = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut ok, mut failed, mut kids) =
                    (0u64, Vec::new(), std::collections::BTreeSet::new());
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let r: [u8; 2] = rand_pair(i, nodes);
                    match keys_token_verifies(r[0], r[1]) {
                        Ok(k) => {
                            ok += 1;
                            kids.insert(k);
                        }
                        Err(e) => failed.push(format!("node {} -> {}: {e:#}", r[0], r[1])),
                    }
                    i += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                (ok, failed, kids)
            })
        };
        let start = Instant::now();
        let r = cli(&["keys", "rotate"])?;
        let wall = start.elapsed();
        // The command returns once every node's configuration signs with the new keys (oxAuth
        // takes it on its next reload); the client goes on until the controller has retired
        // the old ones (after the overlap).
        let retired = (|| -> Result<Duration> {
            ensure!(
                r.status.success(),
                "keys rotate: {}",
                String::from_utf8_lossy(&r.stderr)
            );
            let mut seen_pending = false;
            loop {
                ensure!(
                    start.elapsed() < Duration::from_secs(3600),
                    "the old keys were not retired within an hour"
                );
                let o = cli(&["--output", "json", "keys", "status"])?;
                let v: serde_json::Value = serde_json::from_slice(&o.stdout)?;
                if v["retirement"].is_null() {
                    if seen_pending {
                        return Ok(start.elapsed());
                    }
                } else {
                    seen_pending = true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })();
        stop.store(true, Ordering::Relaxed);
        let (ok, failed, kids) = client.join().map_err(|_| anyhow!("the client panicked"))?;
        let retired = retired?;
        println!(
            "key rotation on {nodes} nodes (overlap {overlap}): keys rotate returned after {:.2} s, the old keys retired {:.2} s after it started",
            wall.as_secs_f64(),
            retired.as_secs_f64()
        );
        println!(
            "client (token from a random node verified against a random node's JWKS every 50 ms): \
             {ok} verified, {} failures ({}), signing kids seen: {}",
            failed.len(),
            verdict(failed.is_empty()),
            kids.len()
        );
        for f in failed.iter().take(5) {
            println!("  failure: {f}");
        }
        Ok(())
    })();
    let _ = std::process::Command::new(clustermgr_tests::clustermgr_bin())
        .args(["sandbox", "down", "--dir"])
        .arg(&dir)
        .output();
    result
}

/// Two node numbers (1..=nodes) from a counter and the clock (no extra dependency).
pub(crate) fn rand_pair(i: u64, nodes: u8) -> [u8; 2] {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let x = t ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let n = u64::from(nodes.max(1));
    [(x % n) as u8 + 1, ((x >> 17) % n) as u8 + 1]
}
