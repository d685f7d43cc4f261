//! `VerifyLdapSchema`: the directory itself is asked. Its subschema entry must list every OID
//! of the schema, and a temporary `extensibleObject` entry carrying an example value of each new
//! user attribute type is added, read back and deleted.

use super::render::checked;
use crate::ops::ldap::connect;
use crate::ops::{Ctx, Log, OpError};
use clustermgr_proto::{CustomSchema, SchemaElementKind, VerifyLdapSchema, VerifyLdapSchemaOutput};
use ldap3::{Scope, SearchEntry};
use std::collections::HashSet;

/// An example value for a syntax (RFC 4517 OIDs), when one is safe to write.
pub fn example_value(syntax: &str) -> Option<&'static str> {
    let oid = syntax.split('{').next().unwrap_or("").trim();
    let n = oid.strip_prefix("1.3.6.1.4.1.1466.115.121.1.")?;
    Some(match n {
        "15" | "44" => "clustermgr schema check",
        "26" | "40" => "clustermgr-schema-check",
        "27" | "36" => "42",
        "7" => "TRUE",
        "24" => "20260101000000Z",
        "12" => "o=site",
        "38" => "1.3.6.1.4.1.1466.115.121.1.15",
        "50" => "+1 555 0100",
        _ => return None,
    })
}

/// The OIDs a subschema attribute's values define (the first token after the parenthesis).
fn defined_oids(values: &[String]) -> HashSet<String> {
    values
        .iter()
        .filter_map(|v| {
            v.trim()
                .strip_prefix('(')?
                .split_whitespace()
                .next()
                .map(|o| o.to_ascii_lowercase())
        })
        .collect()
}

pub async fn verify(
    ctx: &Ctx,
    req: VerifyLdapSchema,
    log: &mut Log,
) -> Result<VerifyLdapSchemaOutput, OpError> {
    log.secret(&String::from_utf8_lossy(&req.admin_password));
    let schema = req
        .schema
        .as_ref()
        .ok_or_else(|| OpError("no schema given".into()))
        .and_then(checked)?
        .clone();
    let mut ldap = connect(ctx, &req.host, req.port, &req.admin_password, log).await?;
    let r = verify_on(&mut ldap, &schema, &req.base, log).await;
    let _ = ldap.unbind().await;
    r
}

async fn verify_on(
    ldap: &mut ldap3::Ldap,
    schema: &CustomSchema,
    base: &str,
    log: &mut Log,
) -> Result<VerifyLdapSchemaOutput, OpError> {
    let mut out = VerifyLdapSchemaOutput::default();
    let sub = check_subschema(ldap, schema, &mut out).await?;
    log.line(format!(
        "{sub} lists the {} attribute type(s) and {} object class(es)",
        out.attribute_types, out.object_classes
    ));
    // A temporary entry using the new attribute types.
    let mut values: Vec<(String, &'static str)> = Vec::new();
    for e in &schema.elements {
        if e.kind() != SchemaElementKind::AttributeType {
            continue;
        }
        let name = e.names.first().cloned().unwrap_or_else(|| e.oid.clone());
        match example_value(&e.syntax).filter(|_| e.user_modifiable) {
            Some(v) => values.push((name, v)),
            None => out.not_written.push(name),
        }
    }
    if values.is_empty() {
        log.line("no new attribute type has an example value to write; the subschema check stands");
        return Ok(out);
    }
    out.written = write_and_read_back(ldap, base, &values, log).await?;
    log.line(format!(
        "wrote and read back {} in a temporary entry under {base}{}",
        out.written.join(", "),
        if out.not_written.is_empty() {
            String::new()
        } else {
            format!(" (not written: {})", out.not_written.join(", "))
        }
    ));
    Ok(out)
}

fn ldap_err(what: &str, e: ldap3::LdapError) -> OpError {
    OpError(format!("{what}: {e}"))
}

/// The schema's elements the directory's subschema entry lists, counted in `out`; an error
/// naming those it does not list. The subschema entry's DN.
async fn check_subschema(
    ldap: &mut ldap3::Ldap,
    schema: &CustomSchema,
    out: &mut VerifyLdapSchemaOutput,
) -> Result<String, OpError> {
    let (sub, ats, ocs) = read_subschema(ldap).await?;
    let mut missing = Vec::new();
    for e in &schema.elements {
        let (set, counter) = match e.kind() {
            SchemaElementKind::AttributeType => (&ats, &mut out.attribute_types),
            _ => (&ocs, &mut out.object_classes),
        };
        if set.contains(&e.oid.to_ascii_lowercase()) {
            *counter += 1;
        } else {
            missing.push(format!(
                "{} ({})",
                e.names.first().cloned().unwrap_or_default(),
                e.oid
            ));
        }
    }
    if !missing.is_empty() {
        return Err(OpError(format!(
            "the directory does not know {} (its subschema {sub} does not list them)",
            missing.join(", ")
        )));
    }
    Ok(sub)
}

/// The subschema entry the root DSE names: its DN, the OIDs of its attribute types and those
/// of its object classes.
async fn read_subschema(
    ldap: &mut ldap3::Ldap,
) -> Result<(String, HashSet<String>, HashSet<String>), OpError> {
    let (rows, _) = ldap
        .search(
            "",
            Scope::Base,
            "(objectClass=*)",
            vec!["subschemaSubentry"],
        )
        .await
        .map_err(|e| ldap_err("reading the root DSE", e))?
        .success()
        .map_err(|e| ldap_err("reading the root DSE", e))?;
    let sub = rows
        .into_iter()
        .next()
        .map(SearchEntry::construct)
        .and_then(|e| e.attrs.get("subschemaSubentry")?.first().cloned())
        .unwrap_or_else(|| "cn=Subschema".into());
    let (rows, _) = ldap
        .search(
            &sub,
            Scope::Base,
            "(objectClass=*)",
            vec!["attributeTypes", "objectClasses"],
        )
        .await
        .map_err(|e| ldap_err(&sub, e))?
        .success()
        .map_err(|e| ldap_err(&sub, e))?;
    let entry = rows
        .into_iter()
        .next()
        .map(SearchEntry::construct)
        .ok_or_else(|| OpError(format!("{sub} is not readable")))?;
    let get = |a: &str| {
        entry
            .attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(a))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (ats, ocs) = (
        defined_oids(&get("attributeTypes")),
        defined_oids(&get("objectClasses")),
    );
    Ok((sub, ats, ocs))
}

/// A temporary `extensibleObject` entry under `base` carrying `values`, added, read back and
/// deleted: the attributes read back (an error when one is not).
async fn write_and_read_back(
    ldap: &mut ldap3::Ldap,
    base: &str,
    values: &[(String, &'static str)],
    log: &mut Log,
) -> Result<Vec<String>, OpError> {
    let rdn = format!(
        "clustermgr-schema-check-{}",
        hex::encode(rand::random::<[u8; 6]>())
    );
    let dn = format!("ou={rdn},{base}");
    let mut attrs: Vec<(String, HashSet<String>)> = vec![
        (
            "objectClass".into(),
            ["top", "organizationalUnit", "extensibleObject"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
        ("ou".into(), HashSet::from([rdn.clone()])),
    ];
    for (n, v) in values {
        attrs.push((n.clone(), HashSet::from([v.to_string()])));
    }
    let r = ldap
        .add(&dn, attrs)
        .await
        .map_err(|e| ldap_err(&format!("adding {dn}"), e))?;
    if r.rc != 0 {
        return Err(OpError(format!(
            "the directory refused an entry with the new attribute types ({}): LDAP result code \
             {}",
            values
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            r.rc
        )));
    }
    let read = async {
        let wanted: Vec<&str> = values.iter().map(|(n, _)| n.as_str()).collect();
        let (rows, _) = ldap
            .search(&dn, Scope::Base, "(objectClass=*)", wanted)
            .await
            .map_err(|e| ldap_err(&dn, e))?
            .success()
            .map_err(|e| ldap_err(&dn, e))?;
        Ok::<_, OpError>(rows.into_iter().next().map(SearchEntry::construct))
    }
    .await;
    let deleted = ldap.delete(&dn).await;
    let entry = read?.ok_or_else(|| OpError(format!("{dn} was added but cannot be read")))?;
    let mut written = Vec::new();
    for (n, _) in values {
        let present = entry
            .attrs
            .keys()
            .chain(entry.bin_attrs.keys())
            .any(|k| k.eq_ignore_ascii_case(n));
        if !present {
            return Err(OpError(format!(
                "{n} was written to {dn} but is not read back"
            )));
        }
        written.push(n.clone());
    }
    match deleted {
        Ok(r) if r.rc == 0 => {}
        Ok(r) => log.line(format!(
            "removing {dn}: LDAP result code {} (remove it by hand)",
            r.rc
        )),
        Err(e) => log.line(format!("removing {dn}: {e} (remove it by hand)")),
    }
    Ok(written)
}
