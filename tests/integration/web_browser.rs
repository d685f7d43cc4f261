//! The web console in a real browser (headless Chromium through chromedriver): first-run admin
//! creation, the dashboard, a workflow followed live without reloading, monitoring charts, a
//! log search, a viewer without change buttons whose forged POST is refused, a POST from the page
//! without (or with a wrong) CSRF token refused, sign-out; no Content-Security-Policy violation
//! on any page. Each screen is saved
//! as a PNG under target/debug/console-screens/ (not committed) for a person to look at.

use crate::web::{Console, wait_for_samples};
use clustermgr_tests::webdriver::{Browser, driver_path};
use clustermgr_tests::{Sandbox, eventually};
use std::time::Duration;

const PW: &str = "correct horse battery staple";
const LOGS: &str = "opt/gluu-server/opt/gluu/jetty/oxauth/logs";

/// Whether chromedriver is here: fails under CI=true when it is missing; elsewhere says so
/// (the caller skips).
pub(crate) fn driver_present() -> bool {
    if driver_path().is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromedriver is missing (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipped: chromedriver is not installed");
        return false;
    }
    true
}

/// The browser, when [`driver_present`].
fn browser(name: &str) -> Option<Browser> {
    driver_present().then(|| Browser::start(name).expect("start the browser"))
}

/// On the setup page: the first admin, with the setup code from the controller's `data`
/// directory; the dashboard follows.
fn create_admin(b: &Browser, data: &std::path::Path) {
    let code = std::fs::read_to_string(data.join("web-setup-code")).unwrap();
    b.fill("#setup_code", code.trim()).unwrap();
    b.fill("#username", "admin").unwrap();
    b.fill("#password", PW).unwrap();
    b.fill("#password_again", PW).unwrap();
    b.click("form button[type=submit]").unwrap();
    b.wait_until(Duration::from_secs(10), "the dashboard", |b| {
        Ok(b.url()?.ends_with("/dashboard"))
    })
    .unwrap();
}

fn no_csp_violation(b: &Browser, page: &str) {
    let msgs = b.console().unwrap();
    let bad: Vec<&String> = msgs
        .iter()
        .filter(|m| m.contains("Content Security Policy") || m.contains("Refused to"))
        .collect();
    assert!(bad.is_empty(), "{page}: {bad:?}");
}

#[test]
fn an_operator_uses_the_console_in_a_browser() {
    let Some(b) = browser("operator") else {
        return;
    };
    let c = Console::start();
    let base = c.base();
    let ctl = &c.ctl;
    let mut a = c.node(
        "gluu1.browser.test",
        |a| {
            std::fs::create_dir_all(a.root.join("etc")).unwrap();
            std::fs::write(a.root.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
            std::fs::create_dir_all(a.root.join(LOGS)).unwrap();
            std::fs::write(
                a.root.join(LOGS).join("oxauth.log"),
                "2026-11-29 05:00:01,000 INFO  browser-marker on gluu1\n",
            )
            .unwrap();
        },
        &["--metrics-interval", "1s"],
    );

    // First run: the setup page, the code from the data directory, then the dashboard.
    b.go(&format!("{base}/")).unwrap();
    assert!(b.url().unwrap().ends_with("/setup"), "{}", b.url().unwrap());
    b.screenshot("01-setup").unwrap();
    create_admin(&b, &ctl.data);
    let row = b.text("#nodes tbody tr").unwrap();
    assert!(
        row.contains("gluu1.browser.test") && row.contains("online"),
        "{row}"
    );
    b.screenshot("02-dashboard").unwrap();
    no_csp_violation(&b, "dashboard");

    // A workflow waiting for the node (stopped) is followed live: when the node comes back the
    // page shows it succeed without a reload.
    ctl.cli_ok(&["cluster", "configure", "--manage-hosts"]);
    ctl.cli_ok(&["server", "add", "gluu1.browser.test"]);
    eventually(
        Duration::from_secs(30),
        "server add's follow-ups ended",
        || {
            let l = ctl.json(&["workflow", "list"]);
            let busy = l.as_array().unwrap().iter().any(|w| {
                !["succeeded", "failed", "cancelled"].contains(&w["status"].as_str().unwrap_or(""))
            });
            if busy { Err(l.to_string()) } else { Ok(()) }
        },
    );
    a.stop();
    ctl.wait_status(&a.node_id, "offline");
    let id = ctl
        .cli_ok(&["hosts", "apply", "--detach"])
        .trim()
        .to_string();
    b.go(&format!("{base}/workflows/{id}")).unwrap();
    let before = b.text("#workflow-status").unwrap();
    assert_ne!(before, "succeeded");
    b.screenshot("03-workflow-waiting").unwrap();
    a.start_with(&["--metrics-interval", "1s"]);
    b.wait_until(
        Duration::from_secs(30),
        "the live page shows success",
        |b| Ok(b.text("#workflow-status")? == "succeeded"),
    )
    .unwrap();
    assert!(
        b.url().unwrap().ends_with(&format!("/workflows/{id}")),
        "no reload or move"
    );
    b.screenshot("04-workflow-succeeded").unwrap();
    no_csp_violation(&b, "workflow");

    // Monitoring: the charts have data points.
    wait_for_samples(ctl, &a.hostname);
    b.go(&format!("{base}/monitoring/gluu1.browser.test"))
        .unwrap();
    assert!(b.has("figure.chart svg polyline").unwrap());
    b.screenshot("05-monitoring").unwrap();
    no_csp_violation(&b, "monitoring");

    // A log search finds the marker line.
    b.go(&format!("{base}/logs")).unwrap();
    b.fill("#grep", "browser-marker").unwrap();
    b.click("form.filters button[type=submit]").unwrap();
    b.wait_until(Duration::from_secs(20), "the search's rows", |b| {
        b.has("#log-lines tbody tr")
    })
    .unwrap();
    let line = b.text("#log-lines tbody tr").unwrap();
    assert!(line.contains("browser-marker on gluu1"), "{line}");
    b.screenshot("06-logs").unwrap();
    no_csp_violation(&b, "logs");

    // The status screens.
    for (n, screen) in ["services", "fsrep", "keys"].iter().enumerate() {
        b.go(&format!("{base}/status/{screen}")).unwrap();
        assert!(b.has("dl.record").unwrap(), "{screen}");
        b.screenshot(&format!("07-status-{n}-{screen}")).unwrap();
        no_csp_violation(&b, screen);
        if b.has("#actions-title").unwrap() {
            b.script("document.getElementById('actions-title').scrollIntoView(); return null;")
                .unwrap();
            b.screenshot(&format!("07-status-{n}-{screen}-actions"))
                .unwrap();
        }
    }

    // Sign-out ends the session.
    b.click("form.signout button").unwrap();
    b.wait_until(Duration::from_secs(10), "the sign-in page", |b| {
        Ok(b.url()?.ends_with("/login"))
    })
    .unwrap();
    b.go(&format!("{base}/dashboard")).unwrap();
    assert!(b.url().unwrap().ends_with("/login"));
    b.screenshot("08-signed-out").unwrap();
}

/// Signs `b` in through the sign-in form; the page's error text, if any.
/// A form POST to `path` run by the page's own `fetch()` (its cookies, its origin), with the
/// CSRF token `token` (none: no field); the status and body.
fn post_from_page(b: &Browser, path: &str, token: Option<&str>) -> (u64, String) {
    let form = match token {
        Some(t) => format!("{{ csrf: {} }}", serde_json::to_string(t).unwrap()),
        None => "{}".to_string(),
    };
    let r = b
        .script(&format!(
            "return fetch({}, {{ method: 'POST', redirect: 'manual', body: new URLSearchParams({form}) }})\
             .then(async r => [r.status, await r.text()]);",
            serde_json::to_string(path).unwrap()
        ))
        .unwrap();
    (
        r[0].as_u64().unwrap_or_default(),
        r[1].as_str().unwrap_or_default().to_string(),
    )
}

fn sign_in(b: &Browser, base: &str, user: &str, password: &str) -> String {
    b.go(&format!("{base}/login")).unwrap();
    b.fill("#username", user).unwrap();
    b.fill("#password", password).unwrap();
    b.script("window.formPage = true; return null;").unwrap();
    b.click("form.card button[type=submit]").unwrap();
    b.wait_until(Duration::from_secs(10), "the sign-in's answer", |b| {
        Ok(b.script("return !window.formPage && document.readyState === 'complete';")? == true)
    })
    .unwrap();
    if b.has("p.error").unwrap() {
        b.text("p.error").unwrap()
    } else {
        String::new()
    }
}

#[test]
fn a_replication_deploy_from_the_console_runs_live_on_a_sandbox() {
    let Some(b) = browser("sandbox") else {
        return;
    };
    let sbx = Sandbox::new(2);
    let _down = crate::day2::Down(&sbx);
    sbx.up();
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sbx.dir.join("sandbox.json")).unwrap())
            .unwrap();
    let base = format!("https://{}", state["console"].as_str().unwrap());
    let data = sbx.dir.join("controller");

    // The first admin, then the dashboard lists both Gluu servers, installed.
    b.go(&format!("{base}/setup")).unwrap();
    create_admin(&b, &data);
    let rows = b.texts("#servers tbody tr").unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, host) in rows.iter().zip(["gluu1.sandbox", "gluu2.sandbox"]) {
        assert!(row.contains(host) && row.contains("installed"), "{row}");
    }
    b.screenshot("01-sandbox-dashboard").unwrap();
    no_csp_violation(&b, "dashboard");

    // A replication deploy started from the page lands on its live page, which shows each
    // node's steps move on until the workflow succeeds, without a reload.
    b.go(&format!("{base}/replication")).unwrap();
    b.screenshot("02-replication").unwrap();
    b.click("form[action='/replication/deploy'] button")
        .unwrap();
    b.accept_dialog().unwrap();
    b.wait_until(Duration::from_secs(20), "the workflow's page", |b| {
        Ok(b.url()?.contains("/workflows/"))
    })
    .unwrap();
    let url = b.url().unwrap();
    b.script("window.stillThisPage = true; return null;")
        .unwrap();
    let (mut seen, mut shot) = (std::collections::BTreeSet::new(), false);
    b.wait_until(Duration::from_secs(600), "the deploy succeeds", |b| {
        for s in b.texts("table.steps td.state")? {
            seen.insert(s);
        }
        let status = b.text("#workflow-status")?;
        assert!(
            !["failed", "cancelled"].contains(&status.as_str()),
            "{}",
            b.source()?
        );
        if status != "succeeded" && !shot {
            b.screenshot("03-replication-deploy-running")?;
            shot = true;
        }
        Ok(status == "succeeded")
    })
    .unwrap();
    assert_eq!(b.url().unwrap(), url, "the page moved");
    assert_eq!(
        b.script("return window.stillThisPage === true;").unwrap(),
        true,
        "the page was reloaded"
    );
    let hosts = b.texts("section h2").unwrap();
    assert!(
        hosts.iter().any(|h| h == "gluu1.sandbox") && hosts.iter().any(|h| h == "gluu2.sandbox"),
        "{hosts:?}"
    );
    assert!(
        seen.iter().any(|s| s != "succeeded"),
        "no step was seen before it succeeded: {seen:?}"
    );
    for s in b.texts("table.steps td.state").unwrap() {
        assert!(["succeeded", "skipped"].contains(&s.as_str()), "{s}");
    }
    b.screenshot("04-replication-deploy-succeeded").unwrap();
    no_csp_violation(&b, "workflow");

    // Monitoring: the chart gets data points (the page updates itself as samples arrive).
    b.go(&format!("{base}/monitoring/gluu1.sandbox")).unwrap();
    b.wait_until(Duration::from_secs(120), "a chart with points", |b| {
        b.has("figure.chart svg polyline")
    })
    .unwrap();
    b.screenshot("05-sandbox-monitoring").unwrap();
    no_csp_violation(&b, "monitoring");

    // A log search finds a marker line written on one node.
    let logs = sbx.dir.join("hosts/gluu2.sandbox/root").join(LOGS);
    std::fs::create_dir_all(&logs).unwrap();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join("oxauth.log"))
            .unwrap();
        writeln!(f, "2026-11-29 05:00:01,000 INFO  sandbox-marker on gluu2").unwrap();
    }
    b.go(&format!("{base}/logs")).unwrap();
    b.fill("#grep", "sandbox-marker").unwrap();
    b.click("form.filters button[type=submit]").unwrap();
    b.wait_until(Duration::from_secs(30), "the search's rows", |b| {
        b.has("#log-lines tbody tr")
    })
    .unwrap();
    let lines = b.texts("#log-lines tbody tr").unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("gluu2.sandbox") && lines[0].contains("sandbox-marker on gluu2"),
        "{lines:?}"
    );
    b.screenshot("06-sandbox-logs").unwrap();

    // A viewer sees no button that changes anything.
    b.go(&format!("{base}/users")).unwrap();
    b.fill("#username", "watcher").unwrap();
    b.script("document.getElementById('role').value = 'viewer'; return null;")
        .unwrap();
    b.fill("#password", PW).unwrap();
    b.fill("#password_again", PW).unwrap();
    b.click("form[action='/users'] button[type=submit]")
        .unwrap();
    b.wait_until(Duration::from_secs(10), "the user added", |b| {
        Ok(b.source()?.contains("user watcher added"))
    })
    .unwrap();
    // A POST from the page without the session's CSRF token, or with a wrong one, is refused
    // (the admin's role would allow it).
    for token in [None, Some("0".repeat(64))] {
        let (status, body) = post_from_page(&b, "/keys/rotate", token.as_deref());
        assert_eq!(status, 403, "token {token:?}: {body}");
        assert!(body.contains("CSRF token is missing or wrong"), "{body}");
    }
    b.click("form.signout button").unwrap();
    b.wait_until(Duration::from_secs(10), "signed out", |b| {
        Ok(b.url()?.ends_with("/login"))
    })
    .unwrap();
    assert_eq!(sign_in(&b, &base, "watcher", PW), "");
    for page in [
        "/dashboard",
        "/replication",
        "/status/keys",
        "/status/fsrep",
    ] {
        b.go(&format!("{base}{page}")).unwrap();
        let buttons = b.texts("main button").unwrap();
        assert!(buttons.is_empty(), "{page}: a viewer sees {buttons:?}");
    }
    b.screenshot("07-viewer-dashboard").unwrap();
    // The viewer's forged POST, with its own valid CSRF token, is refused for its role.
    let own = b
        .script("return document.querySelector('form.signout input[name=csrf]').value;")
        .unwrap();
    let (status, body) = post_from_page(&b, "/keys/rotate", own.as_str());
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("needs the operator role"), "{body}");
    b.click("form.signout button").unwrap();

    // A wrong password is refused, then the user is rate-limited even with the right one.
    for _ in 0..5 {
        let e = sign_in(&b, &base, "watcher", "not the password");
        assert!(e.contains("wrong user name or password"), "{e}");
    }
    let e = sign_in(&b, &base, "watcher", PW);
    assert!(e.contains("too many failed attempts"), "{e}");
    b.screenshot("08-rate-limited").unwrap();
}
