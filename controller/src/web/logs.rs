//! Logging: a search over the nodes' logs by type, host and text (the CLI's `logs`, the same
//! domain call and the same role: operator, since logs may hold personal data), results merged
//! by time; and live follow as server-sent events of rendered rows.

use super::live::{Guard, ended_event, respond};
use super::pages::{W, gate, me, message};
use super::{Web, plain};
use crate::auth::Role;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::response::sse::Event;
use clustermgr_proto::{LogEntry, LogType, SearchLogsRequest, log_search_event};
use clustermgr_shared::util::fmt_ms;
use minijinja::context;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;

/// Lines a page shows per node.
const PAGE_LIMIT: u32 = 500;
const TYPES: [LogType; 6] = LogType::ALL;

#[derive(Deserialize, Default, Clone)]
pub(super) struct LogQuery {
    /// A type's name (`oxauth`, ...); empty: every type.
    #[serde(default, rename = "type")]
    log_type: String,
    /// A hostname; empty: every node.
    #[serde(default)]
    host: String,
    #[serde(default)]
    grep: String,
    /// 15m | 1h | 24h | 7d; empty: no limit.
    #[serde(default)]
    since: String,
}

#[derive(Serialize)]
struct Row {
    time: String,
    host: String,
    log_type: &'static str,
    file: String,
    line: String,
}

fn row(e: &LogEntry) -> Row {
    Row {
        time: fmt_ms(e.unix_ms),
        host: e.hostname.clone(),
        log_type: crate::logs::type_name(e.r#type()),
        file: e.file.clone(),
        line: e.line.clone(),
    }
}

/// The search the query asks for, or why it is not one.
fn request(q: &LogQuery, follow: bool) -> Result<SearchLogsRequest, String> {
    let types = match q.log_type.as_str() {
        "" => Vec::new(),
        name => vec![
            *TYPES
                .iter()
                .find(|t| crate::logs::type_name(**t) == name)
                .ok_or_else(|| format!("no log type {name:?}"))? as i32,
        ],
    };
    let since_ms = match q.since.as_str() {
        "" => 0,
        s => clustermgr_shared::duration::parse_duration(s)
            .map_err(|e| format!("since {s:?}: {e}"))?
            .as_millis() as u64,
    };
    Ok(SearchLogsRequest {
        types,
        nodes: if q.host.is_empty() {
            Vec::new()
        } else {
            vec![q.host.clone()]
        },
        grep: q.grep.clone(),
        since_ms,
        follow,
        limit: PAGE_LIMIT,
    })
}

fn form_context(web: &Web, q: &LogQuery) -> minijinja::Value {
    let hosts: Vec<String> = crate::nodes::list(&web.ctl)
        .map(|n| n.into_iter().map(|n| n.hostname).collect())
        .unwrap_or_default();
    let types: Vec<&str> = TYPES.iter().map(|t| crate::logs::type_name(*t)).collect();
    context! {
        types => types,
        hosts => hosts,
        q => context! {
            log_type => q.log_type.clone(),
            host => q.host.clone(),
            grep => q.grep.clone(),
            since => q.since.clone(),
        },
    }
}

pub(super) async fn page(State(web): W, headers: HeaderMap, Query(q): Query<LogQuery>) -> Response {
    let s = match gate(&web, &headers, Role::Operator) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let form = form_context(&web, &q);
    let asked = !q.grep.is_empty() || !q.log_type.is_empty() || !q.host.is_empty();
    if !asked {
        return web.render("logs.html", context! { me => me(Some(&s)), form => form });
    }
    let req = match request(&q, false) {
        Ok(r) => r,
        Err(e) => return message(&web, StatusCode::BAD_REQUEST, Some(&s), &e),
    };
    let who = format!("web:{}", s.user);
    let mut events =
        match crate::logs::search(web.ctl.clone(), web.parts.logs.clone(), &who, req).await {
            Ok(rx) => rx,
            Err(e) => return message(&web, StatusCode::BAD_REQUEST, Some(&s), &e.to_string()),
        };
    let (mut entries, mut nodes) = (Vec::new(), Vec::new());
    while let Some(ev) = events.recv().await {
        match ev.event {
            Some(log_search_event::Event::Entry(e)) => entries.push(e),
            Some(log_search_event::Event::NodeDone(d)) => nodes.push(context! {
                host => d.hostname,
                matched => d.matched,
                sent => d.sent,
                truncated => d.truncated,
                error => d.error,
            }),
            None => {}
        }
    }
    entries.sort_by_key(|e| e.unix_ms);
    let rows: Vec<Row> = entries.iter().map(row).collect();
    web.render(
        "logs.html",
        context! { me => me(Some(&s)), form => form, rows => rows, nodes => nodes, searched => true },
    )
}

/// Live follow: every line appended from now on, as a rendered table row per event, until the
/// browser goes away (dropping the search ends every node's follow).
pub(super) async fn follow(
    State(web): W,
    headers: HeaderMap,
    Query(q): Query<LogQuery>,
) -> Response {
    let s = match gate(&web, &headers, Role::Operator) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let req = match request(&q, true) {
        Ok(r) => r,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &e),
    };
    let who = format!("web:{}", s.user);
    let events = match crate::logs::search(web.ctl.clone(), web.parts.logs.clone(), &who, req).await
    {
        Ok(rx) => rx,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let guard = Guard::new(&web, &headers, Role::Operator);
    // (web, the node's lines, the session's guard, ended)
    let start = (web, events, guard, false);
    let stream = futures::stream::unfold(start, |(web, mut events, mut guard, ended)| async move {
        if ended {
            return None;
        }
        loop {
            let Ok(next) = guard.wait(&web, events.recv()).await else {
                return Some((
                    Ok::<_, Infallible>(ended_event()),
                    (web, events, guard, true),
                ));
            };
            if let Some(log_search_event::Event::Entry(e)) = next?.event {
                let html = web.fragment("log_row.html", context! { r => row(&e) })?;
                let ev = Event::default().event("entry").data(html);
                return Some((Ok(ev), (web, events, guard, false)));
            }
        }
    });
    respond(stream)
}
