//! What the controller's planning and the agent's operations share about Gluu Server 4.2.3's
//! setup: the `.properties` text setup.py reads (setup.properties) and writes back
//! (setup.properties.last), which of its keys hold secrets, setup.py's command line, and the
//! certificate set copied from the primary. One definition, so that a plan (`--dry-run`) states
//! what the run then does.

/// Where setup.py lives, inside Gluu's root.
pub const SETUP_DIR: &str = "/install/community-edition-setup";
/// Where the properties file for a run goes, inside Gluu's root (as Gluu's own tools put it).
pub const SETUP_PROPERTIES: &str = "/root/setup.properties";

/// setup.py's arguments for a cluster node (the flags the reference gives): the properties
/// file, listening on every interface (the other nodes replicate from this one), no prompt,
/// command-line mode, and `--no-data` on a node that gets its entries by replication.
pub fn setup_args(no_data: bool) -> Vec<&'static str> {
    let mut args = vec![
        "-f",
        SETUP_PROPERTIES,
        "--listen_all_interfaces",
        "-n",
        "-c",
    ];
    if no_data {
        args.push("--no-data");
    }
    args
}

/// setup.py's command line as a node runs it inside Gluu's root (for plans and summaries; the
/// agent wraps the same arguments for the node's packaging).
pub fn setup_command_line(no_data: bool) -> String {
    let mut s = format!("{SETUP_DIR}/setup.py");
    for a in setup_args(no_data) {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// The directory whose regular files all belong to the certificate set (relative to the Gluu
/// root).
pub const CERTS_DIR: &str = "etc/certs";
/// Files of the set outside `etc/certs` (Gluu 4.x paths, relative to the Gluu root).
pub const EXTRA_FILES: &[&str] = &[
    "install/community-edition-setup/output/scim-rp.jks",
    "etc/gluu/conf/passport-config.json",
];
/// The directory's own TLS identity under `etc/certs`: never part of the set.
pub const DIRECTORY_IDENTITY: &[&str] = &[
    "openldap.crt",
    "openldap.key",
    "opendj.crt",
    "opendj.pkcs12",
];
/// Public certificates imported into the JRE trust store, as `etc/certs/<suffix>.crt` and
/// alias `<prefix>_<suffix>` (the old cluster manager's list and spelling).
pub const TRUSTED: &[&str] = &["httpd", "shibIDP", "idp-encryption", "opendj"];

/// Words of a setup.properties key that mark its value as a secret: passwords (`ldapPass`,
/// `*_pw`, `defaultTrustStorePW`), salts (`encode_salt`, `pairwiseCalculationSalt`), secrets,
/// PINs and tokens.
const SECRET_WORDS: &[&str] = &[
    "pass", "password", "passwd", "pw", "pwd", "secret", "salt", "pin", "token",
];

/// The words of a key: split at `_`, `-`, `.` and camel-case humps (`defaultTrustStorePW` is
/// default, trust, store, pw), lower-cased.
fn key_words(key: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = key.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let prev = i.checked_sub(1).map(|j| chars[j]);
        let next = chars.get(i + 1).copied();
        let hump = c.is_uppercase()
            && prev.is_some_and(|p| {
                p.is_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_uppercase() && next.is_some_and(|n| n.is_lowercase()))
            });
        if hump && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Whether a setup.properties key holds a secret: one of its words is a [`SECRET_WORDS`] word
/// (so `installPassport` and `gluuPassportEnabled` are not, `passportSpKeyPass` is), or it is a
/// key (`pairwiseCalculationKey`).
pub fn is_secret_key(key: &str) -> bool {
    let words = key_words(key);
    words.iter().any(|w| SECRET_WORDS.contains(&w.as_str()))
        || (words.last().is_some_and(|w| w == "key") && !words.iter().any(|w| w == "fn"))
}

/// The forms a secret value takes in what setup prints: as it is, escaped for a properties
/// file, inside a JSON string and inside a Python string literal (its `repr`).
pub fn secret_forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_string(), escape(value, false)];
    let mut json = String::new();
    let mut py = String::new();
    for c in value.chars() {
        match c {
            '"' => {
                json.push_str("\\\"");
                py.push('"');
            }
            '\'' => {
                json.push('\'');
                py.push_str("\\'");
            }
            '\\' => {
                json.push_str("\\\\");
                py.push_str("\\\\");
            }
            '\n' => {
                json.push_str("\\n");
                py.push_str("\\n");
            }
            '\r' => {
                json.push_str("\\r");
                py.push_str("\\r");
            }
            '\t' => {
                json.push_str("\\t");
                py.push_str("\\t");
            }
            c => {
                json.push(c);
                py.push(c);
            }
        }
    }
    forms.push(json);
    forms.push(py);
    forms.sort();
    forms.dedup();
    forms
}

/// The secret values of a properties text, each in every form of [`secret_forms`]. Boolean
/// words are never secrets (masking `True` would garble every line that says it).
pub fn secret_values(text: &str) -> Vec<String> {
    let mut out: Vec<String> = parse_properties(text)
        .into_iter()
        .filter(|(k, v)| {
            let t = v.trim();
            is_secret_key(k)
                && !t.is_empty()
                && !["true", "false"].contains(&t.to_ascii_lowercase().as_str())
        })
        .flat_map(|(_, v)| secret_forms(&v))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `key=value` lines with Java properties escaping (what setup.py reads back).
pub fn render_properties<'a>(kv: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in kv {
        out.push_str(&escape(k, true));
        out.push('=');
        out.push_str(&escape(v, false));
        out.push('\n');
    }
    out
}

fn escape(s: &str, key: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '=' | ':' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            ' ' if key || i == 0 => out.push_str("\\ "),
            c => out.push(c),
        }
    }
    out
}

/// Parses Java `.properties` text (comments, `=`/`:` separators, backslash escapes; no line
/// continuations, which setup never writes).
pub fn parse_properties(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') || l.starts_with('!') {
            continue;
        }
        let mut key = String::new();
        let mut chars = l.chars();
        let mut escaped = false;
        let mut rest = String::new();
        for c in chars.by_ref() {
            if escaped {
                key.push(unescape(c));
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '=' || c == ':' || c.is_whitespace() {
                break;
            } else {
                key.push(c);
            }
        }
        rest.extend(chars);
        let rest = rest.trim_start();
        let rest = rest
            .strip_prefix('=')
            .or_else(|| rest.strip_prefix(':'))
            .unwrap_or(rest)
            .trim_start();
        let mut value = String::new();
        let mut escaped = false;
        for c in rest.chars() {
            if escaped {
                value.push(unescape(c));
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else {
                value.push(c);
            }
        }
        out.push((key, value));
    }
    out
}

fn unescape(c: char) -> char {
    match c {
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_found_by_their_words() {
        for k in [
            "ldapPass",
            "encode_salt",
            "pairwiseCalculationKey",
            "pairwiseCalculationSalt",
            "encoded_ox_ldap_pw",
            "oxauthClient_pw",
            "idpClient_encoded_pw",
            "defaultTrustStorePW",
            "passportSpKeyPass",
            "oxRadiusClientSecret",
            "cb_password",
            "opendj_p12_pass",
            "scim_rs_client_jks_pass_encoded",
            "httpdKeyPass",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "installPassport",
            "gluuPassportEnabled",
            "mappingLocations",
            "hostname",
            "orgName",
            "httpdKeyFn",
            "reCreatePasswords",
            "default_key_algs",
            "processedKeys",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn secret_values_come_in_every_escaped_form_and_booleans_never() {
        let text = "ldapPass=Pa$$ w0rd\\!'\"x\\\\y\ninstallPassport=False\nreCreatePasswords=True\nencode_salt=abcdEFGH1234\n";
        let v = secret_values(text);
        for form in [
            "Pa$$ w0rd!'\"x\\y",
            "Pa$$ w0rd\\!'\"x\\\\y",
            "Pa$$ w0rd!'\\\"x\\\\y",
            "Pa$$ w0rd!\\'\"x\\\\y",
            "abcdEFGH1234",
        ] {
            assert!(v.iter().any(|s| s == form), "{form} missing from {v:?}");
        }
        assert!(!v.iter().any(|s| s == "False" || s == "True"), "{v:?}");
    }

    #[test]
    fn the_command_line_has_the_cluster_flags() {
        assert_eq!(
            setup_command_line(true),
            "/install/community-edition-setup/setup.py -f /root/setup.properties --listen_all_interfaces -n -c --no-data"
        );
        assert!(!setup_args(false).contains(&"--no-data"));
    }
}
