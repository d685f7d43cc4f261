//! The web console (`serve --web-listen`), driven over HTTPS with curl as a browser would:
//! first-run admin creation with the setup code, sign-in, the rate limit, the dashboard's
//! agents, roles (a viewer's forged POST is refused), CSRF tokens, sign-out, security headers
//! and what the audit log keeps.

use clustermgr_tests::{Agent, Controller, free_port, text};
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) const ADMIN_PW: &str = "correct horse battery staple";
pub(crate) const VIEWER_PW: &str = "viewer password 1234";

/// A curl "browser": its own cookie jar, trusting the controller's CA (and `extra` curl
/// arguments, e.g. `--resolve` for an OpenID Provider).
pub(crate) struct Browser {
    pub(crate) base: String,
    pub(crate) ca: PathBuf,
    pub(crate) jar: PathBuf,
    pub(crate) extra: Vec<String>,
}

pub(crate) struct Page {
    pub(crate) code: u16,
    pub(crate) headers: String,
    pub(crate) body: String,
}

impl Page {
    /// The value of the hidden input `name` in the page's (first) form.
    pub(crate) fn hidden(&self, name: &str) -> String {
        let needle = format!("name=\"{name}\" value=\"");
        let at = self
            .body
            .find(&needle)
            .unwrap_or_else(|| panic!("no {name} in:\n{}", self.body))
            + needle.len();
        self.body[at..].split('"').next().unwrap().to_string()
    }
    pub(crate) fn location(&self) -> String {
        self.header("location").unwrap_or_default()
    }
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

impl Browser {
    pub(crate) fn new(base: &str, ca: &Path, dir: &Path, name: &str) -> Self {
        Self {
            base: base.to_string(),
            ca: ca.to_path_buf(),
            jar: dir.join(format!("{name}.cookies")),
            extra: Vec::new(),
        }
    }

    fn request(&self, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        self.fetch(&format!("{}{path}", self.base), form)
    }

    /// A request to an absolute URL (POST when `form` is given).
    pub(crate) fn fetch(&self, url: &str, form: Option<&[(&str, &str)]>) -> Page {
        let dir = self.jar.parent().unwrap();
        let (hdr, body) = (dir.join("h"), dir.join("b"));
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "20", "--cacert"])
            .arg(&self.ca)
            .arg("-b")
            .arg(&self.jar)
            .arg("-c")
            .arg(&self.jar)
            .arg("-D")
            .arg(&hdr)
            .arg("-o")
            .arg(&body)
            .args(["-w", "%{http_code}"])
            .args(&self.extra);
        if let Some(fields) = form {
            if fields.is_empty() {
                c.args(["-X", "POST", "-d", ""]);
            }
            for (k, v) in fields {
                c.arg("--data-urlencode").arg(format!("{k}={v}"));
            }
        }
        let o = c.arg(url).output().unwrap();
        assert!(o.status.success(), "curl {url}: {}", text(&o.stderr));
        Page {
            code: text(&o.stdout).trim().parse().unwrap(),
            headers: std::fs::read_to_string(&hdr).unwrap(),
            body: std::fs::read_to_string(&body).unwrap_or_default(),
        }
    }

    pub(crate) fn get(&self, path: &str) -> Page {
        self.request(path, None)
    }

    pub(crate) fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        self.request(path, Some(form))
    }

    /// Signs in through the form; returns the response to the POST.
    pub(crate) fn sign_in(&self, user: &str, password: &str) -> Page {
        let form = self.get("/login");
        assert_eq!(form.code, 200, "{}", form.body);
        let token = form.hidden("form_token");
        self.post(
            "/login",
            &[
                ("form_token", &token),
                ("username", user),
                ("password", password),
            ],
        )
    }
}

/// A controller serving the console on a loopback port, with a CA file for curl.
pub(crate) struct Console {
    pub ctl: Controller,
    pub listen: String,
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
}

impl Console {
    pub fn start() -> Self {
        let mut ctl = Controller::init();
        let listen = format!("127.0.0.1:{}", free_port());
        ctl.start(&["--web-listen", &listen]);
        Self::of(ctl, listen)
    }

    /// The console of a controller already serving it on `listen`.
    pub fn of(ctl: Controller, listen: String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ctl.ca_cert_pem()).unwrap();
        Self {
            ctl,
            listen,
            dir,
            ca,
        }
    }

    pub fn base(&self) -> String {
        format!("https://{}", self.listen)
    }

    pub(crate) fn browser(&self, name: &str) -> Browser {
        Browser::new(&self.base(), &self.ca, self.dir.path(), name)
    }

    /// A gluu-node agent, `prepare`d before it joins (files under its root), online.
    pub fn node(&self, hostname: &str, prepare: impl FnOnce(&Agent), extra: &[&str]) -> Agent {
        let mut a = Agent::new(hostname);
        prepare(&a);
        a.join(&self.ctl, "gluu-node");
        a.start_with(extra);
        self.ctl.wait_status(&a.node_id, "online");
        a
    }
}

/// Waits until the node has stored at least two CPU samples.
pub(crate) fn wait_for_samples(ctl: &Controller, hostname: &str) {
    clustermgr_tests::eventually(std::time::Duration::from_secs(20), "two samples", || {
        let r = ctl.json(&[
            "metrics",
            hostname,
            "--since",
            "1m",
            "--metric",
            "cpu_usage",
        ]);
        match r["series"][0]["points"].as_array() {
            Some(p) if p.len() >= 2 => Ok(()),
            _ => Err(r.to_string()),
        }
    });
}

fn with_hosts_file(a: &Agent) {
    std::fs::create_dir_all(a.root.join("etc")).unwrap();
    std::fs::write(a.root.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
}

/// Creates the first admin through /setup and signs `b` in as it; the setup's answer.
pub(crate) fn first_admin(ctl: &Controller, b: &Browser) -> Page {
    let code = std::fs::read_to_string(ctl.data.join("web-setup-code")).unwrap();
    let token = b.get("/setup").hidden("form_token");
    let r = b.post(
        "/setup",
        &[
            ("form_token", &token),
            ("setup_code", code.trim()),
            ("username", "admin"),
            ("password", ADMIN_PW),
            ("password_again", ADMIN_PW),
        ],
    );
    assert_eq!(r.code, 303, "{}", r.body);
    r
}

#[test]
fn a_workflow_page_follows_the_workflow_live_until_it_ends() {
    let c = Console::start();
    let mut a = c.node("gluu1.webwf.test", with_hosts_file, &[]);
    let ctl = &c.ctl;
    let b = c.browser("admin");
    first_admin(ctl, &b);

    // A workflow on the node: the cluster's lines in its /etc/hosts.
    ctl.cli_ok(&["cluster", "configure", "--manage-hosts"]);
    ctl.cli_ok(&["server", "add", "gluu1.webwf.test"]);
    let id = ctl
        .cli_ok(&["hosts", "apply", "--detach"])
        .trim()
        .to_string();
    assert!(!id.is_empty());

    // The events stream sends the rendered state, then the final one as `end`, and closes.
    let events = b.get(&format!("/workflows/{id}/events"));
    assert_eq!(events.code, 200, "{}", events.body);
    assert!(
        events
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream")),
        "{}",
        events.headers
    );
    let end = events
        .body
        .split("event: end")
        .nth(1)
        .unwrap_or_else(|| panic!("no end event:\n{}", events.body));
    assert!(end.contains("id=\"workflow-status\">succeeded<"), "{end}");
    assert!(end.contains("gluu1.webwf.test"), "{end}");
    // The page itself has the same state and subscribes to the stream.
    let page = b.get(&format!("/workflows/{id}"));
    assert_eq!(page.code, 200);
    assert!(
        page.body
            .contains(&format!("data-events=\"/workflows/{id}/events\"")),
        "{}",
        page.body
    );
    assert!(page.body.contains(">succeeded<"), "{}", page.body);
    // An ended workflow cannot be cancelled; the page says why (409).
    let csrf = page.hidden("csrf");
    let again = b.post(&format!("/workflows/{id}/cancel"), &[("csrf", &csrf)]);
    assert_eq!(again.code, 409, "{}", again.body);
    assert!(again.body.contains("already ended"), "{}", again.body);

    // A workflow waiting for an offline node is cancelled from its page (the form's token
    // needed), and the audit says who.
    a.stop();
    ctl.wait_status(&a.node_id, "offline");
    let waiting = ctl
        .cli_ok(&["hosts", "apply", "--detach"])
        .trim()
        .to_string();
    let page = b.get(&format!("/workflows/{waiting}"));
    assert!(page.body.contains(">Cancel</button>"), "{}", page.body);
    assert_eq!(
        b.post(&format!("/workflows/{waiting}/cancel"), &[]).code,
        403,
        "no CSRF token"
    );
    let done = b.post(
        &format!("/workflows/{waiting}/cancel"),
        &[("csrf", &page.hidden("csrf"))],
    );
    assert_eq!(done.code, 303, "{}", done.body);
    let shown = ctl.json(&["workflow", "show", &waiting]);
    assert!(
        shown["cancel_requested"] == true || shown["status"] == "cancelled",
        "{shown}"
    );
    let audit = ctl.cli_ok(&["audit", "--output", "json"]);
    assert!(
        audit.contains("workflow.cancel") && audit.contains("web:admin"),
        "{audit}"
    );

    // The replication page lists the servers; deploying without the cluster's LDAP settings
    // is refused with the domain's reason, and nothing starts.
    let repl = b.get("/replication");
    assert_eq!(repl.code, 200, "{}", repl.body);
    assert!(
        repl.body.contains("Deploy to gluu1.webwf.test"),
        "{}",
        repl.body
    );
    let before = ctl.json(&["workflow", "list"]).as_array().unwrap().len();
    let refused = b.post(
        "/replication/deploy",
        &[("csrf", &repl.hidden("csrf")), ("node", "")],
    );
    assert_eq!(refused.code, 409, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("replication deploy: the cluster is not configured"),
        "{}",
        refused.body
    );
    assert_eq!(
        ctl.json(&["workflow", "list"]).as_array().unwrap().len(),
        before
    );

    // Settings: the form shows what is stored; a change is saved through cluster configure
    // (its validation and error), a password is write-only.
    let st = b.get("/settings");
    assert_eq!(st.code, 200, "{}", st.body);
    assert!(
        st.body.contains("LDAP admin password (not set)"),
        "{}",
        st.body
    );
    let field = |name: &str| {
        let needle = format!("name=\"{name}\" value=\"");
        st.body
            .split(&needle)
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string()
    };
    let mut form: Vec<(String, String)> = [
        "gluu_version",
        "components",
        "https_port",
        "org",
        "country",
        "state",
        "city",
        "admin_email",
        "lb_hostname",
        "lb_ip",
        "ldap_check_period",
        "gluu_repo_url",
        "gluu_repo_suite",
        "external_lb_health_wait",
    ]
    .iter()
    .map(|n| (n.to_string(), field(n)))
    .collect();
    form.push(("manage_hosts".into(), "on".into()));
    form.push(("csrf".into(), st.hidden("csrf")));
    let post = |changes: &[(&str, &str)]| {
        let mut f = form.clone();
        for (k, v) in changes {
            f.retain(|(n, _)| n != k);
            f.push((k.to_string(), v.to_string()));
        }
        let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        b.post("/settings", &pairs)
    };
    let saved = post(&[("org", "Acme Web"), ("ldap_admin_password", "dm pw 12345")]);
    assert_eq!(saved.code, 303, "{}", saved.body);
    let shown = ctl.json(&["cluster", "show"]);
    assert_eq!(shown["org"], "Acme Web", "{shown}");
    assert_eq!(shown["ldap_admin_password"], "set", "{shown}");
    assert!(
        shown["manage_hosts"] == true,
        "an unchanged box stays: {shown}"
    );
    let after = b.get("/settings?saved=1");
    assert!(
        after.body.contains("LDAP admin password (set;"),
        "{}",
        after.body
    );
    assert!(
        !after.body.contains("dm pw 12345"),
        "a password is never rendered"
    );
    let refused = post(&[("org", "Acme Web"), ("components", "oxauth,bogus")]);
    assert_eq!(refused.code, 400, "{}", refused.body);
    assert!(refused.body.contains("bogus"), "{}", refused.body);
    assert_eq!(ctl.json(&["cluster", "show"])["org"], "Acme Web");
    // The external balancer's health wait, as cluster configure --external-lb-health-wait:
    // the domain's bound and error, then saved.
    assert_eq!(field("external_lb_health_wait"), "0");
    let refused = post(&[("org", "Acme Web"), ("external_lb_health_wait", "3601")]);
    assert_eq!(refused.code, 400, "{}", refused.body);
    assert!(
        refused.body.contains("external-lb-health-wait")
            && refused.body.contains("more than an hour"),
        "{}",
        refused.body
    );
    let saved = post(&[("org", "Acme Web"), ("external_lb_health_wait", "15")]);
    assert_eq!(saved.code, 303, "{}", saved.body);
    let shown = ctl.json(&["cluster", "show"]);
    assert_eq!(shown["external_lb_health_wait"], "15s", "{shown}");
    let after = b.get("/settings");
    assert!(
        after
            .body
            .contains("name=\"external_lb_health_wait\" value=\"15\""),
        "{}",
        after.body
    );

    // The status screens: each the API's record for it, laid out as lists and tables.
    for (screen, want) in [
        ("services", "gluu1.webwf.test"),
        ("cache", "installed"),
        ("lb", "installed"),
        ("fsrep", "enabled"),
        ("keys", "settings"),
        ("certs", ""),
    ] {
        let p = b.get(&format!("/status/{screen}"));
        assert_eq!(p.code, 200, "{screen}: {}", p.body);
        assert!(p.body.contains(want), "{screen}: {}", p.body);
    }
    assert_eq!(b.get("/status/nonsense").code, 404);

    // Not signed in: no stream.
    let anon = c.browser("anon");
    assert_eq!(anon.get(&format!("/workflows/{id}/events")).code, 303);
    assert_eq!(b.get("/workflows/no-such-id/events").code, 404);
}

#[test]
fn the_console_signs_in_local_users_with_the_apis_roles() {
    let c = Console::start();
    let _a = c.node("gluu1.web.test", |_| {}, &[]);
    let ctl = &c.ctl;
    let admin = c.browser("admin");

    // Before any user: everything leads to the setup page, which needs the setup code.
    for path in ["/", "/dashboard", "/login"] {
        let r = admin.get(path);
        assert_eq!(
            (r.code, r.location()),
            (303, "/setup".to_string()),
            "{path}"
        );
    }
    let code_file = ctl.data.join("web-setup-code");
    let code = std::fs::read_to_string(&code_file).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&code_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let form = admin.get("/setup");
    assert_eq!(form.code, 200);
    // Every response carries the security headers; the form cookie is Secure, HttpOnly, Strict.
    let csp = form.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let set = form.header("set-cookie").unwrap();
    for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{set}");
    }
    let token = form.hidden("form_token");
    let wrong = admin.post(
        "/setup",
        &[
            ("form_token", &token),
            ("setup_code", "0000"),
            ("username", "admin"),
            ("password", ADMIN_PW),
            ("password_again", ADMIN_PW),
        ],
    );
    assert_eq!(wrong.code, 400, "{}", wrong.body);
    assert!(
        wrong.body.contains("setup code is not the one"),
        "{}",
        wrong.body
    );
    // Without the form's token the POST is refused before anything is looked at.
    let forged = admin.post(
        "/setup",
        &[
            ("setup_code", code.trim()),
            ("username", "mallory"),
            ("password", ADMIN_PW),
            ("password_again", ADMIN_PW),
        ],
    );
    assert_eq!(forged.code, 403, "{}", forged.body);
    let created = first_admin(ctl, &admin);
    assert_eq!(created.location(), "/dashboard");
    assert!(!code_file.exists(), "the setup code outlives its use");
    let session = created.header("set-cookie").unwrap();
    assert!(session.starts_with("__Host-clustermgr="), "{session}");
    for flag in ["Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(session.contains(flag), "{session}");
    }
    // The setup page is gone once the first admin exists.
    assert_eq!(admin.get("/setup").location(), "/login");

    // The dashboard lists the agent with its state.
    let dash = admin.get("/dashboard");
    assert_eq!(dash.code, 200, "{}", dash.body);
    let row = dash
        .body
        .split("<tr>")
        .find(|r| r.contains("gluu1.web.test"))
        .unwrap_or_else(|| {
            panic!(
                "no agent row:\n{}\n{}",
                dash.body,
                ctl.cli_ok(&["node", "list"])
            )
        });
    assert!(
        row.contains("gluu-node") && row.contains(">online<"),
        "{row}"
    );

    // The admin adds a viewer; the add form without its CSRF token is refused.
    let users = admin.get("/users");
    assert_eq!(users.code, 200);
    // Beside the console's users, the API's operator credentials (here `init`'s admin).
    let operators = users
        .body
        .split("id=\"operators\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no operators table:\n{}", users.body));
    assert!(
        operators.contains("<td>admin</td><td>admin</td>") && operators.contains("<td>init</td>"),
        "{operators}"
    );
    let csrf = users.hidden("csrf");
    let no_csrf = admin.post(
        "/users",
        &[
            ("username", "watcher"),
            ("role", "viewer"),
            ("password", VIEWER_PW),
            ("password_again", VIEWER_PW),
        ],
    );
    assert_eq!(no_csrf.code, 403, "{}", no_csrf.body);
    let added = admin.post(
        "/users",
        &[
            ("csrf", &csrf),
            ("username", "watcher"),
            ("role", "viewer"),
            ("password", VIEWER_PW),
            ("password_again", VIEWER_PW),
        ],
    );
    assert_eq!(added.code, 200, "{}", added.body);
    assert!(added.body.contains("user watcher added"), "{}", added.body);

    // The dashboard's server actions: the agent is added as a server; installing Gluu before
    // the cluster is configured is refused with the domain's reason and starts nothing.
    let dash = admin.get("/dashboard");
    let csrf = dash.hidden("csrf");
    assert!(
        dash.body.contains(">Add as server</button>"),
        "{}",
        dash.body
    );
    let added = admin.post(
        "/servers/add",
        &[("csrf", &csrf), ("node", "gluu1.web.test")],
    );
    assert_eq!(added.code, 303, "{}", added.body);
    assert_eq!(
        ctl.json(&["server", "list"])[0]["hostname"],
        "gluu1.web.test"
    );
    let dash = admin.get("/dashboard");
    assert!(
        !dash.body.contains(">Add as server</button>"),
        "{}",
        dash.body
    );
    assert!(
        dash.body.contains(">Install Gluu</button>"),
        "{}",
        dash.body
    );
    let workflows = ctl.json(&["workflow", "list"]).as_array().unwrap().len();
    let install = admin.post(
        "/servers/install",
        &[("csrf", &csrf), ("node", "gluu1.web.test")],
    );
    assert_eq!(install.code, 409, "{}", install.body);
    assert!(install.body.contains("gluu install: "), "{}", install.body);
    assert_eq!(
        ctl.json(&["workflow", "list"]).as_array().unwrap().len(),
        workflows
    );

    // A viewer sees no change buttons and its forged POST is refused.
    let viewer = c.browser("viewer");
    assert_eq!(viewer.sign_in("watcher", VIEWER_PW).code, 303);
    let vdash = viewer.get("/dashboard");
    assert_eq!(vdash.code, 200);
    assert!(!vdash.body.contains("href=\"/users\""), "{}", vdash.body);
    assert_eq!(viewer.get("/users").code, 403);
    let vcsrf = vdash.hidden("csrf");
    let forged = viewer.post(
        "/users",
        &[
            ("csrf", &vcsrf),
            ("username", "evil"),
            ("role", "admin"),
            ("password", VIEWER_PW),
            ("password_again", VIEWER_PW),
        ],
    );
    assert_eq!(forged.code, 403, "{}", forged.body);
    assert!(forged.body.contains("admin role"), "{}", forged.body);
    for button in [">Install Gluu", ">Remove</button>", ">Add as server"] {
        assert!(!vdash.body.contains(button), "a viewer sees {button}");
    }
    let vforged = viewer.post(
        "/servers/remove",
        &[("csrf", &vcsrf), ("node", "gluu1.web.test")],
    );
    assert_eq!(vforged.code, 403, "{}", vforged.body);
    // The admin removes the server.
    let removed = admin.post(
        "/servers/remove",
        &[("csrf", &csrf), ("node", "gluu1.web.test")],
    );
    assert_eq!(removed.code, 303, "{}", removed.body);
    assert_eq!(ctl.json(&["server", "list"]), serde_json::json!([]));

    // Wrong passwords are refused, then the user is rate-limited even with the right one.
    let other = c.browser("other");
    for _ in 0..5 {
        let r = other.sign_in("watcher", "not the password");
        assert_eq!(r.code, 401, "{}", r.body);
        assert!(r.body.contains("wrong user name or password"));
    }
    let limited = other.sign_in("watcher", VIEWER_PW);
    assert_eq!(limited.code, 429, "{}", limited.body);
    assert!(limited.body.contains("too many failed attempts"));

    // Sign-out ends the session (with its CSRF token only).
    assert_eq!(viewer.post("/logout", &[]).code, 403);
    let out = viewer.post("/logout", &[("csrf", &vcsrf)]);
    assert_eq!(out.code, 303);
    assert_eq!(viewer.get("/dashboard").location(), "/login");

    // The audit log says who did what, as web:<user>; no password anywhere.
    let page = admin.get("/audit");
    assert_eq!(page.code, 200);
    let audit = ctl.cli_ok(&["audit", "--output", "json"]);
    for want in [
        "web.setup",
        "web.sign-in",
        "web.user-add",
        "web.sign-out",
        "web:admin",
    ] {
        assert!(audit.contains(want), "{want} missing: {audit}");
        assert!(page.body.contains(want), "{want} missing from the page");
    }
    for secret in [ADMIN_PW, VIEWER_PW, "not the password", code.trim()] {
        assert!(!audit.contains(secret), "{secret} in the audit");
        let log = std::fs::read_to_string(ctl.log_path()).unwrap();
        assert!(!log.contains(secret), "{secret} in the controller's log");
    }
}

#[test]
fn monitoring_charts_draw_the_stored_metrics() {
    let c = Console::start();
    let a = c.node("gluu1.webmon.test", |_| {}, &["--metrics-interval", "1s"]);
    wait_for_samples(&c.ctl, &a.hostname);
    let b = c.browser("admin");
    first_admin(&c.ctl, &b);

    // The cluster's charts: one line per node.
    let page = b.get("/monitoring");
    assert_eq!(page.code, 200, "{}", page.body);
    assert_eq!(page.body.matches("<figure class=\"chart\">").count(), 3);
    let cpu = page.body.split("<figure").nth(1).unwrap();
    assert!(
        cpu.contains("CPU usage") && cpu.contains("gluu1.webmon.test"),
        "{cpu}"
    );
    let drawn: usize = cpu
        .split("data-points=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no line drawn: {cpu}"));
    assert!(drawn >= 2, "{cpu}");
    // The node's charts, over every range; its network counters drawn as rates.
    for range in ["1h", "24h", "7d", "30d"] {
        let node = b.get(&format!("/monitoring/gluu1.webmon.test?range={range}"));
        assert_eq!(node.code, 200, "{range}: {}", node.body);
        assert_eq!(node.body.matches("<figure class=\"chart\">").count(), 6);
        assert!(
            node.body
                .contains(&format!("<strong aria-current=\"page\">{range}</strong>"))
        );
        for title in ["CPU usage", "Load", "Memory", "Disk used", "Network"] {
            assert!(
                node.body.contains(&format!("<figcaption>{title}")),
                "{title}"
            );
        }
        assert!(node.body.contains("<polyline"), "{range}: nothing drawn");
    }
    assert_eq!(b.get("/monitoring/no-such-node").code, 404);
    assert_eq!(b.get("/monitoring?range=1y").code, 400);
}

#[test]
fn a_log_search_finds_a_line_written_on_one_node_and_follow_streams_new_ones() {
    const LOGS: &str = "opt/gluu-server/opt/gluu/jetty/oxauth/logs";
    let c = Console::start();
    let agents: Vec<Agent> = (1..=2)
        .map(|i| {
            c.node(
                &format!("gluu{i}.weblogs.test"),
                |a| {
                    std::fs::create_dir_all(a.root.join(LOGS)).unwrap();
                    std::fs::write(
                        a.root.join(LOGS).join("oxauth.log"),
                        format!(
                            "2026-11-29 05:00:0{i},000 INFO  node{i} <script>marker-{i}</script>\n"
                        ),
                    )
                    .unwrap();
                },
                &[],
            )
        })
        .collect();
    let (ca, listen) = (&c.ca, &c.listen);
    let b = c.browser("admin");
    first_admin(&c.ctl, &b);

    let page = b.get("/logs?type=oxauth&host=&grep=marker-2&since=");
    assert_eq!(page.code, 200, "{}", page.body);
    let rows: Vec<&str> = page
        .body
        .split("<tbody>")
        .nth(1)
        .unwrap()
        .split("</tbody>")
        .next()
        .unwrap()
        .matches("<tr>")
        .collect();
    assert_eq!(rows.len(), 1, "{}", page.body);
    assert!(page.body.contains("gluu2.weblogs.test"), "{}", page.body);
    // The line is shown escaped, never as markup.
    assert!(
        page.body.contains("&lt;script&gt;marker-2&lt;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>marker"), "{}", page.body);
    assert_eq!(b.get("/logs?type=nonsense&grep=x").code, 400);

    // Follow: a line appended on gluu1 arrives as an event.
    let mut curl = Command::new("curl")
        .args(["-sSN", "--max-time", "30", "--cacert"])
        .arg(ca)
        .arg("-b")
        .arg(&b.jar)
        .arg(format!(
            "https://{listen}/logs/follow?type=oxauth&host=gluu1.weblogs.test&grep=followed"
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = curl.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let path = agents[0].root.join(LOGS).join("oxauth.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(25);
    let mut seen = String::new();
    while std::time::Instant::now() < deadline && !seen.contains("followed-line") {
        // Appended until the follow (which starts at the file's end) has picked one up.
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        writeln!(f, "2026-11-29 05:01:00,000 INFO  followed-line").unwrap();
        if let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(700)) {
            seen.push_str(&l);
            seen.push('\n');
        }
    }
    let _ = curl.kill();
    let _ = curl.wait();
    assert!(seen.contains("event: entry"), "{seen}");
    assert!(
        seen.contains("followed-line") && seen.contains("gluu1.weblogs.test"),
        "{seen}"
    );
    assert!(!seen.contains("gluu2.weblogs.test"), "{seen}");
}
