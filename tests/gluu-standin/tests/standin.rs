//! End-to-end tests of the Gluu Server stand-in package.
//!
//! Each test builds (or reuses) the `.deb`, extracts it under a fresh root, runs the package's
//! own `setup.py` and `gluu-serverd`, and checks the result with real clients: OpenLDAP's
//! `ldapsearch`/`ldapmodify`, `curl`, `redis-server`/`redis-cli`. Every node listens on its own
//! loopback address, so tests run in parallel. Needs: slapd, ldap-utils, openssl, curl,
//! redis-server (redis-tools), dpkg.
//!
//! `dpkg_install_as_root_in_namespace` instead installs the package with `dpkg -i` into `/` of
//! a mount/net/UTS/PID namespace (`install-in-namespace.sh`, overlays over the directories dpkg
//! writes) and checks that the host is unchanged; it needs root and util-linux `unshare`.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

const HOSTNAME: &str = "lb.example.org";
const HTTPS_PORT: u16 = 18443;
const PASSWORD: &str = "S3cret!pw'$x \"q\"";

// ---------------------------------------------------------------- helpers

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Poll `f` every 50 ms until it returns `Some`, or panic after `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The package, built once per test process (build-package itself caches and locks).
fn package() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gluu-standin-cache");
        let out = run_ok(
            Command::new(here.join("build-package"))
                .arg(&cache)
                .env("STANDIN_BINARY", env!("CARGO_BIN_EXE_gluu-standin")),
        );
        let deb = PathBuf::from(out.lines().last().unwrap_or_default().trim());
        assert!(deb.is_file(), "build-package printed no .deb path: {out}");
        let name = deb.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert!(
            name.starts_with("gluu-server_4.2.3~standin1_") && name.ends_with(".deb"),
            "unexpected package name {name}"
        );
        deb
    })
}

/// A stand-in node extracted under its own root; stopped on drop.
struct Node {
    root: tempfile::TempDir,
    ip: String,
}

impl Node {
    /// Extract the package under a fresh root (no setup yet).
    fn extract(ip: &str) -> Node {
        let root = tempfile::Builder::new()
            .prefix("standin")
            .tempdir()
            .expect("tempdir");
        run_ok(
            Command::new("dpkg-deb")
                .arg("-x")
                .arg(package())
                .arg(root.path()),
        );
        Node {
            root,
            ip: ip.to_string(),
        }
    }

    fn props(&self, extra: &[(&str, &str)]) -> PathBuf {
        let mut text = format!(
            "# test node\nhostname={HOSTNAME}\nip={}\nldapPass={}\norgName=Example Org\n\
             countryCode=US\ncity=Austin\nstate=TX\nadmin_email=admin@example.org\n\
             installOxAuth=True\ninstallOxTrust=True\ninstallSaml=True\nhttps_port={HTTPS_PORT}\n",
            self.ip,
            PASSWORD.replace('\\', "\\\\")
        );
        for (k, v) in extra {
            text.push_str(&format!("{k}={v}\n"));
        }
        let path = self.root.path().join("setup.properties");
        fs::write(&path, text).expect("write setup.properties");
        path
    }

    fn setup_py(&self) -> PathBuf {
        self.chroot("install/community-edition-setup/setup.py")
    }

    fn serverd(&self, action: &str) -> Output {
        run(Command::new(self.root.path().join("sbin/gluu-serverd"))
            .arg(action)
            .arg("--root")
            .arg(self.root.path()))
    }

    /// Extract and run setup (as the cluster manager does: `-f ... -n --listen_all_interfaces -c`).
    fn install(ip: &str, no_data: bool) -> Node {
        let node = Node::extract(ip);
        let props = node.props(&[]);
        let mut cmd = Command::new(node.setup_py());
        cmd.arg("-f")
            .arg(&props)
            .args(["-n", "--listen_all_interfaces", "-c"]);
        if no_data {
            cmd.arg("--no-data");
        }
        cmd.arg("--root").arg(node.root.path());
        run_ok(&mut cmd);
        node
    }

    fn chroot(&self, rel: &str) -> PathBuf {
        self.root.path().join("opt/gluu-server").join(rel)
    }

    /// `setup.properties.last.enc` decrypted with the setup password (as Gluu documents:
    /// `openssl enc -d -aes-256-cbc -in setup.properties.last.enc`), the password on stdin.
    fn decrypted_last(&self, password: &str) -> Output {
        let mut child = Command::new("openssl")
            .args(["enc", "-d", "-aes-256-cbc", "-pass", "stdin", "-in"])
            .arg(self.chroot("install/community-edition-setup/setup.properties.last.enc"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openssl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{password}\n").as_bytes())
            .expect("write password");
        child.wait_with_output().expect("openssl")
    }

    fn last_text(&self) -> String {
        let out = self.decrypted_last(PASSWORD);
        assert!(
            out.status.success(),
            "decrypting setup.properties.last.enc: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 properties")
    }

    fn password_file(&self) -> PathBuf {
        let path = self.root.path().join("ldap.pw");
        if !path.exists() {
            fs::write(&path, PASSWORD).expect("write password file");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        path
    }

    /// An OpenLDAP client command bound as the administrator over LDAPS, verifying the
    /// node's certificate.
    fn ldap_tool(&self, tool: &str) -> Command {
        let mut cmd = Command::new(tool);
        cmd.env("LDAPTLS_CACERT", self.chroot("etc/certs/openldap.crt"))
            .env("LDAPTLS_REQCERT", "demand")
            .arg("-H")
            .arg(format!("ldaps://{}:1636", self.ip))
            .args(["-x", "-D", "cn=directory manager", "-y"])
            .arg(self.password_file());
        cmd
    }

    fn ldapsearch(&self, base: &str, scope: &str, attrs: &[&str]) -> Output {
        let mut cmd = self.ldap_tool("ldapsearch");
        cmd.args([
            "-LLL",
            "-o",
            "ldif-wrap=no",
            "-b",
            base,
            "-s",
            scope,
            "(objectClass=*)",
        ])
        .args(attrs);
        run(&mut cmd)
    }

    fn ldapmodify(&self, ldif: &str) {
        let mut child = self
            .ldap_tool("ldapmodify")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ldapmodify");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ldif.as_bytes())
            .expect("write ldif");
        let out = child.wait_with_output().expect("ldapmodify");
        assert!(
            out.status.success(),
            "ldapmodify failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `curl` against the node under the load balancer's name, verifying the httpd certificate.
    /// Returns (status, headers, body).
    fn curl(&self, path: &str, args: &[&str]) -> (u16, String, String) {
        let headers = self
            .root
            .path()
            .join(format!("headers.{}", rand::random::<u64>()));
        let out = run(Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(self.chroot("etc/certs/httpd.crt"))
            .arg("--resolve")
            .arg(format!("{HOSTNAME}:{HTTPS_PORT}:{}", self.ip))
            .arg("-D")
            .arg(&headers)
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .arg(format!("https://{HOSTNAME}:{HTTPS_PORT}{path}")));
        assert!(
            out.status.success(),
            "curl {path} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let head = fs::read_to_string(&headers).unwrap_or_default();
        let _ = fs::remove_file(&headers);
        (code.trim().parse().unwrap_or(0), head, body.to_string())
    }

    fn get_json(&self, path: &str) -> (u16, Value) {
        let (code, _, body) = self.curl(path, &[]);
        let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        (code, v)
    }

    fn issue_token(&self) -> String {
        let (code, _, body) = self.curl(
            "/oxauth/restv1/token",
            &[
                "-u",
                "test-client:test-secret",
                "-d",
                "grant_type=client_credentials",
                "-d",
                "scope=openid",
            ],
        );
        assert_eq!(code, 200, "token endpoint: {body}");
        let v: Value = serde_json::from_str(&body).expect("token json");
        assert_eq!(v["token_type"], "Bearer");
        v["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    fn introspect(&self, token: &str) -> Value {
        let (code, _, body) = self.curl(
            "/oxauth/restv1/introspection",
            &["--data-urlencode", &format!("token={token}")],
        );
        assert_eq!(code, 200, "introspection: {body}");
        serde_json::from_str(&body).expect("introspection json")
    }

    /// Live (non-zombie) processes whose command line mentions this node's root.
    fn processes(&self) -> Vec<String> {
        let root = self.root.path().to_string_lossy().into_owned();
        clustermgr_procfs::find(|args| args.join(" ").contains(&root))
            .iter()
            .map(|p| format!("{}: {}", p.pid, p.command_line()))
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.serverd("stop");
    }
}

fn attr<'a>(ldif: &'a str, name: &str) -> Option<&'a str> {
    ldif.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

/// Verify an RS256 JWT against a JWKS; returns its claims.
fn verify_jwt(token: &str, jwks: &Value) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWS compact token");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("header b64"))
            .expect("header");
    assert_eq!(header["alg"], "RS256");
    let kid = header["kid"].as_str().expect("kid");
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} not in JWKS"));
    let n = URL_SAFE_NO_PAD
        .decode(jwk["n"].as_str().expect("n"))
        .expect("n b64");
    let e = URL_SAFE_NO_PAD
        .decode(jwk["e"].as_str().expect("e"))
        .expect("e b64");
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("sig b64");
    ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &sig,
        )
        .expect("JWT signature verifies against /jwks");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("claims b64")).expect("claims")
}

fn token_cache_key(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    format!("oxauth_token_{}", hex::encode(d.as_ref()))
}

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

// ---------------------------------------------------------------- tests

#[test]
fn primary_node_answers_ldaps_and_https() {
    let node = Node::install("127.77.0.1", false);

    // The files a cluster manager relies on. As Gluu 4.2.3 does, setup leaves
    // setup.properties.last only encrypted with the setup password.
    assert!(
        !node
            .chroot("install/community-edition-setup/setup.properties.last")
            .exists(),
        "the plaintext setup.properties.last must be deleted"
    );
    let last_text = node.last_text();
    assert!(last_text.contains("hostname=lb.example.org"), "{last_text}");
    assert!(last_text.contains("ip=127.77.0.1"), "{last_text}");
    let wrong = node.decrypted_last("not the password");
    assert!(
        !wrong.status.success() || !String::from_utf8_lossy(&wrong.stdout).contains("hostname="),
        "a wrong password must not decrypt it"
    );
    // The stand-in's own record of the node is private.
    let record = node.chroot("opt/gluu/standin/node.properties");
    let mode = fs::metadata(&record)
        .expect("node record")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the node record must be private");
    let dir_mode = fs::metadata(record.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o077, 0, "the state directory must be private");
    // The certificate set a Gluu node has, and the trust store setup imported it into.
    for f in [
        "etc/certs/httpd.crt",
        "etc/certs/httpd.key",
        "etc/certs/shibIDP.crt",
        "etc/certs/shibIDP.key",
        "etc/certs/idp-encryption.crt",
        "etc/certs/idp-encryption.key",
        "etc/certs/idp-signing.crt",
        "etc/certs/passport-sp.crt",
        "etc/certs/opendj.crt",
        "etc/certs/openldap.crt",
        "install/community-edition-setup/output/scim-rp.jks",
    ] {
        assert!(node.chroot(f).is_file(), "{f} missing");
    }
    assert_eq!(
        fs::read(node.chroot("etc/certs/opendj.crt")).unwrap(),
        fs::read(node.chroot("etc/certs/openldap.crt")).unwrap(),
        "opendj.crt is the directory's certificate"
    );
    let keytool = node.chroot("opt/jre/bin/keytool");
    let cacerts = node.chroot("opt/jre/lib/security/cacerts");
    let list = run_ok(
        Command::new(&keytool)
            .args(["-list", "-storepass", "changeit", "-keystore"])
            .arg(&cacerts),
    );
    for suffix in ["httpd", "shibidp", "idp-encryption", "opendj"] {
        assert!(
            list.contains(&format!("{HOSTNAME}_{suffix}, trustedCertEntry")),
            "{suffix}: {list}"
        );
    }
    // keytool's own answers: an unknown alias, a taken one, a wrong store password.
    let del = |alias: &str, pass: &str| {
        run(Command::new(&keytool)
            .args(["-delete", "-alias", alias, "-keystore"])
            .arg(&cacerts)
            .args(["-storepass", pass]))
    };
    let out = del("nope", "changeit");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Alias <nope> does not exist"));
    assert_eq!(
        del(&format!("{HOSTNAME}_httpd"), "wrong").status.code(),
        Some(1)
    );
    let import = |alias: &str| {
        run(Command::new(&keytool)
            .args(["-import", "-trustcacerts", "-alias", alias, "-file"])
            .arg(node.chroot("etc/certs/httpd.crt"))
            .arg("-keystore")
            .arg(&cacerts)
            .args(["-storepass", "changeit", "-noprompt"]))
    };
    let out = import(&format!("{}_HTTPD", HOSTNAME.to_uppercase()));
    assert!(String::from_utf8_lossy(&out.stdout).contains("already exists"));
    assert_eq!(
        del(&format!("{HOSTNAME}_httpd"), "changeit").status.code(),
        Some(0)
    );
    let out = import(&format!("{HOSTNAME}_httpd"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Certificate was added to keystore"),
        "{out:?}"
    );
    let ldap_props = fs::read_to_string(node.chroot("etc/gluu/conf/gluu-ldap.properties"))
        .expect("gluu-ldap.properties");
    assert!(
        ldap_props.contains("servers: 127.77.0.1:1636"),
        "{ldap_props}"
    );
    assert!(node.chroot("etc/certs/oxauth-keys.json").is_file());

    // LDAPS with OpenLDAP's client, as the directory manager.
    let out = node.ldapsearch(
        "ou=oxauth,ou=configuration,o=gluu",
        "base",
        &["oxAuthConfWebKeys", "oxRevision", "oxAuthConfDynamic"],
    );
    assert!(
        out.status.success(),
        "ldapsearch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ldif = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(attr(&ldif, "oxRevision"), Some("1"), "{ldif}");
    let web_keys: Value =
        serde_json::from_str(attr(&ldif, "oxAuthConfWebKeys").expect("oxAuthConfWebKeys"))
            .expect("jwks");
    assert!(attr(&ldif, "oxAuthConfDynamic").is_some());
    let out = node.ldapsearch(
        "ou=configuration,o=gluu",
        "base",
        &[
            "gluuHostname",
            "oxCacheConfiguration",
            "oxIDPAuthentication",
        ],
    );
    let ldif = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(attr(&ldif, "gluuHostname"), Some(HOSTNAME), "{ldif}");
    assert!(attr(&ldif, "oxCacheConfiguration").is_some_and(|c| c.contains("NATIVE_PERSISTENCE")));
    assert!(attr(&ldif, "oxIDPAuthentication").is_some());
    for base in ["ou=people,o=gluu", "ou=clients,o=gluu", "o=site"] {
        let out = node.ldapsearch(base, "base", &["dn"]);
        assert!(out.status.success(), "{base} missing");
    }
    // Anonymous clients see nothing.
    let anon = run(Command::new("ldapsearch")
        .env("LDAPTLS_CACERT", node.chroot("etc/certs/openldap.crt"))
        .arg("-H")
        .arg(format!("ldaps://{}:1636", node.ip))
        .args(["-x", "-LLL", "-b", "o=gluu", "-s", "base"]));
    assert!(String::from_utf8_lossy(&anon.stdout).trim().is_empty());
    // A wrong password is refused.
    let wrong = run(Command::new("ldapwhoami")
        .env("LDAPTLS_CACERT", node.chroot("etc/certs/openldap.crt"))
        .arg("-H")
        .arg(format!("ldaps://{}:1636", node.ip))
        .args(["-x", "-D", "cn=directory manager", "-w", "wrong"]));
    assert!(!wrong.status.success());

    // HTTPS endpoints with curl.
    let (code, disco) = node.get_json("/.well-known/openid-configuration");
    assert_eq!(code, 200);
    assert_eq!(disco["issuer"], format!("https://{HOSTNAME}:{HTTPS_PORT}"));
    assert!(
        disco["jwks_uri"]
            .as_str()
            .is_some_and(|u| u.ends_with("/oxauth/restv1/jwks"))
    );
    let (code, health) = node.get_json("/oxauth/restv1/health-check");
    assert_eq!(
        (code, health["status"].as_str()),
        (200, Some("running")),
        "{health}"
    );
    let (code, jwks) = node.get_json("/oxauth/restv1/jwks");
    assert_eq!(code, 200);
    assert_eq!(jwks, web_keys, "/jwks serves oxAuthConfWebKeys");
    let (code, _, xml) = node.curl("/idp/shibboleth", &[]);
    assert_eq!(code, 200);
    assert!(xml.contains("<ds:X509Certificate>"), "{xml}");
    let (code, head, body) = node.curl("/identity", &[]);
    assert_eq!(code, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("set-cookie: jsessionid="),
        "{head}"
    );
    let who: Value = serde_json::from_str(&body).expect("identity json");
    assert_eq!(who["node"], "127.77.0.1");
    let (code, _, _) = node.curl(
        "/oxauth/restv1/token",
        &["-d", "grant_type=client_credentials"],
    );
    assert_eq!(code, 401, "a token needs client authentication");

    // A token verifies against /jwks and introspects as active.
    let token = node.issue_token();
    let claims = verify_jwt(&token, &jwks);
    assert_eq!(claims["client_id"], "test-client");
    assert!(claims["exp"].as_i64() > claims["iat"].as_i64());
    let info = node.introspect(&token);
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], "test-client");
    assert_eq!(node.introspect("not-a-token")["active"], false);
    // NATIVE_PERSISTENCE: the token is an entry under ou=cache,o=gluu.
    let key = token_cache_key(&token);
    let out = node.ldapsearch(&format!("uuid={key},ou=cache,o=gluu"), "base", &["exp"]);
    assert!(
        out.status.success(),
        "token not in ou=cache: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Logs at the usual paths.
    let oxauth_log = fs::read_to_string(node.chroot("opt/gluu/jetty/oxauth/logs/oxauth.log"))
        .expect("oxauth.log");
    assert!(
        oxauth_log.contains("\"POST /oxauth/restv1/token\" 200"),
        "{oxauth_log}"
    );
    assert!(oxauth_log.contains("\"GET /identity\" 200"));
    let oxtrust_log = fs::read_to_string(node.chroot("opt/gluu/jetty/identity/logs/oxtrust.log"))
        .expect("oxtrust.log");
    assert!(oxtrust_log.contains("GET /identity"));
    let access = fs::read_to_string(node.chroot("opt/opendj/logs/access")).expect("access log");
    assert!(
        access.contains("BIND dn=\"cn=directory manager\""),
        "access log lacks binds"
    );
    assert!(node.chroot("opt/opendj/logs/errors").is_file());

    // status / stop / start.
    let st = node.serverd("status");
    assert_eq!(
        st.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&st.stdout)
    );
    let out = node.serverd("stop");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        node.processes(),
        Vec::<String>::new(),
        "processes left after stop"
    );
    let st = node.serverd("status");
    assert_eq!(st.status.code(), Some(3));
    let out = node.serverd("start");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, _) = node.get_json("/oxauth/restv1/health-check");
    assert_eq!(code, 200);
    // The init script of one service inside the chroot.
    let out = run(Command::new(node.chroot("etc/init.d/oxauth"))
        .arg("restart")
        .arg("--root")
        .arg(node.root.path()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, _) = node.get_json("/oxauth/restv1/health-check");
    assert_eq!(code, 200);
}

#[test]
fn jwks_follows_web_keys_and_revision() {
    let node = Node::install("127.77.0.2", false);
    let (_, before) = node.get_json("/oxauth/restv1/jwks");

    // A new signing key: private part in the keys file, public part in oxAuthConfWebKeys.
    let pem = run_ok(Command::new("openssl").args([
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
    ]));
    let der = rustls_pemfile::private_key(&mut pem.as_bytes())
        .expect("pem")
        .expect("a key");
    let pair = ring::signature::RsaKeyPair::from_pkcs8(der.secret_der()).expect("pkcs8");
    let comps = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(
        ring::signature::KeyPair::public_key(&pair),
    );
    let strip = |b: &[u8]| b[b.iter().position(|x| *x != 0).unwrap_or(0)..].to_vec();
    let kid = format!("rotated-{}", rand::random::<u32>());
    let new_keys = json!({"keys": [{
        "kid": kid, "kty": "RSA", "use": "sig", "alg": "RS256",
        "n": URL_SAFE_NO_PAD.encode(strip(&comps.n)),
        "e": URL_SAFE_NO_PAD.encode(strip(&comps.e)),
    }]});
    let keys_file = node.chroot("etc/certs/oxauth-keys.json");
    let mut private: HashMap<String, String> =
        serde_json::from_str(&fs::read_to_string(&keys_file).expect("keys file"))
            .expect("keys json");
    private.insert(kid.clone(), pem);
    fs::write(&keys_file, serde_json::to_string(&private).expect("json")).expect("write keys");

    // Changing the keys without bumping oxRevision changes nothing.
    node.ldapmodify(&format!(
        "dn: ou=oxauth,ou=configuration,o=gluu\nchangetype: modify\nreplace: oxAuthConfWebKeys\noxAuthConfWebKeys: {new_keys}\n"
    ));
    let (_, same) = node.get_json("/oxauth/restv1/jwks");
    assert_eq!(
        same, before,
        "keys must only reload on an oxRevision change"
    );

    node.ldapmodify("dn: ou=oxauth,ou=configuration,o=gluu\nchangetype: modify\nreplace: oxRevision\noxRevision: 2\n");
    let bumped = Instant::now();
    let jwks = wait_for("/jwks to follow oxRevision", Duration::from_secs(1), || {
        let (_, j) = node.get_json("/oxauth/restv1/jwks");
        (j == new_keys).then_some(j)
    });
    eprintln!("jwks followed oxRevision in {:?}", bumped.elapsed());
    // The new token is signed with the new key (the JWKS now holds only that kid).
    let token = node.issue_token();
    verify_jwt(&token, &jwks);
}

#[test]
fn redis_cache_is_shared_between_nodes() {
    let a = Node::install("127.77.0.3", false);
    let b = Node::install("127.77.0.4", false);

    // Separate directories, NATIVE_PERSISTENCE: a token is known only where it was issued.
    let token = a.issue_token();
    assert_eq!(a.introspect(&token)["active"], true);
    assert_eq!(b.introspect(&token)["active"], false);

    let redis = Redis::start(a.root.path());
    let ldif = redis_cache_ldif(&redis);
    a.ldapmodify(&ldif);
    b.ldapmodify(&ldif);

    let token = a.issue_token();
    let key = token_cache_key(&token);
    let stored = run_ok(&mut redis.cli(&["GET", &key]));
    let record: Value = serde_json::from_str(stored.trim()).expect("redis holds the token record");
    assert_eq!(record["client_id"], "test-client");
    assert_eq!(record["issued_by"], "127.77.0.3");
    let ttl: i64 = run_ok(&mut redis.cli(&["TTL", &key]))
        .trim()
        .parse()
        .expect("ttl");
    assert!(ttl > 0 && ttl <= 300, "ttl {ttl}");
    assert_eq!(a.introspect(&token)["active"], true);
    assert_eq!(
        b.introspect(&token)["active"],
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

#[test]
fn no_data_setup_leaves_directory_empty() {
    let node = Node::install("127.77.0.5", true);
    for base in ["o=gluu", "o=site"] {
        let out = node.ldapsearch(base, "sub", &["dn"]);
        assert_eq!(
            out.status.code(),
            Some(32),
            "{base} should not exist (stdout {}, stderr {})",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The directory server itself is up and the admin can bind.
    let who = run(&mut node.ldap_tool("ldapwhoami"));
    assert!(
        who.status.success(),
        "{}",
        String::from_utf8_lossy(&who.stderr)
    );
    // Services run, oxAuth waits for its configuration.
    assert_eq!(node.serverd("status").status.code(), Some(0));
    let (code, health) = node.get_json("/oxauth/restv1/health-check");
    assert_eq!(code, 503, "{health}");
    assert_eq!(health["configuration"], "missing");
    let last = node.last_text();
    assert!(last.contains("loadData=False"), "{last}");
}

#[test]
fn setup_rejects_bad_input() {
    let node = Node::extract("127.77.0.6");
    let last = node.chroot("install/community-edition-setup/setup.properties.last.enc");
    let setup = |props: &Path| {
        run(Command::new(node.setup_py())
            .arg("-f")
            .arg(props)
            .args(["-n", "--root"])
            .arg(node.root.path()))
    };

    // Missing required keys: named in the message.
    let full = node.props(&[]);
    let text = fs::read_to_string(&full).expect("props");
    let partial: String = text
        .lines()
        .filter(|l| !l.starts_with("ldapPass=") && !l.starts_with("city="))
        .map(|l| format!("{l}\n"))
        .collect();
    let path = node.root.path().join("partial.properties");
    fs::write(&path, partial).expect("write");
    let out = setup(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("missing required key(s): ldapPass, city"),
        "{err}"
    );

    // Unreadable properties files: missing, and a directory.
    for bad in [
        node.root.path().join("nope.properties"),
        node.root.path().to_path_buf(),
    ] {
        let out = setup(&bad);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("cannot read properties file"), "{err}");
    }

    // A malformed value.
    let path = node.props(&[("ip", "not-an-ip")]);
    let out = setup(&path);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an IP address"));

    // Unknown flags are refused too.
    let out = run(Command::new(node.setup_py()).arg("--bogus"));
    assert!(!out.status.success());

    assert!(
        !last.exists() && !node.chroot("opt/gluu/standin/node.properties").exists(),
        "a failed setup must not record an installation"
    );
    assert!(node.processes().is_empty());
}

// ------------------------------------------------ installing as root in a namespace

/// What a real installation into `/` would change on the host.
#[derive(Debug, PartialEq, Eq)]
struct HostState {
    opt_gluu_server: bool,
    sbin_gluu_serverd: bool,
    dpkg_knows_gluu_server: bool,
    dpkg_status_len: usize,
    dpkg_status_hash: u64,
    hostname: String,
}

fn host_state() -> HostState {
    use std::hash::{Hash as _, Hasher as _};
    let status = fs::read("/var/lib/dpkg/status").expect("read /var/lib/dpkg/status");
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    status.hash(&mut hasher);
    HostState {
        opt_gluu_server: Path::new("/opt/gluu-server").exists(),
        sbin_gluu_serverd: Path::new("/usr/sbin/gluu-serverd").exists()
            || Path::new("/sbin/gluu-serverd").exists(),
        dpkg_knows_gluu_server: run(Command::new("dpkg").args(["-s", "gluu-server"]))
            .status
            .success(),
        dpkg_status_len: status.len(),
        dpkg_status_hash: hasher.finish(),
        hostname: run_ok(&mut Command::new("hostname")).trim().to_string(),
    }
}

/// `Ok` when the host's `127.0.0.1:port` refuses connections.
fn host_loopback_refuses(port: u16) -> Result<(), String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(_) => Err(format!("the host's {addr} accepts connections")),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(format!(
            "the host's {addr}: {e} (expected connection refused)"
        )),
    }
}

/// Host processes running a program of a package installed at `/` (an argument under
/// `/opt/gluu-server/`); nodes extracted under a temporary root do not match.
fn host_processes_of_root_install() -> Vec<String> {
    clustermgr_procfs::find(|args| args.iter().any(|a| a.starts_with("/opt/gluu-server/")))
        .iter()
        .map(|p| format!("{}: {}", p.pid, p.command_line()))
        .collect()
}

/// The namespace script, killed with its whole process group (timeout, unshare and the
/// namespace's PID 1, whose death ends the namespace) unless it exited.
struct NsScript {
    child: Child,
}

impl Drop for NsScript {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            if let Ok(pgid) = i32::try_from(self.child.id()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = self.child.wait();
        }
    }
}

#[test]
fn dpkg_install_as_root_in_namespace() {
    use std::io::{BufRead as _, BufReader, Read as _};
    use std::os::unix::process::CommandExt as _;

    let uid = run_ok(Command::new("id").arg("-u"));
    assert_eq!(
        uid.trim(),
        "0",
        "this test installs the package with dpkg -i inside mount/net/uts/pid namespaces and \
         needs root (uid 0); it runs as uid {}",
        uid.trim()
    );
    let unshare = Command::new("unshare")
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    assert!(
        unshare.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs util-linux's unshare: {unshare:?}"
    );

    let deb = package();
    let before = host_state();
    assert!(
        !before.opt_gluu_server && !before.sbin_gluu_serverd && !before.dpkg_knows_gluu_server,
        "the host must not have the gluu-server package installed: {before:?}"
    );
    assert_eq!(host_processes_of_root_install(), Vec::<String>::new());
    for port in [1636, 443] {
        if let Err(e) = host_loopback_refuses(port) {
            panic!("precondition: {e}; the host check of this test needs it free");
        }
    }

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/install-in-namespace.sh");
    let started = Instant::now();
    let mut ns = NsScript {
        child: Command::new("bash")
            .arg(&script)
            .arg("--hold")
            .arg(deb)
            .env("STANDIN_NS_TIMEOUT", "240")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run bash {}: {e}", script.display())),
    };
    let stdout = ns.child.stdout.take().expect("stdout");
    let mut stderr = ns.child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let deadline = started + Duration::from_secs(300);
    let mut lines = Vec::new();
    let mut up_after = None;
    let mut seen_from_host = Vec::new();
    let mut host_port_errors = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "the namespace script did not finish within 300 s; output so far:\n{lines:#?}"
                )
            }
        };
        if line == "node up" {
            // The node runs on the namespace's 127.0.0.1:1636 and :443. Its processes are visible
            // from the host (parent PID namespace), its sockets are not: the host's own loopback
            // must still refuse both ports.
            up_after = Some(started.elapsed());
            seen_from_host = host_processes_of_root_install();
            host_port_errors = [1636, 443]
                .into_iter()
                .filter_map(|p| host_loopback_refuses(p).err())
                .collect();
            let mut stdin = ns.child.stdin.take().expect("stdin");
            let _ = stdin.write_all(b"go\n");
        }
        lines.push(line);
    }
    let status = ns.child.wait().expect("wait for the namespace script");
    let total = started.elapsed();
    let err = err_reader.join().unwrap_or_default();
    let out = lines.join("\n");
    assert!(
        status.success(),
        "namespace script failed ({status}):\nstdout:\n{out}\nstderr:\n{err}"
    );

    // Every step, in order.
    let expected = [
        "mounts private, overlays on /etc /opt /usr /var /tmp",
        "interfaces lo",
        "uts hostname gluu-ns-node",
        "dpkg installed 4.2.3~standin1",
        "setup ok",
        "gluu-serverd start ok",
        "ldap ok",
        "https ok",
        "node up",
        "no process left",
        "purged",
        "namespace gone",
    ];
    let mut at = 0;
    for want in expected {
        match lines[at..].iter().position(|l| l == want) {
            Some(i) => at += i + 1,
            None => panic!("line {want:?} missing or out of order in:\n{out}\nstderr:\n{err}"),
        }
    }
    assert_eq!(
        host_port_errors,
        Vec::<String>::new(),
        "the node's ports leaked to the host's loopback"
    );
    assert!(
        seen_from_host.iter().any(|p| p.contains("slapd"))
            && seen_from_host
                .iter()
                .any(|p| p.contains("gluu-standin oxauth")),
        "while the node was up the host should see its slapd and oxauth processes \
         (else the port check above proves nothing): {seen_from_host:?}"
    );

    // The host is as it was.
    assert_eq!(host_state(), before, "the host changed");
    assert_eq!(
        host_processes_of_root_install(),
        Vec::<String>::new(),
        "processes of the node outlived the namespace"
    );
    for port in [1636, 443] {
        if let Err(e) = host_loopback_refuses(port) {
            panic!("after the run: {e}");
        }
    }

    let timings: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("timing "))
        .collect();
    eprintln!(
        "namespace install: node up after {:?}, total {total:?}; phases (s): {}",
        up_after.unwrap_or_default(),
        timings.join(", ")
    );
}
