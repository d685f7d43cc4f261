//! One schema element (attribute type, object class, ...) from its RFC 4512 description: keywords per kind, references with objectidentifier macros expanded.

use super::*;

/// Keyword → what follows it.
#[derive(Clone, Copy)]
pub(super) enum Arg {
    Flag,
    Qdescrs,
    Qdstring,
    Oid,
    Oids,
    Noidlen,
    Usage,
    Qdstrings,
}

pub(super) fn keyword(kind: SchemaElementKind, kw: &str) -> Option<Arg> {
    if kw.starts_with("X-") {
        return Some(Arg::Qdstrings);
    }
    let common = match kw {
        "NAME" => Some(Arg::Qdescrs),
        "DESC" => Some(Arg::Qdstring),
        "OBSOLETE" => Some(Arg::Flag),
        _ => None,
    };
    if common.is_some() {
        return common;
    }
    match kind {
        SchemaElementKind::AttributeType => match kw {
            "SUP" | "EQUALITY" | "ORDERING" | "SUBSTR" => Some(Arg::Oid),
            "SYNTAX" => Some(Arg::Noidlen),
            "SINGLE-VALUE" | "COLLECTIVE" | "NO-USER-MODIFICATION" => Some(Arg::Flag),
            "USAGE" => Some(Arg::Usage),
            _ => None,
        },
        _ => match kw {
            "SUP" | "MUST" | "MAY" => Some(Arg::Oids),
            "ABSTRACT" | "STRUCTURAL" | "AUXILIARY" => Some(Arg::Flag),
            _ => None,
        },
    }
}

/// An oid as a reference: a descriptor or a numeric OID (macros expanded).
pub(super) fn reference(s: &str, macros: &HashMap<String, String>) -> Result<String, String> {
    if is_descr(s) && !macros.contains_key(&s.to_ascii_lowercase()) {
        return Ok(s.to_string());
    }
    expand(s, macros).ok_or_else(|| format!("{s:?} is neither a name nor an OID"))
}

/// Parses one description; the error is a message for the file's line.
pub(super) fn element(
    kind: SchemaElementKind,
    text: &str,
    macros: &HashMap<String, String>,
) -> Result<SchemaElement, String> {
    let what = if kind == SchemaElementKind::AttributeType {
        "attribute type"
    } else {
        "object class"
    };
    let toks = tokens(text)?;
    let mut it = toks.into_iter().peekable();
    if it.next() != Some(Tok::Open) {
        return Err(format!("an {what} starts with \"(\""));
    }
    let oid = match it.next() {
        Some(Tok::Word(w)) => expand(&w, macros)
            .ok_or_else(|| format!("{w:?} is not a numeric OID (nor a known objectidentifier)"))?,
        _ => return Err(format!("the {what} has no OID")),
    };
    let mut out_toks: Vec<String> = vec!["(".into(), oid.clone()];
    let mut seen: HashSet<String> = HashSet::new();
    let mut names: Vec<String> = Vec::new();
    let (mut syntax, mut sup) = (String::new(), String::new());
    let (mut single, mut no_user, mut obsolete, mut collective) = (false, false, false, false);
    let mut usage_user = true;
    let mut kinds = 0;
    let quote = |s: &str| format!("'{s}'");
    loop {
        let kw = match it.next() {
            Some(Tok::Close) => break,
            Some(Tok::Word(w)) => w,
            Some(t) => return Err(format!("unexpected {t:?} in the {what} {oid}")),
            None => return Err(format!("the {what} {oid} is not closed with \")\"")),
        };
        let arg = keyword(kind, &kw)
            .ok_or_else(|| format!("{kw:?} is not a keyword of an {what} ({oid})"))?;
        if !seen.insert(kw.clone()) {
            return Err(format!("{kw} appears twice in {oid}"));
        }
        out_toks.push(kw.clone());
        match arg {
            Arg::Flag => match kw.as_str() {
                "SINGLE-VALUE" => single = true,
                "NO-USER-MODIFICATION" => no_user = true,
                "OBSOLETE" => obsolete = true,
                "COLLECTIVE" => collective = true,
                "ABSTRACT" | "STRUCTURAL" | "AUXILIARY" => kinds += 1,
                _ => {}
            },
            Arg::Qdstring => match it.next() {
                Some(Tok::Quoted(s)) => out_toks.push(quote(&s)),
                _ => return Err(format!("{kw} takes a quoted string ({oid})")),
            },
            Arg::Qdescrs | Arg::Qdstrings => {
                let mut vals = Vec::new();
                match it.next() {
                    Some(Tok::Quoted(s)) => vals.push(s),
                    Some(Tok::Open) => loop {
                        match it.next() {
                            Some(Tok::Quoted(s)) => vals.push(s),
                            Some(Tok::Close) => break,
                            _ => return Err(format!("{kw} ( ... ) takes quoted strings ({oid})")),
                        }
                    },
                    _ => return Err(format!("{kw} takes quoted strings ({oid})")),
                }
                if vals.is_empty() {
                    return Err(format!("{kw} is empty ({oid})"));
                }
                if matches!(arg, Arg::Qdescrs) {
                    for v in &vals {
                        if !is_descr(v) {
                            return Err(format!(
                                "{v:?} is not a valid name (a letter, then letters, digits and \
                                 hyphens)"
                            ));
                        }
                    }
                    names = vals.clone();
                }
                if vals.len() == 1 {
                    out_toks.push(quote(&vals[0]));
                } else {
                    out_toks.push("(".into());
                    out_toks.extend(vals.iter().map(|v| quote(v)));
                    out_toks.push(")".into());
                }
            }
            Arg::Oid | Arg::Noidlen | Arg::Usage => {
                let Some(Tok::Word(w)) = it.next() else {
                    return Err(format!("{kw} takes a name or an OID ({oid})"));
                };
                let v = match arg {
                    Arg::Noidlen => {
                        let (o, len) = match w.split_once('{') {
                            Some((o, l)) => (o, Some(l)),
                            None => (w.as_str(), None),
                        };
                        let o = expand(o, macros)
                            .ok_or_else(|| format!("SYNTAX {w:?} is not an OID ({oid})"))?;
                        if let Some(l) = len {
                            let digits = l.strip_suffix('}').unwrap_or("x");
                            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                                return Err(format!("SYNTAX {w:?}: a bad length ({oid})"));
                            }
                            syntax = o.clone();
                            format!("{o}{{{digits}}}")
                        } else {
                            syntax = o.clone();
                            o
                        }
                    }
                    Arg::Usage => {
                        if !matches!(
                            w.as_str(),
                            "userApplications"
                                | "directoryOperation"
                                | "distributedOperation"
                                | "dSAOperation"
                        ) {
                            return Err(format!("USAGE {w:?} is not a usage ({oid})"));
                        }
                        usage_user = w == "userApplications";
                        w
                    }
                    _ => {
                        let r = reference(&w, macros)?;
                        if kw == "SUP" {
                            sup = r.clone();
                        }
                        r
                    }
                };
                out_toks.push(v);
            }
            Arg::Oids => {
                let mut refs = Vec::new();
                match it.next() {
                    Some(Tok::Word(w)) => refs.push(reference(&w, macros)?),
                    Some(Tok::Open) => {
                        let mut expect_name = true;
                        loop {
                            match it.next() {
                                Some(Tok::Close) if !expect_name => break,
                                Some(Tok::Word(w)) if w == "$" && !expect_name => {
                                    expect_name = true;
                                }
                                Some(Tok::Word(w)) if expect_name => {
                                    refs.push(reference(&w, macros)?);
                                    expect_name = false;
                                }
                                _ => {
                                    return Err(format!(
                                        "{kw} ( a $ b ) lists names separated by $ ({oid})"
                                    ));
                                }
                            }
                        }
                    }
                    _ => return Err(format!("{kw} takes names ({oid})")),
                }
                if refs.len() == 1 {
                    out_toks.push(refs[0].clone());
                } else {
                    out_toks.push("(".into());
                    out_toks.push(refs.join(" $ "));
                    out_toks.push(")".into());
                }
            }
        }
    }
    if let Some(t) = it.next() {
        return Err(format!("{t:?} after the closing \")\" of {oid}"));
    }
    out_toks.push(")".into());
    if names.is_empty() {
        return Err(format!("the {what} {oid} has no NAME"));
    }
    if kind == SchemaElementKind::AttributeType && syntax.is_empty() && sup.is_empty() {
        return Err(format!(
            "the attribute type {} ({oid}) has neither SYNTAX nor SUP",
            names[0]
        ));
    }
    if kinds > 1 {
        return Err(format!(
            "the object class {} ({oid}) has more than one of ABSTRACT, STRUCTURAL, AUXILIARY",
            names[0]
        ));
    }
    let syntax = if syntax.is_empty() && !sup.is_empty() {
        // Resolved by `resolve_syntaxes` once every element is known.
        format!("sup:{sup}")
    } else {
        syntax
    };
    Ok(SchemaElement {
        kind: kind as i32,
        oid,
        names,
        description: out_toks.join(" "),
        syntax,
        single_value: single,
        user_modifiable: kind == SchemaElementKind::AttributeType
            && !no_user
            && !obsolete
            && !collective
            && usage_user,
    })
}
