//! Where every file of a stand-in node lives.
//!
//! `root` is `/` for a real installation, or the directory a package was extracted under
//! (`--root DIR`). The Gluu 4.x chroot is `<root>/opt/gluu-server`; paths that Gluu documents as
//! `/etc/certs/...` are `<root>/opt/gluu-server/etc/certs/...`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Path of the binary relative to the root, as shipped by the package.
pub const BINARY_REL: &str = "opt/gluu-server/opt/gluu/bin/gluu-standin";

#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    pub chroot: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Self {
        Layout {
            root: root.to_path_buf(),
            chroot: root.join("opt/gluu-server"),
        }
    }

    /// `--root DIR` if given, else the root the running binary was installed under
    /// (found from its own location), else `/`.
    pub fn resolve(root: Option<&Path>) -> Result<Self> {
        let root = match root {
            Some(dir) => dir
                .canonicalize()
                .with_context(|| format!("--root {}: no such directory", dir.display()))?,
            None => inferred_root().unwrap_or_else(|| PathBuf::from("/")),
        };
        let layout = Layout::new(&root);
        if !layout.chroot.is_dir() {
            bail!(
                "no Gluu Server package under {} ({} is missing)",
                root.display(),
                layout.chroot.display()
            );
        }
        Ok(layout)
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
    pub fn run_dir(&self) -> PathBuf {
        self.c("var/run/gluu")
    }
    pub fn ldapi_socket(&self) -> PathBuf {
        self.run_dir().join("ldapi")
    }
    pub fn pid_file(&self, service: &str) -> PathBuf {
        self.run_dir().join(format!("{service}.pid"))
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
    pub fn idp_metadata(&self) -> PathBuf {
        self.c("opt/shibboleth-idp/metadata/idp-metadata.xml")
    }
}

fn inferred_root() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    let mut dir = exe.as_path();
    for _ in Path::new(BINARY_REL).components() {
        dir = dir.parent()?;
    }
    (dir.join(BINARY_REL) == exe).then(|| dir.to_path_buf())
}
