use super::*;
use clustermgr_workflow::gluu_install::Component;

fn sealer() -> Sealer {
    Sealer::from_bytes(&[1u8; 32]).unwrap()
}

fn field_of(e: ClusterError) -> &'static str {
    match e {
        ClusterError::Invalid { field, .. } => field,
        other => panic!("{other}"),
    }
}

#[test]
fn bad_values_are_refused_naming_the_field() {
    let s = sealer();
    let bad = |req: ConfigureRequest| field_of(apply(Default::default(), &req, &s).unwrap_err());
    assert_eq!(
        bad(ConfigureRequest {
            gluu_version: Some("3.1.6".into()),
            ..Default::default()
        }),
        "gluu-version"
    );
    for h in ["-bad.example", "idp", "10.0.0.1", "a b.example", ""] {
        assert_eq!(
            bad(ConfigureRequest {
                lb_hostname: Some(h.into()),
                ..Default::default()
            }),
            "lb-hostname",
            "{h}"
        );
    }
    assert_eq!(
        bad(ConfigureRequest {
            external_lb_health_wait_secs: Some(3601),
            ..Default::default()
        }),
        "external-lb-health-wait"
    );
    let ok = apply(
        Default::default(),
        &ConfigureRequest {
            external_lb_health_wait_secs: Some(15),
            ..Default::default()
        },
        &s,
    )
    .unwrap();
    assert_eq!(view(&ok, false).external_lb_health_wait_secs, 15);
    assert_eq!(
        bad(ConfigureRequest {
            lb_ip: Some("10.0.0".into()),
            ..Default::default()
        }),
        "lb-ip"
    );
    for c in ["USA", "U", "1A"] {
        assert_eq!(
            bad(ConfigureRequest {
                country: Some(c.into()),
                ..Default::default()
            }),
            "country"
        );
    }
    for e in ["admin", "admin@", "@example.org", "a@b", "a b@example.org"] {
        assert_eq!(
            bad(ConfigureRequest {
                admin_email: Some(e.into()),
                ..Default::default()
            }),
            "admin-email",
            "{e}"
        );
    }
    for p in [&b""[..], b"\n", b"short", b"two\nlines"] {
        assert_eq!(
            bad(ConfigureRequest {
                ldap_admin_password: Some(p.to_vec()),
                ..Default::default()
            }),
            "ldap-admin-password"
        );
    }
    assert_eq!(
        bad(ConfigureRequest {
            ldap_check_period: Some("1s".into()),
            ..Default::default()
        }),
        "ldap-check-period"
    );
}

#[test]
fn good_values_are_normalised_and_passwords_sealed() {
    let s = sealer();
    let r = apply(
        Default::default(),
        &ConfigureRequest {
            gluu_version: Some("4.2.3".into()),
            lb_hostname: Some("IdP.Example.org".into()),
            country: Some("us".into()),
            admin_email: Some("admin@example.org".into()),
            ldap_admin_password: Some(b"Secret Pa$$\n".to_vec()),
            ldap_check_period: Some("5m".into()),
            ..Default::default()
        },
        &s,
    )
    .unwrap();
    assert_eq!(r.lb_hostname, "idp.example.org");
    assert_eq!(r.country, "US");
    assert_eq!(r.ldap_check_period_ms, 300_000);
    assert_eq!(
        s.open(LDAP_ADMIN_PASSWORD, &r.ldap_admin_password_sealed)
            .unwrap(),
        b"Secret Pa$$"
    );
    let shown = format!("{:?}", view(&r, false));
    assert!(!shown.contains("Secret"), "{shown}");
    assert!(view(&r, false).ldap_admin_password_set);
    assert!(!view(&r, false).replication_password_set);
}

#[test]
fn components_are_checked_stored_and_shown() {
    let s = sealer();
    let with = |list: &str| {
        apply(
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
