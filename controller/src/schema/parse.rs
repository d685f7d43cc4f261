//! Reading an operator's schema file: OpenLDAP's `.schema` (`attributetype`, `objectclass`,
//! `objectidentifier` lines) or an `.ldif` (OpenDJ's `cn=schema` with `attributeTypes:` and
//! `objectClasses:`, or OpenLDAP's cn=config form with `olcAttributeTypes:`), into RFC 4512
//! descriptions the nodes can write in their own directory's form.
//!
//! Every description is tokenized and checked against RFC 4512's grammar for its kind (known
//! keywords, each once; quoted names; `SYNTAX` or `SUP` for an attribute type), object
//! identifier macros are expanded so every element has a numeric OID, and duplicates within
//! the file are refused. What only the directory can know (that a `SUP` or `MAY` names an
//! existing attribute type) is checked by the nodes' `slaptest` before anything changes.

mod element;
use element::element;

use clustermgr_proto::{SchemaElement, SchemaElementKind};
use std::collections::{HashMap, HashSet};

/// Largest schema file accepted.
pub const MAX_BYTES: usize = 256 * 1024;
/// Most elements in one file.
pub const MAX_ELEMENTS: usize = 2000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    #[error("{0:?} is neither a .schema nor an .ldif file")]
    UnknownFormat(String),
    #[error("the file is larger than {MAX_BYTES} bytes")]
    TooLarge,
    #[error("the file is not UTF-8 text")]
    NotText,
    #[error("the file defines no attribute type or object class")]
    Empty,
    #[error("the file defines more than {MAX_ELEMENTS} elements")]
    TooMany,
    #[error("line {line}: {msg}")]
    At { line: usize, msg: String },
    #[error("{0}")]
    Duplicate(String),
}

fn at(line: usize, msg: impl Into<String>) -> ParseError {
    ParseError::At {
        line,
        msg: msg.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Schema,
    Ldif,
}

impl Format {
    pub fn of(file_name: &str) -> Result<Self, ParseError> {
        let lower = file_name.to_ascii_lowercase();
        if lower.ends_with(".schema") {
            Ok(Self::Schema)
        } else if lower.ends_with(".ldif") {
            Ok(Self::Ldif)
        } else {
            Err(ParseError::UnknownFormat(file_name.to_string()))
        }
    }
}

/// One raw definition with the line it starts on.
#[derive(Debug)]
enum Raw {
    Element(SchemaElementKind, String, usize),
    Macro(String, String, usize),
}

/// The file's elements, in file order.
pub fn parse(file_name: &str, content: &[u8]) -> Result<Vec<SchemaElement>, ParseError> {
    let format = Format::of(file_name)?;
    if content.len() > MAX_BYTES {
        return Err(ParseError::TooLarge);
    }
    let text = std::str::from_utf8(content).map_err(|_| ParseError::NotText)?;
    let raws = match format {
        Format::Schema => raw_schema(text)?,
        Format::Ldif => raw_ldif(text)?,
    };
    let mut macros: HashMap<String, String> = HashMap::new();
    let mut elements = Vec::new();
    for r in raws {
        match r {
            Raw::Macro(name, value, line) => {
                let v = expand(&value, &macros).ok_or_else(|| {
                    at(
                        line,
                        format!("objectidentifier {name}: {value:?} is not an OID"),
                    )
                })?;
                macros.insert(name.to_ascii_lowercase(), v);
            }
            Raw::Element(kind, text, line) => {
                elements.push(element(kind, &text, &macros).map_err(|m| at(line, m))?);
                if elements.len() > MAX_ELEMENTS {
                    return Err(ParseError::TooMany);
                }
            }
        }
    }
    if elements.is_empty() {
        return Err(ParseError::Empty);
    }
    unique(&elements)?;
    resolve_syntaxes(&mut elements);
    Ok(elements)
}

// ----- the two file forms -----

/// Logical lines of a .schema file: a line starting with white space continues the previous
/// one; comments and blank lines end it.
fn raw_schema(text: &str) -> Result<Vec<Raw>, ParseError> {
    let mut logical: Vec<(usize, String)> = Vec::new();
    let mut open = false;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim_start().starts_with('#') {
            // OpenLDAP: a comment line inside a definition is skipped, not a terminator.
            continue;
        }
        if line.trim().is_empty() {
            open = false;
            continue;
        }
        if line.starts_with([' ', '\t']) && open {
            if let Some(last) = logical.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            return Err(at(n, "a continuation line without a definition before it"));
        }
        logical.push((n, line.trim().to_string()));
        open = true;
    }
    let mut out = Vec::new();
    for (n, l) in logical {
        let (kw, rest) = l
            .split_once(char::is_whitespace)
            .map(|(k, r)| (k, r.trim()))
            .unwrap_or((l.as_str(), ""));
        match kw.to_ascii_lowercase().as_str() {
            "attributetype" | "attributetypes" => out.push(Raw::Element(
                SchemaElementKind::AttributeType,
                rest.into(),
                n,
            )),
            "objectclass" | "objectclasses" => {
                out.push(Raw::Element(SchemaElementKind::ObjectClass, rest.into(), n))
            }
            "objectidentifier" => {
                let mut it = rest.split_whitespace();
                match (it.next(), it.next(), it.next()) {
                    (Some(name), Some(value), None) => {
                        out.push(Raw::Macro(name.into(), value.into(), n));
                    }
                    _ => return Err(at(n, "objectidentifier takes a name and an OID")),
                }
            }
            "ldapsyntax" | "ditcontentrule" => {
                return Err(at(
                    n,
                    format!("{kw} is not supported (attribute types and object classes only)"),
                ));
            }
            _ => {
                return Err(at(
                    n,
                    format!(
                        "{kw:?} is not a schema statement (attributetype, objectclass, \
                         objectidentifier)"
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// LDIF attribute lines: unfolded, comments dropped, base64 values decoded.
fn raw_ldif(text: &str) -> Result<Vec<Raw>, ParseError> {
    let mut lines: Vec<(usize, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if let Some(cont) = line.strip_prefix(' ') {
            match lines.last_mut() {
                Some(last) => last.1.push_str(cont),
                None => return Err(at(n, "a folded line without a line before it")),
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() || line.trim() == "-" {
            continue;
        }
        lines.push((n, line.to_string()));
    }
    let mut out = Vec::new();
    for (n, l) in lines {
        let (attr, value) = match l.split_once(':') {
            Some((a, v)) => (a.trim().to_string(), v.to_string()),
            None => return Err(at(n, "not an LDIF line (attribute: value)")),
        };
        let value = if let Some(b64) = value.strip_prefix(':') {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| at(n, format!("{attr}: bad base64: {e}")))?;
            String::from_utf8(bytes).map_err(|_| at(n, format!("{attr}: not UTF-8 text")))?
        } else {
            value.trim().to_string()
        };
        // cn=config's ordering prefix: {3}( ... )
        let strip_index = |v: &str| -> String {
            let t = v.trim();
            if t.starts_with('{')
                && let Some(close) = t.find('}')
            {
                return t[close + 1..].trim().to_string();
            }
            t.to_string()
        };
        match attr.to_ascii_lowercase().as_str() {
            "attributetypes" | "olcattributetypes" => out.push(Raw::Element(
                SchemaElementKind::AttributeType,
                strip_index(&value),
                n,
            )),
            "objectclasses" | "olcobjectclasses" => out.push(Raw::Element(
                SchemaElementKind::ObjectClass,
                strip_index(&value),
                n,
            )),
            "olcobjectidentifier" => {
                let v = strip_index(&value);
                let mut it = v.split_whitespace();
                match (it.next(), it.next(), it.next()) {
                    (Some(name), Some(oid), None) => {
                        out.push(Raw::Macro(name.into(), oid.into(), n));
                    }
                    _ => return Err(at(n, "olcObjectIdentifier takes a name and an OID")),
                }
            }
            "dn" | "objectclass" | "cn" | "changetype" | "add" | "replace" => {}
            other => {
                return Err(at(
                    n,
                    format!(
                        "{other}: not supported in a schema file (attributeTypes and \
                         objectClasses only)"
                    ),
                ));
            }
        }
    }
    Ok(out)
}

// ----- one description -----

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    Quoted(String),
    Word(String),
}

fn tokens(text: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Tok::Open);
            }
            ')' => {
                chars.next();
                out.push(Tok::Close);
            }
            '\'' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) if c.is_control() => {
                            return Err("a control character inside a quoted string".into());
                        }
                        Some(c) => s.push(c),
                        None => return Err("a quoted string is not closed".into()),
                    }
                }
                out.push(Tok::Quoted(s));
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == '(' || c == ')' || c == '\'' {
                        break;
                    }
                    if c.is_control() {
                        return Err("a control character".into());
                    }
                    s.push(c);
                    chars.next();
                }
                out.push(Tok::Word(s));
            }
        }
    }
    Ok(out)
}

fn is_numeric_oid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// A descriptor (keystring): a letter, then letters, digits and hyphens.
fn is_descr(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

/// `oid`, `macro` or `macro:suffix` to a numeric OID.
fn expand(s: &str, macros: &HashMap<String, String>) -> Option<String> {
    if is_numeric_oid(s) {
        return Some(s.to_string());
    }
    let (name, suffix) = match s.split_once(':') {
        Some((n, x)) => (n, Some(x)),
        None => (s, None),
    };
    let base = macros.get(&name.to_ascii_lowercase())?;
    let full = match suffix {
        Some(x) => format!("{base}.{x}"),
        None => base.clone(),
    };
    is_numeric_oid(&full).then_some(full)
}

fn unique(elements: &[SchemaElement]) -> Result<(), ParseError> {
    let mut oids = HashSet::new();
    let mut names: HashSet<(i32, String)> = HashSet::new();
    for e in elements {
        if !oids.insert(e.oid.clone()) {
            return Err(ParseError::Duplicate(format!(
                "the OID {} is defined twice",
                e.oid
            )));
        }
        for n in &e.names {
            if !names.insert((e.kind, n.to_ascii_lowercase())) {
                return Err(ParseError::Duplicate(format!(
                    "the name {n} is defined twice"
                )));
            }
        }
    }
    Ok(())
}

/// Standard attribute types custom ones commonly derive from, and their syntax.
const KNOWN_SUPERS: &[(&str, &str)] = &[
    ("name", "1.3.6.1.4.1.1466.115.121.1.15"),
    ("cn", "1.3.6.1.4.1.1466.115.121.1.15"),
    ("sn", "1.3.6.1.4.1.1466.115.121.1.15"),
    ("givenname", "1.3.6.1.4.1.1466.115.121.1.15"),
    ("ou", "1.3.6.1.4.1.1466.115.121.1.15"),
    ("o", "1.3.6.1.4.1.1466.115.121.1.15"),
    ("description", "1.3.6.1.4.1.1466.115.121.1.15"),
    ("displayname", "1.3.6.1.4.1.1466.115.121.1.15"),
    ("title", "1.3.6.1.4.1.1466.115.121.1.15"),
    ("mail", "1.3.6.1.4.1.1466.115.121.1.26"),
    ("distinguishedname", "1.3.6.1.4.1.1466.115.121.1.12"),
];

/// An attribute type without SYNTAX takes its SUP's: from the file, or a known standard one;
/// unknown: empty (the verification does not write it).
fn resolve_syntaxes(elements: &mut [SchemaElement]) {
    let by_name: HashMap<String, String> = elements
        .iter()
        .filter(|e| e.kind() == SchemaElementKind::AttributeType)
        .flat_map(|e| {
            let mut keys: Vec<String> = e.names.iter().map(|n| n.to_ascii_lowercase()).collect();
            keys.push(e.oid.clone());
            keys.into_iter().map(move |k| (k, e.syntax.clone()))
        })
        .collect();
    let resolve = |start: &str| -> String {
        let mut cur = start.to_string();
        for _ in 0..16 {
            let Some(sup) = cur.strip_prefix("sup:") else {
                return cur;
            };
            let key = sup.to_ascii_lowercase();
            cur = match by_name.get(&key) {
                Some(s) => s.clone(),
                None => KNOWN_SUPERS
                    .iter()
                    .find(|(n, _)| *n == key)
                    .map(|(_, s)| s.to_string())
                    .unwrap_or_default(),
            };
        }
        String::new()
    };
    for e in elements.iter_mut() {
        if e.syntax.starts_with("sup:") {
            e.syntax = resolve(&e.syntax);
        }
    }
}

#[cfg(test)]
mod tests;
