//! Package installs with the node's own package manager. Offline: a file the controller pushed
//! into the content-addressed cache, checked by SHA-256 before use. Online: a package name from
//! the node's repositories, optionally after configuring one (https only, signed).

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
        Some(install_package::Source::Name(name)) => {
            if !valid_package_name(&name) {
                return Err(OpError(format!("{name:?} is not a valid package name")));
            }
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
            let before = installed_version(host, format, &name, log).await?;
            if before.is_some() && !req.force {
                let version = before.unwrap_or_default();
                log.line(format!("{name} {version} is already installed"));
                return Ok(InstallPackageOutput {
                    package: name,
                    version,
                    changed: false,
                });
            }
            for cmd in install_name_cmds(format, &name) {
                run_checked(host, &cmd, log, "install").await?;
            }
            let version = installed_version(host, format, &name, log)
                .await?
                .unwrap_or_default();
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

fn valid_package_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && !n.starts_with('-')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._".contains(&b))
}

/// The cached file for a SHA-256, checked again against its content (a truncated or corrupted
/// file is never installed).
async fn cached_file(host: &Host, format: PackageFormat, sha: &str) -> Result<PathBuf, OpError> {
    if sha.len() != 64
        || !sha
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(OpError(format!(
            "{sha:?} is not a SHA-256 (64 lowercase hex digits)"
        )));
    }
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
    let mut f = std::fs::File::open(p)?;
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

async fn package_id(
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
async fn installed_version(
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
            let mgr = if Path::new("/usr/bin/dnf").exists() {
                "dnf"
            } else {
                "yum"
            };
            Command::new([mgr, "install", "-y", &f])
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

/// Commands that install a package by name from the configured repositories.
pub fn install_name_cmds(format: PackageFormat, name: &str) -> Vec<Command> {
    match format {
        PackageFormat::Deb => vec![
            Command::new(["apt-get", "update"]).env("DEBIAN_FRONTEND", "noninteractive"),
            Command::new(["apt-get", "install", "-y", "--no-install-recommends", name])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        ],
        PackageFormat::Rpm => {
            let mgr = if Path::new("/usr/bin/dnf").exists() {
                "dnf"
            } else {
                "yum"
            };
            vec![Command::new([mgr, "install", "-y", name])]
        }
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
mod tests {
    use super::*;
    use crate::host::{Recorder, Runner};
    use crate::ops::tests::{ctx_with, log};
    use std::sync::Arc;

    fn host(root: &Path, format: PackageFormat, mode: PackageMode) -> (Host, Arc<Recorder>) {
        let rec = Arc::new(Recorder::default());
        (
            Host {
                root: root.to_path_buf(),
                packages: mode,
                format: Some(format),
                runner: Runner::Recording(rec.clone()),
                proc: std::path::PathBuf::from("/proc"),
            },
            rec,
        )
    }

    fn cache(host: &Host, content: &[u8], ext: &str) -> String {
        let sha = hex::encode(Sha256::digest(content));
        std::fs::create_dir_all(host.package_cache()).unwrap();
        std::fs::write(host.package_cache().join(format!("{sha}.{ext}")), content).unwrap();
        sha
    }

    fn cached(sha: &str) -> InstallPackage {
        InstallPackage {
            source: Some(install_package::Source::CachedSha256(sha.into())),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_pushed_deb_is_unpacked_under_a_sandbox_root() {
        let d = tempfile::tempdir().unwrap();
        let (h, rec) = host(d.path(), PackageFormat::Deb, PackageMode::UnderRoot);
        let sha = cache(&h, b"a deb", "deb");
        rec.answer(0, "gluu-server\t4.2.3~standin1\n"); // dpkg-deb --show
        rec.answer(1, ""); // dpkg-query: not installed
        let ctx = ctx_with(h.clone());
        let (mut l, _rx) = log();
        let out = install(&ctx, cached(&sha), &mut l).await.unwrap();
        assert_eq!(out.package, "gluu-server");
        assert_eq!(out.version, "4.2.3~standin1");
        assert!(out.changed);
        let file = h
            .package_cache()
            .join(format!("{sha}.deb"))
            .display()
            .to_string();
        let root = format!("--root={}", d.path().display());
        assert_eq!(
            rec.argvs(),
            vec![
                vec![
                    "dpkg-deb".to_string(),
                    "--show".into(),
                    "--showformat=${Package}\t${Version}\n".into(),
                    file.clone()
                ],
                vec![
                    "dpkg-query".to_string(),
                    root.clone(),
                    "-W".into(),
                    "-f=${db:Status-Status}\t${Version}\n".into(),
                    "gluu-server".into()
                ],
                vec![
                    "dpkg".to_string(),
                    root,
                    "--force-script-chrootless".into(),
                    "--force-not-root".into(),
                    "--force-depends".into(),
                    "--force-confold".into(),
                    "-i".into(),
                    file
                ],
            ]
        );
    }

    #[tokio::test]
    async fn the_same_version_installed_is_left_alone_unless_forced() {
        let d = tempfile::tempdir().unwrap();
        let (h, rec) = host(d.path(), PackageFormat::Deb, PackageMode::System);
        let sha = cache(&h, b"x", "deb");
        rec.answer(0, "nginx\t1.22.1-9\n");
        rec.answer(0, "installed\t1.22.1-9\n");
        let ctx = ctx_with(h.clone());
        let (mut l, _rx) = log();
        let out = install(&ctx, cached(&sha), &mut l).await.unwrap();
        assert!(!out.changed);
        assert_eq!(rec.argvs().len(), 2, "no install command ran");

        rec.answer(0, "nginx\t1.22.1-9\n");
        rec.answer(0, "installed\t1.22.1-9\n");
        let mut req = cached(&sha);
        req.force = true;
        let out = install(&ctx, req, &mut l).await.unwrap();
        assert!(out.changed);
        let last = rec.argvs().pop().unwrap();
        assert_eq!(
            &last[..4],
            ["apt-get", "install", "-y", "--no-install-recommends"]
        );
        assert_eq!(
            rec.calls.lock().unwrap().last().unwrap().env,
            vec![("DEBIAN_FRONTEND".to_string(), "noninteractive".to_string())]
        );
    }

    #[tokio::test]
    async fn a_corrupt_or_missing_cached_package_is_never_installed() {
        let d = tempfile::tempdir().unwrap();
        let (h, rec) = host(d.path(), PackageFormat::Deb, PackageMode::UnderRoot);
        let sha = cache(&h, b"good", "deb");
        // Corrupt it after it was cached.
        std::fs::write(h.package_cache().join(format!("{sha}.deb")), b"goo").unwrap();
        let ctx = ctx_with(h.clone());
        let (mut l, _rx) = log();
        let e = install(&ctx, cached(&sha), &mut l).await.unwrap_err();
        assert!(e.0.contains("is corrupt"), "{e}");
        let e = install(&ctx, cached(&"0".repeat(64)), &mut l)
            .await
            .unwrap_err();
        assert!(e.0.contains("not in this node's cache"), "{e}");
        let e = install(&ctx, cached("../../etc/passwd"), &mut l)
            .await
            .unwrap_err();
        assert!(e.0.contains("not a SHA-256"), "{e}");
        assert!(rec.argvs().is_empty(), "no command ran: {:?}", rec.argvs());
    }

    #[tokio::test]
    async fn a_failing_install_reports_its_exit_code_and_output() {
        let d = tempfile::tempdir().unwrap();
        let (h, rec) = host(d.path(), PackageFormat::Deb, PackageMode::UnderRoot);
        let sha = cache(&h, b"x", "deb");
        rec.answer(0, "gluu-server\t4.2.3\n");
        rec.answer(1, "");
        rec.answer(2, "dpkg: error processing archive\n");
        let ctx = ctx_with(h);
        let (mut l, _rx) = log();
        let e = install(&ctx, cached(&sha), &mut l).await.unwrap_err();
        assert!(e.0.contains("exit code 2"), "{e}");
        assert!(e.0.contains("dpkg: error processing archive"), "{e}");
    }

    #[tokio::test]
    async fn rpm_installs_use_the_rpm_tools() {
        let d = tempfile::tempdir().unwrap();
        let (h, rec) = host(d.path(), PackageFormat::Rpm, PackageMode::UnderRoot);
        let sha = cache(&h, b"an rpm", "rpm");
        rec.answer(0, "gluu-server\t4.2.3-1.el8\n");
        rec.answer(1, "package gluu-server is not installed\n");
        let ctx = ctx_with(h.clone());
        let (mut l, _rx) = log();
        let out = install(&ctx, cached(&sha), &mut l).await.unwrap();
        assert_eq!(out.version, "4.2.3-1.el8");
        let argvs = rec.argvs();
        assert_eq!(argvs[0][..3], ["rpm", "-qp", "--queryformat"]);
        assert_eq!(
            argvs[2][..6],
            [
                "rpm".to_string(),
                "--root".into(),
                d.path().display().to_string(),
                "--nodeps".into(),
                "--noscripts".into(),
                "-U".into()
            ]
        );
    }

    #[tokio::test]
    async fn online_installs_configure_a_signed_https_repository_first() {
        let d = tempfile::tempdir().unwrap();
        let (h, rec) = host(d.path(), PackageFormat::Deb, PackageMode::System);
        let ctx = ctx_with(h.clone());
        let (mut l, _rx) = log();
        let repo = PackageRepository {
            name: "gluu".into(),
            url: "https://repo.gluu.org/debian/".into(),
            suite: "bookworm".into(),
            component: "main".into(),
            signing_key: "-----BEGIN PGP PUBLIC KEY BLOCK-----\n...\n".into(),
        };
        let req = InstallPackage {
            source: Some(install_package::Source::Name("gluu-server".into())),
            repository: Some(repo.clone()),
            force: false,
        };
        rec.answer(1, ""); // not installed
        rec.answer(0, ""); // apt-get update
        rec.answer(0, ""); // apt-get install
        rec.answer(0, "installed\t4.2.3~bookworm\n");
        let out = install(&ctx, req.clone(), &mut l).await.unwrap();
        assert_eq!(out.version, "4.2.3~bookworm");
        let list = std::fs::read_to_string(h.path("/etc/apt/sources.list.d/gluu.list")).unwrap();
        assert_eq!(
            list,
            "deb [signed-by=/etc/apt/keyrings/gluu.asc] https://repo.gluu.org/debian/ bookworm main\n"
        );
        assert!(h.path("/etc/apt/keyrings/gluu.asc").exists());
        let argvs = rec.argvs();
        assert_eq!(argvs[1], ["apt-get", "update"]);
        assert_eq!(
            argvs[2],
            [
                "apt-get",
                "install",
                "-y",
                "--no-install-recommends",
                "gluu-server"
            ]
        );

        // Plain HTTP and unsigned repositories are refused before anything is written.
        let mut bad = req.clone();
        bad.repository.as_mut().unwrap().url = "http://23.1.2.3/debian".into();
        let e = install(&ctx, bad, &mut l).await.unwrap_err();
        assert!(e.0.contains("not https"), "{e}");
        let mut bad = req.clone();
        bad.repository.as_mut().unwrap().signing_key.clear();
        assert!(
            install(&ctx, bad, &mut l)
                .await
                .unwrap_err()
                .0
                .contains("signing key")
        );
        let mut bad = req;
        bad.source = Some(install_package::Source::Name("-oAPT::x=1".into()));
        assert!(
            install(&ctx, bad, &mut l)
                .await
                .unwrap_err()
                .0
                .contains("not a valid package name")
        );

        // A sandbox host cannot install online.
        let (h, _) = host(d.path(), PackageFormat::Deb, PackageMode::UnderRoot);
        let e = install(
            &ctx_with(h),
            InstallPackage {
                source: Some(install_package::Source::Name("nginx".into())),
                ..Default::default()
            },
            &mut l,
        )
        .await
        .unwrap_err();
        assert!(e.0.contains("offline mode"), "{e}");
    }
}
