//! Settings: every field of `cluster configure`, through the same domain call (its validation,
//! its errors, the operator role). Only fields whose value changed are sent; passwords and the
//! repository key are write-only (shown as set or not, sent only when typed).

use super::pages::{W, failure, gate, gate_change, me};
use super::sessions::Session;
use super::{Web, redirect};
use crate::audit::record_failure;
use crate::auth::Role;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use clustermgr_proto::{ClusterSettings, ConfigureRequest};
use minijinja::context;
use serde::Deserialize;

fn render(
    web: &Web,
    s: &Session,
    c: &ClusterSettings,
    error: Option<String>,
    saved: bool,
) -> Response {
    let mut r = web.render(
        "settings.html",
        context! {
            me => me(Some(s)),
            c => context! {
                gluu_version => c.gluu_version.clone(),
                lb_hostname => c.lb_hostname.clone(),
                lb_hostname_locked => c.lb_hostname_locked,
                lb_ip => c.lb_ip.clone(),
                external_lb => c.external_lb,
                external_lb_health_wait => c.external_lb_health_wait_secs,
                ldap_cache => c.ldap_cache,
                offline => c.offline,
                ldap_check_period => format!("{}s", c.ldap_check_period_ms / 1000),
                manage_hosts => c.manage_hosts,
                org => c.org.clone(),
                country => c.country.clone(),
                city => c.city.clone(),
                state => c.state.clone(),
                admin_email => c.admin_email.clone(),
                ldap_admin_password_set => c.ldap_admin_password_set,
                replication_password_set => c.replication_password_set,
                https_port => if c.https_port == 0 { String::new() } else { c.https_port.to_string() },
                gluu_repo_url => c.gluu_repo_url.clone(),
                gluu_repo_suite => c.gluu_repo_suite.clone(),
                gluu_repo_key_set => c.gluu_repo_key_set,
                components => c.components.join(","),
            },
            error => error.clone(),
            saved => saved,
        },
    );
    if error.is_some() {
        *r.status_mut() = StatusCode::BAD_REQUEST;
    }
    r
}

#[derive(Deserialize, Default)]
pub(super) struct SavedQuery {
    #[serde(default)]
    saved: Option<String>,
}

pub(super) async fn page(
    State(web): W,
    headers: HeaderMap,
    Query(q): Query<SavedQuery>,
) -> Response {
    let s = match gate(&web, &headers, Role::Viewer) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match crate::settings::settings(&web.ctl) {
        Ok(c) => render(&web, &s, &c, None, q.saved.is_some()),
        Err(e) => failure(&web, &s, "settings", e),
    }
}

#[derive(Deserialize, Default)]
pub(super) struct SettingsForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    gluu_version: String,
    #[serde(default)]
    lb_hostname: Option<String>,
    #[serde(default)]
    lb_ip: String,
    #[serde(default)]
    external_lb: Option<String>,
    #[serde(default)]
    external_lb_health_wait: String,
    #[serde(default)]
    ldap_cache: Option<String>,
    #[serde(default)]
    offline: Option<String>,
    #[serde(default)]
    ldap_check_period: String,
    #[serde(default)]
    manage_hosts: Option<String>,
    #[serde(default)]
    org: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    city: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    admin_email: String,
    #[serde(default)]
    ldap_admin_password: String,
    #[serde(default)]
    replication_password: String,
    #[serde(default)]
    https_port: String,
    #[serde(default)]
    gluu_repo_url: String,
    #[serde(default)]
    gluu_repo_suite: String,
    #[serde(default)]
    gluu_repo_key: String,
    #[serde(default)]
    components: String,
}

/// `new` when it differs from `old` (trimmed), else nothing.
fn changed(old: &str, new: &str) -> Option<String> {
    let new = new.trim();
    (new != old).then(|| new.to_string())
}

fn changed_flag(old: bool, box_value: &Option<String>) -> Option<bool> {
    let new = box_value.is_some();
    (new != old).then_some(new)
}

/// The request that changes what the form changed; `Err` names a field it cannot read.
fn request(c: &ClusterSettings, f: &SettingsForm) -> Result<ConfigureRequest, String> {
    let https_port = match f.https_port.trim() {
        "" if c.https_port == 0 => None,
        "" => Some(0),
        p => {
            let p: u32 = p
                .parse()
                .ok()
                .filter(|p| (1..=65535).contains(p))
                .ok_or_else(|| format!("HTTPS port: {p:?} is not a port number"))?;
            (p != c.https_port).then_some(p)
        }
    };
    // As the CLI's --external-lb-health-wait SECS (a u32; empty: 0, off); its bound is the
    // domain's.
    let health_wait = match f.external_lb_health_wait.trim() {
        "" => 0,
        v => v.parse::<u32>().map_err(|_| {
            format!("external-lb-health-wait: {v:?} is not a whole number of seconds")
        })?,
    };
    let period_now = format!("{}s", c.ldap_check_period_ms / 1000);
    let secret = |v: &str| (!v.is_empty()).then(|| v.as_bytes().to_vec());
    Ok(ConfigureRequest {
        gluu_version: changed(&c.gluu_version, &f.gluu_version),
        lb_hostname: f
            .lb_hostname
            .as_deref()
            .and_then(|h| changed(&c.lb_hostname, h)),
        lb_ip: changed(&c.lb_ip, &f.lb_ip),
        external_lb: changed_flag(c.external_lb, &f.external_lb),
        ldap_cache: changed_flag(c.ldap_cache, &f.ldap_cache),
        offline: changed_flag(c.offline, &f.offline),
        ldap_check_period: changed(&period_now, &f.ldap_check_period),
        manage_hosts: changed_flag(c.manage_hosts, &f.manage_hosts),
        org: changed(&c.org, &f.org),
        country: changed(&c.country, &f.country),
        city: changed(&c.city, &f.city),
        state: changed(&c.state, &f.state),
        admin_email: changed(&c.admin_email, &f.admin_email),
        ldap_admin_password: secret(&f.ldap_admin_password),
        replication_password: secret(&f.replication_password),
        https_port,
        gluu_repo_url: changed(&c.gluu_repo_url, &f.gluu_repo_url),
        gluu_repo_suite: changed(&c.gluu_repo_suite, &f.gluu_repo_suite),
        gluu_repo_key: (!f.gluu_repo_key.trim().is_empty()).then(|| f.gluu_repo_key.clone()),
        components: changed(&c.components.join(","), &f.components.replace(' ', "")),
        external_lb_health_wait_secs: (health_wait != c.external_lb_health_wait_secs)
            .then_some(health_wait),
    })
}

pub(super) async fn save(
    State(web): W,
    headers: HeaderMap,
    Form(f): Form<SettingsForm>,
) -> Response {
    let s = match gate_change(&web, &headers, Role::Operator, f.csrf.as_deref()) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let current = match crate::settings::settings(&web.ctl) {
        Ok(c) => c,
        Err(e) => return failure(&web, &s, "settings", e),
    };
    let req = match request(&current, &f) {
        Ok(r) => r,
        Err(e) => return render(&web, &s, &current, Some(e), false),
    };
    let a = s.audit("cluster.configure", "settings");
    let r = crate::cluster::configure(&web.ctl, &web.parts.fsrep, req, &a).await;
    record_failure(&web.ctl.store, &a, &r).await;
    match r {
        Ok(_) => redirect("/settings?saved=1"),
        // The form again with the domain's reason (the values typed are not kept: the page
        // shows what is stored, so nothing half-saved is shown as saved).
        Err(e) => render(&web, &s, &current, Some(e.to_string()), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> ClusterSettings {
        ClusterSettings {
            gluu_version: "4.2.3".into(),
            lb_hostname: "idp.example.org".into(),
            org: "Example".into(),
            ldap_check_period_ms: 60_000,
            manage_hosts: true,
            components: vec!["oxauth".into(), "oxtrust".into(), "httpd".into()],
            ..Default::default()
        }
    }

    fn form_of(c: &ClusterSettings) -> SettingsForm {
        SettingsForm {
            gluu_version: c.gluu_version.clone(),
            lb_hostname: Some(c.lb_hostname.clone()),
            org: c.org.clone(),
            ldap_check_period: "60s".into(),
            manage_hosts: Some("on".into()),
            external_lb_health_wait: c.external_lb_health_wait_secs.to_string(),
            components: "oxauth, oxtrust, httpd".into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_unchanged_form_changes_nothing_and_each_change_is_sent_alone() {
        let c = current();
        let f = form_of(&c);
        assert_eq!(request(&c, &f).unwrap(), ConfigureRequest::default());
        let mut f2 = form_of(&c);
        f2.org = "Acme ".into();
        f2.manage_hosts = None;
        f2.ldap_admin_password = "secret pw".into();
        f2.https_port = "8443".into();
        let r = request(&c, &f2).unwrap();
        assert_eq!(r.org.as_deref(), Some("Acme"));
        assert_eq!(r.manage_hosts, Some(false));
        assert_eq!(r.ldap_admin_password.as_deref(), Some(&b"secret pw"[..]));
        assert_eq!(r.https_port, Some(8443));
        assert_eq!(
            r.replication_password, None,
            "an empty password field keeps it"
        );
        assert_eq!(r.gluu_version, None);
        let mut bad = form_of(&c);
        bad.https_port = "99999".into();
        assert!(request(&c, &bad).unwrap_err().contains("HTTPS port"));
        // The external balancer's health wait, as --external-lb-health-wait SECS.
        let mut wait = form_of(&c);
        wait.external_lb_health_wait = "15".into();
        let r = request(&c, &wait).unwrap();
        assert_eq!(r.external_lb_health_wait_secs, Some(15));
        assert_eq!(
            r,
            ConfigureRequest {
                external_lb_health_wait_secs: Some(15),
                ..Default::default()
            }
        );
        let set = ClusterSettings {
            external_lb_health_wait_secs: 15,
            ..c.clone()
        };
        assert_eq!(request(&set, &wait).unwrap(), ConfigureRequest::default());
        let mut off = form_of(&set);
        off.external_lb_health_wait = String::new();
        assert_eq!(
            request(&set, &off).unwrap().external_lb_health_wait_secs,
            Some(0)
        );
        wait.external_lb_health_wait = "-1".into();
        assert!(
            request(&c, &wait)
                .unwrap_err()
                .contains("external-lb-health-wait")
        );
        // A locked hostname's field is not submitted (disabled): nothing changes.
        let mut locked = form_of(&c);
        locked.lb_hostname = None;
        assert_eq!(request(&c, &locked).unwrap().lb_hostname, None);
    }
}
