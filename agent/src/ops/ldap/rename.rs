//! Renaming the Gluu host: the hostname under o=gluu (a paged walk of every entry naming it)
//! and in the files the rename rewrites under the Gluu root.

use super::*;

/// Largest file a rename rewrites.
const MAX_RENAME_FILE: u64 = 4 * 1024 * 1024;

/// Files a rename rewrites when they exist under the Gluu root: the web server's configuration
/// (Debian, then Red Hat layouts), the host name and the hosts table.
pub const RENAME_FILES: &[&str] = &[
    "etc/apache2/sites-available/https_gluu.conf",
    "etc/httpd/conf/httpd.conf",
    "etc/httpd/conf.d/https_gluu.conf",
    "etc/hostname",
    "etc/hosts",
];

/// A host name: letters, digits, `-`, `.`, not starting with `-` or `.`.
pub(super) fn check_host_name(what: &str, h: &str) -> Result<(), OpError> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !h.starts_with(['-', '.'])
        && !h.ends_with('.');
    if ok {
        Ok(())
    } else {
        Err(OpError(format!("{what} {h:?} is not a host name")))
    }
}

fn host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

/// `text` with every occurrence of the host name `from` replaced by `to`, where it stands as a
/// whole name: not inside a longer name (`xlb.example.org`, `www.lb.example.org`,
/// `lb.example.org.evil`), but in a URL, an e-mail address, `host:port` or `host_suffix`.
/// None when nothing changes.
pub fn replace_host(text: &str, from: &str, to: &str) -> Option<String> {
    if from.is_empty() || !text.contains(from) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut changed = false;
    for (at, _) in text.match_indices(from) {
        if at < last {
            continue;
        }
        let before = text[..at].chars().next_back();
        let rest = &text[at + from.len()..];
        let mut after = rest.chars();
        let next = after.next();
        let whole_before = before.is_none_or(|c| !host_char(c) && c != '.');
        let whole_after = match next {
            None => true,
            Some('.') => after.next().is_none_or(|c| !host_char(c)),
            Some(c) => !host_char(c),
        };
        if whole_before && whole_after {
            out.push_str(&text[last..at]);
            out.push_str(to);
            last = at + from.len();
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&text[last..]);
    Some(out)
}

/// /etc/hosts with `from` replaced by `to` where it is a name on a line (comments untouched).
pub fn rename_in_hosts(text: &str, from: &str, to: &str) -> Option<String> {
    let mut changed = false;
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (entry, comment) = match line.find('#') {
            Some(i) => line.split_at(i),
            None => (line, ""),
        };
        let mut rebuilt = String::with_capacity(line.len());
        let mut token = String::new();
        let mut index = 0;
        let mut flush = |token: &mut String, rebuilt: &mut String, index: &mut usize| {
            if token.is_empty() {
                return;
            }
            // The first field is the address; the names follow.
            if *index > 0 && token == from {
                rebuilt.push_str(to);
                changed = true;
            } else {
                rebuilt.push_str(token);
            }
            token.clear();
            *index += 1;
        };
        for c in entry.chars() {
            if c.is_whitespace() {
                flush(&mut token, &mut rebuilt, &mut index);
                rebuilt.push(c);
            } else {
                token.push(c);
            }
        }
        flush(&mut token, &mut rebuilt, &mut index);
        out.push_str(&rebuilt);
        out.push_str(comment);
    }
    changed.then_some(out)
}

/// One entry's changes: attribute -> new values.
struct EntryChange {
    dn: String,
    attrs: Vec<(String, Vec<String>)>,
    revision: Option<u64>,
}

async fn collect_renames(
    ldap: &mut Ldap,
    from: &str,
    to: &str,
) -> Result<(Vec<EntryChange>, u64), OpError> {
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(500)),
    ];
    let mut stream = ldap
        .streaming_search_with(
            adapters,
            GLUU_BASE,
            Scope::Subtree,
            "(objectClass=*)",
            vec!["*"],
        )
        .await
        .map_err(|e| ldap_err("search o=gluu", e))?;
    let mut changes = Vec::new();
    let mut seen = 0u64;
    loop {
        let next = stream
            .next()
            .await
            .map_err(|e| ldap_err("search o=gluu", e))?;
        let Some(raw) = next else { break };
        seen += 1;
        let entry = SearchEntry::construct(raw);
        let mut attrs = Vec::new();
        let mut revision = None;
        for (name, vals) in &entry.attrs {
            if name.eq_ignore_ascii_case("oxRevision") {
                revision = vals.first().and_then(|v| v.trim().parse::<u64>().ok());
                continue;
            }
            let renamed: Vec<Option<String>> =
                vals.iter().map(|v| replace_host(v, from, to)).collect();
            if renamed.iter().any(Option::is_some) {
                let new = vals
                    .iter()
                    .zip(renamed)
                    .map(|(old, new)| new.unwrap_or_else(|| old.clone()))
                    .collect();
                attrs.push((name.clone(), new));
            }
        }
        if !attrs.is_empty() {
            attrs.sort();
            changes.push(EntryChange {
                dn: entry.dn,
                attrs,
                revision,
            });
        }
    }
    stream
        .finish()
        .await
        .success()
        .map_err(|e| ldap_err("search o=gluu", e))?;
    Ok((changes, seen))
}

/// Rewrites the listed files that exist under the Gluu root; returns the paths changed.
pub(super) fn rename_files(
    root: &Path,
    layout: &Layout,
    from: &str,
    to: &str,
) -> Result<Vec<String>, OpError> {
    let base = open_base(root, layout)?;
    let am_root = nix::unistd::geteuid().is_root();
    let mut changed = Vec::new();
    for path in RENAME_FILES {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let err = |e: SafeFsError| OpError(format!("/{path}: {e}"));
        let d = match safefs::open_dir_beneath(&base, Path::new(dir), false) {
            Ok(d) => d,
            Err(SafeFsError::NotFound(_)) => continue,
            Err(e) => return Err(err(e)),
        };
        let name = OsStr::new(name);
        if safefs::stat_entry(&d, name).map_err(err)?.is_none() {
            continue;
        }
        let (content, st) = safefs::read_regular(&d, name, MAX_RENAME_FILE).map_err(err)?;
        let text = String::from_utf8(content)
            .map_err(|_| OpError(format!("/{path} is not UTF-8 text")))?;
        let new = match *path {
            "etc/hostname" => (text.trim() == from).then(|| format!("{to}\n")),
            "etc/hosts" => rename_in_hosts(&text, from, to),
            _ => replace_host(&text, from, to),
        };
        let Some(new) = new else { continue };
        let perms = FilePerms {
            mode: st.st_mode & 0o7777,
            uid: am_root.then_some(st.st_uid),
            gid: am_root.then_some(st.st_gid),
        };
        safefs::replace_file(&d, name, new.as_bytes(), perms).map_err(err)?;
        changed.push(format!("/{path}"));
    }
    Ok(changed)
}

pub async fn rename_host(
    ctx: &Ctx,
    req: RenameGluuHost,
    log: &mut Log,
) -> Result<RenameGluuHostOutput, OpError> {
    check_host_name("from", &req.from)?;
    check_host_name("to", &req.to)?;
    if req.from == req.to {
        return Err(OpError("from and to are the same host name".into()));
    }
    let layout = Layout::detect(&ctx.host)?;
    let mut ldap = connect(ctx, &req.host, req.port, &req.password, log).await?;
    let result = async {
        let (changes, seen) = collect_renames(&mut ldap, &req.from, &req.to).await?;
        log.line(format!(
            "{} of {seen} entries under {GLUU_BASE} name {}",
            changes.len(),
            req.from
        ));
        let mut entries = 0u32;
        for c in changes {
            let names: Vec<&str> = c.attrs.iter().map(|(a, _)| a.as_str()).collect();
            log.line(format!("{}: {}", c.dn, names.join(", ")));
            let mut mods: Vec<Mod<String>> = c
                .attrs
                .iter()
                .map(|(a, v)| Mod::Replace(a.clone(), v.iter().cloned().collect()))
                .collect();
            // A configuration entry's revision moves so that its service reloads it.
            if let Some(r) = c.revision {
                mods.push(Mod::Replace(
                    "oxRevision".into(),
                    HashSet::from([(r + 1).to_string()]),
                ));
            }
            let r = ldap
                .modify(&c.dn, mods)
                .await
                .map_err(|e| ldap_err(&c.dn, e))?;
            if r.rc != 0 {
                return Err(OpError(format!(
                    "modify of {} refused (LDAP result code {}); {entries} entries were changed \
                     before it (running the rename again continues)",
                    c.dn, r.rc
                )));
            }
            entries += 1;
        }
        Ok(entries)
    }
    .await;
    let _ = ldap.unbind().await;
    let entries = result?;
    let root = ctx.root().clone();
    let (from, to) = (req.from.clone(), req.to.clone());
    let files = tokio::task::spawn_blocking(move || rename_files(&root, &layout, &from, &to))
        .await
        .map_err(|e| OpError(e.to_string()))??;
    for f in &files {
        log.line(format!("rewrote {f}"));
    }
    log.line(format!(
        "renamed {} to {}: {entries} directory entries, {} files",
        req.from,
        req.to,
        files.len()
    ));
    Ok(RenameGluuHostOutput {
        ldap_entries_changed: entries,
        files_changed: files.len() as u32,
    })
}
