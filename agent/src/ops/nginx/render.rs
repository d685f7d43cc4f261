//! The configuration's text: the template rendered from the request's values, each checked
//! first (host names, addresses, ports), and the check that the key is the certificate's.

use super::{Layout, MARKER, OXAUTH_PATHS, STICKY_PATHS, check_down_marks, path_str};
use crate::ops::OpError;
use clustermgr_proto::{ConfigureNginx, OxauthBalancing};
use std::net::IpAddr;
use std::path::Path;

pub(super) fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && !n.starts_with(['-', '.'])
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
}

pub(super) fn host_port(addr: &IpAddr, port: u32) -> String {
    match addr {
        IpAddr::V6(a) => format!("[{a}]:{port}"),
        IpAddr::V4(a) => format!("{a}:{port}"),
    }
}

pub(super) fn port(p: u32, what: &str) -> Result<u32, OpError> {
    if (1..=65535).contains(&p) {
        Ok(p)
    } else {
        Err(OpError(format!("{what} {p} is not a port")))
    }
}

/// The configuration text for `req` with the files of `layout` and `generation`; every value
/// checked first.
pub fn render(
    template: &str,
    req: &ConfigureNginx,
    layout: &Layout,
    generation: &str,
) -> Result<String, OpError> {
    render_trusting(template, req, layout, generation, &layout.cert(generation))
}

/// [`render`], the backends verified against the certificates in `trusted`.
pub fn render_trusting(
    template: &str,
    req: &ConfigureNginx,
    layout: &Layout,
    generation: &str,
    trusted: &Path,
) -> Result<String, OpError> {
    if !valid_name(&req.server_name) {
        return Err(OpError(format!("{:?} is not a host name", req.server_name)));
    }
    if req.backends.is_empty() {
        return Err(OpError(
            "no Gluu server to balance (install Gluu on a server first)".into(),
        ));
    }
    let listen: IpAddr = req.listen_address.parse().map_err(|_| {
        OpError(format!(
            "listen address {:?} is not an IP address",
            req.listen_address
        ))
    })?;
    let https = port(req.https_port, "https port")?;
    let http = port(req.http_port, "http port")?;
    if https == http {
        return Err(OpError(format!("https and http both on port {https}")));
    }
    let mut backends = Vec::new();
    for b in &req.backends {
        let a: IpAddr = b.address.parse().map_err(|_| {
            OpError(format!(
                "backend address {:?} is not an IP address",
                b.address
            ))
        })?;
        if !valid_name(&b.name) {
            return Err(OpError(format!(
                "backend name {:?} is not a host name",
                b.name
            )));
        }
        backends.push(minijinja::context! {
            hostport => host_port(&a, port(b.port, "backend port")?),
            name => b.name.clone(),
            down => req.drained.contains(&b.name),
        });
    }
    let balancing =
        OxauthBalancing::try_from(req.oxauth_balancing).unwrap_or(OxauthBalancing::Unspecified);
    let listen = match listen {
        IpAddr::V6(a) => format!("[{a}]"),
        IpAddr::V4(a) => a.to_string(),
    };
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template("nginx.conf", template)
        .map_err(|e| OpError(format!("the nginx template: {e}")))?;
    let tmpl = env
        .get_template("nginx.conf")
        .map_err(|e| OpError(format!("the nginx template: {e}")))?;
    let text = tmpl
        .render(minijinja::context! {
            marker => MARKER,
            server_name => req.server_name.clone(),
            pid_path => path_str(&layout.pid),
            error_log => path_str(&layout.error_log),
            access_log => path_str(&layout.access_log),
            temp_dir => layout.temp_dir.as_deref().map(path_str),
            backends => backends,
            oxauth_sticky => balancing != OxauthBalancing::RoundRobin,
            listen => listen,
            http_port => http,
            https_port => https,
            https_suffix => if https == 443 { String::new() } else { format!(":{https}") },
            cert_path => path_str(&layout.cert(generation)),
            key_path => path_str(&layout.key(generation)),
            trusted_path => path_str(trusted),
            sticky_paths => STICKY_PATHS.to_vec(),
            oxauth_paths => OXAUTH_PATHS.to_vec(),
        })
        .map_err(|e| OpError(format!("the nginx template: {e}")))?;
    let mut text = text;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    check_down_marks(&text, req)?;
    Ok(text)
}

/// The certificate parses and the key is its own. nginx -t alone would not say so: OpenSSL keeps
/// a key of another type (an RSA key for an EC certificate) in a slot of its own, and the
/// handshakes fail only once the configuration serves.
pub fn check_pair(certificate_pem: &str, key_pem: String) -> Result<(), OpError> {
    let certs = clustermgr_shared::tls::certs_from_pem(certificate_pem)
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OpError("the certificate is not a PEM certificate".into()))?;
    let key = clustermgr_shared::tls::key_from_pem(&clustermgr_shared::Secret::new(key_pem))
        .map_err(|_| OpError("the key is not a PEM private key".into()))?;
    rustls::sign::CertifiedKey::from_der(certs, key, &clustermgr_shared::tls::provider())
        .map(|_| ())
        .map_err(|e| OpError(format!("the key does not belong to the certificate: {e}")))
}
