//! Console users (admins only): list, add, remove.

use super::Web;
use super::pages::{W, failure, gate, gate_change, me};
use super::sessions::Session;
use super::signin::record;
use crate::auth::Role;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use clustermgr_shared::util::fmt_ms;
use minijinja::context;
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct UserRow {
    name: String,
    role: &'static str,
    created: String,
}

#[derive(Serialize)]
struct OperatorRow {
    name: String,
    role: String,
    created: String,
    created_by: String,
}

fn users_view(web: &Web, s: &Session, status: StatusCode, note: Option<String>) -> Response {
    let users = match web.users.list() {
        Ok(v) => v,
        Err(e) => {
            return failure(web, s, "this page", e);
        }
    };
    let rows: Vec<UserRow> = users
        .into_iter()
        .map(|u| UserRow {
            name: u.name,
            role: u.role.as_str(),
            created: fmt_ms(u.created_unix_ms),
        })
        .collect();
    // The API's operator credentials, read-only here (`clustermgr operator create|remove`).
    let operators: Vec<OperatorRow> = match crate::operators::list(&web.ctl) {
        Ok(v) => v
            .into_iter()
            .map(|o| OperatorRow {
                name: o.name,
                role: o.role,
                created: fmt_ms(o.created_unix_ms),
                created_by: o.created_by,
            })
            .collect(),
        Err(e) => return failure(web, s, "this page", e),
    };
    let mut r = web.render(
        "users.html",
        context! { me => me(Some(s)), users => rows, operators => operators, note => note },
    );
    *r.status_mut() = status;
    r
}

pub(super) async fn users_page(State(web): W, headers: HeaderMap) -> Response {
    match gate(&web, &headers, Role::Admin) {
        Ok(s) => users_view(&web, &s, StatusCode::OK, None),
        Err(r) => *r,
    }
}

#[derive(Deserialize)]
pub(super) struct AddUserForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_again: String,
    #[serde(default)]
    role: String,
}

pub(super) async fn users_add(
    State(web): W,
    headers: HeaderMap,
    Form(f): Form<AddUserForm>,
) -> Response {
    let s = match gate_change(&web, &headers, Role::Admin, f.csrf.as_deref()) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Some(role) = Role::parse(&f.role) else {
        return users_view(
            &web,
            &s,
            StatusCode::BAD_REQUEST,
            Some("role: one of viewer, operator, admin".into()),
        );
    };
    let a = s.audit("web.user-add", f.username.clone());
    match web
        .users
        .add(&f.username, &f.password, &f.password_again, role)
        .await
    {
        Ok(u) => {
            record(&web, a.ok(format!("role {}", role.as_str()))).await;
            users_view(
                &web,
                &s,
                StatusCode::OK,
                Some(format!("user {} added", u.name)),
            )
        }
        Err(e) => {
            record(&web, a.failed(&e.to_string())).await;
            users_view(&web, &s, StatusCode::BAD_REQUEST, Some(e.to_string()))
        }
    }
}

#[derive(Deserialize)]
pub(super) struct RemoveUserForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    username: String,
}

pub(super) async fn users_remove(
    State(web): W,
    headers: HeaderMap,
    Form(f): Form<RemoveUserForm>,
) -> Response {
    let s = match gate_change(&web, &headers, Role::Admin, f.csrf.as_deref()) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let a = s.audit("web.user-remove", f.username.clone());
    match web.users.remove(&f.username).await {
        Ok(()) => {
            web.sessions.end_user(&f.username);
            record(&web, a.ok("")).await;
            users_view(
                &web,
                &s,
                StatusCode::OK,
                Some(format!("user {} removed", f.username)),
            )
        }
        Err(e) => {
            record(&web, a.failed(&e.to_string())).await;
            users_view(&web, &s, StatusCode::BAD_REQUEST, Some(e.to_string()))
        }
    }
}
