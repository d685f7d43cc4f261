//! Actions that take files (multipart forms, within axum's default 2 MiB body limit): install
//! the web certificate from PEM files, add a custom schema from a `.schema` or `.ldif` file.
//! The session and its role are checked from the headers before the body is read (a client
//! not signed in sends nothing for the console to parse), the form's CSRF token once it is
//! read, before the domain is asked. Each is the gRPC API's domain call with its role and
//! audit action, landing on the started workflow's live page. The private key is never rendered, logged or audited.

use super::actions::started;
use super::pages::{W, gate_role};
use super::{Web, plain};
use crate::auth::Role;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use clustermgr_proto::{AddSchemaRequest, InstallCertificateRequest};
use std::collections::HashMap;

/// One field of a multipart form: its bytes and, for a file, its name.
struct Field {
    file_name: String,
    bytes: Vec<u8>,
}

/// Every field of the form by name, read only once the request's session has the operator role
/// (from its headers); or the refusal of that, or of a malformed form.
async fn read_form(
    web: &Web,
    headers: &HeaderMap,
    mut m: Multipart,
) -> Result<HashMap<String, Field>, Box<Response>> {
    gate_role(web, headers, Role::Operator)?;
    let bad = |e: &dyn std::fmt::Display| {
        Box::new(plain(
            StatusCode::BAD_REQUEST,
            &format!("the form could not be read: {e}"),
        ))
    };
    let mut out = HashMap::new();
    while let Some(f) = m.next_field().await.map_err(|e| bad(&e))? {
        let name = f.name().unwrap_or_default().to_string();
        let file_name = f.file_name().unwrap_or_default().to_string();
        let bytes = f.bytes().await.map_err(|e| bad(&e))?.to_vec();
        out.insert(name, Field { file_name, bytes });
    }
    Ok(out)
}

fn text(form: &HashMap<String, Field>, name: &str) -> Option<String> {
    form.get(name)
        .map(|f| String::from_utf8_lossy(&f.bytes).into_owned())
}

fn bytes(form: &mut HashMap<String, Field>, name: &str) -> Vec<u8> {
    form.remove(name).map(|f| f.bytes).unwrap_or_default()
}

pub(super) async fn cert_install(State(web): W, headers: HeaderMap, m: Multipart) -> Response {
    let mut form = match read_form(&web, &headers, m).await {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let pem = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    let req = InstallCertificateRequest {
        certificate_pem: pem(bytes(&mut form, "certificate")),
        key_pem: bytes(&mut form, "key"),
        chain_pem: pem(bytes(&mut form, "chain")),
        dry_run: false,
        no_wait: false,
    };
    let csrf = text(&form, "csrf");
    let (s, r) = act!(
        web,
        headers,
        Role::Operator,
        csrf.as_deref(),
        "cert.install",
        "cluster",
        |a| { crate::certs::install(&web.ctl, &req, &a) }
    );
    started(&web, &s, "certificate install", r.map(|x| x.workflow))
}

pub(super) async fn schema_add(State(web): W, headers: HeaderMap, m: Multipart) -> Response {
    let mut form = match read_form(&web, &headers, m).await {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let (file_name, content) = form
        .remove("file")
        .map(|f| (f.file_name, f.bytes))
        .unwrap_or_default();
    let req = AddSchemaRequest {
        file_name,
        content,
        name: text(&form, "name").unwrap_or_default().trim().to_string(),
        dry_run: false,
        no_wait: false,
    };
    let csrf = text(&form, "csrf");
    let (s, r) = act!(
        web,
        headers,
        Role::Operator,
        csrf.as_deref(),
        "schema.add",
        "cluster",
        |a| { crate::schema::add(&web.ctl, &req, &a) }
    );
    started(&web, &s, "schema add", r.map(|x| x.workflow))
}
