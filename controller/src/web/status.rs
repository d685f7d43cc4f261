//! The status screens (cluster services, cache, load balancer, file replication, keys,
//! certificates, custom schema): each is the domain's status call, shown as the record the API
//! documents for it (its JSON form in [`crate::view`], the one the CLI's `--output json`
//! prints), laid out as HTML by one renderer ([`html`]): objects as definition lists, lists of
//! objects as tables. Below the record, operators get the screen's actions (`manage`,
//! `uploads`; `status_actions.html`).

use super::pages::{W, failure, gate, me};
use crate::auth::Role;
use crate::view;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use minijinja::{Value, context};
use serde_json::Value as Json;
use std::fmt::Write as _;

/// The screens, by the name in their URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Screen {
    Services,
    Cache,
    LoadBalancer,
    FileReplication,
    Keys,
    Certificates,
    Schema,
}

impl Screen {
    const ALL: [Screen; 7] = [
        Screen::Services,
        Screen::Cache,
        Screen::LoadBalancer,
        Screen::FileReplication,
        Screen::Keys,
        Screen::Certificates,
        Screen::Schema,
    ];
    fn slug(self) -> &'static str {
        match self {
            Screen::Services => "services",
            Screen::Cache => "cache",
            Screen::LoadBalancer => "lb",
            Screen::FileReplication => "fsrep",
            Screen::Keys => "keys",
            Screen::Certificates => "certs",
            Screen::Schema => "schema",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Screen::Services => "Services",
            Screen::Cache => "Cache",
            Screen::LoadBalancer => "Load balancer",
            Screen::FileReplication => "File replication",
            Screen::Keys => "Key rotation",
            Screen::Certificates => "Certificates",
            Screen::Schema => "Custom schema",
        }
    }
}

/// Text made safe inside HTML (element content and quoted attributes).
pub(super) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn label(key: &str) -> String {
    escape(&key.replace('_', " "))
}

fn scalar(v: &Json) -> String {
    match v {
        Json::Null => "-".into(),
        Json::Bool(true) => "yes".into(),
        Json::Bool(false) => "no".into(),
        Json::String(s) if s.is_empty() => "-".into(),
        Json::String(s) => escape(s),
        other => escape(&other.to_string()),
    }
}

/// `v` as HTML: an object as a definition list, a list of objects as a table (its columns the
/// keys of every row, in first-seen order), a list of scalars as a comma list. Every text is
/// escaped.
pub fn html(v: &Json) -> String {
    let mut out = String::new();
    write_html(&mut out, v);
    out
}

fn write_html(out: &mut String, v: &Json) {
    match v {
        Json::Object(map) => {
            out.push_str("<dl class=\"record\">");
            for (k, v) in map {
                let _ = write!(out, "<dt>{}</dt><dd>", label(k));
                write_html(out, v);
                out.push_str("</dd>");
            }
            out.push_str("</dl>");
        }
        Json::Array(items) if items.iter().all(Json::is_object) && !items.is_empty() => {
            let mut cols: Vec<&str> = Vec::new();
            for item in items {
                if let Json::Object(m) = item {
                    for k in m.keys() {
                        if !cols.contains(&k.as_str()) {
                            cols.push(k);
                        }
                    }
                }
            }
            out.push_str("<div class=\"scroll\"><table><thead><tr>");
            for c in &cols {
                let _ = write!(out, "<th scope=\"col\">{}</th>", label(c));
            }
            out.push_str("</tr></thead><tbody>");
            for item in items {
                out.push_str("<tr>");
                for c in &cols {
                    out.push_str("<td>");
                    write_html(out, item.get(*c).unwrap_or(&Json::Null));
                    out.push_str("</td>");
                }
                out.push_str("</tr>");
            }
            out.push_str("</tbody></table></div>");
        }
        Json::Array(items) if items.is_empty() => out.push_str("none"),
        Json::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| {
                    let mut s = String::new();
                    write_html(&mut s, i);
                    s
                })
                .collect();
            out.push_str(&parts.join(", "));
        }
        other => out.push_str(&scalar(other)),
    }
}

/// The failure page of a domain call, as `map_err` takes it.
fn on_err<'a, E: crate::error::Classify>(
    web: &'a super::Web,
    s: &'a super::sessions::Session,
    what: &'a str,
) -> impl Fn(E) -> Response + 'a {
    move |e| failure(web, s, what, e)
}

/// The record a screen shows, from its domain call; `Err` is the failure page.
async fn record(
    web: &super::Web,
    s: &super::sessions::Session,
    screen: Screen,
) -> Result<Json, Response> {
    let ctl = &web.ctl;
    let what = screen.title();
    Ok(match screen {
        Screen::Services => view::cluster_status(
            &crate::health::status(ctl, &web.parts.health, 20).map_err(on_err(web, s, what))?,
        ),
        Screen::Cache => view::cache_report(
            &crate::cache::status(ctl)
                .await
                .map_err(on_err(web, s, what))?,
        ),
        Screen::LoadBalancer => {
            let status = crate::lb::status(ctl).await.map_err(on_err(web, s, what))?;
            // Before the cluster is configured there are no routes yet: the status still shows.
            let routes = match crate::lb::config(ctl) {
                Ok(c) => view::lb_config(&c),
                Err(e) => Json::String(format!("not known yet: {e}")),
            };
            serde_json::json!({
                "status": view::lb_status(&status),
                "what an external load balancer must route": routes,
            })
        }
        Screen::FileReplication => view::fsrep_status(&web.parts.fsrep.status(ctl)),
        Screen::Keys => view::keys_status(&crate::keys::status(ctl).map_err(on_err(web, s, what))?),
        Screen::Certificates => view::certs_shown(
            &crate::certs::show(ctl)
                .await
                .map_err(on_err(web, s, what))?,
        ),
        Screen::Schema => {
            view::schema_list(&crate::schema::list(ctl).map_err(on_err(web, s, what))?)
        }
    })
}

pub(super) async fn page(State(web): W, headers: HeaderMap, Path(slug): Path<String>) -> Response {
    let s = match gate(&web, &headers, Role::Viewer) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Some(screen) = Screen::ALL.into_iter().find(|x| x.slug() == slug) else {
        return super::plain(StatusCode::NOT_FOUND, "no such page");
    };
    let rec = match record(&web, &s, screen).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    // The enrolled nodes by role, for the actions' choices (cache and lb nodes).
    let nodes: Vec<Value> = crate::nodes::list(&web.ctl)
        .unwrap_or_default()
        .into_iter()
        .map(|n| context! { hostname => n.hostname, role => n.role })
        .collect();
    let screens: Vec<Value> = Screen::ALL
        .iter()
        .map(|x| context! { slug => x.slug(), title => x.title(), current => *x == screen })
        .collect();
    web.render(
        "status.html",
        context! {
            me => me(Some(&s)),
            title => screen.title(),
            screens => screens,
            body => Value::from_safe_string(html(&rec)),
            slug => screen.slug(),
            r => Value::from_serialize(&rec),
            nodes => nodes,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_become_lists_and_tables_with_everything_escaped() {
        let h = html(&json!({
            "installed": true,
            "password_set": false,
            "note": "<b>x</b>",
            "empty": "",
            "nodes": [
                {"hostname": "a", "redis": "ok"},
                {"hostname": "b", "stunnel": "down", "redis": null}
            ],
            "kids": ["k1", "k2"],
            "none": []
        }));
        assert!(h.starts_with("<dl class=\"record\">"), "{h}");
        assert!(h.contains("<dt>installed</dt><dd>yes</dd>"), "{h}");
        assert!(h.contains("<dt>password set</dt><dd>no</dd>"), "{h}");
        assert!(
            h.contains("&lt;b&gt;x&lt;/b&gt;") && !h.contains("<b>"),
            "{h}"
        );
        assert!(h.contains("<dt>empty</dt><dd>-</dd>"), "{h}");
        // One table, columns from every row in first-seen order, a missing cell as "-".
        assert!(
            h.contains("<th scope=\"col\">hostname</th><th scope=\"col\">redis</th><th scope=\"col\">stunnel</th>"),
            "{h}"
        );
        assert!(
            h.contains("<tr><td>a</td><td>ok</td><td>-</td></tr>"),
            "{h}"
        );
        assert!(
            h.contains("<tr><td>b</td><td>-</td><td>down</td></tr>"),
            "{h}"
        );
        assert!(
            h.contains("<dd>k1, k2</dd>") && h.contains("<dd>none</dd>"),
            "{h}"
        );
    }
}
