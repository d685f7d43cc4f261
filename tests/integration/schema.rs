//! Custom schema end to end: the stand-in installed on 2 of 3 nodes and replicated (real slapd
//! syncrepl over LDAPS), then `schema add` with real files: a broken one refused by the
//! controller, one the directories refuse (checked by every node's slaptest, no node changed),
//! then a good .schema and an OpenDJ-style .ldif, after which an entry using the new attribute
//! types is written on one node and read on the other. The third node, installed and joined to
//! replication afterwards, gets the schema before it replicates and receives the entry.

use super::gluu_cluster::{Cluster, HTTPS_PORT, Node, assert_no_secret};
use super::replication::ldap;
use clustermgr_tests::{eventually, text};
use std::path::PathBuf;
use std::time::Duration;

const ACME: &str = "\
# Acme's attributes for Gluu people.
objectidentifier acmeOID 1.3.6.1.4.1.99999
objectidentifier acmeAttr acmeOID:1

attributetype ( acmeAttr:1 NAME 'acmeBadge'
\tDESC 'Badge number'
\tEQUALITY caseIgnoreMatch
\tSYNTAX 1.3.6.1.4.1.1466.115.121.1.15
\tSINGLE-VALUE )
attributetype ( acmeAttr:2 NAME 'acmeFloor' EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 )

objectclass ( acmeOID:2.1 NAME 'acmePerson' SUP top AUXILIARY
    MAY ( acmeBadge $ acmeFloor ) )
";

/// OpenDJ's form, as Gluu's own schema files are written.
const ACME_LDIF: &str = "\
dn: cn=schema
objectClass: top
objectClass: ldapSubentry
objectClass: subschema
attributeTypes: ( 1.3.6.1.4.1.99999.1.10 NAME 'acmeLocker'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 X-ORIGIN 'Acme' )
";

fn slapd_conf(node: &Node) -> String {
    std::fs::read_to_string(
        node.agent
            .root
            .join("opt/gluu-server/opt/openldap/etc/slapd.conf"),
    )
    .unwrap()
}

fn schema_dir(node: &Node) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(
        node.agent
            .root
            .join("opt/gluu-server/opt/openldap/etc/schema"),
    )
    .unwrap()
    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
    .collect();
    v.sort();
    v
}

fn file(c: &Cluster, name: &str, content: &str) -> PathBuf {
    let p = c.files.path().join(name);
    std::fs::write(&p, content).unwrap();
    p
}

#[test]
fn schema_is_validated_checked_everywhere_then_installed_and_usable_on_every_node() {
    let c = Cluster::new(3, HTTPS_PORT);
    let ctl = &c.ctl;
    let out = ctl.cli(&["gluu", "install", "gluu2.cluster.test"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = ctl.cli(&[
        "replication",
        "deploy",
        "gluu1.cluster.test",
        "gluu2.cluster.test",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let installed = &c.nodes[..2];
    let before: Vec<(String, Vec<String>)> = installed
        .iter()
        .map(|n| (slapd_conf(n), schema_dir(n)))
        .collect();
    let unchanged = |what: &str| {
        for (n, b) in installed.iter().zip(&before) {
            assert_eq!(
                (slapd_conf(n), schema_dir(n)),
                *b,
                "{what}: {} changed",
                n.agent.hostname
            );
        }
    };

    // A file the controller cannot read: refused at once (exit 2), with the line.
    let broken = file(
        &c,
        "broken.schema",
        "attributetype ( 1.3.6.1.4.1.99999.1.1 NAME 'acmeBadge'\n  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15\n\nobjectclass ( 1.3.6.1.4.1.99999.2.1 NAME 'x' MUST ( a b ) )\n",
    );
    let out = ctl.cli(&["schema", "add", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("broken.schema: line 1:") && err.contains("not closed"),
        "{err}"
    );
    assert!(c.workflows_of("schema-add").is_empty());
    let wrong = file(&c, "notes.txt", "attributetype ( 1.2 )");
    let out = ctl.cli(&["schema", "add", wrong.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("neither a .schema nor an .ldif"));

    // Well formed, but its SUP does not exist: every node's slaptest refuses it, no node changes.
    let unknown = file(
        &c,
        "unknown-sup.schema",
        "attributetype ( 1.3.6.1.4.1.99999.1.5 NAME 'acmeAlias' SUP noSuchAttribute )\n",
    );
    let out = ctl.cli(&["schema", "add", unknown.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let wf = &c.workflows_of("schema-add")[0];
    let wf = c.workflow(wf["id"].as_str().unwrap());
    assert_eq!(wf["nodes"].as_array().unwrap().len(), 2, "{wf}");
    for n in installed {
        let host = &n.agent.hostname;
        assert_eq!(
            Cluster::step(&wf, host, "check")["status"],
            "failed",
            "{wf}"
        );
        assert_ne!(Cluster::step(&wf, host, "install")["status"], "succeeded");
    }
    unchanged("a schema the directory refuses");

    // The plan changes nothing.
    let good = file(&c, "acme.schema", ACME);
    let dry = ctl.cli(&[
        "--output",
        "json",
        "schema",
        "add",
        good.to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let plan = text(&dry.stdout);
    assert!(
        plan.contains("slaptest") && plan.contains("acmeBadge"),
        "{plan}"
    );
    assert_no_secret("the schema plan", &plan);
    unchanged("a dry run");

    // The good file: exit 0, on every node, listed.
    let out = ctl.cli(&["schema", "add", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("2 attribute type(s), 1 object class(es)"),
        "{}",
        text(&out.stderr)
    );
    for n in installed {
        let conf = slapd_conf(n);
        let include = conf
            .lines()
            .position(|l| l.ends_with("/schema/clustermgr-acme.schema"))
            .unwrap_or_else(|| panic!("{conf}"));
        let gluu = conf
            .lines()
            .position(|l| l.ends_with("/schema/gluu.schema"))
            .unwrap();
        assert_eq!(include, gluu + 1, "{conf}");
        assert!(schema_dir(n).contains(&"clustermgr-acme.schema".to_string()));
        let sub = ldap(
            "ldapsearch",
            n,
            &[
                "-LLL",
                "-b",
                "cn=Subschema",
                "-s",
                "base",
                "(objectClass=*)",
                "attributeTypes",
            ],
            None,
        )
        .unwrap();
        assert!(sub.contains("NAME 'acmeBadge'"), "{sub}");
    }
    let wf = &c.workflows_of("schema-add")[0];
    let wf = c.workflow(wf["id"].as_str().unwrap());
    assert_eq!(wf["status"], "succeeded", "{wf}");
    let listed = ctl.json(&["schema", "list"]);
    let schemas = listed["schemas"].as_array().unwrap();
    assert_eq!(schemas.len(), 1, "{listed}");
    assert_eq!(schemas[0]["schema"]["name"], "acme");
    assert_eq!(
        schemas[0]["schema"]["elements"].as_array().unwrap().len(),
        3
    );

    // Usable: a person written on one node with the new class and attributes, read on the other.
    let [a, b, d] = [&c.nodes[0], &c.nodes[1], &c.nodes[2]];
    ldap(
        "ldapadd",
        b,
        &[],
        Some(
            "dn: uid=badge-1,ou=people,o=gluu\nobjectClass: top\nobjectClass: inetOrgPerson\nobjectClass: acmePerson\nuid: badge-1\ncn: badge-1\nsn: test\nacmeBadge: B-1234\nacmeFloor: 7\n",
        ),
    )
    .unwrap();
    for n in [a, b] {
        eventually(Duration::from_secs(30), "the badge replicated", || {
            let o = ldap(
                "ldapsearch",
                n,
                &["-LLL", "-b", "o=gluu", "(acmeBadge=b-1234)", "acmeFloor"],
                None,
            )?;
            if o.contains("acmeFloor: 7") {
                Ok(())
            } else {
                Err(o)
            }
        });
    }

    // The same file again changes nothing on the nodes (no restart), an OpenDJ-style LDIF adds
    // to it under its own name.
    let confs: Vec<String> = installed.iter().map(slapd_conf).collect();
    let out = ctl.cli(&["schema", "add", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(confs, installed.iter().map(slapd_conf).collect::<Vec<_>>());
    let again = c.workflow(c.workflows_of("schema-add")[0]["id"].as_str().unwrap());
    for n in installed {
        let step = Cluster::step(&again, &n.agent.hostname, "install");
        let job = ctl.json(&["job", "show", step["job_id"].as_str().unwrap()]);
        assert_eq!(job["output"]["changed"], false, "{job}");
        assert_eq!(job["output"]["restarted"], false, "{job}");
    }
    let ldif = file(&c, "99-acme-extra.ldif", ACME_LDIF);
    let out = ctl.cli(&[
        "schema",
        "add",
        ldif.to_str().unwrap(),
        "--name",
        "acme-extra",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    ldap(
        "ldapmodify",
        a,
        &[],
        Some("dn: uid=badge-1,ou=people,o=gluu\nchangetype: modify\nadd: objectClass\nobjectClass: extensibleObject\n-\nadd: acmeLocker\nacmeLocker: L-9\n"),
    )
    .unwrap();
    eventually(Duration::from_secs(30), "the locker replicated", || {
        let o = ldap(
            "ldapsearch",
            a,
            &["-LLL", "-b", "o=gluu", "(acmeLocker=L-9)", "uid"],
            None,
        )?;
        if o.contains("uid: badge-1") {
            Ok(())
        } else {
            Err(o)
        }
    });
    assert_eq!(
        ctl.json(&["schema", "list"])["schemas"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // The third node joins: installed, then replicated; its directory gets both schemas before
    // it replicates, and the entries using them arrive.
    let out = ctl.cli(&["gluu", "install", "gluu3.cluster.test"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!slapd_conf(d).contains("clustermgr-acme"));
    let out = ctl.cli(&["replication", "deploy", "gluu3.cluster.test"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let conf = slapd_conf(d);
    assert!(
        conf.contains("clustermgr-acme.schema") && conf.contains("clustermgr-acme-extra.schema"),
        "{conf}"
    );
    eventually(
        Duration::from_secs(30),
        "the entry reached the new node",
        || {
            let o = ldap(
                "ldapsearch",
                d,
                &[
                    "-LLL",
                    "-b",
                    "o=gluu",
                    "(acmeBadge=b-1234)",
                    "acmeFloor",
                    "acmeLocker",
                ],
                None,
            )?;
            if o.contains("acmeFloor: 7") && o.contains("acmeLocker: L-9") {
                Ok(())
            } else {
                Err(o)
            }
        },
    );

    // An element another schema already defines is refused before any node.
    let clash = file(
        &c,
        "clash.schema",
        "attributetype ( 1.3.6.1.4.1.99999.1.77 NAME 'acmeBadge' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )\n",
    );
    let out = ctl.cli(&["schema", "add", clash.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("already defined by schema \"acme\""));

    // Audited; the directory manager's password is in no log, job or audit row.
    let audit = ctl.cli_ok(&["--output", "json", "audit", "--limit", "1000"]);
    assert!(
        audit.contains("schema.add") && audit.contains("schema=acme"),
        "{audit}"
    );
    let hay = c.everything_said("schema-add");
    assert_no_secret("logs, jobs, workflows and the audit log", &hay);
}
