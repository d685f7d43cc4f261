//! The cache end to end: two Gluu stand-in nodes (installed and replicated by the workflows),
//! a cache host, `cache install` with real redis-server and stunnel4 on their loopback
//! addresses; a token issued on one node introspects on the other through the shared Redis; a
//! stunnel client with a certificate of another CA is refused; the password never leaks;
//! `cache remove` goes back to NATIVE_PERSISTENCE.

use super::gluu_cluster::{Cluster, HTTPS_PORT, Node, address, password_file};
use clustermgr_tests::{Agent, eventually, free_port, text};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Stops the daemons the agents started under their roots (pid files), when the test ends.
pub(crate) struct Daemons(Vec<PathBuf>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for root in &self.0 {
            let Ok(dir) = std::fs::read_dir(root.join("run/clustermgr")) else {
                continue;
            };
            for e in dir.flatten() {
                if let Ok(pid) = std::fs::read_to_string(e.path())
                    && let Ok(pid) = pid.trim().parse::<i32>()
                    && pid > 1
                {
                    let _ = Command::new("kill").arg(pid.to_string()).status();
                }
            }
        }
    }
}

/// A cache host joined to the cluster and online, and the guard that stops what the agents of
/// it and of the cluster's nodes started.
pub(crate) fn cache_host(c: &Cluster) -> (Agent, Daemons) {
    let mut cache = Agent::new("cache.cluster.test");
    cache.join(&c.ctl, "cache");
    cache.start();
    c.ctl.wait_status(&cache.node_id, "online");
    let mut roots = vec![cache.root.clone()];
    roots.extend(c.nodes.iter().map(|n| n.agent.root.clone()));
    (cache, Daemons(roots))
}

/// A stunnel the test runs itself (a client with a certificate of its choosing).
struct Stunnel(PathBuf);

impl Drop for Stunnel {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

fn https_post(url: &str, form: &[&str], basic: Option<&str>) -> Value {
    let mut cmd = Command::new("curl");
    cmd.args(["-sk", "--max-time", "10", "-X", "POST", url]);
    for f in form {
        cmd.args(["--data-urlencode", f]);
    }
    if let Some(b) = basic {
        cmd.args(["-u", b]);
    }
    let o = cmd.output().unwrap();
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("{url}: {} {}", text(&o.stdout), text(&o.stderr)))
}

fn token_on(node: &Node) -> String {
    let r = https_post(
        &format!("https://{}:{HTTPS_PORT}/oxauth/restv1/token", address(node)),
        &["grant_type=client_credentials"],
        Some("cache-test-client:secret"),
    );
    r["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {r}"))
        .to_string()
}

fn active_on(node: &Node, token: &str) -> bool {
    let r = https_post(
        &format!(
            "https://{}:{HTTPS_PORT}/oxauth/restv1/introspection",
            address(node)
        ),
        &[&format!("token={token}")],
        None,
    );
    r["active"] == true
}

/// The cache configuration a node's directory holds.
pub(crate) fn cache_configuration(node: &Node) -> String {
    let o = Command::new("ldapsearch")
        .args([
            "-x",
            "-LLL",
            "-o",
            "ldif-wrap=no",
            "-H",
            &format!("ldaps://{}:1636", address(node)),
            "-D",
            "cn=directory manager",
            "-y",
        ])
        .arg(password_file())
        .args([
            "-b",
            "ou=configuration,o=gluu",
            "-s",
            "base",
            "oxCacheConfiguration",
        ])
        .env("LDAPTLS_REQCERT", "never")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
}

/// The password in the cache host's redis.conf (the test reads the node's file; nothing
/// else tells it).
pub(crate) fn redis_password(cache: &Agent) -> Option<String> {
    let conf = std::fs::read_to_string(cache.root.join("etc/redis/redis.conf")).ok()?;
    let line = conf.lines().find(|l| l.starts_with("requirepass "))?;
    Some(line["requirepass ".len()..].trim_matches('"').to_string())
}

fn redis_cli(cache: &Agent, password: &str, args: &[&str]) -> String {
    let o = Command::new("redis-cli")
        .args(["-h", &cache.address, "-p", "6379", "--no-auth-warning"])
        .env("REDISCLI_AUTH", password)
        .args(args)
        .output()
        .unwrap();
    text(&o.stdout)
}

/// A RESP PING through `addr`, like the agent's (the reply line, or why there was none).
fn ping(addr: &str) -> Result<String, String> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"*1\r\n$4\r\nPING\r\n")
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    if line.is_empty() {
        Err("closed without an answer".into())
    } else {
        Ok(line.trim_end().to_string())
    }
}

fn openssl(args: &[&str], dir: &Path) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl {args:?}: {}", text(&o.stderr));
}

/// A client certificate signed by `ca` (cert and key files in `dir`), for a stunnel client.
fn client_cert(dir: &Path, name: &str, ca_crt: &Path, ca_key: &Path) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let crt = dir.join(format!("{name}.crt"));
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(&ext, "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            key.to_str().unwrap(),
        ],
        dir,
    );
    openssl(
        &[
            "req",
            "-new",
            "-key",
            key.to_str().unwrap(),
            "-subj",
            &format!("/CN={name}"),
            "-out",
            csr.to_str().unwrap(),
        ],
        dir,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            csr.to_str().unwrap(),
            "-CA",
            ca_crt.to_str().unwrap(),
            "-CAkey",
            ca_key.to_str().unwrap(),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            ext.to_str().unwrap(),
            "-out",
            crt.to_str().unwrap(),
        ],
        dir,
    );
    (crt, key)
}

/// Runs a stunnel client on 127.0.0.1 towards the cache's stunnel with `cert`/`key`, trusting
/// the cache CA; returns the local address and its guard.
fn stunnel_client(
    dir: &Path,
    name: &str,
    cache: &Agent,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> (String, Stunnel) {
    let port = free_port();
    let pid = dir.join(format!("{name}.pid"));
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(
        &conf,
        format!(
            "pid = {}\noutput = {}\nforeground = no\n[redis]\nclient = yes\naccept = 127.0.0.1:{port}\nconnect = {}:16379\ncert = {}\nkey = {}\nCAfile = {}\nverifyChain = yes\n",
            pid.display(),
            dir.join(format!("{name}.log")).display(),
            cache.address,
            cert.display(),
            key.display(),
            ca.display()
        ),
    )
    .unwrap();
    let o = Command::new("stunnel4")
        .arg(&conf)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "stunnel4: {}", text(&o.stderr));
    let guard = Stunnel(pid.clone());
    eventually(Duration::from_secs(10), "the test's stunnel up", || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    (format!("127.0.0.1:{port}"), guard)
}

#[test]
fn tokens_are_shared_through_redis_over_verified_stunnel_and_the_password_never_leaks() {
    let c = Cluster::new(2, HTTPS_PORT);
    let out = c.ctl.cli(&["gluu", "install", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = c.ctl.cli(&["replication", "deploy", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let (cache, _daemons) = cache_host(&c);
    let [g1, g2] = [&c.nodes[0], &c.nodes[1]];

    // Only a node of role cache can hold Redis.
    let wrong = c.ctl.cli(&["cache", "install", &g1.agent.hostname]);
    assert_eq!(wrong.status.code(), Some(2), "{}", text(&wrong.stderr));
    assert!(
        text(&wrong.stderr).contains("role"),
        "{}",
        text(&wrong.stderr)
    );

    let plan = c.ctl.cli(&[
        "--output",
        "json",
        "cache",
        "install",
        &cache.hostname,
        "--dry-run",
    ]);
    assert!(plan.status.success(), "{}", text(&plan.stderr));
    assert!(
        text(&plan.stdout).contains("stunnel"),
        "{}",
        text(&plan.stdout)
    );

    let out = c.ctl.cli(&["cache", "install", &cache.hostname]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stderr),
        c.ctl
            .cli_ok(&["--output", "json", "workflow", "list", "--limit", "1"])
    );
    let password = redis_password(&cache).expect("redis.conf with requirepass");
    assert_eq!(password.len(), 20, "a random password");
    let mode = std::fs::metadata(cache.root.join("etc/redis/redis.conf")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let key = cache.root.join("etc/stunnel/clustermgr-redis-server.key");
    let key_mode = std::fs::metadata(&key).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key_mode.permissions()) & 0o777,
        0o600
    );

    // Gluu uses Redis through a stunnel client: the replicated configuration names the first
    // node's (on a real host every node's is 127.0.0.1:6379; sandbox hosts share one machine).
    for n in [g1, g2] {
        let conf = cache_configuration(n);
        assert!(conf.contains("\"REDIS\""), "{conf}");
        assert!(conf.contains(&format!("{}:6379", address(g1))), "{conf}");
    }
    // A token issued on one node is active on the other, and it is in Redis.
    let token = token_on(g1);
    assert!(
        active_on(g2, &token),
        "the token is not active on the other node"
    );
    assert!(active_on(g1, &token));
    let keys = redis_cli(
        &cache,
        &password,
        &["--scan", "--pattern", "oxauth_token_*"],
    );
    assert!(!keys.trim().is_empty(), "no token in Redis");

    // Status: every node healthy, a PING answered through each Gluu node's stunnel.
    let st = c.ctl.cli(&["--output", "json", "cache", "status"]);
    assert_eq!(
        st.status.code(),
        Some(0),
        "{}{}",
        text(&st.stdout),
        text(&st.stderr)
    );
    let status: Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(status["healthy"], true, "{status}");
    assert_eq!(status["password"], "set");
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{status}");
    for n in nodes {
        assert_eq!(n["ping_ok"], true, "{n}");
        assert_eq!(n["stunnel_running"], true, "{n}");
    }

    // stunnel accepts a client certificate of the cache CA only: one made with the cache CA
    // gets through, the agent's own identity (cluster CA) and one of another CA do not.
    let tmp = tempfile::tempdir().unwrap();
    let cache_ca = c.ctl.data.join("cache-ca.crt");
    let (good_crt, good_key) = client_cert(
        tmp.path(),
        "good",
        &cache_ca,
        &c.ctl.data.join("cache-ca.key"),
    );
    let (good, _g) = stunnel_client(tmp.path(), "good", &cache, &cache_ca, &good_crt, &good_key);
    let answer = ping(&good).unwrap();
    assert!(
        answer.starts_with("-NOAUTH"),
        "Redis itself answers: {answer}"
    );
    let other_ca = tmp.path().join("other-ca");
    std::fs::create_dir_all(&other_ca).unwrap();
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=another CA",
            "-days",
            "1",
        ],
        &other_ca,
    );
    let (bad_crt, bad_key) = client_cert(
        tmp.path(),
        "bad",
        &other_ca.join("ca.crt"),
        &other_ca.join("ca.key"),
    );
    let (bad, _b) = stunnel_client(tmp.path(), "bad", &cache, &cache_ca, &bad_crt, &bad_key);
    let refused = ping(&bad);
    assert!(
        refused.is_err(),
        "a certificate of another CA got through: {refused:?}"
    );
    let ident = tmp.path().join("agent.pem");
    std::fs::write(&ident, g1.agent.identity_pem()).unwrap();
    let (agent, _a) = stunnel_client(tmp.path(), "agent", &cache, &cache_ca, &ident, &ident);
    let refused = ping(&agent);
    assert!(
        refused.is_err(),
        "an agent identity certificate got through: {refused:?}"
    );

    // A new password reaches Redis and Gluu; the old one stops working.
    let out = c.ctl.cli(&["cache", "password", "set"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let second = redis_password(&cache).unwrap();
    assert_ne!(second, password);
    assert!(redis_cli(&cache, &password, &["ping"]).trim() != "PONG");
    let token2 = token_on(g2);
    assert!(active_on(g1, &token2));

    // The passwords never appear in logs, job records, the audit log, workflows or status.
    let mut hay = String::new();
    hay.push_str(&std::fs::read_to_string(c.ctl.log_path()).unwrap_or_default());
    for a in [&cache, &g1.agent, &g2.agent] {
        hay.push_str(&a.log());
    }
    for j in c.jobs() {
        hay.push_str(&j.to_string());
        let id = j["id"].as_str().unwrap();
        hay.push_str(&text(&c.ctl.cli(&["job", "logs", id]).stdout));
    }
    hay.push_str(&text(
        &c.ctl
            .cli(&["--output", "json", "audit", "--limit", "10000"])
            .stdout,
    ));
    for w in c
        .ctl
        .json(&["workflow", "list", "--limit", "1000"])
        .as_array()
        .unwrap()
    {
        hay.push_str(&c.workflow(w["id"].as_str().unwrap()).to_string());
    }
    hay.push_str(&text(
        &c.ctl.cli(&["--output", "json", "cache", "status"]).stdout,
    ));
    hay.push_str(&text(&c.ctl.cli(&["cache", "status"]).stdout));
    assert!(hay.len() > 10_000, "too little was searched");
    for p in [&password, &second] {
        assert!(!hay.contains(p.as_str()), "the Redis password leaked");
    }

    // Removal: Gluu back to the directory, Redis and stunnel gone; tokens still shared (by
    // replication now).
    let out = c.ctl.cli(&["cache", "remove"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for n in [g1, g2] {
        let conf = cache_configuration(n);
        assert!(conf.contains("NATIVE_PERSISTENCE"), "{conf}");
    }
    assert!(!cache.root.join("etc/redis/redis.conf").exists());
    assert!(
        ping(&format!("{}:6379", cache.address)).is_err(),
        "Redis still runs"
    );
    assert!(
        !g1.agent
            .root
            .join("etc/stunnel/clustermgr-redis-client.conf")
            .exists()
    );
    let token3 = token_on(g1);
    eventually(Duration::from_secs(20), "the token replicated", || {
        if active_on(g2, &token3) {
            Ok(())
        } else {
            Err("inactive".into())
        }
    });
    let st = c.ctl.cli(&["--output", "json", "cache", "status"]);
    assert_eq!(st.status.code(), Some(1), "no cache is not a healthy cache");
    let st: Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(st["installed"], false, "{st}");
}

/// A node's own connection to the CacheAgent service, with its credential.
async fn cache_agent(
    e: &clustermgr_tests::fake_peer::Enrolled,
) -> clustermgr_proto::cache_agent_client::CacheAgentClient<tonic::transport::Channel> {
    let tls =
        clustermgr_shared::tls::client_config(&e.ca_pem, Some((&e.cert_pem, &e.key_pem))).unwrap();
    let ch = clustermgr_shared::dial::connect(&e.controller, tls, Default::default())
        .await
        .unwrap();
    clustermgr_proto::cache_agent_client::CacheAgentClient::new(ch)
}

fn openssl_verify(dir: &Path, ca: &str, cert: &str, purpose: &str) -> Result<(), String> {
    std::fs::write(dir.join("v-ca.pem"), ca).unwrap();
    std::fs::write(dir.join("v-cert.pem"), cert).unwrap();
    let o = Command::new("openssl")
        .args([
            "verify",
            "-purpose",
            purpose,
            "-CAfile",
            "v-ca.pem",
            "v-cert.pem",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", text(&o.stdout), text(&o.stderr)))
    }
}

#[test]
fn a_cache_certificate_is_issued_only_for_the_nodes_own_running_stunnel_job() {
    use clustermgr_proto::{
        AgentMessage, ConfigureRedisOutput, Inventory, IssueCacheCertificateRequest, JobResult,
        OperationOutput, job_event, operation, operation_output,
    };
    use clustermgr_tests::Controller;
    use clustermgr_tests::fake_peer::Enrollment;
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let pw = ctl.dir.path().join("ldap-pw");
    std::fs::write(&pw, "Adm1n-Passw0rd").unwrap();
    ctl.cli_ok(&[
        "cluster",
        "configure",
        "--ldap-admin-password-file",
        pw.to_str().unwrap(),
    ]);
    let enroll = |name: &str, role: &str| Enrollment {
        controller: ctl.addr.clone(),
        pin: ctl.pin.clone(),
        token: ctl.token(role),
        hostname: name.into(),
        bind: None,
    };
    let (cache_e, gluu_e) = (
        enroll("cache-fake", "cache"),
        enroll("gluu-fake", "gluu-node"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        clustermgr_shared::tls::install_crypto_provider();
        let cache_e = cache_e.enroll().await.unwrap();
        let gluu_e = gluu_e.enroll().await.unwrap();
        let inv = |e: &clustermgr_tests::fake_peer::Enrolled, a: &str| Inventory {
            hostname: e.hostname.clone(),
            addresses: vec![a.into()],
            ..Default::default()
        };
        let mut cache = cache_e.connect(inv(&cache_e, "127.0.0.1")).await.unwrap();
        let mut gluu = gluu_e.connect(inv(&gluu_e, "127.0.0.1")).await.unwrap();
        ctl.cli_ok(&["server", "add", "gluu-fake"]);
        // Nothing to remove or re-password yet; the LDAP cache setting keeps Redis out.
        for args in [&["cache", "remove"][..], &["cache", "password", "clear"]] {
            let o = ctl.cli(args);
            assert_eq!(o.status.code(), Some(2), "{args:?}");
            assert!(
                text(&o.stderr).contains("no cache is installed"),
                "{}",
                text(&o.stderr)
            );
        }
        ctl.cli_ok(&["cluster", "configure", "--ldap-cache"]);
        let o = ctl.cli(&["cache", "install", "cache-fake"]);
        assert_eq!(o.status.code(), Some(2));
        assert!(
            text(&o.stderr).contains("LDAP cache"),
            "{}",
            text(&o.stderr)
        );
        ctl.cli_ok(&["cluster", "configure", "--ldap-cache", "false"]);
        ctl.cli_ok(&["cache", "install", "cache-fake", "--detach"]);
        // Every node first looks for its programs (all present: no package step runs).
        let programs = |job: &clustermgr_proto::JobRequest| {
            let Some(operation::Kind::CacheStatus(c)) =
                job.operation.as_ref().and_then(|o| o.kind.clone())
            else {
                panic!("not a program check: {job:?}");
            };
            assert!(!c.programs.is_empty(), "{c:?}");
            AgentMessage::job_event(
                &job.job_id,
                job_event::Event::Result(JobResult {
                    success: true,
                    output: Some(OperationOutput {
                        kind: Some(operation_output::Kind::CacheStatus(Default::default())),
                    }),
                    ..Default::default()
                }),
            )
        };
        let job = cache.next_job().await.unwrap();
        cache.send(programs(&job)).await.unwrap();
        let job = gluu.next_job().await.unwrap();
        gluu.send(programs(&job)).await.unwrap();
        // The cache host: redis first (answered), then its stunnel server job.
        let redis = cache.next_job().await.unwrap();
        assert!(matches!(
            redis.operation.as_ref().and_then(|o| o.kind.as_ref()),
            Some(operation::Kind::ConfigureRedis(_))
        ));
        cache
            .send(AgentMessage::job_event(
                &redis.job_id,
                job_event::Event::Result(JobResult {
                    success: true,
                    output: Some(OperationOutput {
                        kind: Some(operation_output::Kind::ConfigureRedis(
                            ConfigureRedisOutput {
                                running: true,
                                ..Default::default()
                            },
                        )),
                    }),
                    ..Default::default()
                }),
            ))
            .await
            .unwrap();
        let server_job = cache.next_job().await.unwrap();
        let Some(operation::Kind::ConfigureStunnel(s)) =
            server_job.operation.as_ref().and_then(|o| o.kind.clone())
        else {
            panic!("not a stunnel job: {server_job:?}");
        };
        assert_eq!(s.job_id, server_job.job_id, "the job names itself");
        let client_job = gluu.next_job().await.unwrap();
        let req = |job: &str| {
            let (_key, csr) = clustermgr_shared::pki::new_key_and_csr("x").unwrap();
            IssueCacheCertificateRequest {
                job_id: job.into(),
                csr_der: csr,
            }
        };
        let mut cache_c = cache_agent(&cache_e).await;
        let mut gluu_c = cache_agent(&gluu_e).await;
        // Another node cannot get one for the cache host's job; nor anyone for no job, or for
        // a job of another kind.
        for (mut c, job) in [
            (gluu_c.clone(), server_job.job_id.as_str()),
            (cache_c.clone(), "nojob"),
            (cache_c.clone(), redis.job_id.as_str()),
        ] {
            let e = c.issue_certificate(req(job)).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied, "{job}: {e:?}");
        }
        // Its own running stunnel job: a server certificate from the cache CA, which is not
        // the cluster CA.
        let own = cache_c
            .issue_certificate(req(&server_job.job_id))
            .await
            .unwrap()
            .into_inner();
        assert_ne!(own.ca_pem.trim(), ctl.ca_cert_pem().trim());
        openssl_verify(tmp.path(), &own.ca_pem, &own.certificate_pem, "sslserver").unwrap();
        assert!(
            openssl_verify(tmp.path(), &own.ca_pem, &cache_e.cert_pem, "sslclient").is_err(),
            "the agent's identity must not verify against the cache CA"
        );
        let client = gluu_c
            .issue_certificate(req(&client_job.job_id))
            .await
            .unwrap()
            .into_inner();
        openssl_verify(
            tmp.path(),
            &client.ca_pem,
            &client.certificate_pem,
            "sslclient",
        )
        .unwrap();
        assert!(
            openssl_verify(
                tmp.path(),
                &client.ca_pem,
                &client.certificate_pem,
                "sslserver"
            )
            .is_err(),
            "a Gluu node's certificate cannot act as the cache server"
        );
        // Once the job has ended, its id opens nothing.
        cache
            .send(AgentMessage::job_event(
                &server_job.job_id,
                job_event::Event::Result(JobResult {
                    success: false,
                    error: "stopped by the test".into(),
                    ..Default::default()
                }),
            ))
            .await
            .unwrap();
        eventually(Duration::from_secs(10), "the job ended", || {
            let j = ctl.json(&["job", "show", &server_job.job_id]);
            if j["state"] == "failed" {
                Ok(())
            } else {
                Err(j.to_string())
            }
        });
        let e = cache_c
            .issue_certificate(req(&server_job.job_id))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");

        // A server that never replicated, removed: its twemproxy and stunnel client go at
        // once (cache-detach), nothing else is asked of it.
        gluu.send(AgentMessage::job_event(
            &client_job.job_id,
            job_event::Event::Result(JobResult {
                success: false,
                error: "stopped by the test".into(),
                ..Default::default()
            }),
        ))
        .await
        .unwrap();
        eventually(Duration::from_secs(10), "the install ended", || {
            let w = ctl.json(&["workflow", "list", "--limit", "1"]);
            if w[0]["status"] == "failed" {
                Ok(())
            } else {
                Err(w.to_string())
            }
        });
        ctl.cli_ok(&["server", "remove", "gluu-fake"]);
        let mut removed = Vec::new();
        for _ in 0..2 {
            let job = gluu.next_job().await.unwrap();
            match job.operation.as_ref().and_then(|o| o.kind.clone()) {
                Some(operation::Kind::ConfigureNutcracker(n)) if n.remove => {
                    removed.push("nutcracker")
                }
                Some(operation::Kind::ConfigureStunnel(s))
                    if s.remove
                        && s.mode() == clustermgr_proto::configure_stunnel::Mode::Client =>
                {
                    removed.push("stunnel-client")
                }
                other => panic!("not a removal: {other:?}"),
            }
            gluu.send(AgentMessage::job_event(
                &job.job_id,
                job_event::Event::Result(JobResult {
                    success: true,
                    ..Default::default()
                }),
            ))
            .await
            .unwrap();
        }
        assert_eq!(removed, ["nutcracker", "stunnel-client"]);
        eventually(Duration::from_secs(10), "the detach succeeded", || {
            let w = ctl.json(&["workflow", "list", "--limit", "1"]);
            if w[0]["kind"] == "cache-detach" && w[0]["status"] == "succeeded" {
                Ok(())
            } else {
                Err(w.to_string())
            }
        });
    });
}

/// The live pid in a sandbox daemon's pid file under `root`, if any.
fn daemon_pid(root: &Path, name: &str) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(root.join(format!("run/clustermgr/{name}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    clustermgr_procfs::alive(pid).then_some(pid)
}

fn nutcracker_conf(node: &Node) -> Option<String> {
    std::fs::read_to_string(node.agent.root.join("etc/nutcracker/nutcracker.yml")).ok()
}

fn token_keys(cache: &Agent, password: &str) -> usize {
    redis_cli(cache, password, &["--scan", "--pattern", "oxauth_token_*"])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

#[test]
fn two_cache_hosts_are_sharded_by_twemproxy_on_every_gluu_node_and_a_removed_server_loses_it() {
    let c = Cluster::new(2, HTTPS_PORT);
    let out = c.ctl.cli(&["gluu", "install", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = c.ctl.cli(&["replication", "deploy", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut caches = Vec::new();
    for i in 1..=2 {
        let mut a = Agent::new(&format!("cache{i}.cluster.test"));
        a.join(&c.ctl, "cache");
        a.start();
        c.ctl.wait_status(&a.node_id, "online");
        caches.push(a);
    }
    let mut roots: Vec<PathBuf> = caches.iter().map(|a| a.root.clone()).collect();
    roots.extend(c.nodes.iter().map(|n| n.agent.root.clone()));
    let _daemons = Daemons(roots);
    let [g1, g2] = [&c.nodes[0], &c.nodes[1]];
    let [c1, c2] = [&caches[0], &caches[1]];
    let wf_failed = |out: &std::process::Output| {
        format!(
            "{}\n{}",
            text(&out.stderr),
            c.ctl
                .cli_ok(&["--output", "json", "workflow", "list", "--limit", "1"])
        )
    };

    // One Redis server: no twemproxy.
    let out = c.ctl.cli(&["cache", "install", &c1.hostname]);
    assert_eq!(out.status.code(), Some(0), "{}", wf_failed(&out));
    for n in [g1, g2] {
        assert!(nutcracker_conf(n).is_none(), "twemproxy with one server");
    }
    // While a cache is installed, the LDAP cache setting is refused.
    let o = c.ctl.cli(&["cluster", "configure", "--ldap-cache"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("cache remove") && text(&o.stderr).contains(&c1.hostname),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(
        c.ctl.json(&["cluster", "show"])["ldap_cache"],
        Value::Bool(false),
        "the setting stayed off"
    );

    // A second Redis server added later: every Gluu node gets twemproxy over both, sharded
    // with the reference's settings, and Gluu uses it.
    let out = c.ctl.cli(&["cache", "install", &c2.hostname]);
    assert_eq!(out.status.code(), Some(0), "{}", wf_failed(&out));
    for n in [g1, g2] {
        let conf = nutcracker_conf(n).expect("nutcracker.yml");
        for want in [
            format!("listen: {}:2222", address(n)),
            "hash: fnv1a_64".into(),
            "distribution: ketama".into(),
            "auto_eject_hosts: true".into(),
            "redis: true".into(),
            "server_retry_timeout: 30000".into(),
            "server_failure_limit: 2".into(),
            "timeout: 400".into(),
            format!("- {}:7001:1", address(n)),
            format!("- {}:7002:1", address(n)),
        ] {
            assert!(conf.contains(&want), "{want} not in\n{conf}");
        }
        let pid = daemon_pid(&n.agent.root, "nutcracker").expect("nutcracker runs");
        // The agent's allocator settings are its own: a daemon it starts does not inherit them.
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(
            !environ
                .split(|b| *b == 0)
                .any(|v| v.starts_with(b"GLIBC_TUNABLES=") || v.starts_with(b"CLUSTERMGR_AGENT_")),
            "nutcracker (pid {pid}) inherited the agent's allocator settings"
        );
        let stunnel = std::fs::read_to_string(
            n.agent
                .root
                .join("etc/stunnel/clustermgr-redis-client.conf"),
        )
        .unwrap();
        for cache in [c1, c2] {
            assert!(
                stunnel.contains(&format!("connect = {}:16379", cache.address)),
                "{stunnel}"
            );
        }
        let conf = cache_configuration(n);
        assert!(conf.contains(&format!("{}:2222", address(g1))), "{conf}");
    }
    let password = redis_password(c1).expect("requirepass");
    assert_eq!(redis_password(c2).as_deref(), Some(password.as_str()));

    // Tokens issued on one node introspect on the other, and land on both shards.
    let mut issued = 0;
    while issued < 40 && (token_keys(c1, &password) == 0 || token_keys(c2, &password) == 0) {
        let t = token_on(if issued % 2 == 0 { g1 } else { g2 });
        let other = if issued % 2 == 0 { g2 } else { g1 };
        assert!(active_on(other, &t), "token {issued} not active elsewhere");
        issued += 1;
    }
    assert!(
        token_keys(c1, &password) > 0 && token_keys(c2, &password) > 0,
        "after {issued} tokens the keys are not on both shards"
    );

    let st = c.ctl.json(&["cache", "status"]);
    assert_eq!(st["healthy"], true, "{st}");
    let gluu: Vec<&Value> = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["role"] == "gluu")
        .collect();
    assert_eq!(gluu.len(), 2, "{st}");
    for n in gluu {
        assert_eq!(n["nutcracker_running"], true, "{n}");
    }

    // Removing a Gluu server drops its twemproxy and stunnel client (and their keys).
    let g2_pid = daemon_pid(&g2.agent.root, "nutcracker").unwrap();
    c.ctl.cli_ok(&["server", "remove", &g2.agent.hostname]);
    let detach = eventually(Duration::from_secs(60), "the cache-detach workflow", || {
        let w = c
            .ctl
            .json(&["workflow", "list", "--limit", "20"])
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["kind"] == "cache-detach")
            .cloned()
            .ok_or("no cache-detach workflow")?;
        if w["status"] == "succeeded" {
            Ok(w["id"].as_str().unwrap_or_default().to_string())
        } else {
            Err(w.to_string())
        }
    });
    let detach_logs = || {
        let wf = c.workflow(&detach);
        let mut out = wf.to_string();
        for n in wf["nodes"].as_array().unwrap() {
            for s in n["steps"].as_array().unwrap() {
                if let Some(j) = s["job_id"].as_str().filter(|j| !j.is_empty()) {
                    out.push_str(&text(&c.ctl.cli(&["job", "logs", j]).stdout));
                }
            }
        }
        out
    };
    assert!(nutcracker_conf(g2).is_none(), "nutcracker.yml kept");
    assert!(
        !clustermgr_procfs::alive(g2_pid),
        "nutcracker runs: {}",
        detach_logs()
    );
    for ext in ["conf", "key", "crt"] {
        let f = g2
            .agent
            .root
            .join(format!("etc/stunnel/clustermgr-redis-client.{ext}"));
        assert!(!f.exists(), "{} kept", f.display());
    }
    assert!(daemon_pid(&g2.agent.root, "clustermgr-redis-client").is_none());
    // The remaining node still serves through its own twemproxy; status no longer asks g2.
    assert!(daemon_pid(&g1.agent.root, "nutcracker").is_some());
    let t = token_on(g1);
    assert!(active_on(g1, &t));
    let st = c.ctl.json(&["cache", "status"]);
    assert_eq!(st["healthy"], true, "{st}");
    assert!(
        !st.to_string().contains(&g2.agent.hostname),
        "the removed server is still asked: {st}"
    );

    // A new password reaches both Redis servers and the remaining twemproxy.
    let out = c.ctl.cli(&["cache", "password", "set"]);
    assert_eq!(out.status.code(), Some(0), "{}", wf_failed(&out));
    let second = redis_password(c1).unwrap();
    assert_ne!(second, password);
    assert_eq!(redis_password(c2).as_deref(), Some(second.as_str()));
    let conf = nutcracker_conf(g1).unwrap();
    assert!(
        conf.contains(&format!("redis_auth: \"{second}\"")),
        "{conf}"
    );
    let t = token_on(g1);
    assert!(active_on(g1, &t));

    // Removal: twemproxy goes with the rest.
    let out = c.ctl.cli(&["cache", "remove"]);
    assert_eq!(out.status.code(), Some(0), "{}", wf_failed(&out));
    assert!(nutcracker_conf(g1).is_none());
    assert!(daemon_pid(&g1.agent.root, "nutcracker").is_none());
    assert!(cache_configuration(g1).contains("NATIVE_PERSISTENCE"));
}
