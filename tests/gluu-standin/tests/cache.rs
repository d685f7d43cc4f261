//! The token cache shared through Redis by two nodes' machines (the machines share the
//! host's network, so a redis-server on the host's loopback serves both). Needs redis-server
//! and redis-cli besides the machine prerequisites.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use support::tokens::{introspect, issue_token, token_cache_key};
use support::{Node, prerequisites, run, run_ok, wait_for};

struct Redis {
    child: Child,
    port: u16,
    password: String,
}

impl Redis {
    fn start(dir: &Path) -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let password = format!("pw{}", rand::random::<u32>());
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--requirepass",
                &password,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (package redis-server)");
        let redis = Redis {
            child,
            port,
            password,
        };
        wait_for("redis-server", Duration::from_secs(10), || {
            let out = run(&mut redis.cli(&["PING"]));
            (String::from_utf8_lossy(&out.stdout).trim() == "PONG").then_some(())
        });
        redis
    }

    fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("redis-cli");
        cmd.env("REDISCLI_AUTH", &self.password)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args);
        cmd
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_cache_ldif(redis: &Redis) -> String {
    let config = json!({
        "cacheProviderType": "REDIS",
        "redisConfiguration": {
            "redisProviderType": "STANDALONE",
            "servers": format!("127.0.0.1:{}", redis.port),
            "decryptedPassword": redis.password,
            "useSSL": false,
            "defaultPutExpiration": 60
        },
        "nativePersistenceConfiguration": {"defaultPutExpiration": 60}
    });
    format!(
        "dn: ou=configuration,o=gluu\nchangetype: modify\nreplace: oxCacheConfiguration\noxCacheConfiguration: {config}\n"
    )
}

#[test]
fn redis_cache_is_shared_between_nodes() {
    if !prerequisites(&["redis-server", "redis-cli"]) {
        return;
    }
    let a = Node::install_and_setup("127.77.0.13", false);
    let b = Node::install_and_setup("127.77.0.14", false);

    // Separate directories, NATIVE_PERSISTENCE: a token is known only where it was issued.
    let token = issue_token(&a);
    assert_eq!(introspect(&a, &token)["active"], true);
    assert_eq!(introspect(&b, &token)["active"], false);

    let redis = Redis::start(a.root.path());
    let ldif = redis_cache_ldif(&redis);
    a.ldapmodify(&ldif);
    b.ldapmodify(&ldif);

    let token = issue_token(&a);
    let key = token_cache_key(&token);
    let stored = run_ok(&mut redis.cli(&["GET", &key]));
    let record: Value = serde_json::from_str(stored.trim()).expect("redis holds the token record");
    assert_eq!(record["client_id"], "test-client");
    assert_eq!(record["issued_by"], "127.77.0.13");
    let ttl: i64 = run_ok(&mut redis.cli(&["TTL", &key]))
        .trim()
        .parse()
        .expect("ttl");
    assert!(ttl > 0 && ttl <= 300, "ttl {ttl}");
    assert_eq!(introspect(&a, &token)["active"], true);
    assert_eq!(
        introspect(&b, &token)["active"],
        true,
        "shared cache: introspection works on the other node"
    );

    // A wrong Redis password makes token issuance fail loudly, not silently.
    let mut bad = redis_cache_ldif(&redis);
    bad = bad.replace(&redis.password, "wrong-password");
    a.ldapmodify(&bad);
    let (code, _, body) = a.curl(
        "/oxauth/restv1/token",
        &["-u", "c:s", "-d", "grant_type=client_credentials"],
    );
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("redis"), "{body}");
}
