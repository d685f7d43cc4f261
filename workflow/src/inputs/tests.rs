//! The inputs' one encoding: round trips, the previous release's maps, and typed errors.

use super::*;
use crate::{agent_upgrade, backup, cache, certs, gluu_install, gluu_restart, hosts, keys, lb};
use crate::{replication, schema};
use clustermgr_proto::{CustomSchema, OxauthBalancing};
use std::fmt::Debug;

fn map(entries: &[(&str, &str)]) -> HashMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn round_trip<I: KindInputs + PartialEq + Debug + Clone>(i: I) {
    let m = i.encode().into_iter().collect();
    assert_eq!(I::decode(&m), Ok(i.clone()), "{m:?}");
}

fn old<I: KindInputs + PartialEq + Debug>(entries: &[(&str, &str)], want: I) {
    assert_eq!(I::decode(&map(entries)), Ok(want), "{entries:?}");
}

fn refused<I: KindInputs + Debug>(entries: &[(&str, &str)], field: &str) {
    let e = I::decode(&map(entries)).expect_err(&format!("{entries:?} decoded"));
    assert_eq!((e.kind, e.field.as_str()), (I::KIND, field), "{e}");
    assert!(e.to_string().contains(field), "{e}");
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn member(node_id: &str, server_id: u32) -> replication::Member {
    replication::Member {
        node_id: node_id.into(),
        server_id,
    }
}

fn lb_inputs() -> lb::Inputs {
    lb::Inputs {
        lb: "l1".into(),
        primary: "p1".into(),
        balancing: OxauthBalancing::RoundRobin,
        https_port: 443,
        http_port: 80,
        backends: "10.0.0.1:8443=gluu1;10.0.0.2:8443=gluu2".into(),
    }
}

fn a_schema() -> CustomSchema {
    CustomSchema {
        name: "acme".into(),
        source_file: "acme.schema".into(),
        ..Default::default()
    }
}

fn gluu_online() -> gluu_install::Inputs {
    gluu_install::Inputs {
        primary: "n1".into(),
        force: false,
        components: Some(gluu_install::Components::default()),
        package_name: "gluu-server".into(),
        package_version: "4.5.2".into(),
        ..Default::default()
    }
}

#[test]
fn every_kind_round_trips() {
    round_trip(lb_inputs());
    round_trip(lb::RemoveInputs {});
    round_trip(certs::Inputs {
        order: ids(&["n1", "n2"]),
        primary: "n1".into(),
        lb: String::new(),
    });
    round_trip(schema::Inputs {
        order: ids(&["n1"]),
        name: "acme".into(),
        schema: a_schema(),
    });
    round_trip(backup::Inputs {
        ids: [("n1".to_string(), "b-1".to_string())].into(),
        keep: 5,
    });
    round_trip(backup::RestoreInputs {
        backup_id: "b-1".into(),
        sha256: "ab".repeat(32),
        size: 1234,
    });
    round_trip(gluu_restart::Inputs {
        order: ids(&["n1"]),
        primary: "n1".into(),
        services: ids(&["idp", "oxauth"]),
    });
    round_trip(agent_upgrade::Inputs {
        sha256: "ab".repeat(32),
        version: "4.5".into(),
        online_within_ms: 600_000,
    });
    for password in [None, Some(cache::PasswordChange::Clear)] {
        round_trip(cache::Inputs {
            servers: ids(&["c1", "c2"]),
            clients: ids(&["g1"]),
            primary: "g1".into(),
            password,
        });
    }
    round_trip(gluu_online());
    round_trip(gluu_install::Inputs {
        primary: "n1".into(),
        force: true,
        package_sha256: "cd".repeat(32),
        package_summary: "gluu-server 4.5.2 (deb)".into(),
        ..Default::default()
    });
    round_trip(hosts::Inputs {
        entries: vec![hosts::Entry {
            address: "10.0.0.5".into(),
            names: ids(&["idp.example.org", "lb"]),
        }],
    });
    round_trip(keys::Inputs {
        new_kids: ids(&["k1", "k2"]),
        signing_kids: ids(&["k2"]),
        overlap_ms: 86_400_000,
    });
    round_trip(keys::retirement::Inputs {
        keep_kids: ids(&["k1"]),
        rotation: "0193a1b2-0000-7000-8000-000000000001".into(),
    });
    round_trip(replication::Inputs {
        members: vec![member("n1", 1), member("a:b", 2)],
        leaving: vec![member("n3", 3)],
        primary: "n1".into(),
        remove_server: true,
    });
}

/// Operators read the entries as key=value: strings as themselves, unless they read as JSON.
#[test]
fn entries_stay_readable_and_strings_that_look_like_json_round_trip() {
    let m = lb_inputs().encode();
    assert_eq!(m["primary"], "p1");
    assert_eq!(m["oxauth_balancing"], "round-robin");
    assert_eq!(m["https_port"], "443");
    let m = certs::Inputs {
        order: ids(&["n1", "n2"]),
        ..Default::default()
    }
    .encode();
    assert_eq!(m["order"], r#"["n1","n2"]"#);
    for tricky in ["123", "true", "null", "\"q\"", "[1]", "", "a,b"] {
        let i = keys::retirement::Inputs {
            keep_kids: ids(&[tricky]),
            rotation: tricky.into(),
        };
        round_trip(i);
    }
}

/// Maps as the previous release wrote them (a workflow queued or scheduled before the
/// upgrade) decode into the new inputs.
// Over 100 lines: a case table, one literal map per kind (two where a kind wrote two shapes).
#[test]
fn the_previous_releases_maps_decode() {
    old(
        &[
            ("lb", "l1"),
            ("primary", "p1"),
            ("oxauth_balancing", "round-robin"),
            ("https_port", "443"),
            ("http_port", "80"),
            ("backends", "10.0.0.1:8443=gluu1;10.0.0.2:8443=gluu2"),
        ],
        lb_inputs(),
    );
    old(&[], lb::RemoveInputs {});
    old(
        &[("order", "n1,n2"), ("primary", "n1"), ("lb", "")],
        certs::Inputs {
            order: ids(&["n1", "n2"]),
            primary: "n1".into(),
            lb: String::new(),
        },
    );
    let b64 = {
        use base64::Engine as _;
        use prost::Message as _;
        base64::engine::general_purpose::STANDARD.encode(a_schema().encode_to_vec())
    };
    old(
        &[("order", "n1"), ("name", "acme"), ("schema", &b64)],
        schema::Inputs {
            order: ids(&["n1"]),
            name: "acme".into(),
            schema: a_schema(),
        },
    );
    old(
        &[("id.n1", "b-1"), ("id.n2", "b-2"), ("keep", "5")],
        backup::Inputs {
            ids: [("n1", "b-1"), ("n2", "b-2")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
            keep: 5,
        },
    );
    old(
        &[("backup", "b-1"), ("sha256", "abab"), ("size", "1234")],
        backup::RestoreInputs {
            backup_id: "b-1".into(),
            sha256: "abab".into(),
            size: 1234,
        },
    );
    old(
        &[("order", "n1"), ("primary", "n1"), ("services", "")],
        gluu_restart::Inputs {
            order: ids(&["n1"]),
            primary: "n1".into(),
            services: Vec::new(),
        },
    );
    old(
        &[
            ("sha256", "1234"),
            ("version", "4.5"),
            ("online_within_ms", "600000"),
        ],
        agent_upgrade::Inputs {
            sha256: "1234".into(),
            version: "4.5".into(),
            online_within_ms: 600_000,
        },
    );
    old(
        &[("servers", "c1,c2"), ("clients", "g1"), ("primary", "g1")],
        cache::Inputs {
            servers: ids(&["c1", "c2"]),
            clients: ids(&["g1"]),
            primary: "g1".into(),
            password: None,
        },
    );
    old(
        &[
            ("servers", "c1"),
            ("clients", "g1,g2"),
            ("primary", "g1"),
            ("password", "set"),
        ],
        cache::Inputs {
            servers: ids(&["c1"]),
            clients: ids(&["g1", "g2"]),
            primary: "g1".into(),
            password: Some(cache::PasswordChange::Set),
        },
    );
    let components = gluu_install::Components::default().to_string();
    old(
        &[
            ("primary", "n1"),
            ("force", "false"),
            ("components", &components),
            ("package_name", "gluu-server"),
            ("package_version", "4.5.2"),
        ],
        gluu_online(),
    );
    // Recorded before components could be chosen and versions were pinned.
    old(
        &[
            ("primary", "n1"),
            ("force", "true"),
            ("package_name", "gluu-server"),
        ],
        gluu_install::Inputs {
            primary: "n1".into(),
            force: true,
            package_name: "gluu-server".into(),
            ..Default::default()
        },
    );
    old(
        &[(
            "entries",
            "10.0.0.1=gluu1.example.org;10.0.0.5=idp.example.org lb",
        )],
        hosts::Inputs {
            entries: vec![
                hosts::Entry {
                    address: "10.0.0.1".into(),
                    names: ids(&["gluu1.example.org"]),
                },
                hosts::Entry {
                    address: "10.0.0.5".into(),
                    names: ids(&["idp.example.org", "lb"]),
                },
            ],
        },
    );
    old(
        &[
            ("new_kids", "k1,k2"),
            ("signing_kids", "k2"),
            ("overlap_ms", "86400000"),
        ],
        keys::Inputs {
            new_kids: ids(&["k1", "k2"]),
            signing_kids: ids(&["k2"]),
            overlap_ms: 86_400_000,
        },
    );
    old(
        &[
            ("keep_kids", "k1,k2"),
            ("rotation", "0193a1b2-0000-7000-8000-000000000001"),
        ],
        keys::retirement::Inputs {
            keep_kids: ids(&["k1", "k2"]),
            rotation: "0193a1b2-0000-7000-8000-000000000001".into(),
        },
    );
    old(
        &[
            ("members", "n1:1,a:b:2"),
            ("leaving", ""),
            ("primary", "n1"),
        ],
        replication::Inputs {
            members: vec![member("n1", 1), member("a:b", 2)],
            leaving: Vec::new(),
            primary: "n1".into(),
            remove_server: false,
        },
    );
    old(
        &[
            ("members", "n1:1"),
            ("leaving", "n2:2"),
            ("primary", "n1"),
            ("remove_server", "true"),
        ],
        replication::Inputs {
            members: vec![member("n1", 1)],
            leaving: vec![member("n2", 2)],
            primary: "n1".into(),
            remove_server: true,
        },
    );
}

/// A value of the wrong type is refused with the kind and the field, never read as a default.
#[test]
fn a_bad_value_is_a_typed_error() {
    let lb = [
        ("lb", "l1"),
        ("primary", "p1"),
        ("oxauth_balancing", "sticky"),
        ("https_port", "443"),
        ("http_port", "80"),
    ];
    let with = |k: &str, v: &'static str| -> Vec<(&str, &str)> {
        lb.iter()
            .map(|&(a, b)| if a == k { (a, v) } else { (a, b) })
            .collect()
    };
    refused::<lb::Inputs>(&with("https_port", "x"), "https_port");
    refused::<lb::Inputs>(&with("oxauth_balancing", "fast"), "oxauth_balancing");
    // Ports a record does not name are the previous release's defaults, 443 and 80.
    let ports = lb::Inputs::decode(&map(&lb[..3])).unwrap();
    assert_eq!((ports.https_port, ports.http_port), (443, 80));
    refused::<backup::Inputs>(&[("id.n1", "b"), ("keep", "x")], "keep");
    refused::<backup::RestoreInputs>(&[("backup", "b"), ("sha256", "ab")], "size");
    refused::<schema::Inputs>(&[("order", "n1"), ("schema", "%%")], "schema");
    refused::<agent_upgrade::Inputs>(
        &[
            ("sha256", "a"),
            ("version", "1"),
            ("online_within_ms", "-1"),
        ],
        "online_within_ms",
    );
    refused::<cache::Inputs>(
        &[
            ("servers", "c1"),
            ("clients", ""),
            ("primary", "g"),
            ("password", "maybe"),
        ],
        "password",
    );
    refused::<gluu_install::Inputs>(&[("primary", "n1"), ("components", "bogus")], "components");
    refused::<gluu_install::Inputs>(&[("primary", "n1"), ("force", "yes")], "force");
    refused::<hosts::Inputs>(&[("entries", "[1]")], "entries");
    refused::<keys::Inputs>(
        &[
            ("new_kids", "k1"),
            ("signing_kids", "k1"),
            ("overlap_ms", "soon"),
        ],
        "overlap_ms",
    );
    refused::<keys::retirement::Inputs>(&[("keep_kids", "k1")], "rotation");
    refused::<replication::Inputs>(
        &[
            ("members", "n1:1"),
            ("primary", "n1"),
            ("remove_server", "yes"),
        ],
        "remove_server",
    );
    refused::<replication::Inputs>(
        &[("members", "[{\"node_id\":1}]"), ("primary", "n1")],
        "members",
    );
}
