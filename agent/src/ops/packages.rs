//! Package installs with the node's own package manager. Offline: a file the controller pushed
//! into the content-addressed cache, checked by SHA-256 before use. Online: a package from the
//! node's repositories, optionally pinned to one version (`NAME=VERSION`: `apt-get install
//! NAME=VERSION`, `yum`/`dnf install NAME-VERSION`), optionally after configuring a repository
//! (https only, signed).

use super::{Ctx, Log, OpError, run_checked, run_logged};
use crate::host::{Command, Host, PackageFormat, PackageMode};
use clustermgr_proto::{InstallPackage, InstallPackageOutput, PackageRepository, install_package};
use clustermgr_shared::fsutil::write_atomic;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A package file's name and version as its own metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageId {
    pub name: String,
    pub version: String,
}

pub async fn install(
    ctx: &Ctx,
    req: InstallPackage,
    log: &mut Log,
) -> Result<InstallPackageOutput, OpError> {
    let host = &ctx.host;
    let format = host.format.ok_or_else(|| {
        OpError("this node has neither dpkg nor rpm; cannot install packages".into())
    })?;
    match req.source {
        Some(install_package::Source::CachedSha256(sha)) => {
            let file = cached_file(host, format, &sha).await?;
            let id = package_id(host, format, &file, log).await?;
            let installed = installed_version(host, format, &id.name, log).await?;
            if installed.as_deref() == Some(id.version.as_str()) && !req.force {
                log.line(format!("{} {} is already installed", id.name, id.version));
                return Ok(InstallPackageOutput {
                    package: id.name,
                    version: id.version,
                    changed: false,
                });
            }
            run_checked(host, &install_file_cmd(host, format, &file), log, "install").await?;
            log.line(format!("installed {} {}", id.name, id.version));
            Ok(InstallPackageOutput {
                package: id.name,
                version: id.version,
                changed: true,
            })
        }
        Some(install_package::Source::Name(spec)) => {
            let spec = Spec::parse(&spec)?;
            if host.packages != PackageMode::System {
                return Err(OpError(
                    "online installs need an agent running as root on the machine's own root; \
                     this host installs only packages pushed by the controller (offline mode)"
                        .into(),
                ));
            }
            if let Some(repo) = &req.repository {
                configure_repository(host, format, repo, log).await?;
            }
            let name = spec.name.clone();
            if let Some(v) = installed_version(host, format, &name, log).await?
                && !req.force
            {
                if let Some(pin) = &spec.version
                    && !version_matches(format, &v, pin)
                {
                    return Err(OpError(format!(
                        "{name} {v} is installed and this install pins {pin}: force replaces it"
                    )));
                }
                log.line(format!("{name} {v} is already installed"));
                return Ok(InstallPackageOutput {
                    package: name,
                    version: v,
                    changed: false,
                });
            }
            for cmd in install_name_cmds(host, format, &spec) {
                run_checked(host, &cmd, log, "install").await?;
            }
            let version = installed_version(host, format, &name, log)
                .await?
                .unwrap_or_default();
            if let Some(pin) = &spec.version
                && !version_matches(format, &version, pin)
            {
                return Err(OpError(format!(
                    "{name} is at {version:?} after installing {pin}"
                )));
            }
            log.line(format!("installed {name} {version}"));
            Ok(InstallPackageOutput {
                package: name,
                version,
                changed: true,
            })
        }
        None => Err(OpError(
            "install-package needs a source: a pushed package or a package name".into(),
        )),
    }
}

/// A package by name, optionally pinned to one version (`NAME=VERSION`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    pub version: Option<String>,
}

impl Spec {
    pub fn parse(spec: &str) -> Result<Spec, OpError> {
        let (name, version) = match spec.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (spec, None),
        };
        if !valid_package_name(name) {
            return Err(OpError(format!("{name:?} is not a valid package name")));
        }
        if let Some(v) = version
            && !valid_version(v)
        {
            return Err(OpError(format!("{v:?} is not a valid package version")));
        }
        Ok(Spec {
            name: name.to_string(),
            version: version.map(str::to_string),
        })
    }

    /// As the package manager takes it: `NAME=VERSION` (apt), `NAME-VERSION` (yum, dnf).
    pub fn argument(&self, format: PackageFormat) -> String {
        match (&self.version, format) {
            (None, _) => self.name.clone(),
            (Some(v), PackageFormat::Deb) => format!("{}={v}", self.name),
            (Some(v), PackageFormat::Rpm) => format!("{}-{v}", self.name),
        }
    }
}

/// Debian's version characters (epoch, upstream, revision) and rpm's (version, release).
fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+~-:_".contains(&b))
}

/// Whether the installed version is the pinned one: equal on deb; on rpm the pin may leave the
/// release out (`4.2.3` is `4.2.3-1.el8`).
fn version_matches(format: PackageFormat, installed: &str, pin: &str) -> bool {
    installed == pin
        || (format == PackageFormat::Rpm
            && installed
                .strip_prefix(pin)
                .is_some_and(|rest| rest.starts_with('-')))
}

fn valid_package_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && !n.starts_with('-')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._".contains(&b))
}

/// A request's SHA-256 is 64 lowercase hex digits before it names any file (a value such as
/// `../../x` would reach outside the node's cache).
pub(crate) fn require_sha256(sha: &str) -> Result<(), OpError> {
    if super::push::is_sha256(sha) {
        Ok(())
    } else {
        Err(OpError(format!(
            "{:?} is not a SHA-256 (64 lowercase hex digits)",
            sha.chars().take(80).collect::<String>()
        )))
    }
}

/// The cached file for a SHA-256, checked again against its content (a truncated or corrupted
/// file is never installed).
pub(crate) async fn cached_file(
    host: &Host,
    format: PackageFormat,
    sha: &str,
) -> Result<PathBuf, OpError> {
    require_sha256(sha)?;
    let file = host
        .package_cache()
        .join(format!("{sha}.{}", format.extension()));
    let check = file.clone();
    let actual = tokio::task::spawn_blocking(move || sha256_file(&check))
        .await
        .map_err(|e| OpError(format!("hashing failed: {e}")))?
        .map_err(|e| {
            OpError(format!(
                "package {sha} is not in this node's cache ({}): {e}; push it first",
                file.display()
            ))
        })?;
    if actual != sha {
        return Err(OpError(format!(
            "the cached package {} is corrupt (its SHA-256 is {actual}); it was not installed — push it again",
            file.display()
        )));
    }
    Ok(file)
}

pub fn sha256_file(p: &Path) -> std::io::Result<String> {
    sha256_of(std::fs::File::open(p)?)
}

/// The SHA-256 (hex) of what `f` reads to its end.
pub fn sha256_of(mut f: impl Read) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

pub(crate) async fn package_id(
    host: &Host,
    format: PackageFormat,
    file: &Path,
    log: &mut Log,
) -> Result<PackageId, OpError> {
    let f = file.display().to_string();
    let cmd = match format {
        PackageFormat::Deb => Command::new([
            "dpkg-deb",
            "--show",
            "--showformat=${Package}\t${Version}\n",
            &f,
        ]),
        PackageFormat::Rpm => Command::new([
            "rpm",
            "-qp",
            "--queryformat",
            "%{NAME}\t%{VERSION}-%{RELEASE}\n",
            &f,
        ]),
    };
    let out = run_checked(host, &cmd, log, "read the package's metadata").await?;
    parse_id(&out.stdout).ok_or_else(|| {
        OpError(format!(
            "cannot read the name and version of {f}: {:?}",
            out.stdout.lines().next().unwrap_or("")
        ))
    })
}

fn parse_id(s: &str) -> Option<PackageId> {
    let (name, version) = s.lines().next()?.split_once('\t')?;
    (!name.is_empty() && !version.is_empty()).then(|| PackageId {
        name: name.trim().to_string(),
        version: version.trim().to_string(),
    })
}

/// The installed version of a package, if it is installed.
pub(crate) async fn installed_version(
    host: &Host,
    format: PackageFormat,
    name: &str,
    log: &mut Log,
) -> Result<Option<String>, OpError> {
    let cmd = match format {
        PackageFormat::Deb => {
            let mut argv = vec!["dpkg-query".to_string()];
            if host.packages == PackageMode::UnderRoot {
                argv.push(format!("--root={}", host.root.display()));
            }
            argv.extend([
                "-W".into(),
                "-f=${db:Status-Status}\t${Version}\n".into(),
                name.into(),
            ]);
            Command::new(argv)
        }
        PackageFormat::Rpm => {
            let mut argv = vec!["rpm".to_string()];
            if host.packages == PackageMode::UnderRoot {
                argv.extend(["--root".into(), host.root.display().to_string()]);
            }
            argv.extend([
                "-q".into(),
                "--queryformat".into(),
                "installed\t%{VERSION}-%{RELEASE}\n".into(),
                name.into(),
            ]);
            Command::new(argv)
        }
    };
    let out = run_logged(host, &cmd, log, "query the installed version").await?;
    // Not installed: dpkg-query and rpm -q exit 1.
    if !out.success() {
        return Ok(None);
    }
    Ok(out.stdout.lines().find_map(|l| {
        let (status, version) = l.split_once('\t')?;
        (status == "installed" && !version.is_empty()).then(|| version.to_string())
    }))
}

/// The command that installs a package file.
pub fn install_file_cmd(host: &Host, format: PackageFormat, file: &Path) -> Command {
    let f = file.display().to_string();
    match (format, host.packages) {
        // apt-get resolves the package's dependencies from the node's repositories (or finds
        // them installed, offline).
        (PackageFormat::Deb, PackageMode::System) => Command::new([
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            "--allow-downgrades",
            &f,
        ])
        .env("DEBIAN_FRONTEND", "noninteractive"),
        (PackageFormat::Deb, PackageMode::UnderRoot) => Command::new([
            "dpkg".to_string(),
            format!("--root={}", host.root.display()),
            "--force-script-chrootless".into(),
            "--force-not-root".into(),
            "--force-depends".into(),
            "--force-confold".into(),
            "-i".into(),
            f,
        ]),
        (PackageFormat::Rpm, PackageMode::System) => {
            Command::new([rpm_manager(host), "install", "-y", &f])
        }
        (PackageFormat::Rpm, PackageMode::UnderRoot) => Command::new([
            "rpm".to_string(),
            "--root".into(),
            host.root.display().to_string(),
            "--nodeps".into(),
            "--noscripts".into(),
            "-U".into(),
            "--replacepkgs".into(),
            f,
        ]),
    }
}

/// yum's successor where the node has it (EL 8 and later), else yum (EL 7).
fn rpm_manager(host: &Host) -> &'static str {
    if host.path("/usr/bin/dnf").exists() {
        "dnf"
    } else {
        "yum"
    }
}

/// Commands that install a package by name (pinned or not) from the configured repositories.
pub fn install_name_cmds(host: &Host, format: PackageFormat, spec: &Spec) -> Vec<Command> {
    let arg = spec.argument(format);
    match format {
        PackageFormat::Deb => {
            let mut install = vec!["apt-get", "install", "-y", "--no-install-recommends"];
            if spec.version.is_some() {
                // The pinned version, also when the repository has a newer one installed.
                install.push("--allow-downgrades");
            }
            install.push(&arg);
            vec![
                Command::new(["apt-get", "update"]).env("DEBIAN_FRONTEND", "noninteractive"),
                Command::new(install).env("DEBIAN_FRONTEND", "noninteractive"),
            ]
        }
        PackageFormat::Rpm => vec![Command::new([rpm_manager(host), "install", "-y", &arg])],
    }
}

/// Writes the repository's source file and signing key (and imports the key for rpm).
async fn configure_repository(
    host: &Host,
    format: PackageFormat,
    repo: &PackageRepository,
    log: &mut Log,
) -> Result<(), OpError> {
    if !repo.url.starts_with("https://") {
        return Err(OpError(format!(
            "repository URL {:?} is not https: packages are never fetched over plain HTTP",
            repo.url
        )));
    }
    if !valid_package_name(&repo.name) {
        return Err(OpError(format!(
            "{:?} is not a valid repository name",
            repo.name
        )));
    }
    if repo.signing_key.trim().is_empty() {
        return Err(OpError(
            "a repository needs its signing key: unsigned repositories are refused".into(),
        ));
    }
    let clean = |s: &str| s.chars().all(|c| c.is_ascii_graphic());
    if ![&repo.url, &repo.suite, &repo.component]
        .iter()
        .all(|s| clean(s))
    {
        return Err(OpError(
            "repository URL, suite and component may not contain spaces or control characters"
                .into(),
        ));
    }
    let write = |abs: &str, body: String| {
        let p = host.path(abs);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        write_atomic(&p, body.as_bytes(), 0o644)
    };
    let io = |what: &str, e: std::io::Error| OpError(format!("cannot write {what}: {e}"));
    match format {
        PackageFormat::Deb => {
            let key = format!("/etc/apt/keyrings/{}.asc", repo.name);
            write(&key, repo.signing_key.clone()).map_err(|e| io(&key, e))?;
            let list = format!("/etc/apt/sources.list.d/{}.list", repo.name);
            let line = format!(
                "deb [signed-by={key}] {} {} {}\n",
                repo.url, repo.suite, repo.component
            );
            write(&list, line).map_err(|e| io(&list, e))?;
            log.line(format!("configured repository {} in {list}", repo.url));
        }
        PackageFormat::Rpm => {
            let key = format!("/etc/pki/rpm-gpg/RPM-GPG-KEY-{}", repo.name);
            write(&key, repo.signing_key.clone()).map_err(|e| io(&key, e))?;
            let file = format!("/etc/yum.repos.d/{}.repo", repo.name);
            let body = format!(
                "[{n}]\nname={n}\nbaseurl={u}\nenabled=1\ngpgcheck=1\ngpgkey=file://{key}\n",
                n = repo.name,
                u = repo.url
            );
            write(&file, body).map_err(|e| io(&file, e))?;
            run_checked(
                host,
                &Command::new(["rpm", "--import", &key]),
                log,
                "import the key",
            )
            .await?;
            log.line(format!("configured repository {} in {file}", repo.url));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
