//! OpenID Connect sign-in to the console against the stand-in's oxAuth on an installed node:
//! `console oidc register` (dynamic registration), a `clusteradmin` user signs in through the
//! OP's login page and lands as admin (audited as `alice@openid (sub alice)`), even after a
//! flood of sign-ins started from the same source meanwhile; a user without the claim is
//! refused, a replayed callback is refused by the console; register again and remove end the
//! OpenID Connect sessions (not the local ones); `--ca-file` is kept absolute; at the OP: PKCE
//! required (missing and plain refused), a wrong verifier and a replayed code refused,
//! userinfo's role claim.

use super::cache::{Daemons, cache_configuration, cache_host};
use super::gluu_cluster::{Cluster, HTTPS_PORT, LB, Node, address};
use super::machine::add_on;
use super::web::{ADMIN_PW, Browser, Console, Page, first_admin};
use tamper::TamperingOp;

mod browser;
mod tamper;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clustermgr_tests::{Agent, Controller, free_port, text};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const ISSUER: &str = "https://idp.cluster.test:8443";

fn person(uid: &str, password: &str, role: Option<&str>) -> String {
    let mut l = format!(
        "dn: uid={uid},ou=people,o=gluu\nobjectClass: top\nobjectClass: inetOrgPerson\n\
         objectClass: gluuCustomPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\nuserPassword: {password}\n"
    );
    if let Some(r) = role {
        l.push_str(&format!("role: {r}\n"));
    }
    l
}

/// A query parameter of a URL.
fn query(url: &str, name: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| {
            let v = v.replace('+', " ");
            percent_decode(&v)
        })
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// Every hidden input of the page's form: (name, value).
fn hidden_inputs(page: &Page) -> Vec<(String, String)> {
    page.body
        .split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|s| {
            let (name, rest) = s.split_once('"').unwrap();
            let value = rest
                .split("value=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            (
                name.to_string(),
                value.replace("&quot;", "\"").replace("&amp;", "&"),
            )
        })
        .collect()
}

/// Through the OP's authorize and login pages as `user`; the OP's answer to the login.
fn op_login(b: &Browser, authorize_url: &str, user: &str, password: &str) -> Page {
    let authz = b.fetch(authorize_url, None);
    assert_eq!(authz.code, 302, "authorize: {}", authz.body);
    let login_url = format!("{ISSUER}{}", authz.location());
    let form = b.fetch(&login_url, None);
    assert_eq!(form.code, 200, "login page: {}", form.body);
    let mut fields = hidden_inputs(&form);
    fields.push(("username".into(), user.into()));
    fields.push(("password".into(), password.into()));
    let f: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    b.fetch(&format!("{ISSUER}/oxauth/login.htm"), Some(&f))
}

/// A browser that reaches the console and the OP (by the load balancer's name, at the node).
fn browser(c: &Console, node: &Node, name: &str, op_cert: &Path) -> Browser {
    let bundle = c.dir.path().join("cas.pem");
    let mut pem = std::fs::read_to_string(&c.ca).unwrap();
    pem.push_str(&std::fs::read_to_string(op_cert).unwrap());
    std::fs::write(&bundle, pem).unwrap();
    let mut b = Browser::new(&c.base(), &bundle, c.dir.path(), name);
    b.extra = vec![
        "--resolve".into(),
        format!("{LB}:{HTTPS_PORT}:{}", address(node)),
    ];
    b
}

/// Signs `user` in from the console's button; the console's answer to the OP's callback and
/// the callback URL.
fn console_sign_in(b: &Browser, user: &str, password: &str) -> (Page, String) {
    let callback = to_callback(b, user, password);
    (b.fetch(&callback, None), callback)
}

/// From the console's button through the OP's login as `user`: the callback URL the OP sends
/// the browser back with (not followed yet).
fn to_callback(b: &Browser, user: &str, password: &str) -> String {
    let login = b.get("/login");
    assert!(
        login.body.contains("Sign in with OpenID Connect"),
        "{}",
        login.body
    );
    let start = b.get("/login/oidc");
    assert_eq!(start.code, 303, "{}", start.body);
    let to_op = start.location();
    assert!(
        to_op.starts_with(&format!("{ISSUER}/oxauth/restv1/authorize?")),
        "{to_op}"
    );
    assert_eq!(
        query(&to_op, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let back = op_login(b, &to_op, user, password);
    assert_eq!(back.code, 302, "login as {user}: {}", back.body);
    let callback = back.location();
    assert!(
        callback.contains("/login/oidc/callback?code="),
        "{callback}"
    );
    callback
}

/// `count` sign-ins started at the console from one source (one curl, no cookies kept); how
/// many were sent to the OP.
fn flood(c: &Console, count: u32) -> usize {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "600", "--cacert"])
        .arg(&c.ca)
        .args(["-o", "/dev/null", "-w", "%{http_code}\n"])
        .arg(format!("{}/login/oidc?n=[1-{count}]", c.base()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout).lines().filter(|l| *l == "303").count()
}

fn curl_json(op_cert: &Path, node: &Node, args: &[&str]) -> (u16, Value) {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(op_cert)
        .args(["--resolve", &format!("{LB}:{HTTPS_PORT}:{}", address(node))])
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "curl {args:?}: {}", text(&o.stderr));
    let out = text(&o.stdout);
    let (body, code) = out.rsplit_once('\n').unwrap();
    (
        code.trim().parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    )
}

/// `console oidc register` (dynamic registration at the cluster's own Gluu); its output.
fn register(ctl: &Controller, redirect: &str, ca: &Path, connect: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "console",
        "oidc",
        "register",
        "--redirect-uri",
        redirect,
        "--ca-file",
        ca.to_str().unwrap(),
        "--connect-to",
        connect,
    ];
    args.extend_from_slice(extra);
    ctl.cli_ok(&args)
}

/// An installed stand-in node with three people (alice: clusteradmin, bob: no role, carol:
/// clusterview) and a console registered at its oxAuth, serving on a fresh port, its first
/// local admin created.
pub(crate) struct Setup {
    pub(crate) console: Console,
    /// With the Redis cache: its host, and the guard of the daemons it started.
    _cache: Option<(Agent, Daemons)>,
    pub(crate) nodes: Vec<Node>,
    _files: tempfile::TempDir,
    pub(crate) op_cert: PathBuf,
    pub(crate) redirect: String,
    pub(crate) connect: String,
}

pub(crate) fn setup(redis: bool) -> Setup {
    let c = Cluster::new(1, HTTPS_PORT);
    let out = c.ctl.cli(&["gluu", "install", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Codes and tokens in Redis (through the node's stunnel client) instead of the directory.
    let cache = redis.then(|| {
        let (host, daemons) = cache_host(&c);
        c.ctl.cli_ok(&["cache", "install", &host.hostname]);
        let conf = cache_configuration(&c.nodes[0]);
        assert!(conf.contains("\"REDIS\""), "{conf}");
        (host, daemons)
    });
    let node = &c.nodes[0];
    let op_cert: PathBuf = node.inside("/etc/certs/httpd.crt");
    add_on(
        address(node),
        &[
            person("alice", "alice pw 1", Some("clusteradmin")),
            person("bob", "bob pw 2", None),
            person("carol", "carol pw 3", Some("clusterview")),
        ]
        .join("\n"),
    )
    .unwrap();

    // The console registered at the cluster's own Gluu (the issuer asked from the controller).
    let listen = format!("127.0.0.1:{}", free_port());
    let redirect = format!("https://{listen}/login/oidc/callback");
    let connect = format!("{}:{HTTPS_PORT}", address(node));
    let reg = register(
        &c.ctl,
        &redirect,
        &op_cert,
        &connect,
        &["--role-map", "clusteradmin=admin,clusterview=viewer"],
    );
    assert!(
        reg.contains(&format!("registered the console at {ISSUER} as client ")),
        "{reg}"
    );
    let settings = std::fs::read_to_string(c.ctl.data.join("oidc.toml")).unwrap();
    assert!(settings.contains("client_secret_sealed"), "{settings}");
    let shown = c.ctl.cli_ok(&["console", "oidc", "show"]);
    assert!(
        shown.contains("(sealed)") && !shown.contains("client_secret_sealed"),
        "{shown}"
    );

    let Cluster {
        mut ctl,
        nodes,
        files,
    } = c;
    ctl.stop();
    ctl.start(&["--web-listen", &listen]);
    let console = Console::of(ctl, listen);
    // The local first admin exists (before it, every page leads to /setup).
    first_admin(&console.ctl, &console.browser("admin"));
    Setup {
        console,
        _cache: cache,
        nodes,
        _files: files,
        op_cert,
        redirect,
        connect,
    }
}

#[test]
fn openid_connect_sign_in_through_the_stand_in_oxauth() {
    let Setup {
        console,
        _cache,
        nodes,
        _files,
        op_cert,
        redirect,
        connect,
    } = setup(false);
    let node = &nodes[0];

    // alice (role clusteradmin) lands as admin, shown and audited by her subject at the OP,
    // although more sign-ins than the console ever kept pending were started from the same
    // source between her start and her return.
    let alice = browser(&console, node, "alice", &op_cert);
    let callback = to_callback(&alice, "alice", "alice pw 1");
    assert_eq!(flood(&console, 10_050), 10_050);
    let landed = alice.fetch(&callback, None);
    assert_eq!(landed.code, 200, "{}", landed.body);
    assert!(
        landed.body.contains("alice@openid (sub alice)"),
        "{}",
        landed.body
    );
    let dash = alice.get("/dashboard");
    assert_eq!(dash.code, 200, "{}", dash.body);
    assert!(
        dash.body.contains("alice@openid (sub alice) (admin)"),
        "{}",
        dash.body
    );
    assert_eq!(
        alice.get("/users").code,
        200,
        "an admin sees the users page"
    );
    // The same callback again (a replayed code and state): refused by the console.
    let again = alice.fetch(&callback, None);
    assert_eq!(again.code, 400, "{}", again.body);
    assert!(again.body.contains("already used"), "{}", again.body);

    // carol (clusterview) is a viewer; bob (no role claim) is refused.
    let carol = browser(&console, node, "carol", &op_cert);
    assert_eq!(console_sign_in(&carol, "carol", "carol pw 3").0.code, 200);
    assert!(
        carol
            .get("/dashboard")
            .body
            .contains("carol@openid (sub carol) (viewer)")
    );
    assert_eq!(carol.get("/users").code, 403);
    let bob = browser(&console, node, "bob", &op_cert);
    let (refused, _) = console_sign_in(&bob, "bob", "bob pw 2");
    assert_eq!(refused.code, 403, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("bob@openid (sub bob) has no value of the claim"),
        "{}",
        refused.body
    );
    assert_eq!(bob.get("/dashboard").code, 303, "bob has no session");
    // A wrong password stays at the OP.
    let wrong = op_login(&bob, &bob.get("/login/oidc").location(), "alice", "not it");
    assert_eq!(wrong.code, 401, "{}", wrong.body);

    let audit = console.ctl.json(&["audit", "--limit", "50"]);
    let rows = audit.as_array().unwrap();
    let signed_in = rows
        .iter()
        .find(|r| r["who"] == "web:alice@openid (sub alice)" && r["action"] == "web.sign-in")
        .unwrap_or_else(|| panic!("{audit:#}"));
    assert_eq!(signed_in["result"], "ok");
    assert!(
        signed_in["detail"]
            .as_str()
            .unwrap()
            .contains("as admin through OpenID Connect"),
        "{signed_in}"
    );
    let refusal = rows
        .iter()
        .find(|r| {
            r["who"] == "unauthenticated"
                && r["result"]
                    .as_str()
                    .unwrap_or("")
                    .contains("bob@openid (sub bob) has no value of the claim")
        })
        .unwrap_or_else(|| panic!("{audit:#}"));
    assert_eq!(refusal["action"], "web.sign-in");
    let all = audit.to_string();
    assert!(
        !all.contains("alice pw 1") && !all.contains("carol pw 3"),
        "{all}"
    );

    // A man in the middle holding the OP's certificate and key changes the ID token's claims
    // (bob gets role clusteradmin): the console refuses it, the signature no longer verifies.
    let key = std::fs::read_to_string(node.inside("/etc/certs/httpd.key")).unwrap();
    let cert_pem = std::fs::read_to_string(&op_cert).unwrap();
    let mitm = TamperingOp::start(&cert_pem, &key, connect.parse().unwrap(), LB);
    register(
        &console.ctl,
        &redirect,
        &op_cert,
        &mitm.addr.to_string(),
        &[],
    );
    // No restart: the console reads its settings again when they change, and ends the OpenID
    // Connect sessions (a role revoked at the OP counts from the next sign-in); not local ones.
    let admin = console.browser("admin-local");
    assert_eq!(admin.sign_in("admin", ADMIN_PW).code, 303);
    assert_eq!(alice.get("/dashboard").code, 303, "alice's session ended");
    assert_eq!(carol.get("/dashboard").code, 303, "carol's session ended");
    assert_eq!(admin.get("/dashboard").code, 200, "the local admin's stays");
    let mallory = browser(&console, node, "mallory", &op_cert);
    let (forged, _) = console_sign_in(&mallory, "bob", "bob pw 2");
    assert_eq!(forged.code, 401, "{}", forged.body);
    assert!(
        forged.body.contains("signature does not verify"),
        "{}",
        forged.body
    );
    assert_eq!(mallory.get("/dashboard").code, 303, "no session");

    // A sign-in started before the settings move to another issuer is refused at its
    // callback: its code is not for the client now configured, whose secret goes to no other
    // issuer.
    let late = to_callback(&carol, "carol", "carol pw 3");
    let other_secret = console.ctl.data.join("other-client-secret");
    std::fs::write(&other_secret, "other client secret\n").unwrap();
    console.ctl.cli_ok(&[
        "console",
        "oidc",
        "register",
        "--redirect-uri",
        &redirect,
        "--issuer",
        "https://other-op.example.test",
        "--client-id",
        "other-client",
        "--client-secret-file",
        other_secret.to_str().unwrap(),
    ]);
    let refused = carol.fetch(&late, None);
    assert_eq!(refused.code, 400, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("settings changed since this sign-in started"),
        "{}",
        refused.body
    );
    assert_eq!(carol.get("/dashboard").code, 303, "no session");

    // Registered again at the real OP (the CA file given relative to the working directory:
    // kept absolute), carol signs in; removed: her session ends, the sign-in page offers local
    // sign-in only.
    let rel = Command::new(clustermgr_tests::clustermgr_bin())
        .current_dir(op_cert.parent().unwrap())
        .arg("--data-dir")
        .arg(&console.ctl.data)
        .args(["console", "oidc", "register", "--redirect-uri", &redirect])
        .args(["--ca-file", op_cert.file_name().unwrap().to_str().unwrap()])
        .args(["--connect-to", &connect, "--role-map", "clusterview=viewer"])
        .output()
        .unwrap();
    assert!(rel.status.success(), "{}", text(&rel.stderr));
    let shown = console.ctl.cli_ok(&["console", "oidc", "show"]);
    assert!(
        shown.contains(&format!(
            "\"ca_file\": \"{}\"",
            std::fs::canonicalize(&op_cert).unwrap().display()
        )),
        "{shown}"
    );
    let missing = console.ctl.cli(&[
        "console",
        "oidc",
        "register",
        "--redirect-uri",
        &redirect,
        "--ca-file",
        "no-such-ca.pem",
    ]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("--ca-file no-such-ca.pem: cannot find it"),
        "{}",
        text(&missing.stderr)
    );
    assert_eq!(console_sign_in(&carol, "carol", "carol pw 3").0.code, 200);
    assert_eq!(carol.get("/dashboard").code, 200);
    console.ctl.cli_ok(&["console", "oidc", "remove"]);
    assert_eq!(carol.get("/dashboard").code, 303, "carol's session ended");
    assert_eq!(admin.get("/dashboard").code, 200, "the local admin's stays");
    assert!(!mallory.get("/login").body.contains("OpenID Connect"));
    assert_eq!(mallory.get("/login/oidc").code, 404);

    op_checks(node, &op_cert);
}

#[test]
fn openid_connect_codes_in_the_redis_cache() {
    let s = setup(true);
    let node = &s.nodes[0];
    // A client registered at the OP by hand, recorded with --client-id and a secret file.
    let (code, reg) = curl_json(
        &s.op_cert,
        node,
        &[
            "-H",
            "content-type: application/json",
            "-d",
            &format!(r#"{{"redirect_uris":["{}"]}}"#, s.redirect),
            &format!("{ISSUER}/oxauth/restv1/register"),
        ],
    );
    assert_eq!(code, 201, "{reg}");
    let id = reg["client_id"].as_str().unwrap();
    let secret_file = s.console.dir.path().join("client-secret");
    std::fs::write(
        &secret_file,
        format!("{}\n", reg["client_secret"].as_str().unwrap()),
    )
    .unwrap();
    let out = register(
        &s.console.ctl,
        &s.redirect,
        &s.op_cert,
        &s.connect,
        &[
            "--client-id",
            id,
            "--client-secret-file",
            secret_file.to_str().unwrap(),
        ],
    );
    assert!(!out.contains("registered the console"), "{out}");
    let settings = std::fs::read_to_string(s.console.ctl.data.join("oidc.toml")).unwrap();
    assert!(
        settings.contains(&format!("client_id = \"{id}\"")),
        "{settings}"
    );
    let alice = browser(&s.console, node, "alice", &s.op_cert);
    let to_op = alice.get("/login/oidc").location();
    assert_eq!(query(&to_op, "client_id").as_deref(), Some(id), "{to_op}");
    let (landed, _) = console_sign_in(&alice, "alice", "alice pw 1");
    assert_eq!(landed.code, 200, "{}", landed.body);
    assert!(
        alice
            .get("/dashboard")
            .body
            .contains("alice@openid (sub alice) (admin)"),
        "signed in"
    );
    // A code is used once through Redis too (GET, then DEL decides who owns it).
    op_checks(node, &s.op_cert);
}

/// The OP's own rules, with a client the test registers.
fn op_checks(node: &Node, op_cert: &Path) {
    let redirect = "https://client.example.test/cb";
    let (code, reg) = curl_json(
        op_cert,
        node,
        &[
            "-H",
            "content-type: application/json",
            "-d",
            &format!(r#"{{"redirect_uris":["{redirect}"],"client_name":"t"}}"#),
            &format!("{ISSUER}/oxauth/restv1/register"),
        ],
    );
    assert_eq!(code, 201, "{reg}");
    let id = reg["client_id"].as_str().unwrap().to_string();
    let secret = reg["client_secret"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut b = Browser::new(ISSUER, op_cert, dir.path(), "op");
    b.extra = vec![
        "--resolve".into(),
        format!("{LB}:{HTTPS_PORT}:{}", address(node)),
    ];
    let verifier = "a-verifier-of-enough-length-0123456789-abcdefghij";
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    let authorize = |extra: &str| {
        format!(
            "{ISSUER}/oxauth/restv1/authorize?response_type=code&client_id={id}&redirect_uri={}\
             &scope=openid+role&state=s1&nonce=n1{extra}",
            urlencode(redirect)
        )
    };
    // PKCE is required: missing and plain are refused.
    let missing = b.fetch(&authorize(""), None);
    assert_eq!(missing.code, 400, "{}", missing.body);
    assert!(missing.body.contains("requires PKCE"), "{}", missing.body);
    let plain = b.fetch(
        &authorize(&format!(
            "&code_challenge={verifier}&code_challenge_method=plain"
        )),
        None,
    );
    assert_eq!(plain.code, 400, "{}", plain.body);
    let s256 = authorize(&format!(
        "&code_challenge={challenge}&code_challenge_method=S256"
    ));
    let code_of = |b: &Browser| {
        let back = op_login(b, &s256, "alice", "alice pw 1");
        assert_eq!(back.code, 302, "{}", back.body);
        assert_eq!(query(&back.location(), "state").as_deref(), Some("s1"));
        query(&back.location(), "code").unwrap()
    };
    let token = |code: &str, verifier: &str| {
        curl_json(
            op_cert,
            node,
            &[
                "-u",
                &format!("{id}:{secret}"),
                "-d",
                &format!(
                    "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={verifier}",
                    urlencode(redirect)
                ),
                &format!("{ISSUER}/oxauth/restv1/token"),
            ],
        )
    };
    // A wrong verifier is refused, and the code is spent by the attempt.
    let code = code_of(&b);
    let (status, answer) = token(&code, "another-verifier-of-enough-length-0123456789");
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error_description"]
            .as_str()
            .unwrap()
            .contains("code_verifier"),
        "{answer}"
    );
    let (status, answer) = token(&code, verifier);
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_grant")),
        "{answer}"
    );
    // The right verifier: an ID token; the same code again: refused.
    let code = code_of(&b);
    let (status, answer) = token(&code, verifier);
    assert_eq!(status, 200, "{answer}");
    let id_token = answer["id_token"].as_str().unwrap();
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(id_token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], id.as_str());
    assert_eq!(claims["nonce"], "n1");
    assert_eq!(claims["role"], serde_json::json!(["clusteradmin"]));
    let (status, replay) = token(&code, verifier);
    assert_eq!(
        (status, replay["error"].as_str()),
        (400, Some("invalid_grant")),
        "{replay}"
    );
    let access = answer["access_token"].as_str().unwrap();
    let (status, info) = curl_json(
        op_cert,
        node,
        &[
            "-H",
            &format!("authorization: Bearer {access}"),
            &format!("{ISSUER}/oxauth/restv1/userinfo"),
        ],
    );
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["role"], serde_json::json!(["clusteradmin"]));
    assert_eq!(info["sub"], claims["sub"]);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
