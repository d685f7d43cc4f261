//! The setup.properties each node's setup.py runs with (as root), and the plan's account of it.
//!
//! The primary's comes from the cluster settings. Another node's comes from the cluster
//! settings too, plus — from the primary's `setup.properties.last` — only the keys on
//! [`COPIED`]: the organisation, and the passwords, salts and client ids setup would otherwise
//! make anew, which must be the same on every node (Gluu's cluster manager kept such a fixed
//! list). setup.py sets every key it reads as an attribute of its installer, so any other key
//! could steer it (a command's path, a folder, a URL): those are left out, and a copied value
//! that is not plausibly shaped (control characters, a malformed address or id) refuses the
//! step, naming the key and never the value.

use super::components::{Component, Components};
use super::{GluuInstall, parse_properties, render_properties};
use clustermgr_proto::gluu::is_secret_key;
use std::collections::BTreeSet;

/// How a copied value must look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Free text on one line (an organisation, city or state).
    Text,
    /// A two-letter country code.
    Country,
    /// An e-mail address.
    Email,
    /// A password, salt or key: any printable characters.
    Secret,
    /// A client or resource id, an inum: letters, digits, `.`, `-`, `_`.
    Id,
    /// A number of megabytes.
    Number,
}

/// The keys of the primary's `setup.properties.last` another node's setup gets, and their shape.
pub const COPIED: &[(&str, Shape)] = &[
    ("orgName", Shape::Text),
    ("countryCode", Shape::Country),
    ("city", Shape::Text),
    ("state", Shape::Text),
    ("admin_email", Shape::Email),
    ("application_max_ram", Shape::Number),
    ("ldapPass", Shape::Secret),
    ("oxtrust_admin_password", Shape::Secret),
    ("encode_salt", Shape::Secret),
    ("pairwiseCalculationKey", Shape::Secret),
    ("pairwiseCalculationSalt", Shape::Secret),
    ("httpdKeyPass", Shape::Secret),
    ("shibJksPass", Shape::Secret),
    ("oxauth_openid_jks_pass", Shape::Secret),
    ("opendj_p12_pass", Shape::Secret),
    ("passportSpKeyPass", Shape::Secret),
    ("passportSpJksPass", Shape::Secret),
    ("passport_rs_client_jks_pass", Shape::Secret),
    ("passport_rp_client_jks_pass", Shape::Secret),
    ("scim_rs_client_jks_pass", Shape::Secret),
    ("scim_rp_client_jks_pass", Shape::Secret),
    ("api_rs_client_jks_pass", Shape::Secret),
    ("api_rp_client_jks_pass", Shape::Secret),
    ("oxauthClient_pw", Shape::Secret),
    ("idpClient_pw", Shape::Secret),
    ("gluu_ro_pw", Shape::Secret),
    ("radius_jwt_pass", Shape::Secret),
    ("defaultTrustStorePW", Shape::Secret),
    ("oxauth_client_id", Shape::Id),
    ("idp_client_id", Shape::Id),
    ("scim_rs_client_id", Shape::Id),
    ("scim_rp_client_id", Shape::Id),
    ("scim_resource_oxid", Shape::Id),
    ("oxtrust_resource_server_client_id", Shape::Id),
    ("oxtrust_requesting_party_client_id", Shape::Id),
    ("oxtrust_resource_id", Shape::Id),
    ("passport_rs_client_id", Shape::Id),
    ("passport_rp_client_id", Shape::Id),
    ("passport_rp_ii_client_id", Shape::Id),
    ("passport_resource_id", Shape::Id),
    ("gluu_radius_client_id", Shape::Id),
    ("admin_inum", Shape::Id),
];

/// Why the primary's record cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Copied keys whose values are not plausibly shaped (key, why).
    BadValues(Vec<(String, &'static str)>),
    /// The primary was installed with other components than the cluster's.
    Components { primary: String, cluster: String },
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::BadValues(bad) => write!(
                f,
                "the primary's setup.properties.last is refused (tampered with?): {}",
                bad.iter()
                    .map(|(k, why)| format!("{k} {why}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            RecordError::Components { primary, cluster } => write!(
                f,
                "the primary was installed with components {primary} and the cluster's are {cluster}: every node runs the same components (setup never runs again on an installed node; set clustermgr cluster configure --components {primary})"
            ),
        }
    }
}

impl std::error::Error for RecordError {}

/// Why a value does not have its shape, or None.
fn misshapen(shape: Shape, v: &str) -> Option<&'static str> {
    if v.chars().any(char::is_control) {
        return Some("holds control characters (a newline would add keys)");
    }
    let max = match shape {
        Shape::Country => 2,
        Shape::Number => 7,
        Shape::Email => 254,
        Shape::Text | Shape::Id => 128,
        Shape::Secret => 256,
    };
    if v.chars().count() > max {
        return Some("is too long");
    }
    let ok = match shape {
        Shape::Text | Shape::Secret => true,
        Shape::Country => v.len() == 2 && v.chars().all(|c| c.is_ascii_alphabetic()),
        Shape::Number => !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()),
        Shape::Id => v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
        Shape::Email => v.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !local.contains(char::is_whitespace)
                && domain.contains('.')
                && domain.split('.').all(|l| {
                    !l.is_empty()
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
        }),
    };
    (!ok).then_some(match shape {
        Shape::Country => "is not a two-letter country code",
        Shape::Number => "is not a number",
        Shape::Id => "is not an id (letters, digits, . _ -)",
        Shape::Email => "is not an e-mail address",
        Shape::Text | Shape::Secret => "is malformed",
    })
}

/// What another node's setup gets from the primary's record: the copied keys in [`COPIED`]'s
/// order, and how many others were left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub kv: Vec<(&'static str, String)>,
    pub left_out: usize,
}

/// The allow-listed keys of the primary's record, their values checked, and a check that it was
/// installed with the cluster's components.
pub fn from_primary(last: &str, components: &Components) -> Result<Copied, RecordError> {
    let parsed = parse_properties(last);
    let mut kv = Vec::new();
    let mut bad = Vec::new();
    for (key, shape) in COPIED {
        // Java properties: a later duplicate wins.
        if let Some((_, v)) = parsed.iter().rev().find(|(k, _)| k == key) {
            match misshapen(*shape, v) {
                Some(why) => bad.push((key.to_string(), why)),
                None if v.is_empty() => {}
                None => kv.push((*key, v.clone())),
            }
        }
    }
    if !bad.is_empty() {
        return Err(RecordError::BadValues(bad));
    }
    // An empty record is the dry run's stand-in for one not read yet.
    if !parsed.is_empty() {
        same_components(&parsed, components)?;
    }
    let distinct: BTreeSet<&str> = parsed.iter().map(|(k, _)| k.as_str()).collect();
    Ok(Copied {
        left_out: distinct.len() - kv.len(),
        kv,
    })
}

/// A record's install switches against the cluster's components: the primary (installed, or
/// adopted) and the cluster must agree, since every node runs the same components.
pub fn same_components(
    record: &[(String, String)],
    components: &Components,
) -> Result<(), RecordError> {
    let recorded = Components::recorded(record);
    if &recorded == components.set() {
        return Ok(());
    }
    Err(RecordError::Components {
        primary: recorded
            .iter()
            .map(|c: &Component| c.name())
            .collect::<Vec<_>>()
            .join(","),
        cluster: components.to_string(),
    })
}

/// `k=v` pairs for a plan, secrets as `***`.
fn shown<'a>(kv: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    kv.map(|(k, v)| {
        if is_secret_key(k) {
            format!("{k}=***")
        } else {
            format!("{k}={v}")
        }
    })
    .collect::<Vec<_>>()
    .join(" ")
}

/// A node's setup.properties and its account for the plan.
pub struct SetupProperties {
    pub text: String,
    pub summary: String,
}

impl GluuInstall {
    /// The keys every node's setup gets from the cluster settings: the load balancer's name,
    /// the node's address, the components, the directory (Gluu's OpenDJ) and the web port.
    fn cluster_keys(&self, ip: &str) -> Vec<(&'static str, String)> {
        let mut kv: Vec<(&'static str, String)> = vec![
            ("hostname", self.lb_hostname.clone()),
            ("ip", ip.to_string()),
        ];
        kv.extend(self.components.properties(&self.lb_hostname));
        kv.extend([
            ("installLDAP", "True".into()),
            ("installLdap", "True".into()),
            ("installJce", "True".into()),
            ("ldap_type", "opendj".into()),
            ("opendj_type", "wrends".into()),
        ]);
        if let Some(p) = self.https_port {
            kv.push(("https_port", p.to_string()));
        }
        kv
    }

    /// setup.properties for the primary, from the cluster settings.
    pub fn primary_properties(&self, ip: &str) -> SetupProperties {
        let mut kv = self.cluster_keys(ip);
        kv.extend([
            ("ldapPass", self.ldap_admin_password.clone()),
            ("orgName", self.org.name.clone()),
            ("countryCode", self.org.country.clone()),
            ("city", self.org.city.clone()),
            ("state", self.org.state.clone()),
            ("admin_email", self.org.admin_email.clone()),
            ("application_max_ram", "3072".into()),
        ]);
        let pairs = || kv.iter().map(|(k, v)| (*k, v.as_str()));
        SetupProperties {
            text: render_properties(pairs()),
            summary: format!("setup.properties: {}", shown(pairs())),
        }
    }

    /// setup.properties for another node: the cluster's keys with this node's address, and the
    /// allow-listed keys of the primary's `setup.properties.last`.
    pub fn secondary_properties(
        &self,
        primary_last: &str,
        ip: &str,
    ) -> Result<SetupProperties, RecordError> {
        let copied = from_primary(primary_last, &self.components)?;
        let own = self.cluster_keys(ip);
        let text = render_properties(
            own.iter()
                .chain(copied.kv.iter())
                .map(|(k, v)| (*k, v.as_str())),
        );
        let from_primary = if primary_last.is_empty() {
            format!(
                "the keys of the primary's setup.properties.last on the allow-list ({})",
                COPIED
                    .iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!(
                "{} (from the primary's setup.properties.last; {} other keys left out)",
                shown(copied.kv.iter().map(|(k, v)| (*k, v.as_str()))),
                copied.left_out
            )
        };
        Ok(SetupProperties {
            text,
            summary: format!(
                "setup.properties: {} + {from_primary}",
                shown(own.iter().map(|(k, v)| (*k, v.as_str())))
            ),
        })
    }
}
