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

type Toks = std::iter::Peekable<std::vec::IntoIter<Tok>>;

/// What one description's keywords set, with the description rewritten token by token.
struct Fields<'m> {
    kind: SchemaElementKind,
    macros: &'m HashMap<String, String>,
    oid: String,
    out: Vec<String>,
    names: Vec<String>,
    syntax: String,
    sup: String,
    single: bool,
    no_user: bool,
    obsolete: bool,
    collective: bool,
    usage_user: bool,
    kinds: usize,
}

fn quote(s: &str) -> String {
    format!("'{s}'")
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
    let mut f = Fields {
        kind,
        macros,
        out: vec!["(".into(), oid.clone()],
        oid,
        names: Vec::new(),
        syntax: String::new(),
        sup: String::new(),
        single: false,
        no_user: false,
        obsolete: false,
        collective: false,
        usage_user: true,
        kinds: 0,
    };
    let mut seen: HashSet<String> = HashSet::new();
    loop {
        let oid = &f.oid;
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
        f.out.push(kw.clone());
        f.keyword(&kw, arg, &mut it)?;
    }
    if let Some(t) = it.next() {
        return Err(format!("{t:?} after the closing \")\" of {}", f.oid));
    }
    f.finish(what)
}

impl Fields<'_> {
    /// One keyword's argument, read from the tokens and written to the description.
    fn keyword(&mut self, kw: &str, arg: Arg, it: &mut Toks) -> Result<(), String> {
        let oid = &self.oid;
        match arg {
            Arg::Flag => match kw {
                "SINGLE-VALUE" => self.single = true,
                "NO-USER-MODIFICATION" => self.no_user = true,
                "OBSOLETE" => self.obsolete = true,
                "COLLECTIVE" => self.collective = true,
                "ABSTRACT" | "STRUCTURAL" | "AUXILIARY" => self.kinds += 1,
                _ => {}
            },
            Arg::Qdstring => match it.next() {
                Some(Tok::Quoted(s)) => self.out.push(quote(&s)),
                _ => return Err(format!("{kw} takes a quoted string ({oid})")),
            },
            Arg::Qdescrs | Arg::Qdstrings => {
                let vals = quoted_strings(it, kw, oid)?;
                if matches!(arg, Arg::Qdescrs) {
                    if let Some(v) = vals.iter().find(|v| !is_descr(v)) {
                        return Err(format!(
                            "{v:?} is not a valid name (a letter, then letters, digits and \
                             hyphens)"
                        ));
                    }
                    self.names = vals.clone();
                }
                let quoted: Vec<String> = vals.iter().map(|v| quote(v)).collect();
                self.push_list(quoted, " ");
            }
            Arg::Oid | Arg::Noidlen | Arg::Usage => {
                let Some(Tok::Word(w)) = it.next() else {
                    return Err(format!("{kw} takes a name or an OID ({oid})"));
                };
                let v = match arg {
                    Arg::Noidlen => {
                        let (syntax, v) = noidlen(&w, oid, self.macros)?;
                        self.syntax = syntax;
                        v
                    }
                    Arg::Usage => {
                        self.usage_user = usage(&w, oid)?;
                        w
                    }
                    _ => {
                        let r = reference(&w, self.macros)?;
                        if kw == "SUP" {
                            self.sup = r.clone();
                        }
                        r
                    }
                };
                self.out.push(v);
            }
            Arg::Oids => {
                let refs = references(it, kw, oid, self.macros)?;
                self.push_list(refs, " $ ");
            }
        }
        Ok(())
    }

    /// One value as it is, more between parentheses.
    fn push_list(&mut self, mut vals: Vec<String>, sep: &str) {
        if vals.len() == 1 {
            self.out.append(&mut vals);
        } else {
            self.out.push("(".into());
            self.out.push(vals.join(sep));
            self.out.push(")".into());
        }
    }

    /// The element, once its description is checked whole.
    fn finish(mut self, what: &str) -> Result<SchemaElement, String> {
        let oid = self.oid;
        self.out.push(")".into());
        let Some(name) = self.names.first() else {
            return Err(format!("the {what} {oid} has no NAME"));
        };
        let attribute = self.kind == SchemaElementKind::AttributeType;
        if attribute && self.syntax.is_empty() && self.sup.is_empty() {
            return Err(format!(
                "the attribute type {name} ({oid}) has neither SYNTAX nor SUP"
            ));
        }
        if self.kinds > 1 {
            return Err(format!(
                "the object class {name} ({oid}) has more than one of ABSTRACT, STRUCTURAL, AUXILIARY"
            ));
        }
        let syntax = if self.syntax.is_empty() && !self.sup.is_empty() {
            // Resolved by `resolve_syntaxes` once every element is known.
            format!("sup:{}", self.sup)
        } else {
            self.syntax
        };
        Ok(SchemaElement {
            kind: self.kind as i32,
            oid,
            names: self.names,
            description: self.out.join(" "),
            syntax,
            single_value: self.single,
            user_modifiable: attribute
                && !self.no_user
                && !self.obsolete
                && !self.collective
                && self.usage_user,
        })
    }
}

/// `'a'` or `( 'a' 'b' ... )`, not empty.
fn quoted_strings(it: &mut Toks, kw: &str, oid: &str) -> Result<Vec<String>, String> {
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
    Ok(vals)
}

/// `a` or `( a $ b ... )`, each a reference.
fn references(
    it: &mut Toks,
    kw: &str,
    oid: &str,
    macros: &HashMap<String, String>,
) -> Result<Vec<String>, String> {
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
                        return Err(format!("{kw} ( a $ b ) lists names separated by $ ({oid})"));
                    }
                }
            }
        }
        _ => return Err(format!("{kw} takes names ({oid})")),
    }
    Ok(refs)
}

/// A SYNTAX: the syntax's OID and the value as written back (`oid` or `oid{len}`).
fn noidlen(
    w: &str,
    oid: &str,
    macros: &HashMap<String, String>,
) -> Result<(String, String), String> {
    let (o, len) = match w.split_once('{') {
        Some((o, l)) => (o, Some(l)),
        None => (w, None),
    };
    let o = expand(o, macros).ok_or_else(|| format!("SYNTAX {w:?} is not an OID ({oid})"))?;
    match len {
        Some(l) => {
            let digits = l.strip_suffix('}').unwrap_or("x");
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("SYNTAX {w:?}: a bad length ({oid})"));
            }
            Ok((o.clone(), format!("{o}{{{digits}}}")))
        }
        None => Ok((o.clone(), o)),
    }
}

/// A USAGE: whether it is `userApplications`.
fn usage(w: &str, oid: &str) -> Result<bool, String> {
    if !matches!(
        w,
        "userApplications" | "directoryOperation" | "distributedOperation" | "dSAOperation"
    ) {
        return Err(format!("USAGE {w:?} is not a usage ({oid})"));
    }
    Ok(w == "userApplications")
}
