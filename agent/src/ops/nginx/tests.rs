use super::*;
use crate::host::{Host, PackageMode, Runner};
use crate::ops::daemon;
use crate::ops::tests::{ctx_with, log};
use clustermgr_proto::LbBackend;
use nix::sys::signal::Signal;
use std::path::PathBuf;

fn req(backends: &[(&str, &str)], balancing: OxauthBalancing) -> ConfigureNginx {
    ConfigureNginx {
        server_name: "idp.example.org".into(),
        backends: backends
            .iter()
            .map(|(a, n)| LbBackend {
                address: a.to_string(),
                port: 8443,
                name: n.to_string(),
            })
            .collect(),
        oxauth_balancing: balancing as i32,
        listen_address: "127.0.0.1".into(),
        https_port: 8443,
        http_port: 8080,
        certificate_pem: String::new(),
        key_pem: Vec::new(),
        drained: Vec::new(),
    }
}

/// A sandbox host's context rooted at `root` (real commands).
pub(super) fn sandbox_ctx(root: &Path) -> Ctx {
    ctx_with(Host {
        root: root.to_path_buf(),
        packages: PackageMode::UnderRoot,
        format: None,
        runner: Runner::Real,
        proc: std::path::PathBuf::from("/proc"),
    })
}

fn sandbox_layout(root: &Path) -> Layout {
    Layout::of(&Host {
        root: root.to_path_buf(),
        packages: PackageMode::UnderRoot,
        format: None,
        runner: Runner::Real,
        proc: std::path::PathBuf::from("/proc"),
    })
}

/// The upstream block named `name` in `text`.
fn upstream<'a>(text: &'a str, name: &str) -> &'a str {
    let start = text.find(&format!("upstream {name} {{")).unwrap();
    let end = start + text[start..].find('}').unwrap();
    &text[start..end]
}

#[test]
fn the_template_routes_sticky_paths_and_balances_oxauth_as_chosen() {
    let l = sandbox_layout(Path::new("/srv/lb"));
    let backends = [
        ("10.0.0.1", "gluu1.example.org"),
        ("fd00::2", "gluu2.example.org"),
    ];
    let sticky = render(TEMPLATE, &req(&backends, OxauthBalancing::Sticky), &l, "7").unwrap();
    let rr = render(
        TEMPLATE,
        &req(&backends, OxauthBalancing::RoundRobin),
        &l,
        "7",
    )
    .unwrap();
    assert!(sticky.starts_with(&format!("# {MARKER}")));
    // A drain's wait for the old workers is bounded by nginx itself, below the drain's own.
    assert!(
        sticky.contains("\nworker_shutdown_timeout 90s;\n"),
        "{sticky}"
    );
    for t in [&sticky, &rr] {
        let id = upstream(t, "backend_id");
        assert!(id.contains("ip_hash;"), "{id}");
        assert!(id.contains("server 10.0.0.1:8443 max_fails=2 fail_timeout=10s;"));
        assert!(id.contains("server [fd00::2]:8443 max_fails=2 fail_timeout=10s;"));
        for p in STICKY_PATHS {
            assert!(
                t.contains(&format!(
                    "location {p} {{\n            proxy_pass https://backend_id;"
                )),
                "{p}: {t}"
            );
        }
        for p in OXAUTH_PATHS {
            assert!(
                t.contains(&format!(
                    "location {p} {{\n            proxy_pass https://backend;"
                )),
                "{p}"
            );
        }
        assert!(t.contains("location = / {\n            return 302 /identity;"));
        assert!(t.contains("listen 127.0.0.1:8080;"));
        assert!(t.contains("return 301 https://idp.example.org:8443$request_uri;"));
        assert!(t.contains("listen 127.0.0.1:8443 ssl;"));
        assert!(t.contains("ssl_certificate /srv/lb/etc/nginx/ssl/clustermgr-7.crt;"));
        assert!(t.contains("ssl_certificate_key /srv/lb/etc/nginx/ssl/clustermgr-7.key;"));
        assert!(t.contains(
            "proxy_next_upstream error timeout invalid_header http_500 http_502 http_503 http_504;"
        ));
        assert!(t.contains("proxy_connect_timeout 2;"));
        assert!(t.contains("pid /srv/lb/run/clustermgr/nginx.pid;"));
        assert!(t.contains("proxy_temp_path /srv/lb/var/lib/nginx/proxy;"));
        assert!(
            t.contains("backend gluu2.example.org [fd00::2]:8443\\n"),
            "{t}"
        );
        assert!(t.contains("worker_connections 6500;") && t.contains("server_tokens off;"));
    }
    assert!(upstream(&sticky, "backend").contains("ip_hash;"));
    assert!(!upstream(&rr, "backend").contains("ip_hash;"), "{rr}");
    // On 443 the redirect names no port.
    let mut r = req(&backends, OxauthBalancing::Sticky);
    r.https_port = 443;
    r.http_port = 80;
    let t = render(TEMPLATE, &r, &l, "7").unwrap();
    assert!(t.contains("return 301 https://idp.example.org$request_uri;"));
}

#[test]
fn values_that_could_change_the_configuration_are_refused() {
    let l = sandbox_layout(Path::new("/srv/lb"));
    let ok = || req(&[("10.0.0.1", "gluu1")], OxauthBalancing::Sticky);
    let cases: Vec<(&str, ConfigureNginx)> = vec![
        (
            "server name",
            ConfigureNginx {
                server_name: "idp.example.org; include /etc/x".into(),
                ..ok()
            },
        ),
        (
            "server name",
            ConfigureNginx {
                server_name: "a}b".into(),
                ..ok()
            },
        ),
        (
            "no backend",
            ConfigureNginx {
                backends: vec![],
                ..ok()
            },
        ),
        (
            "backend address",
            req(&[("gluu1.example.org", "gluu1")], OxauthBalancing::Sticky),
        ),
        (
            "backend address",
            req(&[("10.0.0.1:80 backup", "gluu1")], OxauthBalancing::Sticky),
        ),
        (
            "backend name",
            req(&[("10.0.0.1", "a\"b")], OxauthBalancing::Sticky),
        ),
        (
            "listen",
            ConfigureNginx {
                listen_address: "0.0.0.0:1".into(),
                ..ok()
            },
        ),
        (
            "port",
            ConfigureNginx {
                https_port: 0,
                ..ok()
            },
        ),
        (
            "port",
            ConfigureNginx {
                http_port: 70000,
                ..ok()
            },
        ),
        (
            "same port",
            ConfigureNginx {
                http_port: 8443,
                ..ok()
            },
        ),
    ];
    for (what, r) in cases {
        assert!(render(TEMPLATE, &r, &l, "1").is_err(), "{what}");
    }
    assert!(render(TEMPLATE, &ok(), &l, "1").is_ok());
}

fn self_signed(name: &str) -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec![name.to_string(), "127.0.0.1".into()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

fn free_port() -> u32 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port() as u32
}

/// Real nginx on a sandbox root: configured, reconfigured with a key that does not match its
/// certificate (nginx -t fails: the running configuration keeps serving), removed.
// Long: one real nginx's life in order (each stage starts from the state the previous left).
#[tokio::test]
async fn a_failing_check_keeps_the_running_configuration() {
    if !Path::new(NGINX).exists() {
        panic!("{NGINX} is needed by this test");
    }
    let dir = tempfile::tempdir().unwrap();
    let host = Host {
        root: dir.path().to_path_buf(),
        packages: PackageMode::UnderRoot,
        format: None,
        runner: Runner::Real,
        proc: std::path::PathBuf::from("/proc"),
    };
    let ctx = ctx_with(host);
    // nginx stops with the test, whatever happens.
    struct Stop(PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            if let Some(pid) = std::fs::read_to_string(&self.0)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
    }
    let _stop = Stop(daemon::pid_file(&ctx.host, "nginx"));
    let (mut l, _rx) = log();
    let (cert, key) = self_signed("idp.example.org");
    let mut r = req(&[("127.0.0.1", "gluu1")], OxauthBalancing::Sticky);
    r.https_port = free_port();
    r.http_port = free_port();
    r.certificate_pem = cert.clone();
    r.key_pem = key.clone().into_bytes();
    let out = configure(&ctx, r.clone(), &mut l).await.unwrap();
    assert!(out.changed && out.started);
    let layout = Layout::of(&ctx.host);
    let applied = read_applied(&layout).unwrap();
    let key_file = layout.key(&applied.generation);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let running = std::fs::read_to_string(&layout.conf).unwrap();
    let tls = tls_for(&layout, &applied).unwrap();
    let ping = || {
        let tls = tls.clone();
        let a = applied.clone();
        async move {
            get(
                tls,
                "127.0.0.1",
                a.https_port,
                "idp.example.org",
                "/clustermgrping",
            )
            .await
        }
    };
    assert_eq!(ping().await, Ok(200));
    // Again, the same: nothing changes.
    let again = configure(&ctx, r.clone(), &mut l).await.unwrap();
    assert!(!again.changed);
    // A key of another certificate (RSA for an EC certificate passes nginx -t) and a
    // broken template of the operator's (nginx -t refuses it): refused, and the running
    // configuration keeps serving.
    let (_, other_ec) = self_signed("other.example.org");
    let other_rsa = {
        let o = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    let custom = ctx.host.path(TEMPLATE_OVERRIDE);
    for (what, key, template) in [
        ("an EC key of another certificate", other_ec, None),
        ("an RSA key", other_rsa, None),
        (
            "a broken template",
            key.clone(),
            Some(TEMPLATE.replace("keepalive_timeout 65;", "keepalive_timeout 65 bogus;")),
        ),
    ] {
        if let Some(t) = &template {
            std::fs::create_dir_all(custom.parent().unwrap()).unwrap();
            std::fs::write(&custom, t).unwrap();
        }
        let mut bad = r.clone();
        bad.key_pem = key.into_bytes();
        bad.backends.push(LbBackend {
            address: "127.0.0.9".into(),
            port: 8443,
            name: "gluu9".into(),
        });
        let e = configure(&ctx, bad, &mut l).await.unwrap_err();
        if template.is_some() {
            assert!(
                e.0.contains("nginx -t") && e.0.contains("keepalive_timeout"),
                "{e}"
            );
            std::fs::remove_file(&custom).unwrap();
        } else {
            assert!(
                e.0.contains("does not belong to the certificate"),
                "{what}: {e}"
            );
        }
        assert!(!e.0.contains("PRIVATE KEY"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&layout.conf).unwrap(),
            running,
            "{what}"
        );
        assert_eq!(read_applied(&layout).unwrap(), applied);
        assert!(!layout.candidate().exists());
        assert_eq!(std::fs::read_dir(&layout.ssl).unwrap().count(), 2, "{what}");
        assert_eq!(
            ping().await,
            Ok(200),
            "{what}: the old configuration still serves"
        );
    }
    let st = status(&ctx, NginxStatus {}, &mut l).await.unwrap();
    assert!(
        st.configured && st.running && st.backends.len() == 1,
        "{st:?}"
    );
    let gone = remove(&ctx, RemoveNginx {}, &mut l).await.unwrap();
    assert!(gone.was_running);
    assert!(!layout.conf.exists() && !key_file.exists());
    assert!(ping().await.is_err());
}

#[test]
fn a_drained_backend_is_marked_down_in_both_upstreams_and_the_trust_can_be_a_bundle() {
    let l = sandbox_layout(Path::new("/srv/lb"));
    let backends = [("10.0.0.1", "gluu1"), ("10.0.0.2", "gluu2")];
    let mut r = req(&backends, OxauthBalancing::Sticky);
    r.drained = vec!["gluu2".into()];
    let bundle = Path::new("/srv/lb/etc/nginx/ssl/clustermgr-trust-0123.pem");
    let t = render_trusting(TEMPLATE, &r, &l, "7", bundle).unwrap();
    for name in ["backend_id", "backend"] {
        let u = upstream(&t, name);
        assert!(
            u.contains("server 10.0.0.1:8443 max_fails=2 fail_timeout=10s;"),
            "{u}"
        );
        assert!(
            u.contains("server 10.0.0.2:8443 max_fails=2 fail_timeout=10s down;"),
            "{u}"
        );
    }
    assert!(t.contains("backend gluu2 10.0.0.2:8443 down\\n"), "{t}");
    assert!(t.contains(&format!(
        "proxy_ssl_trusted_certificate {};",
        bundle.display()
    )));
    // Retried on the next backend, POSTs only when nothing was sent (no non_idempotent).
    let retry = t
        .lines()
        .find(|l| l.trim_start().starts_with("proxy_next_upstream "))
        .unwrap();
    assert!(retry.contains("error timeout") && !retry.contains("non_idempotent"));
    // Without a bundle the balancer trusts its own certificate.
    r.drained.clear();
    let t = render(TEMPLATE, &r, &l, "7").unwrap();
    assert!(!t.contains(" down;"));
    assert!(t.contains(&format!(
        "proxy_ssl_trusted_certificate {};",
        l.cert("7").display()
    )));
}

#[test]
fn an_operators_template_that_cannot_mark_a_backend_down_is_refused_for_a_drain() {
    let l = sandbox_layout(Path::new("/srv/lb"));
    let own = TEMPLATE.replace(r#"{{ " down" if b.down else "" }}"#, "");
    let mut r = req(
        &[("10.0.0.1", "gluu1"), ("10.0.0.2", "gluu2")],
        OxauthBalancing::Sticky,
    );
    assert!(render(&own, &r, &l, "7").is_ok());
    r.drained = vec!["gluu1".into()];
    let e = render(&own, &r, &l, "7").unwrap_err();
    assert!(
        e.0.contains("cannot take a node out of rotation"),
        "{}",
        e.0
    );
}

/// The check of an operator's template looks at each drained backend's own `server` lines: a
/// template that marks it down in one upstream only, or holds " down;" elsewhere (a comment),
/// or marks the wrong backend down, is refused; the built-in one passes.
#[test]
fn a_template_must_mark_the_drained_backend_down_in_every_upstream() {
    let l = sandbox_layout(Path::new("/srv/lb"));
    let mut r = req(
        &[("10.0.0.1", "gluu1"), ("10.0.0.2", "gluu2")],
        OxauthBalancing::Sticky,
    );
    r.drained = vec!["gluu2".into()];
    let mark = r#"{{ " down" if b.down else "" }}"#;
    assert!(render(TEMPLATE, &r, &l, "7").is_ok());
    let first = TEMPLATE.find(mark).unwrap() + mark.len();
    let one_upstream = format!(
        "{}{}",
        &TEMPLATE[..first],
        TEMPLATE[first..].replace(mark, "")
    );
    let comment_only = format!(
        "{}\n# every server line could end in down;\n",
        TEMPLATE.replace(mark, "")
    );
    let wrong_one = TEMPLATE.replace(mark, r#"{{ "" if b.down else " down" }}"#);
    // A template naming its servers by host name is checked by name.
    let by_name = TEMPLATE.replace("server {{ b.hostport }}", "server {{ b.name }}:8443");
    assert!(render(&by_name, &r, &l, "7").is_ok());
    let by_name_one = format!(
        "{}{}",
        &by_name[..by_name.find(mark).unwrap() + mark.len()],
        by_name[by_name.find(mark).unwrap() + mark.len()..].replace(mark, "")
    );
    for (what, t) in [
        ("one upstream", one_upstream),
        ("a comment", comment_only),
        ("the wrong backend", wrong_one),
        ("one upstream, by name", by_name_one),
    ] {
        let e = render(&t, &r, &l, "7").unwrap_err();
        assert!(e.0.contains("gluu"), "{what}: {}", e.0);
    }
}

/// A backend whose address is not an IP is checked too (by its address as written and by its
/// name): a configuration that never marks it down is refused for its drain.
#[test]
fn a_backend_addressed_by_name_is_checked_for_its_down_mark() {
    let mut r = req(&[("10.0.0.1", "gluu1")], OxauthBalancing::Sticky);
    r.backends[0].address = "gluu1.example.org".into();
    r.backends[0].port = 8443;
    r.drained = vec!["gluu1".into()];
    let unmarked = "upstream a {\n  server gluu1.example.org:8443;\n}\n";
    let e = check_down_marks(unmarked, &r).unwrap_err();
    assert!(e.0.contains("gluu1"), "{}", e.0);
    let marked = "upstream a {\n  server gluu1.example.org:8443 down;\n}\n";
    assert!(check_down_marks(marked, &r).is_ok());
    // No line names it at all: refused as well.
    assert!(check_down_marks("upstream a {\n}\n", &r).is_err());
}

/// A configuration carrying a stale list of drained backends (lb install, a server added)
/// cannot put a draining node back: the balancer keeps its own list, and drops a name only
/// with its rejoin or when the backend leaves the configuration.
#[test]
fn a_reconfiguration_keeps_the_balancers_own_drained_backends() {
    let dir = tempfile::tempdir().unwrap();
    let l = sandbox_layout(dir.path());
    std::fs::create_dir_all(&l.dir).unwrap();
    std::fs::write(&l.conf, format!("# {MARKER}\n")).unwrap();
    let applied = Applied {
        server_name: "idp.example.org".into(),
        backends: vec![
            ("10.0.0.1".into(), 8443, "gluu1".into()),
            ("10.0.0.2".into(), 8443, "gluu2".into()),
            ("10.0.0.3".into(), 8443, "gluu3".into()),
        ],
        sticky_oxauth: true,
        listen_address: "127.0.0.1".into(),
        https_port: 8443,
        http_port: 8080,
        generation: "7".into(),
        drained: vec!["gluu2".into(), "gluu3".into()],
        also_trust: Vec::new(),
    };
    std::fs::write(&l.state, serde_json::to_vec(&applied).unwrap()).unwrap();
    let (mut lg, _rx) = log();
    // gluu3 leaves the configuration; the request names nothing drained.
    let mut r = req(
        &[("10.0.0.1", "gluu1"), ("10.0.0.2", "gluu2")],
        OxauthBalancing::Sticky,
    );
    keep_drained(&l, &mut r, &mut lg);
    assert_eq!(r.drained, vec!["gluu2".to_string()]);
    let t = render(TEMPLATE, &r, &l, "7").unwrap();
    assert!(
        t.contains("server 10.0.0.2:8443 max_fails=2 fail_timeout=10s down;"),
        "{t}"
    );
}

/// A rejoin waiting for its node holds neither the node's exclusive lock (it is not an
/// exclusive kind) nor the balancer's configuration lock: an lb reconfiguration is not held
/// up for the minutes a node may take to become ready.
#[tokio::test]
async fn a_rejoin_waits_for_its_node_without_holding_a_lock() {
    assert!(!clustermgr_proto::OpName::SetBackendRotation.exclusive());
    let dir = tempfile::tempdir().unwrap();
    let ctx = sandbox_ctx(dir.path());
    let l = Layout::of(&ctx.host);
    std::fs::create_dir_all(&l.ssl).unwrap();
    std::fs::write(&l.conf, format!("# {MARKER}\n")).unwrap();
    let (cert, key) = self_signed("idp.example.org");
    std::fs::write(l.cert("7"), cert).unwrap();
    std::fs::write(l.key("7"), key).unwrap();
    let port = free_port();
    let applied = Applied {
        server_name: "idp.example.org".into(),
        backends: vec![
            ("127.0.0.1".into(), port, "gluu1".into()),
            ("127.0.0.1".into(), free_port(), "gluu2".into()),
        ],
        sticky_oxauth: true,
        listen_address: "127.0.0.1".into(),
        https_port: 8443,
        http_port: 8080,
        generation: "7".into(),
        drained: vec!["gluu1".into()],
        also_trust: Vec::new(),
    };
    std::fs::write(&l.state, serde_json::to_vec(&applied).unwrap()).unwrap();
    let (mut lg, mut rx) = log();
    let rejoin = tokio::spawn(async move {
        set_backend_rotation(
            &ctx,
            clustermgr_proto::SetBackendRotation {
                name: "gluu1".into(),
                in_rotation: true,
                ready_paths: vec!["/ready".into()],
                within_ms: 60_000,
                ..Default::default()
            },
            &mut lg,
        )
        .await
    });
    // The rejoin is waiting once it reported the node not ready.
    loop {
        let (_, line) = rx.recv().await.expect("the rejoin's log");
        if line.contains("not ready yet") {
            break;
        }
    }
    assert!(
        lock(&l).try_lock().is_ok(),
        "the configuration lock is held during the readiness wait"
    );
    rejoin.abort();
}

#[test]
fn a_state_recorded_before_drains_existed_still_reads() {
    let old = r#"{"server_name":"idp","backends":[["10.0.0.1",8443,"gluu1"]],
        "sticky_oxauth":true,"listen_address":"10.0.0.9","https_port":8443,"http_port":8080,
        "generation":"7"}"#;
    let a: Applied = serde_json::from_str(old).unwrap();
    assert!(a.drained.is_empty() && a.also_trust.is_empty());
}
