//! Gluu Server's components: which of them setup installs on every node of the cluster
//! (`cluster configure --components`), written as Gluu 4.2.3's setup.properties switches.
//!
//! Defaults are 4.2.3's setup.py's (oxAuth, oxTrust and the Apache web server on, the rest
//! off). setup.py reads a switch as Python does: only the exact words `True` and `False` are
//! booleans, any other non-empty value is a string and therefore true, so every switch is
//! always written, as `True` or `False`.

use std::collections::BTreeSet;
use std::fmt;

/// One component setup.py can install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    OxAuth,
    OxTrust,
    Httpd,
    Saml,
    OxAuthRp,
    Passport,
    Radius,
    Scim,
    Fido2,
    Casa,
    Oxd,
}

impl Component {
    pub const ALL: [Component; 11] = [
        Component::OxAuth,
        Component::OxTrust,
        Component::Httpd,
        Component::Saml,
        Component::OxAuthRp,
        Component::Passport,
        Component::Radius,
        Component::Scim,
        Component::Fido2,
        Component::Casa,
        Component::Oxd,
    ];

    /// The name an operator gives (`--components oxauth,oxtrust,httpd,saml`).
    pub fn name(self) -> &'static str {
        match self {
            Component::OxAuth => "oxauth",
            Component::OxTrust => "oxtrust",
            Component::Httpd => "httpd",
            Component::Saml => "saml",
            Component::OxAuthRp => "oxauth-rp",
            Component::Passport => "passport",
            Component::Radius => "radius",
            Component::Scim => "scim",
            Component::Fido2 => "fido2",
            Component::Casa => "casa",
            Component::Oxd => "oxd",
        }
    }

    /// Its setup.properties switch in Gluu 4.2.3.
    pub fn key(self) -> &'static str {
        match self {
            Component::OxAuth => "installOxAuth",
            Component::OxTrust => "installOxTrust",
            Component::Httpd => "installHttpd",
            Component::Saml => "installSaml",
            Component::OxAuthRp => "installOxAuthRP",
            Component::Passport => "installPassport",
            Component::Radius => "installGluuRadius",
            Component::Scim => "installScimServer",
            Component::Fido2 => "installFido2",
            Component::Casa => "installCasa",
            Component::Oxd => "installOxd",
        }
    }

    /// On in Gluu 4.2.3's setup.py unless told otherwise.
    pub fn default_on(self) -> bool {
        matches!(
            self,
            Component::OxAuth | Component::OxTrust | Component::Httpd
        )
    }

    /// Needed by the cluster itself: its readiness probes and health checks go to oxAuth and
    /// oxTrust through the nodes' web server, and its key rotation writes oxAuth's keys.
    pub fn required(self) -> bool {
        self.default_on()
    }

    pub fn from_name(name: &str) -> Option<Component> {
        Component::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a component list is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentsError {
    Unknown(Vec<String>),
    Empty,
    MissingRequired(Vec<Component>),
    /// Casa without oxd: 4.2.3's setup installs Casa with an oxd server (its own, or one it is
    /// given); the cluster installs the node's own.
    CasaWithoutOxd,
}

fn names(cs: impl IntoIterator<Item = Component>) -> String {
    cs.into_iter()
        .map(Component::name)
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for ComponentsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComponentsError::Unknown(u) => write!(
                f,
                "unknown component(s) {}: the components are {}",
                u.iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                names(Component::ALL)
            ),
            ComponentsError::Empty => write!(
                f,
                "no components named: give a comma-separated list, e.g. {} (the components are {})",
                Components::default(),
                names(Component::ALL)
            ),
            ComponentsError::MissingRequired(m) => write!(
                f,
                "{} cannot be left out: the cluster's probes, health checks and key rotation use oxAuth and oxTrust through the web server (e.g. --components {})",
                names(m.iter().copied()),
                names(
                    Component::ALL
                        .into_iter()
                        .filter(|c| c.required())
                        .chain([Component::Saml])
                )
            ),
            ComponentsError::CasaWithoutOxd => write!(
                f,
                "casa needs oxd: Gluu 4.2.3's setup installs Casa with an oxd server, and the cluster installs each node's own; add oxd"
            ),
        }
    }
}

impl std::error::Error for ComponentsError {}

/// The components setup installs, the same on every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Components(BTreeSet<Component>);

impl Default for Components {
    /// Gluu 4.2.3's defaults.
    fn default() -> Self {
        Components(
            Component::ALL
                .into_iter()
                .filter(|c| c.default_on())
                .collect(),
        )
    }
}

impl fmt::Display for Components {
    /// The names, comma-separated, in a fixed order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&names(self.0.iter().copied()))
    }
}

impl Components {
    /// A comma-separated list of names (spaces around names ignored), checked.
    pub fn parse(list: &str) -> Result<Self, ComponentsError> {
        let items: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        Self::from_names(items)
    }

    /// Names, checked: each known, the required ones present, casa only with oxd.
    pub fn from_names<S: AsRef<str>>(
        items: impl IntoIterator<Item = S>,
    ) -> Result<Self, ComponentsError> {
        let mut set = BTreeSet::new();
        let mut unknown = Vec::new();
        for s in items {
            let s = s.as_ref();
            match Component::from_name(&s.to_ascii_lowercase()) {
                Some(c) => {
                    set.insert(c);
                }
                None => unknown.push(s.chars().take(64).collect()),
            }
        }
        if !unknown.is_empty() {
            return Err(ComponentsError::Unknown(unknown));
        }
        if set.is_empty() {
            return Err(ComponentsError::Empty);
        }
        let missing: Vec<Component> = Component::ALL
            .into_iter()
            .filter(|c| c.required() && !set.contains(c))
            .collect();
        if !missing.is_empty() {
            return Err(ComponentsError::MissingRequired(missing));
        }
        if set.contains(&Component::Casa) && !set.contains(&Component::Oxd) {
            return Err(ComponentsError::CasaWithoutOxd);
        }
        Ok(Components(set))
    }

    /// The stored form (names; empty means the defaults, as in a record made before components
    /// could be chosen).
    pub fn stored(stored: &[String]) -> Result<Self, ComponentsError> {
        if stored.is_empty() {
            Ok(Self::default())
        } else {
            Self::from_names(stored)
        }
    }

    pub fn contains(&self, c: Component) -> bool {
        self.0.contains(&c)
    }

    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|c| c.name().to_string()).collect()
    }

    /// The setup.properties keys the selection decides, for a setup whose hostname is
    /// `hostname`: every switch (`True`/`False`; the web server's under both spellings 4.2.3
    /// reads, `installHttpd` and `installHTTPD`), and what 4.2.3's own prompts set with a
    /// selection (SCIM's access policy for SCIM and Passport; Radius's scripts and oxAuth
    /// compatibility switches; Casa's oxd server on this host's port 8443).
    pub fn properties(&self, hostname: &str) -> Vec<(&'static str, String)> {
        let flag = |on: bool| if on { "True" } else { "False" }.to_string();
        let mut kv: Vec<(&'static str, String)> = Component::ALL
            .into_iter()
            .map(|c| (c.key(), flag(self.contains(c))))
            .collect();
        kv.push(("installHTTPD", flag(self.contains(Component::Httpd))));
        if self.contains(Component::Scim) || self.contains(Component::Passport) {
            kv.push(("enable_scim_access_policy", "true".into()));
        }
        if self.contains(Component::Radius) {
            for k in [
                "oxauth_legacyIdTokenClaims",
                "oxauth_openidScopeBackwardCompatibility",
                "enableRadiusScripts",
            ] {
                kv.push((k, "true".into()));
            }
        }
        if self.contains(Component::Casa) {
            kv.push(("oxd_server_https", format!("https://{hostname}:8443")));
        }
        kv
    }

    /// Every key [`Components::properties`] may write: on another node these come from the
    /// cluster's selection, never from the primary's record.
    pub fn keys() -> Vec<&'static str> {
        let mut k: Vec<&'static str> = Component::ALL.into_iter().map(Component::key).collect();
        k.extend([
            "installHTTPD",
            "enable_scim_access_policy",
            "oxauth_legacyIdTokenClaims",
            "oxauth_openidScopeBackwardCompatibility",
            "enableRadiusScripts",
            "oxd_server_https",
        ]);
        k
    }

    /// The components a setup.properties(.last) says were installed, read as setup.py reads
    /// them (`True`/`False`, any other non-empty word true, a missing switch its default).
    pub fn recorded(props: &[(String, String)]) -> BTreeSet<Component> {
        Component::ALL
            .into_iter()
            .filter(|c| match props.iter().rev().find(|(k, _)| k == c.key()) {
                Some((_, v)) => v != "False" && !v.is_empty(),
                None => c.default_on(),
            })
            .collect()
    }

    /// The selection as a set.
    pub fn set(&self) -> &BTreeSet<Component> {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_gluu_4_2_3s() {
        let d = Components::default();
        assert_eq!(d.to_string(), "oxauth,oxtrust,httpd");
        let kv: std::collections::BTreeMap<_, _> =
            d.properties("idp.example.org").into_iter().collect();
        for (k, v) in [
            ("installOxAuth", "True"),
            ("installOxTrust", "True"),
            ("installHttpd", "True"),
            ("installHTTPD", "True"),
            ("installSaml", "False"),
            ("installOxAuthRP", "False"),
            ("installPassport", "False"),
            ("installGluuRadius", "False"),
            ("installScimServer", "False"),
            ("installFido2", "False"),
            ("installCasa", "False"),
            ("installOxd", "False"),
        ] {
            assert_eq!(kv[k], v, "{k}");
        }
        assert_eq!(kv.len(), 12, "{kv:?}");
        assert_eq!(Components::stored(&[]).unwrap(), d);
    }

    #[test]
    fn lists_are_checked_with_clear_refusals() {
        let c = Components::parse(" oxauth, oxtrust ,httpd,saml,SCIM").unwrap();
        assert_eq!(c.to_string(), "oxauth,oxtrust,httpd,saml,scim");
        let e = Components::parse("oxauth,oxtrust,httpd,shibbolet,cas").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("\"shibbolet\", \"cas\""), "{msg}");
        for c in Component::ALL {
            assert!(msg.contains(c.name()), "{msg}");
        }
        assert_eq!(Components::parse(" , "), Err(ComponentsError::Empty));
        assert_eq!(
            Components::parse("saml"),
            Err(ComponentsError::MissingRequired(vec![
                Component::OxAuth,
                Component::OxTrust,
                Component::Httpd
            ]))
        );
        assert_eq!(
            Components::parse("oxauth,oxtrust,httpd,casa"),
            Err(ComponentsError::CasaWithoutOxd)
        );
        let casa = Components::parse("oxauth,oxtrust,httpd,casa,oxd").unwrap();
        let kv: std::collections::BTreeMap<_, _> =
            casa.properties("idp.example.org").into_iter().collect();
        assert_eq!(kv["oxd_server_https"], "https://idp.example.org:8443");
        assert_eq!(kv["installCasa"], "True");
        for k in kv.keys() {
            assert!(Components::keys().contains(k), "{k}");
        }
    }

    #[test]
    fn recorded_switches_read_as_setup_py_reads_them() {
        let p = |kv: &[(&str, &str)]| -> Vec<(String, String)> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let got = Components::recorded(&p(&[
            ("installSaml", "false"),
            ("installOxTrust", "False"),
            ("installCasa", "True"),
        ]));
        // `false` is a non-empty string: true for setup.py.
        assert!(got.contains(&Component::Saml));
        assert!(!got.contains(&Component::OxTrust));
        assert!(got.contains(&Component::Casa));
        assert!(
            got.contains(&Component::OxAuth),
            "a missing switch is its default"
        );
        assert!(!got.contains(&Component::Oxd));
    }
}
