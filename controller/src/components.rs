//! The Gluu components of the cluster (`cluster configure --components`) and what follows from
//! them outside the install: Shibboleth (saml) needs the LDAP cache, and file replication's
//! actions restart Shibboleth's `idp` only where it is installed.

use crate::cluster::{self, ClusterError};
use crate::ctl::Ctl;
use clustermgr_proto::{ClusterSettingsRecord, Workflow};
use clustermgr_workflow::gluu_install::{self, Component, Components};

/// The components setup installs on every node (Gluu 4.2.3's defaults until configured).
pub fn of(r: &ClusterSettingsRecord) -> Components {
    // Stored only after `Components::parse` accepted them; a record another version wrote
    // that no longer parses falls back to the defaults.
    Components::stored(&r.components).unwrap_or_default()
}

/// What setup installs on a server: what its install ran with (frozen in the workflow's
/// inputs), else what the next install would.
pub fn of_server(ctl: &Ctl, last: Option<&Workflow>) -> Result<Vec<String>, ClusterError> {
    match last
        .filter(|w| w.kind == gluu_install::KIND)
        .and_then(|w| w.inputs.get(gluu_install::COMPONENTS_INPUT))
        .filter(|c| !c.is_empty())
    {
        Some(c) => Ok(c.split(',').map(str::to_string).collect()),
        None => Ok(of(&cluster::settings_record(ctl)?).names()),
    }
}

/// A change of components the rest of the cluster cannot take: saml while a Redis cache is
/// installed.
pub fn check_change(
    ctl: &Ctl,
    old: &ClusterSettingsRecord,
    new: &ClusterSettingsRecord,
) -> Result<(), ClusterError> {
    if of(new).contains(Component::Saml) && !of(old).contains(Component::Saml) {
        crate::cache::refuse_shibboleth(ctl)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealing::Sealer;
    use clustermgr_proto::ConfigureRequest;

    fn sealer() -> Sealer {
        Sealer::from_bytes(&[1u8; 32]).unwrap()
    }

    #[test]
    fn components_are_checked_stored_and_shown() {
        let s = sealer();
        let with = |list: &str| {
            crate::cluster::apply(
                Default::default(),
                &ConfigureRequest {
                    components: Some(list.into()),
                    ..Default::default()
                },
                &s,
            )
        };
        // Until configured: Gluu 4.2.3's defaults.
        assert_eq!(
            of(&Default::default()).names(),
            ["oxauth", "oxtrust", "httpd"]
        );
        let r = with("oxauth,oxtrust,httpd,saml,Passport").unwrap();
        assert_eq!(
            r.components,
            ["oxauth", "oxtrust", "httpd", "saml", "passport"]
        );
        assert!(of(&r).contains(Component::Saml));
        for (list, says) in [
            (
                "oxauth,oxtrust,httpd,shib",
                "unknown component(s) \"shib\": the components are oxauth,oxtrust,httpd,saml,oxauth-rp,passport,radius,scim,fido2,casa,oxd",
            ),
            ("saml", "oxauth,oxtrust,httpd cannot be left out"),
            ("oxauth,oxtrust,httpd,casa", "casa needs oxd"),
            ("", "no components named"),
        ] {
            match with(list).unwrap_err() {
                ClusterError::Invalid { field, msg } => {
                    assert_eq!(field, "components");
                    assert!(msg.contains(says), "{list}: {msg}");
                }
                other => panic!("{other}"),
            }
        }
    }
}
