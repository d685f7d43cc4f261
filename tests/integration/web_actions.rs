//! The console's actions on the status screens (file replication, key rotation, cache, load
//! balancer, certificates, custom schema), the dashboard's adopt and make-primary, and the
//! monitoring page's live charts: each through the API's domain call (the CLI sees the change,
//! the domain's refusals come back), CSRF and roles checked (a viewer sees no buttons and its
//! forged POST is refused), audited as web:USER, secrets never rendered nor audited.

use crate::web::{ADMIN_PW, Browser, Console, Page, VIEWER_PW, first_admin, wait_for_samples};
use clustermgr_tests::text;
use std::path::Path;
use std::process::Command;

/// A multipart POST (`-F`) of `fields` and the files `files` (field name, path).
pub(crate) fn upload(
    b: &Browser,
    path: &str,
    fields: &[(&str, &str)],
    files: &[(&str, &Path)],
) -> Page {
    let dir = b.jar.parent().unwrap();
    let (hdr, body) = (dir.join("uh"), dir.join("ub"));
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "20", "--cacert"])
        .arg(&b.ca)
        .arg("-b")
        .arg(&b.jar)
        .arg("-D")
        .arg(&hdr)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}"]);
    for (k, v) in fields {
        c.arg("-F").arg(format!("{k}={v}"));
    }
    for (k, p) in files {
        c.arg("-F").arg(format!("{k}=@{}", p.display()));
    }
    let o = c.arg(format!("{}{path}", b.base)).output().unwrap();
    assert!(o.status.success(), "curl {path}: {}", text(&o.stderr));
    Page {
        code: text(&o.stdout).trim().parse().unwrap(),
        headers: std::fs::read_to_string(&hdr).unwrap(),
        body: std::fs::read_to_string(&body).unwrap_or_default(),
    }
}

/// The admin adds user `name` with `role` through the users page.
pub(crate) fn add_user(admin: &Browser, name: &str, role: &str) {
    let csrf = admin.get("/users").hidden("csrf");
    let r = admin.post(
        "/users",
        &[
            ("csrf", &csrf),
            ("username", name),
            ("role", role),
            ("password", VIEWER_PW),
            ("password_again", VIEWER_PW),
        ],
    );
    assert_eq!(r.code, 200, "{}", r.body);
}

#[test]
fn the_status_screens_act_through_the_apis_domain_calls() {
    let c = Console::start();
    let ctl = &c.ctl;
    let admin = c.browser("admin");
    first_admin(ctl, &admin);
    add_user(&admin, "watcher", "viewer");
    add_user(&admin, "oper", "operator");
    let operator = c.browser("operator");
    assert_eq!(operator.sign_in("oper", VIEWER_PW).code, 303);
    ctl.cli_ok(&["cluster", "configure", "--lb-hostname", "idp.webact.test"]);
    let workflows = ctl.json(&["workflow", "list"]);

    // Every screen renders, with its actions for an operator.
    for (screen, action) in [
        ("services", None),
        ("cache", Some("/cache/password")),
        ("lb", Some("/lb/install")),
        ("fsrep", Some("/fsrep/change")),
        ("keys", Some("/keys/rotate")),
        ("certs", Some("/certs/install")),
        ("schema", Some("/schema/add")),
    ] {
        let p = operator.get(&format!("/status/{screen}"));
        assert_eq!(p.code, 200, "{screen}: {}", p.body);
        if let Some(a) = action {
            assert!(p.body.contains(&format!("action=\"{a}\"")), "{screen}");
        }
    }
    let lb = operator.get("/status/lb");
    assert!(
        lb.body
            .contains("what an external load balancer must route")
            && lb.body.contains("/oxauth"),
        "{}",
        lb.body
    );
    let csrf = operator.get("/status/fsrep").hidden("csrf");

    // File replication: enable, an exclude, an action; the CLI sees each; a system directory
    // is refused (and forcing it is an admin's decision).
    let fs = |b: &Browser, csrf: &str, fields: &[(&str, &str)]| {
        let mut f = vec![("csrf", csrf)];
        f.extend_from_slice(fields);
        b.post("/fsrep/change", &f)
    };
    let r = fs(&operator, &csrf, &[("change", "enable")]);
    assert_eq!(r.code, 303, "{}", r.body);
    assert_eq!(r.location(), "/status/fsrep");
    for fields in [
        &[("change", "add-exclude"), ("value", "*.swp")][..],
        &[
            ("change", "add-action"),
            ("value", "/opt/gluu/jetty/oxauth/custom/**"),
            ("service", "oxauth"),
        ][..],
    ] {
        let r = fs(&operator, &csrf, fields);
        assert_eq!(r.code, 303, "{fields:?}: {}", r.body);
    }
    let st = ctl.json(&["fsrep", "status", "--output", "json"]);
    assert_eq!(st["enabled"], true, "{st}");
    assert!(
        st["excludes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "*.swp"),
        "{st}"
    );
    assert!(st["actions"].to_string().contains("oxauth"), "{st}");
    let page = operator.get("/status/fsrep");
    assert!(
        page.body.contains(">Disable file replication<"),
        "{}",
        page.body
    );
    let r = fs(
        &operator,
        &csrf,
        &[("change", "remove-exclude"), ("value", "*.swp")],
    );
    assert_eq!(r.code, 303, "{}", r.body);
    let st = ctl.json(&["fsrep", "status", "--output", "json"]);
    assert!(!st["excludes"].to_string().contains("*.swp"), "{st}");
    let sys = fs(
        &operator,
        &csrf,
        &[("change", "add-path"), ("value", "/etc")],
    );
    assert_eq!(sys.code, 400, "{}", sys.body);
    let forced = fs(
        &operator,
        &csrf,
        &[("change", "add-path"), ("value", "/etc"), ("force", "on")],
    );
    assert_eq!(forced.code, 403, "an operator forced a system directory");
    assert!(forced.body.contains("admin role"), "{}", forced.body);
    let no_csrf = operator.post("/fsrep/change", &[("change", "disable")]);
    assert_eq!(no_csrf.code, 403);

    // Key rotation settings: durations parsed as the CLI's, a bad one named.
    let keys = |fields: &[(&str, &str)]| {
        let mut f = vec![("csrf", csrf.as_str())];
        f.extend_from_slice(fields);
        operator.post("/keys/configure", &f)
    };
    let r = keys(&[
        ("enabled", "on"),
        ("backup", "on"),
        ("interval", "48h"),
        ("overlap", "2h"),
    ]);
    assert_eq!(r.code, 303, "{}", r.body);
    let st = ctl.json(&["keys", "status", "--output", "json"]);
    assert_eq!(st["settings"]["interval_ms"], 172_800_000u64, "{st}");
    assert_eq!(st["settings"]["enabled"], true, "{st}");
    let page = operator.get("/status/keys");
    assert!(page.body.contains("value=\"172800s\""), "{}", page.body);
    let bad = keys(&[("interval", "soon")]);
    assert_eq!(bad.code, 400, "{}", bad.body);
    assert!(bad.body.contains("interval:"), "{}", bad.body);

    // The cache password is write-only; the domain's check answers; nothing secret is audited.
    let page = operator.get("/status/cache");
    assert!(page.body.contains("name=\"password\" type=\"password\""));
    let short = operator.post(
        "/cache/password",
        &[("csrf", &csrf), ("mode", "set"), ("password", "sh0rt")],
    );
    assert_eq!(short.code, 400, "{}", short.body);
    assert!(short.body.contains("8 to 512 bytes"), "{}", short.body);
    // Installs without the node they need are refused by the domain, starting nothing.
    let none = operator.post("/cache/install", &[("csrf", &csrf), ("node", "")]);
    assert!(none.code >= 400, "{}", none.body);
    let lb_none = operator.post("/lb/install", &[("csrf", &csrf), ("node", "no-such-lb")]);
    assert!(lb_none.code >= 400, "{}", lb_none.body);
    assert!(
        lb_none.body.contains("load balancer install:"),
        "{}",
        lb_none.body
    );
    assert_eq!(ctl.json(&["workflow", "list"]), workflows);

    // Uploads: a certificate that is not PEM and a schema that does not parse are refused
    // with the domain's reason; without the CSRF token nothing is read.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let schema = dir.path().join("broken.schema");
    std::fs::write(&schema, "attributetype ( this is not schema\n").unwrap();
    let cert = upload(
        &operator,
        "/certs/install",
        &[("csrf", &csrf)],
        &[("certificate", &junk), ("key", &junk)],
    );
    assert_eq!(cert.code, 400, "{}", cert.body);
    assert!(cert.body.contains("certificate install:"), "{}", cert.body);
    let sch = upload(
        &operator,
        "/schema/add",
        &[("csrf", &csrf)],
        &[("file", &schema)],
    );
    assert_eq!(sch.code, 400, "{}", sch.body);
    assert!(sch.body.contains("schema add:"), "{}", sch.body);
    let forged = upload(&operator, "/schema/add", &[], &[("file", &schema)]);
    assert_eq!(forged.code, 403, "{}", forged.body);

    // The dashboard: a node without Gluu offers no adoption; adopting it is refused anyway.
    let adopt = operator.post("/servers/adopt", &[("csrf", &csrf), ("node", "nowhere")]);
    assert!(adopt.code >= 400, "{}", adopt.body);
    assert!(adopt.body.contains("gluu adopt:"), "{}", adopt.body);

    // A viewer sees the records but no action, and its forged POSTs are refused.
    let viewer = c.browser("viewer");
    assert_eq!(viewer.sign_in("watcher", VIEWER_PW).code, 303);
    let vcsrf = viewer.get("/dashboard").hidden("csrf");
    for screen in ["cache", "lb", "fsrep", "keys", "certs", "schema"] {
        let p = viewer.get(&format!("/status/{screen}"));
        assert_eq!(p.code, 200, "{screen}");
        assert!(
            !p.body.contains("id=\"actions-title\""),
            "{screen}: a viewer sees actions"
        );
        assert!(
            !p.body.contains("<button type=\"submit\" data-confirm"),
            "{screen}"
        );
    }
    for (path, fields) in [
        ("/keys/rotate", vec![("csrf", vcsrf.as_str())]),
        (
            "/fsrep/change",
            vec![("csrf", vcsrf.as_str()), ("change", "disable")],
        ),
        (
            "/servers/primary",
            vec![("csrf", vcsrf.as_str()), ("node", "x")],
        ),
    ] {
        let r = viewer.post(path, &fields);
        assert_eq!(r.code, 403, "{path}: {}", r.body);
    }
    let vup = upload(
        &viewer,
        "/certs/install",
        &[("csrf", &vcsrf)],
        &[("certificate", &junk)],
    );
    assert_eq!(vup.code, 403, "{}", vup.body);
    assert_eq!(
        ctl.json(&["fsrep", "status", "--output", "json"])["enabled"],
        true
    );

    // The audit log names the console user for each change, never the password.
    let audit = ctl.cli_ok(&["audit", "--output", "json"]);
    for want in [
        "fsrep.enable",
        "fsrep.excludes.add",
        "fsrep.actions.add",
        "keys.configure",
        "cache.password.set",
        "cert.install",
        "schema.add",
        "web:oper",
    ] {
        assert!(audit.contains(want), "{want} missing: {audit}");
    }
    for secret in ["sh0rt", ADMIN_PW, VIEWER_PW] {
        assert!(!audit.contains(secret), "{secret} in the audit");
    }
}

#[test]
fn monitoring_charts_update_live_as_samples_arrive() {
    let c = Console::start();
    let a = c.node("gluu1.weblive.test", |_| {}, &["--metrics-interval", "1s"]);
    wait_for_samples(&c.ctl, &a.hostname);
    let b = c.browser("admin");
    first_admin(&c.ctl, &b);
    // The page names its live source (minijinja escapes '/' in attributes; a browser decodes it).
    let page = b
        .get("/monitoring/gluu1.weblive.test")
        .body
        .replace("&#x2f;", "/");
    assert!(
        page.contains("data-events=\"/live/monitoring/gluu1.weblive.test?range=1h\""),
        "{page}"
    );
    assert_eq!(b.get("/live/monitoring/no-such-node").code, 404);
    // The charts come at once, then again as new samples are stored: two events whose
    // drawings differ (a new point), without the page asking again.
    let mut curl = Command::new("curl")
        .args(["-sSN", "--max-time", "60", "--cacert"])
        .arg(&b.ca)
        .arg("-b")
        .arg(&b.jar)
        .arg(format!("{}/live/monitoring/gluu1.weblive.test", b.base))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = curl.stdout.take().unwrap();
    let mut events: Vec<String> = Vec::new();
    {
        use std::io::BufRead;
        let mut current = String::new();
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(d) = l.strip_prefix("data: ") {
                current.push_str(d);
            } else if l.is_empty() && !current.is_empty() {
                events.push(std::mem::take(&mut current));
                if events.len() >= 2 {
                    break;
                }
            }
        }
    }
    let _ = curl.kill();
    let _ = curl.wait();
    assert_eq!(events.len(), 2, "{events:?}");
    for e in &events {
        assert!(
            e.contains("<figure class=\"chart\">") && e.contains("<polyline"),
            "{e}"
        );
    }
    assert_ne!(events[0], events[1]);
}
