//! Summaries of the Gluu server's operations: setup, services, certificates, oxAuth
//! configuration and keys.

use crate::v1::{
    GluuServices, InstallGluuCertificates, ProbeJwks, RunGluuSetup, SetOxAuthConfig, SetWebKeys,
    UpdateOxauthKeystore,
};

/// Never the properties (they hold the cluster's passwords).
pub(super) fn setup(r: &RunGluuSetup) -> String {
    format!(
        "run Gluu setup{}",
        if r.no_data { " --no-data" } else { "" }
    )
}

pub(super) fn services(r: &GluuServices) -> String {
    format!(
        "gluu-serverd {}",
        r.action()
            .as_str_name()
            .trim_start_matches("ACTION_")
            .to_ascii_lowercase()
    )
}

/// The count and the alias prefix (never the files' content).
pub(super) fn install_certificates(c: &InstallGluuCertificates) -> String {
    format!(
        "install {} certificate files (aliases {}_*)",
        c.files.len(),
        c.alias_prefix
    )
}

/// The keys set (never their values or the bind password).
pub(super) fn set_oxauth_config(c: &SetOxAuthConfig) -> String {
    format!(
        "set oxAuth configuration {}",
        c.values.keys().cloned().collect::<Vec<_>>().join(", ")
    )
}

/// The key ids (never the private keys).
pub(super) fn update_keystore(u: &UpdateOxauthKeystore) -> String {
    format!(
        "oxAuth keystore: add {}{}",
        u.add
            .iter()
            .map(|k| k.kid.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        if u.keep_kids.is_empty() {
            String::new()
        } else {
            format!("; keep only {}", u.keep_kids.join(", "))
        }
    )
}

/// Counts and key ids (never the keys).
pub(super) fn set_web_keys(w: &SetWebKeys) -> String {
    format!(
        "oxAuthConfWebKeys: add {} keys, keep {}, first {}",
        w.add_jwks.len(),
        w.keep_kids.join(", "),
        w.first_kids.join(", ")
    )
}

pub(super) fn probe_jwks(p: &ProbeJwks) -> String {
    format!("wait until {} serves {}", p.url, p.expect_kids.join(", "))
}
