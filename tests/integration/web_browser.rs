//! The web console in a real browser (headless Chromium through chromedriver): first-run admin
//! creation, the dashboard, a workflow followed live without reloading, monitoring charts, a
//! log search, sign-out; no Content-Security-Policy violation on any page. Each screen is saved
//! as a PNG under target/debug/console-screens/ (not committed) for a person to look at.

use crate::web::{Console, wait_for_samples};
use clustermgr_tests::eventually;
use clustermgr_tests::webdriver::{Browser, driver_path};
use std::time::Duration;

const PW: &str = "correct horse battery staple";
const LOGS: &str = "opt/gluu-server/opt/gluu/jetty/oxauth/logs";

/// Fails under CI=true when the browser is missing; elsewhere says so and skips.
fn browser(name: &str) -> Option<Browser> {
    if driver_path().is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromedriver is missing (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipped: chromedriver is not installed");
        return None;
    }
    Some(Browser::start(name).expect("start the browser"))
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
    let code = std::fs::read_to_string(ctl.data.join("web-setup-code")).unwrap();
    b.fill("#setup_code", code.trim()).unwrap();
    b.fill("#username", "admin").unwrap();
    b.fill("#password", PW).unwrap();
    b.fill("#password_again", PW).unwrap();
    b.click("form button[type=submit]").unwrap();
    b.wait_until(Duration::from_secs(10), "the dashboard", |b| {
        Ok(b.url()?.ends_with("/dashboard"))
    })
    .unwrap();
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
