//! `setup.py`: install a node from `setup.properties`, the way Gluu 4.x's setup does.

use std::fs;
use std::io::{BufRead as _, Write as _};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Args;

use crate::layout::Layout;
use crate::props::Props;
use crate::{PACKAGE_VERSION, certs, components, keytool, schema, serverd, services, slapd};

#[derive(Args, Debug)]
pub struct SetupArgs {
    /// Read the install settings from this properties file.
    #[arg(short = 'f', value_name = "setup.properties")]
    pub file: Option<PathBuf>,
    /// Do not ask for confirmation before installing.
    #[arg(short = 'n')]
    pub no_prompt: bool,
    /// Command-line mode (accepted for compatibility; the stand-in has no text UI).
    #[arg(short = 'c')]
    pub cli: bool,
    /// Accepted and recorded; the stand-in always listens on `ip` (so nodes can share a host).
    #[arg(long = "listen_all_interfaces")]
    pub listen_all_interfaces: bool,
    /// Leave the directory empty (a secondary node receives its entries by replication).
    #[arg(long = "no-data")]
    pub no_data: bool,
}

/// Keys setup cannot do without.
pub const REQUIRED_KEYS: [&str; 8] = [
    "hostname",
    "ip",
    "ldapPass",
    "orgName",
    "countryCode",
    "city",
    "state",
    "admin_email",
];

/// What a node is, as recorded in `setup.properties.last`.
#[derive(Debug, Clone)]
pub struct Node {
    pub hostname: String,
    pub ip: IpAddr,
    pub https_port: u16,
    pub install_saml: bool,
    pub props: Props,
}

impl Node {
    pub fn from_props(props: Props) -> Result<Node> {
        let missing: Vec<&str> = REQUIRED_KEYS
            .iter()
            .copied()
            .filter(|k| props.get(k).is_none_or(|v| v.trim().is_empty()))
            .collect();
        if !missing.is_empty() {
            bail!(
                "setup.properties is missing required key(s): {}",
                missing.join(", ")
            );
        }
        let get = |k: &str| props.get(k).unwrap_or_default().trim().to_string();
        let ip: IpAddr = get("ip")
            .parse()
            .with_context(|| format!("ip={:?} is not an IP address", get("ip")))?;
        let https_port = match props.get("https_port") {
            None => 443,
            Some(p) => p
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .with_context(|| format!("https_port={p:?} is not a TCP port"))?,
        };
        if https_port == crate::slapd::LDAPS_PORT {
            bail!(
                "https_port={https_port} is the directory's LDAPS port: the web server and the directory cannot share it"
            );
        }
        let cc = get("countryCode");
        if cc.len() != 2 || !cc.chars().all(|c| c.is_ascii_alphabetic()) {
            bail!("countryCode={cc:?} must be a two-letter country code");
        }
        if !get("admin_email").contains('@') {
            bail!(
                "admin_email={:?} is not an e-mail address",
                get("admin_email")
            );
        }
        let hostname = get("hostname");
        if hostname.contains(|c: char| c.is_whitespace() || c == '/') {
            bail!("hostname={hostname:?} is not a host name");
        }
        Ok(Node {
            hostname,
            ip,
            https_port,
            install_saml: components::on(&props, "installSaml"),
            props,
        })
    }

    /// The node as installed under `layout`, from the stand-in's private record (Gluu 4.2.3
    /// leaves `setup.properties.last` only encrypted, so the services cannot read it).
    pub fn load(layout: &Layout) -> Result<Node> {
        let path = layout.node_record();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!(
                    "Gluu Server is not installed in {} (run setup.py first; {} is missing)",
                    layout.chroot.display(),
                    path.display()
                )
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Node::from_props(Props::parse(&text)).with_context(|| format!("in {}", path.display()))
    }

    pub fn ldap_password(&self) -> &str {
        self.props.get("ldapPass").unwrap_or_default()
    }
}

/// Write a file with the given mode (the mode is enforced even if the file existed).
pub fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))?;
    f.write_all(content)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn read_properties(args: &SetupArgs, layout: &Layout) -> Result<Props> {
    let path = match &args.file {
        Some(p) => p.clone(),
        None => {
            let default = layout.setup_dir().join("setup.properties");
            if !default.exists() {
                bail!(
                    "no -f setup.properties given and {} does not exist (the stand-in has no interactive mode)",
                    default.display()
                );
            }
            default
        }
    };
    let text = fs::read_to_string(&path)
        .with_context(|| format!("cannot read properties file {}", path.display()))?;
    Ok(Props::parse(&text))
}

fn confirm(node: &Node, args: &SetupArgs) -> Result<()> {
    println!("Gluu Server stand-in {PACKAGE_VERSION} will be installed with:");
    println!("  hostname (load balancer) : {}", node.hostname);
    println!("  ip                       : {}", node.ip);
    println!("  https port               : {}", node.https_port);
    println!("  load data                : {}", !args.no_data);
    print!("Proceed with these values [Y|n] ");
    std::io::stdout().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the answer")?;
    let answer = answer.trim().to_ascii_lowercase();
    if answer.is_empty() && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!("no answer on standard input; pass -n to install without asking");
    }
    if !(answer.is_empty() || answer == "y" || answer == "yes") {
        bail!("installation cancelled");
    }
    Ok(())
}

/// Setup runs inside the booted machine (its systemd starts the services), as Gluu's docs
/// say: `gluu-serverd login`, then setup.py. Run by its host path or through a host `chroot`,
/// no systemd is reachable and nothing could be started: refused before anything is written.
fn inside_the_machine(layout: &Layout) -> Result<()> {
    if !layout.inside() {
        bail!(
            "setup.py must run inside the Gluu Server machine (gluu-serverd start, then gluu-serverd login), \
             not by its host path under {}",
            layout.chroot.display()
        );
    }
    if !Path::new("/run/systemd/system").is_dir() {
        bail!(
            "no systemd runs here (/run/systemd/system is missing): setup.py must run inside the \
             booted Gluu Server machine (gluu-serverd start, then gluu-serverd login), not in a chroot"
        );
    }
    Ok(())
}

pub fn run(args: SetupArgs) -> Result<()> {
    let layout = Layout::resolve()?;
    inside_the_machine(&layout)?;
    let props = read_properties(&args, &layout)?;
    let mut node = Node::from_props(props)?;
    if layout.installed() {
        bail!(
            "Gluu Server is already installed ({} exists)",
            layout.setup_last_enc().display()
        );
    }
    if !args.no_prompt {
        confirm(&node, &args)?;
    }
    if serverd::port_open(node.ip, slapd::LDAPS_PORT) {
        bail!("{}:{} is already in use", node.ip, slapd::LDAPS_PORT);
    }
    if serverd::port_open(node.ip, node.https_port) {
        bail!("{}:{} is already in use", node.ip, node.https_port);
    }

    println!("Generating certificates and keys");
    // What Gluu 4.2.3's generate_crypto makes (httpd, shibIDP, idp-encryption, idp-signing,
    // passport-sp), plus the directory's own certificate (OpenLDAP here).
    let mut trusted = Vec::new();
    for name in [
        "httpd",
        "shibIDP",
        "idp-encryption",
        "idp-signing",
        "passport-sp",
        "openldap",
    ] {
        let ck = certs::self_signed(&node.hostname, &node.hostname, node.ip)?;
        let crt = layout.cert(&format!("{name}.crt"));
        write_file(&crt, ck.cert_pem.as_bytes(), 0o644)?;
        write_file(
            &layout.cert(&format!("{name}.key")),
            ck.key_pem.as_bytes(),
            0o600,
        )?;
        if name == "shibIDP" && node.install_saml {
            write_file(
                &layout.idp_metadata(),
                idp_metadata(&node, &ck.cert_der).as_bytes(),
                0o644,
            )?;
            fs::create_dir_all(layout.c("opt/shibboleth-idp/conf"))?;
        }
        if name == "openldap" {
            // Gluu exports the directory's certificate to /etc/certs/opendj.crt.
            let opendj = layout.cert("opendj.crt");
            write_file(&opendj, ck.cert_pem.as_bytes(), 0o644)?;
            trusted.push(("opendj".to_string(), opendj));
        } else {
            trusted.push((name.to_string(), crt));
        }
    }
    // Setup imports each public certificate into the JRE trust store as `<hostname>_<suffix>`.
    for (suffix, crt) in &trusted {
        keytool::import(
            &layout.cacerts(),
            &format!("{}_{suffix}", node.hostname),
            crt,
        )?;
    }
    // The SCIM RP client's keystore (an opaque binary file here) and, with Passport, its
    // configuration: files Gluu keeps outside /etc/certs that every node needs the same.
    let jks: [u8; 64] = rand::random();
    // JKS magic and version 2, then opaque bytes.
    let mut jks_content = vec![0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2];
    jks_content.extend_from_slice(&jks);
    write_file(&layout.scim_rp_jks(), &jks_content, 0o600)?;
    if components::on(&node.props, "installPassport") {
        let config = serde_json::json!({
            "conf": {
                "serverURI": format!("https://{}", node.hostname),
                "serverWebPort": 8090,
                "postProfileEndpoint": format!("https://{}/oxauth/postlogin.htm", node.hostname),
                "spTLSCert": "/etc/certs/passport-sp.crt",
                "spTLSKey": "/etc/certs/passport-sp.key",
                "logLevel": "info",
            },
            "idpInitiated": {},
        });
        write_file(
            &layout.passport_config(),
            serde_json::to_string_pretty(&config)?.as_bytes(),
            0o640,
        )?;
    }
    let (web_keys, private_keys) = oxauth_keys()?;
    write_file(
        &layout.oxauth_keys(),
        serde_json::to_string_pretty(&private_keys)?.as_bytes(),
        0o600,
    )?;

    println!("Configuring the directory (OpenLDAP slapd)");
    write_file(&layout.gluu_schema(), schema::GLUU_SCHEMA.as_bytes(), 0o644)?;
    for (path, text) in slapd::hook_files(&layout) {
        write_file(&path, text.as_bytes(), 0o644)?;
    }
    write_file(
        &layout.slapd_conf(),
        slapd::slapd_conf(&layout, node.ldap_password()).as_bytes(),
        0o600,
    )?;
    for base in ["gluu", "site"] {
        let dir = layout.data_dir(base);
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    }
    for dir in [
        layout.run_dir(),
        layout.c("opt/opendj/logs"),
        layout.c("opt/gluu/jetty/oxauth/logs"),
        layout.c("opt/gluu/jetty/identity/logs"),
    ] {
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    slapd::slaptest(&layout)?;
    if args.no_data {
        println!("--no-data: the directory is left empty");
    } else {
        println!("Loading the initial data");
        let input = slapd::DataInput {
            hostname: &node.hostname,
            org_name: node.props.get("orgName").unwrap_or_default(),
            admin_email: node.props.get("admin_email").unwrap_or_default(),
            admin_password: node.ldap_password(),
            https_port: node.https_port,
            web_keys: &web_keys,
        };
        let (gluu, site) = slapd::initial_ldif(&input)?;
        let tmp = layout.c("install/community-edition-setup/output");
        for (suffix, name, text) in [("o=gluu", "gluu.ldif", gluu), ("o=site", "site.ldif", site)] {
            let path = tmp.join(name);
            write_file(&path, text.as_bytes(), 0o600)?;
            slapd::slapadd(&layout, suffix, &path)?;
        }
    }

    let servers = format!("{}:{}", host_port_ip(node.ip), slapd::LDAPS_PORT);
    let ldap_props = format!(
        "# Written by setup (stand-in). Node-specific: do not replicate.\n\
         bindDN: {}\n\
         # Stand-in encoding of the password: base64 (the file itself is readable by root only).\n\
         bindPassword: {}\n\
         servers: {servers}\n\
         useSSL: true\n\
         ssl.trustStoreFile: /etc/certs/openldap.crt\n\
         ssl.trustStoreFormat: pem\n\
         maxconnections: 10\n\
         binaryAttributes=objectGUID\n\
         certificateAttributes=userCertificate\n",
        slapd::ADMIN_DN,
        STANDARD.encode(node.ldap_password()),
    );
    write_file(&layout.ldap_properties(), ldap_props.as_bytes(), 0o600)?;
    let salt: [u8; 12] = rand::random();
    write_file(
        &layout.conf_dir().join("salt"),
        format!("encodeSalt = {}\n", hex::encode(salt)).as_bytes(),
        0o600,
    )?;

    components::install(&layout, &mut node.props)?;
    node.props
        .set_default("https_port", &node.https_port.to_string());
    node.props.set_default("ldap_binddn", slapd::ADMIN_DN);
    node.props
        .set_default("ldaps_port", &slapd::LDAPS_PORT.to_string());
    node.props
        .set_default("ldap_hostname", &node.ip.to_string());
    node.props.set(
        "listen_all_interfaces",
        if args.listen_all_interfaces {
            "True"
        } else {
            "False"
        },
    );
    node.props
        .set("loadData", if args.no_data { "False" } else { "True" });
    node.props.set("gluu_standin_version", PACKAGE_VERSION);
    let record = node
        .props
        .render("Gluu Server setup.properties.last (stand-in)");
    let state = layout.state_dir();
    fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700))?;
    write_file(&layout.node_record(), record.as_bytes(), 0o600)?;
    save_properties_last(&layout, &node, &record)?;
    // Gluu's setup installs its version printer as /opt/gluu/bin/show_version.py.
    fs::copy(layout.print_version_source(), layout.show_version()).with_context(|| {
        format!(
            "copying {} to {}",
            layout.print_version_source().display(),
            layout.show_version().display()
        )
    })?;
    fs::set_permissions(layout.show_version(), fs::Permissions::from_mode(0o755))?;
    start_services(&layout, &node)?;
    println!(
        "Gluu Server stand-in installed: https://{}:{}/ (hostname {})",
        host_port_ip(node.ip),
        node.https_port,
        node.hostname
    );
    Ok(())
}

/// Gluu's setup on a systemd system: the directory's unit copied to /etc/systemd/system,
/// daemon-reload, enabled and started; then the web applications' units enabled and the
/// services started with systemctl. The units are `Type=notify`: each start returns once the
/// service answers, and a service that does not start fails setup.
fn start_services(layout: &Layout, node: &Node) -> Result<()> {
    println!("Starting services");
    let unit = layout.opendj_unit();
    if let Some(dir) = unit.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::copy(layout.opendj_unit_template(), &unit).with_context(|| {
        format!(
            "copying {} to {}",
            layout.opendj_unit_template().display(),
            unit.display()
        )
    })?;
    services::systemctl(&["daemon-reload"])?;
    services::systemctl(&["enable", "opendj.service"])?;
    services::systemctl(&["start", "opendj.service"])?;
    services::systemctl(&["enable", "oxauth.service", "identity.service"])?;
    for svc in ["oxauth.service", "identity.service"] {
        services::systemctl(&["start", svc])?;
    }
    for (what, port) in [("opendj", slapd::LDAPS_PORT), ("oxauth", node.https_port)] {
        if !serverd::port_open(node.ip, port) {
            bail!(
                "{what} was started but nothing answers on {}:{port}",
                node.ip
            );
        }
    }
    Ok(())
}

/// What Gluu 4.2.3's `save_properties` does: write `setup.properties.last`, encrypt it with
/// `openssl enc -aes-256-cbc -in setup.properties.last -out setup.properties.last.enc -k
/// PASSWORD` (the oxTrust admin password, which is `ldapPass` unless set apart) and delete the
/// plaintext. Like Gluu, this puts the password in openssl's argv.
fn save_properties_last(layout: &Layout, node: &Node, record: &str) -> Result<()> {
    let last = layout.setup_last();
    let enc = layout.setup_last_enc();
    write_file(&last, record.as_bytes(), 0o600)?;
    let password = node
        .props
        .get("oxtrust_admin_password")
        .filter(|p| !p.is_empty())
        .unwrap_or(node.ldap_password());
    let out = std::process::Command::new("openssl")
        .args(["enc", "-aes-256-cbc", "-in"])
        .arg(&last)
        .arg("-out")
        .arg(&enc)
        .arg("-k")
        .arg(password)
        .stdin(std::process::Stdio::null())
        .output()
        .context("running openssl enc (is the openssl package installed?)");
    let removed = fs::remove_file(&last);
    let out = out?;
    if !out.status.success() {
        let _ = fs::remove_file(&enc);
        bail!(
            "openssl enc failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    removed.with_context(|| format!("removing {}", last.display()))?;
    Ok(())
}

/// An IP as written in `host:port` (brackets for IPv6).
pub fn host_port_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// oxAuth keys: the public JWKS (for `oxAuthConfWebKeys`) and the private keys by kid.
fn oxauth_keys() -> Result<(serde_json::Value, serde_json::Value)> {
    let exp_ms =
        (time::OffsetDateTime::now_utc() + time::Duration::days(2)).unix_timestamp() * 1000;
    let mut public = Vec::new();
    let mut private = serde_json::Map::new();
    for (alg, usage) in [("RS256", "sig"), ("RSA-OAEP", "enc")] {
        let pem = certs::generate_rsa_pem(2048)?;
        let key = certs::rsa_from_pem(&pem)?;
        let kid = uuid::Uuid::new_v4().to_string();
        public.push(serde_json::json!({
            "kid": kid,
            "kty": "RSA",
            "use": usage,
            "alg": alg,
            "n": certs::jwk_n(&key),
            "e": certs::jwk_e(&key),
            "exp": exp_ms,
        }));
        private.insert(kid, serde_json::Value::String(pem));
    }
    Ok((
        serde_json::json!({ "keys": public }),
        serde_json::Value::Object(private),
    ))
}

fn idp_metadata(node: &Node, cert_der: &[u8]) -> String {
    let base = if node.https_port == 443 {
        format!("https://{}", node.hostname)
    } else {
        format!("https://{}:{}", node.hostname, node.https_port)
    };
    let cert = certs::der_base64(cert_der);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{base}/idp/shibboleth">
  <IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <KeyDescriptor use="signing">
      <ds:KeyInfo>
        <ds:X509Data>
          <ds:X509Certificate>{cert}</ds:X509Certificate>
        </ds:X509Data>
      </ds:KeyInfo>
    </KeyDescriptor>
    <SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{base}/idp/profile/SAML2/Redirect/SSO"/>
  </IDPSSODescriptor>
</EntityDescriptor>
"#
    )
}
