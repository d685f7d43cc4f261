use super::rename::{check_host_name, rename_files};
use super::*;

#[test]
fn hosts_are_replaced_only_as_whole_names() {
    let r = |t: &str| replace_host(t, "old.example.org", "lb.example.org");
    assert_eq!(
        r("https://old.example.org/oxauth and old.example.org:443, admin@old.example.org")
            .as_deref(),
        Some("https://lb.example.org/oxauth and lb.example.org:443, admin@lb.example.org")
    );
    assert_eq!(r("old.example.org").as_deref(), Some("lb.example.org"));
    assert_eq!(
        r("end old.example.org.").as_deref(),
        Some("end lb.example.org.")
    );
    assert_eq!(
        r("old.example.org_httpd").as_deref(),
        Some("lb.example.org_httpd")
    );
    assert_eq!(
        r("{\"h\":\"old.example.org\"}").as_deref(),
        Some("{\"h\":\"lb.example.org\"}")
    );
    for unchanged in [
        "xold.example.org",
        "www.old.example.org",
        "old.example.org.evil",
        "old.example.org-2",
        "nothing here",
    ] {
        assert_eq!(r(unchanged), None, "{unchanged}");
    }
}

#[test]
fn hosts_file_names_are_renamed_comments_kept() {
    let text = "# old.example.org stays in a comment\n127.0.0.1\tlocalhost\n\
                10.0.0.5   old.example.org old  # old.example.org\nold.example.org x\n";
    assert_eq!(
        rename_in_hosts(text, "old.example.org", "lb.example.org").as_deref(),
        Some(
            "# old.example.org stays in a comment\n127.0.0.1\tlocalhost\n\
             10.0.0.5   lb.example.org old  # old.example.org\nold.example.org x\n"
        )
    );
    assert_eq!(rename_in_hosts("127.0.0.1 localhost\n", "a", "b"), None);
}

#[test]
fn values_are_set_and_equal_ones_change_nothing() {
    let mut v = BTreeMap::new();
    v.insert(
        "keyRegenerationEnabled".to_string(),
        serde_json::json!(false),
    );
    v.insert("accessTokenLifetime".to_string(), serde_json::json!(300));
    let (changed, text) = apply_values(
        r#"{"keyRegenerationEnabled":true,"accessTokenLifetime":300}"#,
        &v,
    )
    .unwrap();
    assert_eq!(changed, ["keyRegenerationEnabled"]);
    let back: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(back["keyRegenerationEnabled"], false);
    let (changed, _) = apply_values(&text, &v).unwrap();
    assert!(changed.is_empty());
    assert!(apply_values("[1]", &v).is_err());
    assert!(apply_values("not json", &v).is_err());
}

#[test]
fn the_revision_moves_only_from_the_value_read() {
    let mods = revision_mods("oxAuthConfDynamic", "{}".into(), Some(7));
    let shown: Vec<String> = mods
        .iter()
        .map(|m| match m {
            Mod::Replace(a, v) => format!("replace {a} {v:?}"),
            Mod::Delete(a, v) => format!("delete {a} {v:?}"),
            Mod::Add(a, v) => format!("add {a} {v:?}"),
            Mod::Increment(a, v) => format!("increment {a} {v}"),
        })
        .collect();
    assert_eq!(
        shown,
        [
            "replace oxAuthConfDynamic {\"{}\"}",
            "delete oxRevision {\"7\"}",
            "add oxRevision {\"8\"}"
        ]
    );
}

#[test]
fn host_names_are_checked() {
    assert!(check_host_name("to", "lb.example.org").is_ok());
    for bad in ["", "-x", ".x", "a b", "a/b", "x.", "é"] {
        assert!(check_host_name("to", bad).is_err(), "{bad}");
    }
}

/// A machine's files are reached by their host path under the container root: the directory's
/// pinned certificate and the files a rename rewrites, never the host's own.
#[test]
fn a_machines_files_are_read_and_rewritten_under_its_container_root() {
    use crate::host::{Host, PackageFormat, PackageMode, Runner};
    use crate::ops::gluu::Flavor;
    use crate::ops::gluu::layout::fixture::install;
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    install(root, Flavor::Machine);
    let h = Host {
        root: root.to_path_buf(),
        packages: PackageMode::System,
        format: Some(PackageFormat::Deb),
        runner: Runner::Real,
        proc: root.join("proc"),
    };
    let layout = Layout::detect(&h).unwrap();
    let c = root.join("opt/gluu-server");
    let e = directory_cert(root, &layout).unwrap_err();
    assert!(e.0.contains("etc/certs"), "{e}");
    let cert = rcgen::generate_simple_self_signed(vec!["ldap.example.org".to_string()]).unwrap();
    std::fs::create_dir_all(c.join("etc/certs")).unwrap();
    std::fs::create_dir_all(root.join("etc/certs")).unwrap();
    std::fs::write(root.join("etc/certs/opendj.crt"), "not this one").unwrap();
    std::fs::write(c.join("etc/certs/openldap.crt"), cert.cert.pem()).unwrap();
    let (der, shown) = directory_cert(root, &layout).unwrap();
    assert_eq!(
        (der.as_ref(), shown.as_str()),
        (cert.cert.der().as_ref(), "/etc/certs/openldap.crt")
    );

    std::fs::write(root.join("etc/hostname"), "old.example.org\n").unwrap();
    std::fs::write(c.join("etc/hostname"), "old.example.org\n").unwrap();
    let changed = rename_files(root, &layout, "old.example.org", "lb.example.org").unwrap();
    assert_eq!(changed, ["/etc/hostname"]);
    assert_eq!(
        std::fs::read_to_string(c.join("etc/hostname")).unwrap(),
        "lb.example.org\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "old.example.org\n",
        "the host's own file is not Gluu's"
    );
}
