//! Where every file of a stand-in node lives.
//!
//! The container root is `/` for a program running inside the Gluu Server machine (setup, the
//! services, keytool), and `ROOT/opt/gluu-server` when a host program reaches the same files by
//! their host path (`gluu-serverd`). Paths that Gluu documents as `/etc/certs/...` are
//! `<container root>/etc/certs/...`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Path of the binary inside the container, as shipped by the package.
pub const BINARY_IN_CONTAINER: &str = "opt/gluu/bin/gluu-standin";
/// Where the package puts the container, relative to the host's root.
pub const CONTAINER_IN_ROOT: &str = "opt/gluu-server";

#[derive(Debug, Clone)]
pub struct Layout {
    /// The container root: `/` inside the machine.
    pub chroot: PathBuf,
}

impl Layout {
    pub fn new(chroot: &Path) -> Self {
        Layout {
            chroot: chroot.to_path_buf(),
        }
    }

    /// The container the running binary belongs to, found from its own location
    /// (`<container>/opt/gluu/bin/gluu-standin`).
    pub fn resolve() -> Result<Self> {
        // /proc/self/exe, or (without /proc, as in a bare chroot) the path it was run by.
        let exe = std::env::current_exe()
            .or_else(|_| {
                std::env::args_os()
                    .next()
                    .map(PathBuf::from)
                    .ok_or_else(|| std::io::Error::other("no argv[0]"))
            })
            .and_then(|p| p.canonicalize())
            .context("locating the stand-in binary")?;
        let Some(chroot) = container_of(&exe) else {
            bail!(
                "{} is not the binary of an installed Gluu Server stand-in (expected <container>/{BINARY_IN_CONTAINER})",
                exe.display()
            );
        };
        Ok(Layout::new(&chroot))
    }

    /// Whether this is the machine's own view (container root `/`).
    pub fn inside(&self) -> bool {
        self.chroot == Path::new("/")
    }

    /// A path inside the chroot, e.g. `c("etc/certs")`.
    pub fn c(&self, rel: &str) -> PathBuf {
        self.chroot.join(rel)
    }

    pub fn setup_dir(&self) -> PathBuf {
        self.c("install/community-edition-setup")
    }
    pub fn setup_last(&self) -> PathBuf {
        self.setup_dir().join("setup.properties.last")
    }
    /// `setup.properties.last` encrypted with `openssl enc -aes-256-cbc -k PASSWORD`, as Gluu
    /// 4.2.3 leaves it (the plaintext is deleted).
    pub fn setup_last_enc(&self) -> PathBuf {
        self.setup_dir().join("setup.properties.last.enc")
    }
    /// The stand-in's own private directory (mode 0700).
    pub fn state_dir(&self) -> PathBuf {
        self.c("opt/gluu/standin")
    }
    /// The stand-in's private record of the install (mode 0600): what `setup.properties.last`
    /// holds, kept readable for the stand-in's own services.
    pub fn node_record(&self) -> PathBuf {
        self.state_dir().join("node.properties")
    }
    /// Setup has run here.
    pub fn installed(&self) -> bool {
        self.node_record().exists() || self.setup_last().exists() || self.setup_last_enc().exists()
    }
    /// The JRE trust store (JRE 11 layout: `/opt/jre/lib/security/cacerts`).
    pub fn cacerts(&self) -> PathBuf {
        self.c("opt/jre/lib/security/cacerts")
    }
    /// The SCIM RP client keystore setup leaves in its output directory.
    pub fn scim_rp_jks(&self) -> PathBuf {
        self.setup_dir().join("output/scim-rp.jks")
    }
    pub fn passport_config(&self) -> PathBuf {
        self.conf_dir().join("passport-config.json")
    }
    pub fn conf_dir(&self) -> PathBuf {
        self.c("etc/gluu/conf")
    }
    pub fn ldap_properties(&self) -> PathBuf {
        self.conf_dir().join("gluu-ldap.properties")
    }
    pub fn certs(&self) -> PathBuf {
        self.c("etc/certs")
    }
    pub fn cert(&self, name: &str) -> PathBuf {
        self.certs().join(name)
    }
    pub fn oxauth_keys(&self) -> PathBuf {
        self.cert("oxauth-keys.json")
    }
    pub fn openldap_etc(&self) -> PathBuf {
        self.c("opt/openldap/etc")
    }
    pub fn slapd_conf(&self) -> PathBuf {
        self.openldap_etc().join("slapd.conf")
    }
    pub fn gluu_schema(&self) -> PathBuf {
        self.openldap_etc().join("schema/gluu.schema")
    }
    /// Pid file and local socket of the directory (`/run/gluu`, a tmpfs inside the machine:
    /// not visible by host path).
    pub fn run_dir(&self) -> PathBuf {
        self.c("var/run/gluu")
    }
    pub fn ldapi_socket(&self) -> PathBuf {
        self.run_dir().join("ldapi")
    }
    pub fn data_dir(&self, base: &str) -> PathBuf {
        self.c("opt/gluu/data").join(base)
    }
    pub fn ldap_access_log(&self) -> PathBuf {
        self.c("opt/opendj/logs/access")
    }
    pub fn ldap_errors_log(&self) -> PathBuf {
        self.c("opt/opendj/logs/errors")
    }
    pub fn oxauth_log(&self) -> PathBuf {
        self.c("opt/gluu/jetty/oxauth/logs/oxauth.log")
    }
    pub fn oxtrust_log(&self) -> PathBuf {
        self.c("opt/gluu/jetty/identity/logs/oxtrust.log")
    }
    /// Where setup writes the directory's unit (as Gluu's setup copies its opendj.service).
    pub fn opendj_unit(&self) -> PathBuf {
        self.c("etc/systemd/system/opendj.service")
    }
    /// The unit setup copies, shipped with setup (`static/opendj/systemd/opendj.service`).
    pub fn opendj_unit_template(&self) -> PathBuf {
        self.setup_dir()
            .join("static/opendj/systemd/opendj.service")
    }
    /// Setup's version printer and where setup installs it (`/opt/gluu/bin/show_version.py`,
    /// which `gluu-serverd version` runs).
    pub fn print_version_source(&self) -> PathBuf {
        self.setup_dir().join("pylib/printVersion.py")
    }
    pub fn show_version(&self) -> PathBuf {
        self.c("opt/gluu/bin/show_version.py")
    }
    pub fn idp_metadata(&self) -> PathBuf {
        self.c("opt/shibboleth-idp/metadata/idp-metadata.xml")
    }
}

/// `<container>` for `<container>/opt/gluu/bin/gluu-standin`.
fn container_of(exe: &Path) -> Option<PathBuf> {
    let mut dir = exe;
    for _ in Path::new(BINARY_IN_CONTAINER).components() {
        dir = dir.parent()?;
    }
    (dir.join(BINARY_IN_CONTAINER) == exe).then(|| dir.to_path_buf())
}
