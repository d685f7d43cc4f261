//! The OpenID Connect sign-in in headless Chromium: the console's button, the stand-in OP's
//! login page, back to the console as `alice@openid (sub alice)` (admin); sign-out; a user without the
//! claim sees the refusal. Screens under target/debug/console-screens/oidc/.

use super::super::gluu_cluster::{LB, address};
use super::{Setup, setup};
use clustermgr_tests::webdriver::Browser;
use std::time::Duration;

/// Through the console's button and the OP's login page as `user`.
fn sign_in(b: &Browser, base: &str, user: &str, password: &str) {
    b.go(&format!("{base}/login")).unwrap();
    b.click("#oidc-sign-in").unwrap();
    b.wait_until(Duration::from_secs(10), "the OP's login page", |b| {
        Ok(b.url()?.contains("/oxauth/login.htm"))
    })
    .unwrap();
    b.fill("#username", user).unwrap();
    b.fill("#password", password).unwrap();
    b.click("#loginButton").unwrap();
}

#[test]
fn openid_connect_sign_in_in_a_browser() {
    if !crate::web_browser::driver_present() {
        return;
    }
    let s: Setup = setup(false);
    let base = s.console.base();
    let rule = format!("--host-resolver-rules=MAP {LB} {}", address(&s.nodes[0]));
    let b = Browser::start_with("oidc", &[&rule]).expect("start the browser");

    b.go(&format!("{base}/login")).unwrap();
    assert!(b.has("#oidc-sign-in").unwrap());
    b.screenshot("01-sign-in-page").unwrap();
    sign_in(&b, &base, "alice", "alice pw 1");
    b.wait_until(Duration::from_secs(15), "the dashboard", |b| {
        Ok(b.url()?.ends_with("/dashboard"))
    })
    .unwrap();
    let who = b.text("header .who").unwrap();
    assert_eq!(who, "alice@openid (sub alice) (admin)");
    b.screenshot("02-signed-in-as-alice").unwrap();
    b.click("form.signout button").unwrap();
    b.wait_until(Duration::from_secs(10), "signed out", |b| {
        Ok(b.url()?.ends_with("/login"))
    })
    .unwrap();

    sign_in(&b, &base, "bob", "bob pw 2");
    b.wait_until(Duration::from_secs(15), "the refusal", |b| {
        Ok(b.url()?.contains("/login/oidc/callback"))
    })
    .unwrap();
    let text = b.text("main").unwrap();
    assert!(
        text.contains("Sign-in refused")
            && text.contains("bob@openid (sub bob) has no value of the claim"),
        "{text}"
    );
    b.screenshot("03-refused-without-the-claim").unwrap();
    b.go(&format!("{base}/dashboard")).unwrap();
    assert!(b.url().unwrap().ends_with("/login"));
}
