//! The schema files' text: the operator's schema as the controller normalized it, checked
//! again here (a name for file names, one parenthesized line per element) and rendered for
//! OpenLDAP (`attributetype`/`objectclass` lines) or OpenDJ (an LDIF of `cn=schema`), and the
//! slapd.conf `include` that loads an OpenLDAP schema file.

use crate::ops::OpError;
use clustermgr_proto::{CustomSchema, SchemaElement, SchemaElementKind};

/// The schema's name as files carry it: `[a-z0-9][a-z0-9_-]{0,63}`.
pub fn check_name(name: &str) -> Result<(), OpError> {
    if clustermgr_shared::util::is_schema_name(name) {
        Ok(())
    } else {
        Err(OpError(format!(
            "{name:?} is not a schema name ([a-z0-9][a-z0-9_-]*, at most 64 characters)"
        )))
    }
}

/// One description, as the controller normalized it: one line, in parentheses.
fn check_element(e: &SchemaElement) -> Result<(), OpError> {
    let d = e.description.trim();
    if d.contains(['\n', '\r', '\0']) || !d.starts_with('(') || !d.ends_with(')') {
        return Err(OpError(format!(
            "the description of {} is not one parenthesized line",
            e.oid
        )));
    }
    if e.oid.is_empty() || !e.oid.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(OpError(format!("{:?} is not a numeric OID", e.oid)));
    }
    Ok(())
}

pub(super) fn kind_of(e: &SchemaElement) -> Result<SchemaElementKind, OpError> {
    match e.kind() {
        SchemaElementKind::Unspecified => Err(OpError(format!(
            "{}: the element's kind is not given",
            e.oid
        ))),
        k => Ok(k),
    }
}

pub(super) fn checked(s: &CustomSchema) -> Result<&CustomSchema, OpError> {
    check_name(&s.name)?;
    if s.elements.is_empty() {
        return Err(OpError(format!("schema {:?} defines nothing", s.name)));
    }
    for e in &s.elements {
        check_element(e)?;
        kind_of(e)?;
    }
    Ok(s)
}

pub(super) fn checked_all(schemas: &[CustomSchema]) -> Result<Vec<CustomSchema>, OpError> {
    if schemas.is_empty() {
        return Err(OpError("no schema given".into()));
    }
    let mut names = std::collections::HashSet::new();
    for s in schemas {
        checked(s)?;
        if !names.insert(s.name.as_str()) {
            return Err(OpError(format!("schema {:?} is given twice", s.name)));
        }
    }
    Ok(schemas.to_vec())
}

/// The file's first line: a comment naming the schema and its source (the operator's file name
/// quoted with its control characters escaped, so it cannot start a line of its own).
fn header(s: &CustomSchema) -> String {
    let sha: String = s
        .source_sha256
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(64)
        .collect();
    format!(
        "# Custom schema {:?} added by clustermgr (from {:?}, sha256 {sha}). Do not edit: \
         `clustermgr schema add` replaces this file.\n",
        s.name, s.source_file
    )
}

/// Every line of a rendered file is a comment or one of `allowed` (nothing else can reach the
/// directory's configuration).
fn only(text: String, allowed: &[&str]) -> Result<String, OpError> {
    for line in text.lines() {
        if !(line.starts_with('#') || allowed.iter().any(|a| line.starts_with(a))) {
            return Err(OpError(format!(
                "the rendered schema has an unexpected line: {:?}",
                line.chars().take(80).collect::<String>()
            )));
        }
    }
    Ok(text)
}

/// OpenLDAP's schema file text.
pub fn render_openldap(s: &CustomSchema) -> Result<String, OpError> {
    let mut out = header(s);
    for e in &s.elements {
        let kw = match kind_of(e)? {
            SchemaElementKind::AttributeType => "attributetype",
            _ => "objectclass",
        };
        out.push_str(&format!("{kw} {}\n", e.description.trim()));
    }
    only(out, &["attributetype (", "objectclass ("])
}

/// OpenDJ's schema LDIF.
pub fn render_opendj(s: &CustomSchema) -> Result<String, OpError> {
    let mut out = header(s);
    out.push_str(
        "dn: cn=schema\nobjectClass: top\nobjectClass: ldapSubentry\nobjectClass: subschema\n",
    );
    for e in &s.elements {
        let attr = match kind_of(e)? {
            SchemaElementKind::AttributeType => "attributeTypes",
            _ => "objectClasses",
        };
        out.push_str(&format!("{attr}: {}\n", e.description.trim()));
    }
    only(
        out,
        &[
            "dn: cn=schema",
            "objectClass: ",
            "attributeTypes: (",
            "objectClasses: (",
        ],
    )
}

pub fn openldap_file(name: &str) -> String {
    format!("clustermgr-{name}.schema")
}

pub fn opendj_file(name: &str) -> String {
    format!("999-clustermgr-{name}.ldif")
}

/// slapd.conf with `include <path>` after its last schema include (unchanged when present).
pub fn with_include(conf: &str, path: &str) -> Result<String, OpError> {
    let include = format!("include {path}");
    if conf.lines().any(|l| l.trim() == include) {
        return Ok(conf.to_string());
    }
    let lines: Vec<&str> = conf.split_inclusive('\n').collect();
    let last = lines
        .iter()
        .rposition(|l| {
            let t = l.trim();
            t.starts_with("include") && t.ends_with(".schema")
        })
        .ok_or_else(|| {
            OpError(
                "slapd.conf includes no schema file: where custom schema goes is unknown".into(),
            )
        })?;
    let mut out = String::with_capacity(conf.len() + include.len() + 1);
    for (i, l) in lines.iter().enumerate() {
        out.push_str(l);
        if i == last {
            if !l.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&include);
            out.push('\n');
        }
    }
    Ok(out)
}
