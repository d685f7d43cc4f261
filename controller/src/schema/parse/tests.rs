use super::*;

const ACME_SCHEMA: &str = "\
# Acme's additions
objectidentifier acmeOID 1.3.6.1.4.1.99999
objectidentifier acmeAttr acmeOID:1

attributetype ( acmeAttr:1 NAME ( 'acmeBadge' 'badge' )
\tDESC 'Badge number, with a quote: \\27'
\tEQUALITY caseIgnoreMatch
\tSUBSTR caseIgnoreSubstringsMatch
\tSYNTAX 1.3.6.1.4.1.1466.115.121.1.15{64}
\tSINGLE-VALUE )

# a comment between definitions
attributetype ( acmeAttr:2 NAME 'acmeNickname' SUP name )
attributetype ( acmeAttr:3 NAME 'acmeCounter' SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 NO-USER-MODIFICATION USAGE directoryOperation )

objectclass ( acmeOID:2.1 NAME 'acmePerson' SUP top AUXILIARY
    MAY ( acmeBadge $ acmeNickname $ 1.3.6.1.4.1.99999.1.3 )
    X-ORIGIN 'Acme' )
";

#[test]
fn an_openldap_schema_file_with_macros_and_continuations() {
    let e = parse("acme.schema", ACME_SCHEMA.as_bytes()).unwrap();
    assert_eq!(e.len(), 4);
    assert_eq!(e[0].kind(), SchemaElementKind::AttributeType);
    assert_eq!(e[0].oid, "1.3.6.1.4.1.99999.1.1");
    assert_eq!(e[0].names, vec!["acmeBadge", "badge"]);
    assert_eq!(e[0].syntax, "1.3.6.1.4.1.1466.115.121.1.15");
    assert!(e[0].single_value && e[0].user_modifiable);
    assert_eq!(
        e[0].description,
        "( 1.3.6.1.4.1.99999.1.1 NAME ( 'acmeBadge' 'badge' ) DESC 'Badge number, with a quote: \\27' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{64} SINGLE-VALUE )"
    );
    // SUP name: the syntax of name.
    assert_eq!(e[1].syntax, "1.3.6.1.4.1.1466.115.121.1.15");
    assert!(!e[2].user_modifiable);
    assert_eq!(e[3].kind(), SchemaElementKind::ObjectClass);
    assert_eq!(e[3].oid, "1.3.6.1.4.1.99999.2.1");
    assert!(
        e[3].description
            .contains("MAY ( acmeBadge $ acmeNickname $ 1.3.6.1.4.1.99999.1.3 ) X-ORIGIN 'Acme' )"),
        "{}",
        e[3].description
    );
    assert!(!e[3].user_modifiable);
}

#[test]
fn opendj_and_cn_config_ldif() {
    let dj = "dn: cn=schema\nobjectClass: top\nobjectClass: ldapSubentry\nobjectClass: subschema\n\
attributeTypes: ( 1.3.6.1.4.1.99999.1.1 NAME 'acmeBadge'\n  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )\n\
objectClasses: ( 1.3.6.1.4.1.99999.2.1 NAME 'acmePerson' SUP top AUXILIARY MAY acmeBadge )\n";
    let e = parse("99-acme.ldif", dj.as_bytes()).unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(
        e[0].description,
        "( 1.3.6.1.4.1.99999.1.1 NAME 'acmeBadge' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )"
    );
    let cfg = "dn: cn=acme,cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: acme\n\
olcObjectIdentifier: {0}acmeOID 1.3.6.1.4.1.99999\n\
olcAttributeTypes: {0}( acmeOID:1.1 NAME 'acmeBadge' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )\n\
olcObjectClasses:: ezB9KCAxLjMuNi4xLjQuMS45OTk5OS4yLjEgTkFNRSAnYWNtZVBlcnNvbicgQVVYSUxJQVJZIE1BWSBhY21lQmFkZ2UgKQ==\n";
    let e = parse("acme.LDIF", cfg.as_bytes()).unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].oid, "1.3.6.1.4.1.99999.1.1");
    assert_eq!(e[1].names, vec!["acmePerson"]);
}

fn err(name: &str, text: &str) -> String {
    parse(name, text.as_bytes()).unwrap_err().to_string()
}

#[test]
fn broken_files_are_refused_with_the_line() {
    let cases: &[(&str, &str, &str)] = &[
        ("a.txt", "x", "neither a .schema nor an .ldif"),
        ("a.schema", "# nothing\n", "defines no attribute type"),
        (
            "a.schema",
            "attributetype ( 1.2.3 NAME 'a' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15\n",
            "line 1: the attribute type 1.2.3 is not closed",
        ),
        (
            "a.schema",
            "\n\nattributetype ( 1.2.3 NAME 'a )\n",
            "line 3: a quoted string is not closed",
        ),
        (
            "a.schema",
            "attributetype ( 1.2.3 NAME 'a' )\n",
            "has neither SYNTAX nor SUP",
        ),
        (
            "a.schema",
            "attributetype ( 1.2.3 NAME 'a' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 MUST x )\n",
            "\"MUST\" is not a keyword of an attribute type",
        ),
        (
            "a.schema",
            "attributetype ( fooOID:1 NAME 'a' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )\n",
            "not a numeric OID",
        ),
        (
            "a.schema",
            "attributetype ( 1.2.3 NAME '1bad' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )\n",
            "not a valid name",
        ),
        (
            "a.schema",
            "attributetype ( 1.2.3 NAME 'a' NAME 'b' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )\n",
            "NAME appears twice",
        ),
        (
            "a.schema",
            "attributetype ( 1.2.3 NAME 'a' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )\nattributetype ( 1.2.3 NAME 'b' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )\n",
            "the OID 1.2.3 is defined twice",
        ),
        (
            "a.schema",
            "attributetype ( 1.2.3 NAME 'a' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )\nattributetype ( 1.2.4 NAME 'A' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )\n",
            "the name A is defined twice",
        ),
        (
            "a.schema",
            "objectclass ( 1.2.5 NAME 'c' STRUCTURAL AUXILIARY )\n",
            "more than one of ABSTRACT",
        ),
        (
            "a.schema",
            "objectclass ( 1.2.5 NAME 'c' MAY ( a b ) )\n",
            "lists names separated by $",
        ),
        (
            "a.schema",
            "include /etc/passwd\n",
            "not a schema statement",
        ),
        (
            "a.schema",
            "attributetype ( 1.2.3 NAME 'a' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 ) junk\n",
            "after the closing",
        ),
        (
            "a.ldif",
            "dn: cn=schema\nuserPassword: x\n",
            "line 2: userpassword: not supported",
        ),
        (
            "a.ldif",
            "dn: cn=schema\nattributeTypes:: !!!\n",
            "bad base64",
        ),
        ("a.ldif", " folded first\n", "line 1: a folded line"),
    ];
    for (name, text, want) in cases {
        let e = err(name, text);
        assert!(e.contains(want), "{name} {text:?}: {e} (wanted {want:?})");
    }
    assert_eq!(
        parse("a.schema", &[0xff, 0xfe]).unwrap_err(),
        ParseError::NotText
    );
    let big = "#".repeat(MAX_BYTES + 1);
    assert_eq!(
        parse("a.schema", big.as_bytes()).unwrap_err(),
        ParseError::TooLarge
    );
}
