use super::*;
use crate::host::{Host, Runner};
use crate::ops::tests::{ctx_with, log};
use clustermgr_proto::{
    CacheStatus, ConfigureRedis, ConfigureStunnel, configure_stunnel, set_cache_configuration,
};

fn sandbox(root: &Path, address: &str) -> Ctx {
    let mut ctx = ctx_with(Host {
        root: root.to_path_buf(),
        packages: PackageMode::UnderRoot,
        format: None,
        runner: Runner::Real,
        proc: std::path::PathBuf::from("/proc"),
    });
    ctx.view.address = Some(address.to_string());
    ctx
}

#[test]
fn the_local_address_is_the_sandbox_hosts_own() {
    let d = tempfile::tempdir().unwrap();
    assert_eq!(local_address(&sandbox(d.path(), "127.0.0.3")), "127.0.0.3");
    let mut real = sandbox(d.path(), "10.0.0.5");
    real.host.packages = PackageMode::System;
    assert_eq!(local_address(&real), "127.0.0.1");
}

#[test]
fn redis_conf_quotes_the_password_and_keeps_state_under_the_root() {
    let d = tempfile::tempdir().unwrap();
    let ctx = sandbox(d.path(), "127.0.0.3");
    let c = redis_conf(&ctx, "127.0.0.3", 6379, &[r#"a"b\c d"#.to_string()]).unwrap();
    assert!(c.contains("bind 127.0.0.3\nport 6379\n"), "{c}");
    assert!(c.contains(r#"requirepass "a\"b\\c d""#), "{c}");
    assert!(c.contains("daemonize yes"));
    assert!(c.contains(&format!(
        "pidfile {}",
        d.path().join("run/clustermgr/redis.pid").display()
    )));
    assert!(
        !redis_conf(&ctx, "127.0.0.3", 6379, &[String::new()])
            .unwrap()
            .contains("requirepass")
    );
}

#[test]
fn stunnel_conf_verifies_both_ways_against_the_cache_ca() {
    let d = tempfile::tempdir().unwrap();
    let ctx = sandbox(d.path(), "127.0.0.10");
    let server = stunnel_conf(
        &ctx,
        "clustermgr-redis-server",
        false,
        &[Service {
            name: "redis".into(),
            accept: "127.0.0.3:16379".into(),
            connect: "127.0.0.3:6379".into(),
            check: None,
        }],
    )
    .unwrap();
    for want in [
        "verifyChain = yes",
        "requireCert = yes",
        "CAfile = ",
        "accept = 127.0.0.3:16379",
    ] {
        assert!(server.contains(want), "{want}: {server}");
    }
    assert!(!server.contains("client = yes"));
    let client = stunnel_conf(
        &ctx,
        "clustermgr-redis-client",
        true,
        &[
            Service {
                name: "redis1".into(),
                accept: "127.0.0.10:7001".into(),
                connect: "127.0.0.3:16379".into(),
                check: Some("127.0.0.3".into()),
            },
            Service {
                name: "redis2".into(),
                accept: "127.0.0.10:7002".into(),
                connect: "cache2.example.org:16379".into(),
                check: Some("cache2.example.org".into()),
            },
        ],
    )
    .unwrap();
    assert!(client.contains("client = yes"));
    assert!(client.contains("checkIP = 127.0.0.3"), "{client}");
    assert!(
        client.contains("checkHost = cache2.example.org"),
        "{client}"
    );
    assert_eq!(client.matches("verifyChain = yes").count(), 2);
}

#[test]
fn nutcracker_conf_has_the_reference_settings() {
    let c = nutcracker_conf(
        "127.0.0.1:2222",
        &["127.0.0.1:7001".into(), "127.0.0.1:7002".into()],
        "pw",
    );
    for want in [
        "listen: 127.0.0.1:2222",
        "hash: fnv1a_64",
        "distribution: ketama",
        "auto_eject_hosts: true",
        "redis: true",
        "redis_auth: \"pw\"",
        "server_retry_timeout: 30000",
        "server_failure_limit: 2",
        "timeout: 400",
        "   - 127.0.0.1:7001:1\n   - 127.0.0.1:7002:1\n",
    ] {
        assert!(c.contains(want), "{want}: {c}");
    }
    assert!(!nutcracker_conf("a:1", &["b:2".into()], "").contains("redis_auth"));
}

#[test]
fn cache_configuration_switches_provider_and_keeps_other_keys() {
    let current = r#"{"cacheProviderType":"NATIVE_PERSISTENCE","inMemoryConfiguration":{"defaultPutExpiration":60},"redisConfiguration":{"servers":"localhost:6379","defaultPutExpiration":60,"decryptedPassword":null}}"#;
    let r = cache_configuration(
        current,
        set_cache_configuration::Provider::Redis,
        "127.0.0.10:6379",
        "s3cret",
        false,
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&r).unwrap();
    assert_eq!(v["cacheProviderType"], "REDIS");
    assert_eq!(v["redisConfiguration"]["servers"], "127.0.0.10:6379");
    assert_eq!(v["redisConfiguration"]["decryptedPassword"], "s3cret");
    assert_eq!(v["redisConfiguration"]["redisProviderType"], "STANDALONE");
    assert_eq!(v["redisConfiguration"]["defaultPutExpiration"], 60);
    assert_eq!(v["inMemoryConfiguration"]["defaultPutExpiration"], 60);
    // A password change keeps the servers; clearing it leaves null.
    let p =
        cache_configuration(&r, set_cache_configuration::Provider::Redis, "", "", false).unwrap();
    let v: serde_json::Value = serde_json::from_str(&p).unwrap();
    assert_eq!(v["redisConfiguration"]["servers"], "127.0.0.10:6379");
    assert!(v["redisConfiguration"]["decryptedPassword"].is_null());
    let n = cache_configuration(
        &r,
        set_cache_configuration::Provider::NativePersistence,
        "",
        "",
        false,
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&n).unwrap();
    assert_eq!(v["cacheProviderType"], "NATIVE_PERSISTENCE");
}

#[test]
fn a_bad_password_is_refused_without_showing_it() {
    let (mut l, _rx) = log();
    let e = password(b"line\nbreak-secret", &mut l).unwrap_err();
    assert!(!e.0.contains("break-secret"), "{e}");
}

/// A sandbox host for a real redis-server and a free port (None: redis-server is missing, which
/// fails under CI).
fn real_redis() -> Option<(tempfile::TempDir, Ctx, u16)> {
    if std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        crate::ops::tests::missing_prerequisite("redis-server is not installed");
        return None;
    }
    let d = tempfile::tempdir().unwrap();
    let ctx = sandbox(d.path(), "127.0.0.1");
    let port = {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    Some((d, ctx, port))
}

/// A real redis-server on a sandbox host: configured with a password, AUTH + PING answer,
/// a wrong password is refused, the log never shows the password, removal stops it.
#[tokio::test]
async fn redis_runs_with_its_password_and_is_removed() {
    let Some((d, ctx, port)) = real_redis() else {
        return;
    };
    let (mut l, mut rx) = log();
    let pw = "Pw with 'quotes\" and $";
    let out = configure_redis(
        &ctx,
        ConfigureRedis {
            port: u32::from(port),
            password: pw.as_bytes().to_vec(),
            remove: false,
            keep_accepting: false,
        },
        &mut l,
    )
    .await;
    let guard = Stop(d.path().join("run/clustermgr/redis.pid"));
    let out = out.unwrap();
    assert!(out.running && out.changed);
    let mode = std::fs::metadata(d.path().join("etc/redis/redis.conf"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let addr = format!("127.0.0.1:{port}");
    ping(&addr, pw).await.unwrap();
    let e = ping(&addr, "wrong").await.unwrap_err();
    assert!(e.contains("AUTH refused"), "{e}");
    let st = status(
        &ctx,
        CacheStatus {
            server: true,
            ping_port: u32::from(port),
            password: pw.as_bytes().to_vec(),
            ..Default::default()
        },
        &mut l,
    )
    .await
    .unwrap();
    assert!(st.redis_running && st.ping_ok, "{st:?}");
    assert!(!st.stunnel_running);
    // Unchanged configuration: nothing rewritten.
    let again = configure_redis(
        &ctx,
        ConfigureRedis {
            port: u32::from(port),
            password: pw.as_bytes().to_vec(),
            remove: false,
            keep_accepting: false,
        },
        &mut l,
    )
    .await
    .unwrap();
    assert!(!again.changed);
    configure_redis(
        &ctx,
        ConfigureRedis {
            port: u32::from(port),
            password: Vec::new(),
            remove: true,
            keep_accepting: false,
        },
        &mut l,
    )
    .await
    .unwrap();
    assert!(ping(&addr, pw).await.is_err());
    assert!(!d.path().join("etc/redis/redis.conf").exists());
    drop(guard);
    while let Ok((_, line)) = rx.try_recv() {
        assert!(!line.contains(pw), "{line}");
    }
}

#[test]
fn the_accepted_passwords_are_read_back_from_the_file_written() {
    let d = tempfile::tempdir().unwrap();
    let ctx = sandbox(d.path(), "127.0.0.3");
    let rows: [&[&str]; 4] = [
        &[],
        &[r#"one "quoted" \ pw"#],
        &["old pw", r#"new"pw\"#],
        &["", "new"],
    ];
    for want in rows {
        let want: Vec<String> = want.iter().map(|p| p.to_string()).collect();
        let c = redis_conf(&ctx, "127.0.0.3", 6379, &want).unwrap();
        let back = accepted_passwords(&c);
        let expect = if want.is_empty() || want.iter().any(String::is_empty) {
            vec![String::new()]
        } else {
            want.clone()
        };
        assert_eq!(back, expect, "{c}");
    }
    let two = redis_conf(&ctx, "127.0.0.3", 6379, &["a".into(), "b".into()]).unwrap();
    assert!(
        two.contains("user default on \">a\" \">b\" ~* &* +@all\n") && !two.contains("requirepass"),
        "{two}"
    );
}

/// A password roll on a real redis-server: during the roll both the old and the new password
/// work, on the running Redis (not restarted: a key written before is still there) and in its
/// file; after the roll's end only the new one does. The log never shows either.
#[tokio::test]
async fn a_password_roll_accepts_both_passwords_until_it_ends() {
    let Some((d, ctx, port)) = real_redis() else {
        return;
    };
    let (mut l, mut rx) = log();
    let req = |pw: &str, keep_accepting: bool| redis_req(port, pw, keep_accepting);
    let (old, new) = ("old \"password\" 1", "new password 2");
    let (_guard, addr) = started_with(&ctx, d.path(), port, old, &mut l).await;
    let pid = || std::fs::read_to_string(d.path().join("run/clustermgr/redis.pid")).unwrap();
    let started = pid();
    let set = command(&addr, &[old.to_string()], &[b"SET", b"kept", b"1"]).await;
    assert_eq!(set.unwrap(), "+OK");
    let works = |pw: &'static str| {
        let addr = addr.clone();
        async move { ping(&addr, pw).await.is_ok() }
    };
    // The roll: both work, on the running Redis.
    let out = configure_redis(&ctx, req(new, true), &mut l).await.unwrap();
    assert_eq!(out.accepted_passwords, 2);
    assert!(works(old).await && works(new).await);
    assert!(!works("wrong").await);
    assert_eq!(pid(), started, "Redis was restarted");
    let get = command(&addr, &[new.to_string()], &[b"EXISTS", b"kept"]).await;
    assert_eq!(get.unwrap(), ":1", "the data is kept");
    let conf = std::fs::read_to_string(d.path().join("etc/redis/redis.conf")).unwrap();
    assert_eq!(
        accepted_passwords(&conf),
        vec![old.to_string(), new.to_string()]
    );
    // Redis started again from its file during the roll (a host rebooted): still both.
    redis_daemon(&ctx).restart(&ctx.host, &mut l).await.unwrap();
    assert!(
        works(old).await && works(new).await,
        "after a restart mid-roll"
    );
    let started = pid();
    // Sent again (a re-run after a crash): still both.
    let again = configure_redis(&ctx, req(new, true), &mut l).await.unwrap();
    assert!(!again.changed && again.accepted_passwords == 2);
    assert!(works(old).await && works(new).await);
    // The roll's end: only the new one.
    let end = configure_redis(&ctx, req(new, false), &mut l)
        .await
        .unwrap();
    assert_eq!(end.accepted_passwords, 1);
    assert!(works(new).await, "the new password after the roll");
    assert!(!works(old).await, "the old password after the roll");
    assert_eq!(pid(), started, "Redis was restarted");
    let conf = std::fs::read_to_string(d.path().join("etc/redis/redis.conf")).unwrap();
    assert!(
        conf.contains("requirepass ") && !conf.contains("user default"),
        "{conf}"
    );
    // Redis restarted from its file: still only the new one.
    redis_daemon(&ctx).restart(&ctx.host, &mut l).await.unwrap();
    assert!(works(new).await && !works(old).await);
    while let Ok((_, line)) = rx.try_recv() {
        assert!(!line.contains(old) && !line.contains(new), "{line}");
    }
}

/// A call stopped between the change of redis.conf and the running Redis' (the agent
/// restarted, the live change timed out) and sent again: the running Redis still gets the
/// passwords, though the file already holds them; at a roll's start and at its end.
#[tokio::test]
async fn a_call_sent_again_after_the_file_changed_still_changes_the_running_redis() {
    let Some((d, ctx, port)) = real_redis() else {
        return;
    };
    let (mut l, _rx) = log();
    let req = |pw: &str, keep_accepting: bool| redis_req(port, pw, keep_accepting);
    let (old, new) = ("old pw 1", "new pw 2");
    let (_guard, addr) = started_with(&ctx, d.path(), port, old, &mut l).await;
    let works = |pw: &'static str| {
        let addr = addr.clone();
        async move { ping(&addr, pw).await.is_ok() }
    };
    let conf_path = d.path().join("etc/redis/redis.conf");
    let file_only = |passwords: &[&str]| {
        let p: Vec<String> = passwords.iter().map(|p| p.to_string()).collect();
        let c = redis_conf(&ctx, "127.0.0.1", port, &p).unwrap();
        std::fs::write(&conf_path, c).unwrap();
    };
    // The roll's start: the file accepts both, the running Redis the old one only.
    file_only(&[old, new]);
    assert!(works(old).await && !works(new).await);
    let out = configure_redis(&ctx, req(new, true), &mut l).await.unwrap();
    assert!(!out.changed && out.accepted_passwords == 2);
    assert!(works(new).await, "the new password on the running Redis");
    assert!(works(old).await);
    // The roll's end: the file accepts the new one alone, the running Redis both.
    file_only(&[new]);
    configure_redis(&ctx, req(new, false), &mut l)
        .await
        .unwrap();
    assert!(works(new).await);
    assert!(!works(old).await, "the old password after the roll's end");
    // Cleared during a roll: no password needed on the running Redis.
    let clear = configure_redis(&ctx, req("", true), &mut l).await.unwrap();
    assert!(clear.changed);
    assert!(works("").await, "no password after clear");
    configure_redis(&ctx, req("", false), &mut l).await.unwrap();
    assert!(works("").await);
}

fn redis_req(port: u16, pw: &str, keep_accepting: bool) -> ConfigureRedis {
    ConfigureRedis {
        port: u32::from(port),
        password: pw.as_bytes().to_vec(),
        remove: false,
        keep_accepting,
    }
}

/// A sandbox host's real Redis configured with `pw` (stopped when the guard drops) and its
/// address.
async fn started_with(ctx: &Ctx, root: &Path, port: u16, pw: &str, l: &mut Log) -> (Stop, String) {
    let first = configure_redis(ctx, redis_req(port, pw, false), l).await;
    let guard = Stop(root.join("run/clustermgr/redis.pid"));
    first.unwrap();
    (guard, format!("127.0.0.1:{port}"))
}

struct Stop(std::path::PathBuf);

impl Drop for Stop {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        }
    }
}

#[tokio::test]
async fn programs_are_looked_for_and_the_absent_ones_reported() {
    let d = tempfile::tempdir().unwrap();
    let ctx = sandbox(d.path(), "127.0.0.1");
    let (mut l, _rx) = log();
    let out = status(
        &ctx,
        CacheStatus {
            programs: vec!["sh".into(), "no-such-program-clustermgr".into()],
            ..Default::default()
        },
        &mut l,
    )
    .await
    .unwrap();
    assert_eq!(out.missing_programs, vec!["no-such-program-clustermgr"]);
    assert!(!out.redis_running && !out.stunnel_running && out.ping_address.is_empty());
    for bad in ["../sh", "/bin/sh", "", "a b"] {
        let e = status(
            &ctx,
            CacheStatus {
                programs: vec![bad.into()],
                ..Default::default()
            },
            &mut l,
        )
        .await
        .unwrap_err();
        assert!(e.0.contains("not a program name"), "{bad}: {e}");
    }
}

mod distros;
