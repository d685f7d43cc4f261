//! Custom LDAP schema in the node's directory (`ApplyLdapSchema`, `VerifyLdapSchema`).
//!
//! **OpenLDAP**: the schema is written as `opt/openldap/etc/schema/clustermgr-<name>.schema`
//! and included from slapd.conf right after its last schema `include` (so it may use Gluu's
//! attribute types). Both are tried first as candidates (a candidate schema file and a candidate
//! slapd.conf including it) with `slaptest -u`; a check stops there. Installing writes the
//! schema file, keeps the previous slapd.conf as `slapd.conf.clustermgr-previous`, writes the
//! new slapd.conf, restarts the directory alone and waits until LDAPS answers; when it does not,
//! the previous files are put back and the directory restarted again before the job fails.
//!
//! **OpenDJ**: `opt/opendj/config/schema/999-clustermgr-<name>.ldif` (sorting after Gluu's own
//! schema files), then the same restart, wait and rollback.
//!
//! Verification asks the directory itself: its subschema entry must list every OID, and a
//! temporary `extensibleObject` entry carrying an example value of each new user attribute type
//! is added, read back and deleted.

use super::gluu::Layout;
use super::ldap::connect;
use super::replication::{
    Candidates, Directory, detect, open_in_base, read_opt, restart_argv, slaptest_argv,
    wait_ready_within, write_file,
};
use super::{Ctx, Log, OpError, run_checked};
use crate::host::Command;
use clustermgr_proto::{
    ApplyLdapSchema, ApplyLdapSchemaOutput, CustomSchema, SchemaElement, SchemaElementKind,
    VerifyLdapSchema, VerifyLdapSchemaOutput,
};
use clustermgr_shared::safefs;
use ldap3::{Scope, SearchEntry};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::time::Duration;

pub const OPENLDAP_SCHEMA_DIR: &str = "/opt/openldap/etc/schema";
pub const OPENDJ_SCHEMA_DIR: &str = "/opt/opendj/config/schema";
const OPENLDAP_ETC: &str = super::replication::OPENLDAP_ETC;
const PREVIOUS_CONF: &str = "slapd.conf.clustermgr-previous";
const DEFAULT_WAIT: Duration = Duration::from_secs(60);

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

fn kind_of(e: &SchemaElement) -> Result<SchemaElementKind, OpError> {
    match e.kind() {
        SchemaElementKind::Unspecified => Err(OpError(format!(
            "{}: the element's kind is not given",
            e.oid
        ))),
        k => Ok(k),
    }
}

fn checked(s: &CustomSchema) -> Result<&CustomSchema, OpError> {
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

fn checked_all(schemas: &[CustomSchema]) -> Result<Vec<CustomSchema>, OpError> {
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

fn join<T: Send + 'static>(
    r: Result<Result<T, OpError>, tokio::task::JoinError>,
) -> Result<T, OpError> {
    r.map_err(|e| OpError(e.to_string()))?
}

pub async fn apply(
    ctx: &Ctx,
    req: ApplyLdapSchema,
    log: &mut Log,
) -> Result<ApplyLdapSchemaOutput, OpError> {
    log.secret(&String::from_utf8_lossy(&req.admin_password));
    let schemas = checked_all(&req.schemas)?;
    let layout = Layout::detect(&ctx.host)?;
    let kind = detect(&layout)?;
    let wait = if req.within_ms == 0 {
        DEFAULT_WAIT
    } else {
        Duration::from_millis(u64::from(req.within_ms))
    };
    match kind {
        Directory::OpenLdap => apply_openldap(ctx, &layout, &req, &schemas, wait, log).await,
        Directory::OpenDj => apply_opendj(ctx, &layout, &req, &schemas, wait, log).await,
    }
}

fn names(schemas: &[CustomSchema]) -> String {
    schemas
        .iter()
        .map(|s| format!("{:?}", s.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a file held before: its content, or absent.
type Previous = Option<Vec<u8>>;

fn restore(dir: &OwnedFd, name: &str, prev: &Previous) -> Result<(), OpError> {
    match prev {
        Some(c) => write_file(dir, name, c, 0o644),
        None => match nix::unistd::unlinkat(
            dir,
            OsStr::new(name),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(OpError(format!("removing {name}: {e}"))),
        },
    }
}

async fn restart_and_wait(
    ctx: &Ctx,
    layout: &Layout,
    req: &ApplyLdapSchema,
    wait: Duration,
    log: &mut Log,
) -> Result<(), OpError> {
    run_checked(
        &ctx.host,
        &Command::new(restart_argv(layout)?),
        log,
        "restarting the directory",
    )
    .await?;
    wait_ready_within(ctx, &req.host, req.port, &req.admin_password, log, wait).await?;
    log.line("the directory answers on LDAPS");
    Ok(())
}

/// One schema file: its name, the text wanted and what the node holds now.
struct SchemaFile {
    name: String,
    text: String,
    previous: Previous,
}

impl SchemaFile {
    fn same(&self) -> bool {
        self.previous.as_deref() == Some(self.text.as_bytes())
    }
}

/// The schema files of one directory: `dir_inside` opened on a handle, each file's wanted text
/// beside what the node holds.
struct SchemaFiles {
    kind: Directory,
    dir_inside: &'static str,
    dir: OwnedFd,
    files: Vec<SchemaFile>,
}

impl SchemaFiles {
    async fn read(
        ctx: &Ctx,
        layout: &Layout,
        kind: Directory,
        schemas: &[CustomSchema],
        only_missing: bool,
    ) -> Result<Self, OpError> {
        let dir_inside = match kind {
            Directory::OpenLdap => OPENLDAP_SCHEMA_DIR,
            Directory::OpenDj => OPENDJ_SCHEMA_DIR,
        };
        let mut wanted = Vec::new();
        for s in schemas {
            wanted.push(match kind {
                Directory::OpenLdap => (openldap_file(&s.name), render_openldap(s)?),
                Directory::OpenDj => (opendj_file(&s.name), render_opendj(s)?),
            });
        }
        let root = ctx.root().clone();
        let l = layout.clone();
        let (dir, files) = join(
            tokio::task::spawn_blocking(move || {
                let dir = open_in_base(&root, &l, dir_inside)?;
                let mut files = Vec::new();
                for (name, mut text) in wanted {
                    let previous = read_opt(&dir, &name)?.map(|(c, _)| c);
                    if only_missing && let Some(p) = &previous {
                        // Held in some version: kept as it is.
                        text = String::from_utf8_lossy(p).into_owned();
                    }
                    files.push(SchemaFile {
                        name,
                        text,
                        previous,
                    });
                }
                Ok((dir, files))
            })
            .await,
        )?;
        Ok(Self {
            kind,
            dir_inside,
            dir,
            files,
        })
    }

    fn same(&self) -> bool {
        self.files.iter().all(SchemaFile::same)
    }

    fn paths(&self) -> Vec<String> {
        self.files
            .iter()
            .map(|f| format!("{}/{}", self.dir_inside, f.name))
            .collect()
    }

    fn output(&self, changed: bool) -> ApplyLdapSchemaOutput {
        ApplyLdapSchemaOutput {
            directory: self.kind.name().into(),
            files: self.paths(),
            changed,
            restarted: changed,
        }
    }

    /// Writes the files that differ.
    async fn write(&self) -> Result<(), OpError> {
        let d = dup(&self.dir)?;
        let texts: Vec<(String, String)> = self
            .files
            .iter()
            .filter(|f| !f.same())
            .map(|f| (f.name.clone(), f.text.clone()))
            .collect();
        join(
            tokio::task::spawn_blocking(move || {
                for (n, t) in &texts {
                    write_file(&d, n, t.as_bytes(), 0o644)?;
                }
                Ok(())
            })
            .await,
        )
    }

    /// Puts back what the node held before (removes the files it did not have).
    fn restore(&self) -> Result<(), OpError> {
        for f in &self.files {
            restore(&self.dir, &f.name, &f.previous)?;
        }
        Ok(())
    }
}

/// Restarts the directory and waits for it; when it does not answer, `undo` puts the previous
/// files back and the directory is restarted again before the error is returned.
async fn restart_or_undo(
    ctx: &Ctx,
    layout: &Layout,
    req: &ApplyLdapSchema,
    wait: Duration,
    log: &mut Log,
    undo: impl FnOnce() -> Result<(), OpError> + Send + 'static,
) -> Result<(), OpError> {
    let Err(e) = restart_and_wait(ctx, layout, req, wait, log).await else {
        return Ok(());
    };
    log.line(format!(
        "the directory did not come back ({e}); putting its previous schema back"
    ));
    join(tokio::task::spawn_blocking(undo).await)?;
    Err(OpError(
        match restart_and_wait(ctx, layout, req, wait, log).await {
            Ok(()) => format!("{e} (rolled back: the directory runs its previous schema)"),
            Err(b) => format!("{e}; the rollback did not bring the directory back either: {b}"),
        },
    ))
}

async fn apply_openldap(
    ctx: &Ctx,
    layout: &Layout,
    req: &ApplyLdapSchema,
    schemas: &[CustomSchema],
    wait: Duration,
    log: &mut Log,
) -> Result<ApplyLdapSchemaOutput, OpError> {
    let files =
        SchemaFiles::read(ctx, layout, Directory::OpenLdap, schemas, req.only_missing).await?;
    let root = ctx.root().clone();
    let l = layout.clone();
    let (etc, conf) = join(
        tokio::task::spawn_blocking(move || {
            let etc = open_in_base(&root, &l, OPENLDAP_ETC)?;
            let conf = read_opt(&etc, "slapd.conf")?
                .map(|(c, _)| c)
                .ok_or_else(|| OpError(format!("{OPENLDAP_ETC}/slapd.conf is missing")))?;
            Ok((etc, conf))
        })
        .await,
    )?;
    let conf = String::from_utf8(conf)
        .map_err(|_| OpError(format!("{OPENLDAP_ETC}/slapd.conf is not text")))?;
    let real = |f: &str| layout.seen(&format!("{OPENLDAP_SCHEMA_DIR}/{f}"));
    let cand = |f: &str| format!(".clustermgr-candidate-{f}");
    let mut new_conf = conf.clone();
    for f in &files.files {
        new_conf = with_include(&new_conf, &real(&f.name))?;
    }
    if new_conf == conf && files.same() {
        log.line(format!(
            "the directory already holds schema {} and slapd.conf includes it; nothing to do",
            names(schemas)
        ));
        return Ok(files.output(false));
    }

    // The candidates: slapd.conf including candidate copies of every schema file.
    let mut candidate_conf = conf.clone();
    for f in &files.files {
        let (r, c) = (real(&f.name), real(&cand(&f.name)));
        candidate_conf = if candidate_conf
            .lines()
            .any(|l| l.trim() == format!("include {r}"))
        {
            candidate_conf.replace(&format!("include {r}"), &format!("include {c}"))
        } else {
            with_include(&candidate_conf, &c)?
        };
    }
    let cand_conf = cand("slapd.conf");
    let mut guard_schema = Candidates {
        dir: None,
        names: files.files.iter().map(|f| cand(&f.name)).collect(),
    };
    let mut guard_conf = Candidates {
        dir: None,
        names: vec![cand_conf.clone()],
    };
    {
        let (e2, d2) = (dup(&etc)?, dup(&files.dir)?);
        let texts: Vec<(String, String)> = files
            .files
            .iter()
            .map(|f| (cand(&f.name), f.text.clone()))
            .collect();
        let (cc, c) = (cand_conf.clone(), candidate_conf);
        let (e2, d2) = join(
            tokio::task::spawn_blocking(move || {
                for (n, t) in &texts {
                    write_file(&d2, n, t.as_bytes(), 0o644)?;
                }
                write_file(&e2, &cc, c.as_bytes(), 0o600)?;
                Ok((e2, d2))
            })
            .await,
        )?;
        guard_schema.dir = Some(d2);
        guard_conf.dir = Some(e2);
    }
    let test = layout.seen(&format!("{OPENLDAP_ETC}/{cand_conf}"));
    let checked = run_checked(
        &ctx.host,
        &Command::new(slaptest_argv(layout, &test)?),
        log,
        "slaptest (the directory's configuration with the new schema)",
    )
    .await;
    drop(guard_schema);
    drop(guard_conf);
    checked.map_err(|e| OpError(format!("the directory refuses the schema: {e}")))?;
    log.line(format!(
        "slaptest accepts the configuration with schema {}",
        names(schemas)
    ));
    if req.check_only {
        return Ok(files.output(false));
    }

    // Install: the schema files, the previous slapd.conf kept, the new slapd.conf.
    files.write().await?;
    let e2 = dup(&etc)?;
    let (c, old) = (new_conf, conf.clone());
    join(
        tokio::task::spawn_blocking(move || {
            write_file(&e2, PREVIOUS_CONF, old.as_bytes(), 0o600)?;
            write_file(&e2, "slapd.conf", c.as_bytes(), conf_mode(&e2)?)
        })
        .await,
    )?;
    log.line(format!(
        "wrote {}; slapd.conf includes them (the previous one is {OPENLDAP_ETC}/{PREVIOUS_CONF})",
        files.paths().join(", ")
    ));
    let output = files.output(true);
    restart_or_undo(ctx, layout, req, wait, log, move || {
        write_file(&etc, "slapd.conf", conf.as_bytes(), conf_mode(&etc)?)?;
        files.restore()
    })
    .await?;
    Ok(output)
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd, OpError> {
    fd.try_clone().map_err(|e| OpError(e.to_string()))
}

/// slapd.conf's mode now (it keeps it).
fn conf_mode(etc: &OwnedFd) -> Result<u32, OpError> {
    Ok(safefs::stat_entry(etc, OsStr::new("slapd.conf"))
        .map_err(|e| OpError(format!("slapd.conf: {e}")))?
        .map_or(0o600, |st| st.st_mode & 0o7777))
}

async fn apply_opendj(
    ctx: &Ctx,
    layout: &Layout,
    req: &ApplyLdapSchema,
    schemas: &[CustomSchema],
    wait: Duration,
    log: &mut Log,
) -> Result<ApplyLdapSchemaOutput, OpError> {
    let files =
        SchemaFiles::read(ctx, layout, Directory::OpenDj, schemas, req.only_missing).await?;
    if files.same() {
        log.line(format!(
            "the directory already holds schema {}; nothing to do",
            names(schemas)
        ));
        return Ok(files.output(false));
    }
    if req.check_only {
        // OpenDJ reads its schema directory at start; there is no offline check like slaptest.
        log.line(format!(
            "{OPENDJ_SCHEMA_DIR} is writable; {} would hold schema {} (OpenDJ checks it when it \
             starts: a refusal is rolled back)",
            files.paths().join(", "),
            names(schemas)
        ));
        return Ok(files.output(false));
    }
    files.write().await?;
    log.line(format!("wrote {}", files.paths().join(", ")));
    let output = files.output(true);
    restart_or_undo(ctx, layout, req, wait, log, move || files.restore()).await?;
    Ok(output)
}

// ----- verification -----

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
    let err = |what: &str, e: ldap3::LdapError| OpError(format!("{what}: {e}"));
    // The subschema entry the root DSE names.
    let (rows, _) = ldap
        .search(
            "",
            Scope::Base,
            "(objectClass=*)",
            vec!["subschemaSubentry"],
        )
        .await
        .map_err(|e| err("reading the root DSE", e))?
        .success()
        .map_err(|e| err("reading the root DSE", e))?;
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
        .map_err(|e| err(&sub, e))?
        .success()
        .map_err(|e| err(&sub, e))?;
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
    let mut missing = Vec::new();
    let mut out = VerifyLdapSchemaOutput::default();
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
    for (n, v) in &values {
        attrs.push((n.clone(), HashSet::from([v.to_string()])));
    }
    let r = ldap
        .add(&dn, attrs)
        .await
        .map_err(|e| err(&format!("adding {dn}"), e))?;
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
            .map_err(|e| err(&dn, e))?
            .success()
            .map_err(|e| err(&dn, e))?;
        Ok::<_, OpError>(rows.into_iter().next().map(SearchEntry::construct))
    }
    .await;
    let deleted = ldap.delete(&dn).await;
    let entry = read?.ok_or_else(|| OpError(format!("{dn} was added but cannot be read")))?;
    for (n, _) in &values {
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
        out.written.push(n.clone());
    }
    match deleted {
        Ok(r) if r.rc == 0 => {}
        Ok(r) => log.line(format!(
            "removing {dn}: LDAP result code {} (remove it by hand)",
            r.rc
        )),
        Err(e) => log.line(format!("removing {dn}: {e} (remove it by hand)")),
    }
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

#[cfg(test)]
mod tests;
