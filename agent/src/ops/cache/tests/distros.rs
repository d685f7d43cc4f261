//! The distribution's names on a real host: the exact systemctl argv and files for Debian's and
//! for CentOS/RHEL's Redis and stunnel.

use super::*;
use crate::host::{PackageFormat, Recorder};
use std::sync::Arc;

/// A real host (the agent as root on its own root) of `format`, its commands recorded; its
/// root a temp dir with a `redis` account.
fn real(root: &Path, format: PackageFormat) -> (Ctx, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "redis:x:990:990::/var/lib/redis:/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "redis:x:990:\n").unwrap();
    let ctx = ctx_with(Host {
        root: root.to_path_buf(),
        packages: PackageMode::System,
        format: Some(format),
        runner: Runner::Recording(rec.clone()),
        proc: std::path::PathBuf::from("/proc"),
    });
    (ctx, rec)
}

fn argv(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn redis(remove: bool) -> ConfigureRedis {
    ConfigureRedis {
        port: 6379,
        password: b"s3cret-pw".to_vec(),
        remove,
        keep_accepting: false,
    }
}

#[tokio::test]
async fn redis_runs_as_the_distributions_unit_from_the_file_it_reads() {
    struct Row {
        format: PackageFormat,
        /// The package's own redis.conf.
        shipped: Option<&'static str>,
        unit: &'static str,
        /// The redis.conf written.
        conf: &'static str,
        lines: &'static [&'static str],
    }
    let table = [
        Row {
            format: PackageFormat::Deb,
            shipped: None,
            unit: "redis-server",
            conf: "etc/redis/redis.conf",
            lines: &[
                "pidfile /run/redis/redis-server.pid\n",
                "logfile /var/log/redis/redis-server.log\n",
            ],
        },
        // CentOS and RHEL 7 and 8.
        Row {
            format: PackageFormat::Rpm,
            shipped: Some("etc/redis.conf"),
            unit: "redis",
            conf: "etc/redis.conf",
            lines: &["logfile /var/log/redis/redis.log\n"],
        },
        // EL 9 moved it to Debian's place.
        Row {
            format: PackageFormat::Rpm,
            shipped: Some("etc/redis/redis.conf"),
            unit: "redis",
            conf: "etc/redis/redis.conf",
            lines: &["logfile /var/log/redis/redis.log\n"],
        },
    ];
    for Row {
        format,
        shipped,
        unit,
        conf,
        lines,
    } in table
    {
        let d = tempfile::tempdir().unwrap();
        let (ctx, rec) = real(d.path(), format);
        if let Some(f) = shipped {
            std::fs::create_dir_all(d.path().join(f).parent().unwrap()).unwrap();
            std::fs::write(d.path().join(f), "# the package's\n").unwrap();
        }
        let rpm = format == PackageFormat::Rpm;
        let (mut l, _rx) = log();
        let out = configure_redis(&ctx, redis(false), &mut l).await.unwrap();
        assert!(out.changed && out.running, "{unit}");
        assert_eq!(out.address, "127.0.0.1:6379");
        let mut want = Vec::new();
        if rpm {
            want.push(argv(&["systemctl", "enable", unit]));
        }
        want.push(argv(&["systemctl", "restart", unit]));
        want.push(argv(&["systemctl", "is-active", "--quiet", unit]));
        assert_eq!(rec.argvs(), want, "{unit} {conf}");
        let text = std::fs::read_to_string(d.path().join(conf)).unwrap();
        assert!(
            text.contains("daemonize no\nsupervised systemd\n"),
            "{text}"
        );
        assert!(text.contains("requirepass \"s3cret-pw\"\n"), "{text}");
        for line in lines {
            assert!(text.contains(line), "{conf}: {line} in {text}");
        }
        assert_eq!(text.contains("pidfile"), !rpm, "{text}");
        let meta = std::fs::metadata(d.path().join(conf)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
            0o600
        );
        if nix::unistd::geteuid().is_root() {
            assert_eq!(
                std::os::unix::fs::MetadataExt::uid(&meta),
                990,
                "owned by redis"
            );
        }

        // Unchanged, Redis stopped: started, not restarted (a running one is asked to take
        // its passwords: the real-Redis tests).
        rec.calls.lock().unwrap().clear();
        rec.answer(3, "");
        if rpm {
            rec.answer(0, "");
        }
        rec.answer(3, "");
        let out = configure_redis(&ctx, redis(false), &mut l).await.unwrap();
        assert!(!out.changed);
        let mut want = vec![argv(&["systemctl", "is-active", "--quiet", unit])];
        if rpm {
            want.push(argv(&["systemctl", "enable", unit]));
        }
        want.push(argv(&["systemctl", "is-active", "--quiet", unit]));
        want.push(argv(&["systemctl", "start", unit]));
        want.push(argv(&["systemctl", "is-active", "--quiet", unit]));
        assert_eq!(rec.argvs(), want, "{unit}");

        // Removed: stopped, and on CentOS/RHEL no longer started at boot.
        rec.calls.lock().unwrap().clear();
        let out = configure_redis(&ctx, redis(true), &mut l).await.unwrap();
        assert!(out.changed && !out.running);
        let mut want = vec![argv(&["systemctl", "stop", unit])];
        if rpm {
            want.push(argv(&["systemctl", "disable", unit]));
        }
        assert_eq!(rec.argvs(), want, "{unit}");
        assert!(!d.path().join(conf).exists());
    }
}

const SERVER: &str = "clustermgr-redis-server";
const CLIENT: &str = "clustermgr-redis-client";

#[tokio::test]
async fn rhel_runs_each_stunnel_configuration_in_its_own_enabled_unit() {
    let d = tempfile::tempdir().unwrap();
    let (ctx, rec) = real(d.path(), PackageFormat::Rpm);
    let (mut l, _rx) = log();
    let unit = format!("stunnel@{SERVER}");
    stunnel::restart(&ctx, SERVER, &mut l).await.unwrap();
    assert_eq!(
        rec.argvs(),
        [
            argv(&["systemctl", "daemon-reload"]),
            argv(&["systemctl", "enable", &unit]),
            argv(&["systemctl", "restart", &unit]),
            argv(&["systemctl", "is-active", "--quiet", &unit]),
        ]
    );
    let file = d
        .path()
        .join("etc/systemd/system/stunnel@clustermgr-redis-server.service");
    let text = std::fs::read_to_string(&file).unwrap();
    for want in [
        "Type=forking\n",
        "PIDFile=/run/stunnel-clustermgr-redis-server.pid\n",
        "ExecStart=/usr/bin/stunnel /etc/stunnel/clustermgr-redis-server.conf\n",
        "WantedBy=multi-user.target\n",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    // The unit unchanged: no reload.
    rec.calls.lock().unwrap().clear();
    stunnel::restart(&ctx, SERVER, &mut l).await.unwrap();
    assert_eq!(rec.argvs()[0], argv(&["systemctl", "enable", &unit]));
    assert_eq!(rec.argvs().len(), 3);

    // Its configuration: the unit's pid file, the journal for its log.
    let conf = stunnel_conf(
        &ctx,
        SERVER,
        false,
        &[Service {
            name: "redis".into(),
            accept: "10.0.0.3:16379".into(),
            connect: "127.0.0.1:6379".into(),
            check: None,
        }],
    )
    .unwrap();
    assert!(
        conf.contains("pid = /run/stunnel-clustermgr-redis-server.pid\nforeground = no\n"),
        "{conf}"
    );
    assert!(!conf.contains("output ="), "{conf}");

    // Status asks the distribution's units.
    rec.calls.lock().unwrap().clear();
    status(
        &ctx,
        CacheStatus {
            server: true,
            ..Default::default()
        },
        &mut l,
    )
    .await
    .unwrap();
    assert_eq!(
        rec.argvs(),
        [
            argv(&["systemctl", "is-active", "--quiet", "redis"]),
            argv(&["systemctl", "is-active", "--quiet", &unit]),
        ]
    );
}

#[tokio::test]
async fn removing_a_stunnel_configuration_per_distribution() {
    // (format, commands)
    let client = format!("stunnel@{CLIENT}");
    let table: Vec<(PackageFormat, Vec<Vec<String>>)> = vec![
        (
            PackageFormat::Deb,
            vec![
                argv(&["systemctl", "stop", "stunnel4"]),
                // One unit runs every configuration: restarted without this one.
                argv(&["systemctl", "restart", "stunnel4"]),
            ],
        ),
        (
            PackageFormat::Rpm,
            vec![
                argv(&["systemctl", "stop", &client]),
                argv(&["systemctl", "disable", &client]),
                argv(&["systemctl", "daemon-reload"]),
            ],
        ),
    ];
    for (format, want) in table {
        let d = tempfile::tempdir().unwrap();
        let (ctx, rec) = real(d.path(), format);
        let (mut l, _rx) = log();
        std::fs::create_dir_all(d.path().join("etc/stunnel")).unwrap();
        for ext in ["conf", "crt", "key", "ca.crt"] {
            std::fs::write(d.path().join(format!("etc/stunnel/{CLIENT}.{ext}")), "x").unwrap();
        }
        let unit_file = d
            .path()
            .join(format!("etc/systemd/system/stunnel@{CLIENT}.service"));
        if format == PackageFormat::Rpm {
            std::fs::create_dir_all(unit_file.parent().unwrap()).unwrap();
            std::fs::write(&unit_file, "[Unit]\n").unwrap();
        }
        configure_stunnel(
            &ctx,
            ConfigureStunnel {
                mode: configure_stunnel::Mode::Client as i32,
                remove: true,
                ..Default::default()
            },
            &mut l,
        )
        .await
        .unwrap();
        assert_eq!(rec.argvs(), want, "{format:?}");
        assert!(!d.path().join(format!("etc/stunnel/{CLIENT}.key")).exists());
        assert!(!unit_file.exists());
    }
}
