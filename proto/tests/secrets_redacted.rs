//! Secrets never reach Debug output: every message with a secret field is listed in build.rs's
//! `skip_debug` and has a hand-written Debug in src/ (src/redact*) that shows the secret as `Redacted`.
//!
//! The rule, checked on the .proto sources themselves:
//! * A field is secret when a line of the `//` comment block directly above it (no blank line in
//!   between) starts with the word `Secret` (`// Secret.`, `// Secret: ...`, `// Secret (...)`),
//!   or when its trailing comment does (`bytes password = 2; // Secret`). `Secrets` does not count:
//!   mark each field.
//! * Every message with a secret field is in `skip_debug`, and its Debug impl in src/ names
//!   every field (a oneof by its name), shows each secret field through `Redacted` and ends with
//!   `.finish()`. The same holds for every other message in `skip_debug`.
//! * A `string` or `bytes` field named like a secret (password, passphrase, secret, private,
//!   pkcs8, key_pem, token) is marked `Secret`, or says `Not secret` in its comment: a deliberate
//!   decision either way.
use std::path::Path;

#[derive(Debug)]
struct Field {
    /// The message's path inside the package (`Outer.Inner` for a nested one).
    message: String,
    name: String,
    /// The field's type (`bytes`, `string`, `map<string, string>`, a message's name, ...).
    ty: String,
    /// The oneof the field belongs to, if any.
    oneof: Option<String>,
    secret: bool,
    not_secret: bool,
    /// file:line, for messages.
    at: String,
}

#[derive(Debug)]
struct ProtoFile {
    package: String,
    fields: Vec<Field>,
}

fn starts_with_word(text: &str, word: &str) -> bool {
    text.strip_prefix(word)
        .is_some_and(|rest| !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
}

fn comment_text(line: &str) -> Option<&str> {
    line.trim().strip_prefix("//").map(str::trim)
}

fn parse_proto(file: &str, text: &str) -> ProtoFile {
    enum Scope {
        Message(String),
        Oneof(String),
        Other,
    }
    let mut package = String::new();
    let mut scopes: Vec<Scope> = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut fields = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(c) = comment_text(line) {
            comments.push(c.to_string());
            continue;
        }
        let above = std::mem::take(&mut comments);
        if line.is_empty() {
            continue;
        }
        let (code, trailing) = match line.split_once("//") {
            Some((code, comment)) => (code.trim(), Some(comment.trim())),
            None => (line, None),
        };
        if let Some(p) = code.strip_prefix("package ") {
            package = p.trim_end_matches(';').trim().to_string();
            continue;
        }
        if code.ends_with('{') {
            let mut words = code.split_whitespace();
            let scope = match (words.next(), words.next()) {
                (Some("message"), Some(name)) => {
                    let parent = scopes.iter().rev().find_map(|s| match s {
                        Scope::Message(m) => Some(m.clone()),
                        _ => None,
                    });
                    Scope::Message(match parent {
                        Some(p) => format!("{p}.{name}"),
                        None => name.to_string(),
                    })
                }
                (Some("oneof"), Some(name)) => Scope::Oneof(name.to_string()),
                _ => Scope::Other,
            };
            scopes.push(scope);
            continue;
        }
        if code.starts_with('}') {
            scopes.pop();
            continue;
        }
        // A field: `[optional|repeated] TYPE NAME = N [options];`, in a message or a oneof.
        let (message, oneof) = match scopes.last() {
            Some(Scope::Message(m)) => (m.clone(), None),
            Some(Scope::Oneof(o)) => match scopes.iter().rev().nth(1) {
                Some(Scope::Message(m)) => (m.clone(), Some(o.clone())),
                _ => continue,
            },
            _ => continue,
        };
        let Some((decl, _number)) = code.split_once(" = ") else {
            continue;
        };
        if !code.ends_with(';')
            || ["reserved", "option", "extensions"]
                .iter()
                .any(|k| starts_with_word(decl, k))
        {
            continue;
        }
        let decl = decl
            .strip_prefix("optional ")
            .or_else(|| decl.strip_prefix("repeated "))
            .unwrap_or(decl)
            .trim();
        let (ty, name) = if decl.starts_with("map<") {
            let end = decl.find('>').map_or(decl.len(), |i| i + 1);
            (decl[..end].to_string(), decl[end..].trim().to_string())
        } else {
            match decl.rsplit_once(' ') {
                Some((ty, name)) => (ty.trim().to_string(), name.trim().to_string()),
                None => continue,
            }
        };
        let secret = above.iter().any(|c| starts_with_word(c, "Secret"))
            || trailing.is_some_and(|c| starts_with_word(c, "Secret"));
        let not_secret = above
            .iter()
            .chain(trailing.map(str::to_string).iter())
            .any(|c| c.contains("Not secret"));
        fields.push(Field {
            message,
            name,
            ty,
            oneof,
            secret,
            not_secret,
            at: format!("{file}:{}", n + 1),
        });
    }
    ProtoFile { package, fields }
}

/// The quoted entries of build.rs's `.skip_debug([...])`.
fn skip_debug_list(build_rs: &str) -> Vec<String> {
    let Some(start) = build_rs.find(".skip_debug([") else {
        return Vec::new();
    };
    let rest = &build_rs[start + ".skip_debug([".len()..];
    let list = &rest[..rest.find("])").unwrap_or(rest.len())];
    list.split(',')
        .filter_map(|item| {
            let item = item.trim();
            let code = item
                .lines()
                .filter(|l| !l.trim().starts_with("//"))
                .collect::<String>();
            let code = code.trim();
            code.strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .map(str::to_string)
        })
        .collect()
}

/// `Outer.Inner` -> `v1::outer::Inner` (prost's module for nested messages).
fn rust_path(message: &str) -> String {
    let mut parts: Vec<&str> = message.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut path = String::from("v1::");
    for p in parts {
        for (i, c) in p.chars().enumerate() {
            if c.is_uppercase() {
                if i > 0 {
                    path.push('_');
                }
                path.extend(c.to_lowercase());
            } else {
                path.push(c);
            }
        }
        path.push_str("::");
    }
    path.push_str(last);
    path
}

/// The body of `impl std::fmt::Debug for <path> {` in the crate's sources, up to its closing brace.
fn debug_impl<'a>(lib_rs: &'a str, path: &str) -> Option<&'a str> {
    let header = format!("impl std::fmt::Debug for {path} {{");
    let start = lib_rs.find(&header)?;
    let body = &lib_rs[start..];
    let end = body.find("\n}\n").map_or(body.len(), |i| i + 2);
    Some(&body[..end])
}

/// The fields a Debug impl shows: `.field("NAME", VALUE)` -> (NAME, VALUE text).
fn shown_fields(body: &str) -> Vec<(String, String)> {
    body.split(".field(")
        .skip(1)
        .filter_map(|seg| {
            let seg = seg.trim_start().strip_prefix('"')?;
            let (name, value) = seg.split_once('"')?;
            let value = value.split(".finish").next().unwrap_or(value);
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

fn looks_secret(name: &str) -> bool {
    [
        "password",
        "passphrase",
        "secret",
        "private",
        "pkcs8",
        "key_pem",
    ]
    .iter()
    .any(|w| name.contains(w))
        || name == "token"
        || name.ends_with("_token")
}

/// Every problem the rule finds in these sources (empty: the rule holds).
fn problems(protos: &[(String, String)], build_rs: &str, lib_rs: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let skipped = skip_debug_list(build_rs);
    let mut all: Vec<(String, Field)> = Vec::new();
    for (file, text) in protos {
        let parsed = parse_proto(file, text);
        for f in parsed.fields {
            all.push((parsed.package.clone(), f));
        }
    }
    // Named like a secret: a decision is written down.
    for (_, f) in &all {
        let textual = f.ty == "string" || f.ty == "bytes";
        if textual && looks_secret(&f.name) && !f.secret && !f.not_secret {
            problems.push(format!(
                "{}: {}.{} looks like a secret: mark it `// Secret` (or say `Not secret` and why)",
                f.at, f.message, f.name
            ));
        }
    }
    // Messages that must have a redacting Debug: those with a secret field, and those listed.
    let mut messages: Vec<(String, String)> = all
        .iter()
        .filter(|(_, f)| f.secret)
        .map(|(pkg, f)| (format!(".{pkg}.{}", f.message), f.at.clone()))
        .collect();
    messages.sort();
    messages.dedup_by(|a, b| a.0 == b.0);
    for (fq, at) in &messages {
        if !skipped.contains(fq) {
            problems.push(format!(
                "{at}: {fq} has a secret field but is not in build.rs's skip_debug list"
            ));
        }
    }
    for fq in &skipped {
        let Some((pkg, message)) = all
            .iter()
            .map(|(pkg, f)| (pkg, &f.message))
            .find(|(pkg, m)| format!(".{pkg}.{m}") == *fq)
        else {
            problems.push(format!(
                "skip_debug names {fq}, which is no message with fields"
            ));
            continue;
        };
        let fields: Vec<&Field> = all
            .iter()
            .filter(|(p, f)| p == pkg && &f.message == message)
            .map(|(_, f)| f)
            .collect();
        let path = rust_path(message);
        let Some(body) = debug_impl(lib_rs, &path) else {
            problems.push(format!(
                "{fq}: no `impl std::fmt::Debug for {path}` in src/"
            ));
            continue;
        };
        let short = message.rsplit('.').next().unwrap_or(message);
        if !body.contains(&format!("debug_struct(\"{short}\")")) {
            problems.push(format!(
                "{fq}: its Debug is not `debug_struct(\"{short}\")`"
            ));
        }
        if body.contains("finish_non_exhaustive") || !body.contains(".finish()") {
            problems.push(format!(
                "{fq}: its Debug must show every field and end with .finish()"
            ));
        }
        let shown = shown_fields(body);
        for f in &fields {
            let name = f.oneof.as_ref().unwrap_or(&f.name);
            match shown.iter().find(|(n, _)| n == name) {
                None => problems.push(format!("{fq}: its Debug does not show field `{name}`")),
                Some((_, value)) if f.secret && !value.contains("Redacted(") => problems.push(
                    format!("{fq}: its Debug shows secret field `{name}` without Redacted"),
                ),
                Some(_) => {}
            }
        }
    }
    problems
}

/// Every `.rs` file under `dir`, in path order, one after the other.
fn rust_sources(dir: &Path) -> String {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(
        files.iter().any(|p| p.ends_with("redact.rs")),
        "src/redact.rs not found under {}",
        dir.display()
    );
    files.iter().map(|p| read(p) + "\n").collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_secret_field_is_redacted_in_debug() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut protos: Vec<(String, String)> = std::fs::read_dir(dir.join("proto/clustermgr/v1"))
        .expect("proto dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                read(&p),
            )
        })
        .collect();
    protos.sort();
    assert!(
        protos.len() >= 18,
        "the .proto files were not found: {protos:?}"
    );
    let build_rs = read(&dir.join("build.rs"));
    let lib_rs = rust_sources(&dir.join("src"));
    assert!(
        skip_debug_list(&build_rs).len() >= 30,
        "skip_debug list not found in build.rs"
    );

    // The rule does see the secrets it must see (the parser is not silently blind).
    let secret: Vec<String> = protos
        .iter()
        .flat_map(|(file, text)| parse_proto(file, text).fields)
        .filter(|f| f.secret)
        .map(|f| format!("{}.{}", f.message, f.name))
        .collect();
    for known in [
        "ConfigureReplication.replicator_password",
        "ConfigureReplication.admin_password",
        "ReplicationStatus.admin_password",
        "LdapsBind.password",
        "RedisPing.password",
        "EnrollRequest.token",
        "ConfigureRequest.replication_password",
        "OxauthPrivateKey.pkcs8_pem",
    ] {
        assert!(
            secret.iter().any(|s| s == known),
            "{known} not seen as secret: {secret:?}"
        );
    }

    let problems = problems(&protos, &build_rs, &lib_rs);
    assert!(
        problems.is_empty(),
        "secrets could reach Debug output:\n{}",
        problems.join("\n")
    );
}

// The rule itself, on small sources.

const SAMPLE: &str = r#"
syntax = "proto3";
package clustermgr.v1;

message Login {
  string user = 1;
  // The account's password.
  // Secret: never logged.
  bytes password = 2;
  oneof how {
    string otp = 3; // Secret
    Nested nested = 4;
  }
  map<string, string> extra = 5;
  message Inner {
    // Secret.

    bytes not_directly_above = 1;
    // Secrets are plural here.
    string note = 2;
  }
}

message Plain {
  string name = 1;
}
"#;

#[test]
fn parser_sees_comment_above_trailing_comment_oneofs_and_nesting() {
    let parsed = parse_proto("sample.proto", SAMPLE);
    assert_eq!(parsed.package, "clustermgr.v1");
    let got: Vec<(String, String, Option<String>, bool)> = parsed
        .fields
        .iter()
        .map(|f| (f.message.clone(), f.name.clone(), f.oneof.clone(), f.secret))
        .collect();
    let want: Vec<(String, String, Option<String>, bool)> = [
        ("Login", "user", None, false),
        ("Login", "password", None, true),
        ("Login", "otp", Some("how"), true),
        ("Login", "nested", Some("how"), false),
        ("Login", "extra", None, false),
        ("Login.Inner", "not_directly_above", None, false),
        ("Login.Inner", "note", None, false),
        ("Plain", "name", None, false),
    ]
    .into_iter()
    .map(|(m, n, o, s)| (m.to_string(), n.to_string(), o.map(str::to_string), s))
    .collect();
    assert_eq!(got, want);
    assert_eq!(parsed.fields[4].ty, "map<string, string>");
    assert_eq!(rust_path("Login.Inner"), "v1::login::Inner");
    assert_eq!(rust_path("SetWebKeys"), "v1::SetWebKeys");
}

#[test]
fn rule_fails_on_a_missing_entry_a_missing_field_or_an_unredacted_secret() {
    let protos = [("sample.proto".to_string(), SAMPLE.to_string())];
    let build_ok = r#".skip_debug([
            ".clustermgr.v1.Login",
        ])"#;
    let lib_ok = r#"
impl std::fmt::Debug for v1::Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field(
                "password",
                &Redacted(self.password.len()),
            )
            .field("how", &self.how.as_ref().map(|_| Redacted(0)))
            .field("extra", &self.extra)
            .finish()
    }
}
"#;
    assert_eq!(problems(&protos, build_ok, lib_ok), Vec::<String>::new());

    // Not listed in skip_debug.
    let p = problems(&protos, ".skip_debug([\n])", lib_ok);
    assert!(
        p.iter().any(|p| p.contains("not in build.rs's skip_debug")),
        "{p:?}"
    );
    // A secret shown as it is.
    let shown = lib_ok.replace("&Redacted(self.password.len())", "&self.password");
    let p = problems(&protos, build_ok, &shown);
    assert!(
        p.iter()
            .any(|p| p.contains("secret field `password` without Redacted")),
        "{p:?}"
    );
    // A field left out.
    let partial = lib_ok.replace(".field(\"extra\", &self.extra)\n", "");
    let p = problems(&protos, build_ok, &partial);
    assert!(
        p.iter().any(|p| p.contains("does not show field `extra`")),
        "{p:?}"
    );
    // No Debug impl at all.
    let p = problems(&protos, build_ok, "");
    assert!(
        p.iter()
            .any(|p| p.contains("no `impl std::fmt::Debug for v1::Login`")),
        "{p:?}"
    );
    // A field named like a secret without a decision.
    let unmarked = [(
        "x.proto".to_string(),
        "package clustermgr.v1;\nmessage X {\n  bytes admin_password = 1;\n}\n".to_string(),
    )];
    let p = problems(&unmarked, ".skip_debug([\n])", "");
    assert!(
        p.iter()
            .any(|p| p.contains("X.admin_password looks like a secret")),
        "{p:?}"
    );
}
