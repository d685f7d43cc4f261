//! Validation of an operator-given certificate, table-driven.

use super::*;
use clustermgr_shared::pki::{Ca, Usage};

const LB: &str = "lb.example.org";
const DAY: Duration = Duration::from_secs(86_400);

struct Issued {
    ca_pem: String,
    crt: String,
    key: String,
}

fn issue(sans: &[&str]) -> Issued {
    let ca = Ca::generate("test web CA", 10 * DAY).unwrap();
    let (crt, key) = ca
        .issue_with_new_key(
            sans.first().copied().unwrap_or("x"),
            &sans.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            Usage::Server,
            5 * DAY,
        )
        .unwrap();
    Issued {
        ca_pem: ca.cert_pem().to_string(),
        crt,
        key: key.expose().clone(),
    }
}

#[test]
fn each_problem_is_refused_with_its_own_error() {
    let good = issue(&[LB]);
    let other = issue(&[LB]);
    let wrong_host = issue(&["other.example.org"]);
    let wildcard = issue(&["*.example.org"]);
    let now = now_unix();
    type Check = fn(&Result<Validated, CertError>) -> bool;
    let cases: Vec<(&str, &str, &str, &str, u64, Check)> = vec![
        ("good", &good.crt, &good.key, &good.ca_pem, now, |r| {
            r.is_ok()
        }),
        (
            "wildcard",
            &wildcard.crt,
            &wildcard.key,
            &wildcard.ca_pem,
            now,
            |r| r.is_ok(),
        ),
        (
            "mismatched key",
            &good.crt,
            &other.key,
            &good.ca_pem,
            now,
            |r| matches!(r, Err(CertError::KeyMismatch)),
        ),
        (
            "wrong host",
            &wrong_host.crt,
            &wrong_host.key,
            &wrong_host.ca_pem,
            now,
            |r| matches!(r, Err(CertError::WrongHost { .. })),
        ),
        (
            "expired",
            &good.crt,
            &good.key,
            &good.ca_pem,
            now + 30 * 86_400,
            |r| matches!(r, Err(CertError::Expired(_))),
        ),
        (
            "not yet valid",
            &good.crt,
            &good.key,
            &good.ca_pem,
            now - 30 * 86_400,
            |r| matches!(r, Err(CertError::NotYetValid(_))),
        ),
        (
            "chain of another CA",
            &good.crt,
            &good.key,
            &other.ca_pem,
            now,
            |r| matches!(r, Err(CertError::Chain(_))),
        ),
        ("no chain", &good.crt, &good.key, "", now, |r| {
            matches!(r, Err(CertError::Chain(_)))
        }),
        ("not PEM", "hello", &good.key, "", now, |r| {
            matches!(r, Err(CertError::NotPem("certificate", _)))
        }),
        ("key not PEM", &good.crt, "hello", &good.ca_pem, now, |r| {
            matches!(r, Err(CertError::NotPem("key", _)))
        }),
    ];
    for (name, crt, key, chain, at, ok) in cases {
        let r = validate(crt, key.as_bytes(), chain, LB, at);
        assert!(ok(&r), "{name}: {:?}", r.as_ref().map(|v| &v.facts));
        if let Err(e) = &r {
            // No error carries key material.
            let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
            assert!(
                !e.to_string().contains(&body[..20.min(body.len())]),
                "{name}: {e}"
            );
        }
    }
}

#[test]
fn the_nodes_get_the_certificate_then_its_chain() {
    let good = issue(&[LB, "127.0.0.1"]);
    let v = validate(&good.crt, good.key.as_bytes(), &good.ca_pem, LB, now_unix()).unwrap();
    let parts = clustermgr_shared::tls::certs_from_pem(&v.full_chain_pem).unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(
        facts(parts[0].as_ref()).unwrap().sans,
        vec![LB, "127.0.0.1"]
    );
    assert!(v.facts.issuer.contains("test web CA"));
    assert_eq!(v.facts.fingerprint.len(), 32 * 3 - 1);
}

#[test]
fn wildcards_cover_one_label() {
    assert!(name_matches("*.example.org", "lb.example.org"));
    assert!(!name_matches("*.example.org", "a.lb.example.org"));
    assert!(!name_matches("*.example.org", "example.org"));
    assert!(name_matches("LB.example.org", "lb.EXAMPLE.org"));
}
