//! Custom LDAP schema in the node's directory (`ApplyLdapSchema`, `VerifyLdapSchema`).
//!
//! Files are written by their host path under the Gluu container root; slaptest runs inside
//! Gluu and the directory is restarted as Gluu's `opendj` service, both through the node's
//! [`Layout`] (on a 4.2.3 node: inside the systemd-nspawn machine, its `opendj` unit). A stopped
//! machine is started before anything runs inside it (a check of an OpenDJ schema runs nothing).
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
//! Verification ([`verify`]) asks the directory itself.

mod render;
mod verify;

pub use render::{
    check_name, opendj_file, openldap_file, render_opendj, render_openldap, with_include,
};
pub use verify::{example_value, verify};

use super::gluu::Layout;
use super::replication::{
    Candidates, Directory, DirectoryAt, detect, open_in_base, read_opt, restart_directory,
    slaptest_argv, write_file,
};
use super::{Ctx, Log, OpError, run_checked};
use crate::host::Command;
use clustermgr_proto::{ApplyLdapSchema, ApplyLdapSchemaOutput, CustomSchema};
use clustermgr_shared::safefs;
use render::checked_all;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::time::Duration;

pub const OPENLDAP_SCHEMA_DIR: &str = "/opt/openldap/etc/schema";
pub const OPENDJ_SCHEMA_DIR: &str = "/opt/opendj/config/schema";
const OPENLDAP_ETC: &str = super::replication::OPENLDAP_ETC;
const PREVIOUS_CONF: &str = "slapd.conf.clustermgr-previous";
const DEFAULT_WAIT: Duration = Duration::from_secs(60);

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
    let files = SchemaFiles::read(ctx, &layout, kind, &schemas, req.only_missing).await?;
    let a = Applying {
        ctx,
        layout,
        req: &req,
        schemas,
        wait,
    };
    match kind {
        Directory::OpenLdap => a.openldap(files, log).await,
        Directory::OpenDj => a.opendj(files, log).await,
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

/// The directory restarted with what the request names, waited for.
async fn restart_and_wait(
    ctx: &Ctx,
    layout: &Layout,
    req: &ApplyLdapSchema,
    wait: Duration,
    log: &mut Log,
) -> Result<(), OpError> {
    let at = DirectoryAt {
        host: &req.host,
        port: req.port,
        admin_password: &req.admin_password,
    };
    restart_directory(ctx, layout, at, wait, log).await
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

/// What an `ApplyLdapSchema` works with: the node, its Gluu layout, the request, its schemas
/// (checked) and how long the directory may take to come back.
struct Applying<'a> {
    ctx: &'a Ctx,
    layout: Layout,
    req: &'a ApplyLdapSchema,
    schemas: Vec<CustomSchema>,
    wait: Duration,
}

impl Applying<'_> {
    /// Restarts the directory and waits for it; when it does not answer, `undo` puts the
    /// previous files back and the directory is restarted again before the error is returned.
    async fn restart_or_undo(
        &self,
        log: &mut Log,
        undo: impl FnOnce() -> Result<(), OpError> + Send + 'static,
    ) -> Result<(), OpError> {
        let Err(e) = restart_and_wait(self.ctx, &self.layout, self.req, self.wait, log).await
        else {
            return Ok(());
        };
        log.line(format!(
            "the directory did not come back ({e}); putting its previous schema back"
        ));
        join(tokio::task::spawn_blocking(undo).await)?;
        Err(OpError(
            match restart_and_wait(self.ctx, &self.layout, self.req, self.wait, log).await {
                Ok(()) => format!("{e} (rolled back: the directory runs its previous schema)"),
                Err(b) => format!("{e}; the rollback did not bring the directory back either: {b}"),
            },
        ))
    }

    async fn openldap(
        &self,
        files: SchemaFiles,
        log: &mut Log,
    ) -> Result<ApplyLdapSchemaOutput, OpError> {
        let (etc, conf) = read_slapd_conf(self.ctx, &self.layout).await?;
        let real = |f: &str| self.layout.seen(&format!("{OPENLDAP_SCHEMA_DIR}/{f}"));
        let mut new_conf = conf.clone();
        for f in &files.files {
            new_conf = with_include(&new_conf, &real(&f.name))?;
        }
        if new_conf == conf && files.same() {
            log.line(format!(
                "the directory already holds schema {} and slapd.conf includes it; nothing to do",
                names(&self.schemas)
            ));
            return Ok(files.output(false));
        }

        let checked = slaptest_candidates(self.ctx, &self.layout, &etc, &files, &conf, log).await;
        checked.map_err(|e| OpError(format!("the directory refuses the schema: {e}")))?;
        log.line(format!(
            "slaptest accepts the configuration with schema {}",
            names(&self.schemas)
        ));
        if self.req.check_only {
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
        self.restart_or_undo(log, move || {
            write_file(&etc, "slapd.conf", conf.as_bytes(), conf_mode(&etc)?)?;
            files.restore()
        })
        .await?;
        Ok(output)
    }

    async fn opendj(
        &self,
        files: SchemaFiles,
        log: &mut Log,
    ) -> Result<ApplyLdapSchemaOutput, OpError> {
        if files.same() {
            log.line(format!(
                "the directory already holds schema {}; nothing to do",
                names(&self.schemas)
            ));
            return Ok(files.output(false));
        }
        if self.req.check_only {
            // OpenDJ reads its schema directory at start; there is no offline check like slaptest.
            log.line(format!(
                "{OPENDJ_SCHEMA_DIR} is writable; {} would hold schema {} (OpenDJ checks it when it \
                 starts: a refusal is rolled back)",
                files.paths().join(", "),
                names(&self.schemas)
            ));
            return Ok(files.output(false));
        }
        // The restart runs inside Gluu: its machine must run (started before anything is written,
        // so it boots with the schema it had).
        self.layout.ensure_running(&self.ctx.host, log).await?;
        files.write().await?;
        log.line(format!("wrote {}", files.paths().join(", ")));
        let output = files.output(true);
        self.restart_or_undo(log, move || files.restore()).await?;
        Ok(output)
    }
}

/// The directory's etc, opened, and its slapd.conf.
async fn read_slapd_conf(ctx: &Ctx, layout: &Layout) -> Result<(OwnedFd, String), OpError> {
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
    Ok((etc, conf))
}

/// A candidate slapd.conf including candidate copies of every schema file, tested with
/// slaptest; the candidates are removed either way.
async fn slaptest_candidates(
    ctx: &Ctx,
    layout: &Layout,
    etc: &OwnedFd,
    files: &SchemaFiles,
    conf: &str,
    log: &mut Log,
) -> Result<(), OpError> {
    let real = |f: &str| layout.seen(&format!("{OPENLDAP_SCHEMA_DIR}/{f}"));
    let cand = |f: &str| format!(".clustermgr-candidate-{f}");
    // The candidates: slapd.conf including candidate copies of every schema file.
    let mut candidate_conf = conf.to_string();
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
    // slaptest and the restart run inside Gluu: its machine must run.
    layout.ensure_running(&ctx.host, log).await?;
    let mut guard_schema = Candidates {
        dir: None,
        names: files.files.iter().map(|f| cand(&f.name)).collect(),
    };
    let mut guard_conf = Candidates {
        dir: None,
        names: vec![cand_conf.clone()],
    };
    {
        let (e2, d2) = (dup(etc)?, dup(&files.dir)?);
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
    checked.map(|_| ())
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

#[cfg(test)]
mod tests;
