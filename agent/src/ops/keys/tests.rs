use super::*;
use crate::host::{Host, PackageFormat, PackageMode, Recorder, Runner};
use crate::ops::gluu::Flavor;
use crate::ops::gluu::layout::fixture::{install, nsenter, start_machine};
use crate::ops::tests::{ctx_with, log};
use std::sync::Arc;

const LEADER: u32 = 4545;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn key(kid: &str) -> OxauthPrivateKey {
    OxauthPrivateKey {
        kid: kid.into(),
        pkcs8_pem: format!("-----BEGIN PRIVATE KEY-----\nSECRET{kid}\n-----END PRIVATE KEY-----\n")
            .into_bytes(),
        certificate_pem: "-----BEGIN CERTIFICATE-----\nC\n-----END CERTIFICATE-----\n".into(),
    }
}

#[test]
fn web_keys_add_keep_and_order() {
    let cur = r#"{"keys":[{"kid":"old_sig","alg":"RS256"},{"kid":"old_enc","alg":"RSA-OAEP"}]}"#;
    let add = s(&[
        r#"{"kid":"new_sig","alg":"RS256"}"#,
        r#"{"kid":"old_sig","alg":"RS256"}"#,
    ]);
    // (case, add, keep, first, kids after)
    type Case<'a> = (&'a str, Vec<String>, Vec<String>, Vec<String>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "publish: appended, old signing key stays first",
            add.clone(),
            vec![],
            vec![],
            vec!["old_sig", "old_enc", "new_sig"],
        ),
        (
            "switch: the new signing key first, the rest in order",
            add.clone(),
            vec![],
            s(&["new_sig"]),
            vec!["new_sig", "old_sig", "old_enc"],
        ),
        (
            "retire: only the kept kids",
            add.clone(),
            s(&["new_sig"]),
            vec![],
            vec!["new_sig"],
        ),
    ];
    for (name, a, k, f, want) in cases {
        let out = apply_web_keys(cur, &a, &k, &f).unwrap();
        assert_eq!(kids_of(&out), want, "{name}");
    }
    let private = s(&[r#"{"kid":"x","d":"secret"}"#]);
    assert!(
        apply_web_keys(cur, &private, &[], &[]).is_err(),
        "private JWK refused"
    );
    assert!(apply_web_keys("nope", &[], &[], &[]).is_err());
}

#[test]
fn json_keystore_merge_keeps_old_keys_until_retired() {
    let cur = BTreeMap::from([("old".to_string(), "PEM".to_string())]);
    let (next, changed) = merge_json(&cur, &[key("new")], &[]).unwrap();
    assert!(changed);
    assert_eq!(next.keys().collect::<Vec<_>>(), ["new", "old"]);
    let (again, changed) = merge_json(&next, &[key("new")], &[]).unwrap();
    assert!(!changed, "adding twice changes nothing");
    let (retired, _) = merge_json(&again, &[], &s(&["new"])).unwrap();
    assert_eq!(retired.keys().collect::<Vec<_>>(), ["new"]);
    let mut bad = key("../x");
    assert!(merge_json(&cur, &[bad.clone()], &[]).is_err());
    bad.kid = "ok".into();
    bad.pkcs8_pem = b"not pem".to_vec();
    assert!(merge_json(&cur, &[bad], &[]).is_err());
}

#[test]
fn jwks_probe_conditions() {
    let cases = [
        (vec!["a", "b"], vec!["b"], false, true),
        (vec!["a"], vec!["b"], false, false),
        (vec!["a", "b"], vec!["b"], true, false),
        (vec!["b"], vec!["b"], true, true),
    ];
    for (served, expect, only, ok) in cases {
        assert_eq!(
            jwks_ok(&s(&served), &s(&expect), only),
            ok,
            "{served:?} {expect:?} {only}"
        );
    }
}

/// A running Gluu machine under a temporary root, with `files` in its /etc/certs; the
/// agent's commands are recorded.
fn gluu_root(
    files: &[(&str, &str)],
) -> (tempfile::TempDir, std::path::PathBuf, Arc<Recorder>, Ctx) {
    gluu_root_of(Flavor::Machine, files)
}

/// A Gluu Server of `flavor` (a machine: running, leader [`LEADER`]) with `files` in its
/// /etc/certs, /proc a fake tree under the root.
fn gluu_root_of(
    flavor: Flavor,
    files: &[(&str, &str)],
) -> (tempfile::TempDir, std::path::PathBuf, Arc<Recorder>, Ctx) {
    let d = tempfile::tempdir().unwrap();
    install(d.path(), flavor);
    let c = d.path().join("opt/gluu-server");
    std::fs::create_dir_all(c.join("etc/certs")).unwrap();
    for (name, content) in files {
        std::fs::write(c.join("etc/certs").join(name), content).unwrap();
    }
    let rec = Arc::new(Recorder::default());
    let host = Host {
        root: d.path().to_path_buf(),
        packages: PackageMode::System,
        format: Some(PackageFormat::Deb),
        runner: Runner::Recording(rec.clone()),
        proc: d.path().join("proc"),
    };
    if flavor == Flavor::Machine {
        start_machine(d.path(), &host.proc, LEADER);
    }
    let ctx = ctx_with(host);
    (d, c, rec, ctx)
}

fn is_system_running() -> Vec<String> {
    nsenter(LEADER, "/bin/systemctl", &["is-system-running"])
}

/// oxAuthConfDynamic as a fixed document; records the directory each read was asked of.
#[derive(Default)]
struct Given {
    dynamic: String,
    asked: std::sync::Mutex<Vec<(String, u32, Vec<u8>)>>,
}

impl DynamicSource for Given {
    async fn oxauth_dynamic(
        &self,
        _ctx: &Ctx,
        req: &UpdateOxauthKeystore,
        _log: &mut Log,
    ) -> Result<String, OpError> {
        self.asked
            .lock()
            .unwrap()
            .push((req.host.clone(), req.port, req.password.clone()));
        Ok(self.dynamic.clone())
    }
}

const STORE_SECRET: &str = "k3yStore-Secr3t";
const DIR_PASSWORD: &str = "dirMgr-pw-9";

fn detect_request(add: Vec<OxauthPrivateKey>, keep: Vec<String>) -> UpdateOxauthKeystore {
    UpdateOxauthKeystore {
        kind: KeystoreKind::Detect as i32,
        add,
        keep_kids: keep,
        keystore_password: Vec::new(),
        host: "127.0.0.11".into(),
        port: 1636,
        password: DIR_PASSWORD.as_bytes().to_vec(),
    }
}

fn given_secret() -> Given {
    Given {
        dynamic: format!(
            r#"{{"webKeysStorage":"keystore","keyStoreFile":"/etc/certs/oxauth-keys.jks","keyStoreSecret":"{STORE_SECRET}"}}"#
        ),
        ..Default::default()
    }
}

#[test]
fn detect_picks_the_keystore_the_node_has() {
    // (case, files in /etc/certs, kind asked, kind used or None for an error)
    let cases: Vec<(&str, Vec<&str>, KeystoreKind, Option<KeystoreKind>)> = vec![
        (
            "real Gluu",
            vec!["oxauth-keys.jks"],
            KeystoreKind::Detect,
            Some(KeystoreKind::Jks),
        ),
        (
            "the stand-in",
            vec!["oxauth-keys.json"],
            KeystoreKind::Detect,
            Some(KeystoreKind::Json),
        ),
        (
            "both: the JKS oxAuth reads",
            vec!["oxauth-keys.json", "oxauth-keys.jks"],
            KeystoreKind::Detect,
            Some(KeystoreKind::Jks),
        ),
        ("none", vec![], KeystoreKind::Detect, None),
        (
            "explicit JSON",
            vec!["oxauth-keys.jks"],
            KeystoreKind::Json,
            Some(KeystoreKind::Json),
        ),
        (
            "explicit JKS",
            vec![],
            KeystoreKind::Jks,
            Some(KeystoreKind::Jks),
        ),
        (
            "unspecified",
            vec!["oxauth-keys.jks"],
            KeystoreKind::Unspecified,
            None,
        ),
    ];
    for (name, files, kind, want) in cases {
        let files: Vec<(&str, &str)> = files.iter().map(|f| (*f, "")).collect();
        let (_d, _c, _rec, ctx) = gluu_root(&files);
        let layout = Layout::detect(&ctx.host).unwrap();
        let got = resolve_kind(&ctx, &layout, kind);
        match want {
            Some(k) => assert_eq!(got.unwrap(), k, "{name}"),
            None => assert!(got.is_err(), "{name}: {got:?}"),
        }
    }
}

#[test]
fn key_store_secret_is_read_from_oxauth_conf_dynamic() {
    let ok = keystore_secret(r#"{"webKeysStorage":"keystore","keyStoreSecret":"abc-123"}"#);
    assert_eq!(ok.unwrap(), "abc-123");
    for bad in [
        r#"{"webKeysStorage":"keystore"}"#,
        r#"{"keyStoreSecret":""}"#,
        r#"{"keyStoreSecret":null}"#,
        r#"{"keyStoreSecret":42}"#,
        r#"{"keyStoreSecret":"abc-123""#,
    ] {
        let e = keystore_secret(bad).unwrap_err();
        assert!(!e.0.contains("abc-123"), "{bad}: {e:?}");
    }
}

#[tokio::test]
async fn detect_on_real_gluu_updates_the_jks_with_key_store_secret() {
    let (_d, _c, rec, ctx) = gluu_root(&[("oxauth-keys.jks", "")]);
    rec.answer(0, "running\n");
    rec.answer(
        0,
        "Keystore type: JKS\n\nold_rs256, Nov 1, 2026, PrivateKeyEntry,\n",
    );
    let source = given_secret();
    let (mut l, mut rx) = log();
    let out = update_keystore_with(
        &ctx,
        detect_request(vec![key("new_rs256")], Vec::new()),
        &source,
        &mut l,
    )
    .await
    .unwrap();
    assert_eq!(out.kids, ["old_rs256", "new_rs256"]);
    assert!(out.changed);
    // The directory read is the node's own, as the directory manager.
    assert_eq!(
        *source.asked.lock().unwrap(),
        [(
            "127.0.0.11".to_string(),
            1636,
            DIR_PASSWORD.as_bytes().to_vec()
        )]
    );
    let argvs = rec.argvs();
    assert_eq!(argvs.len(), 4, "{argvs:?}");
    assert_eq!(argvs[0], is_system_running());
    assert_eq!(
        argvs[1],
        list_argv(&Layout::detect(&ctx.host).unwrap()).unwrap()
    );
    assert_eq!(argvs[1][..8], nsenter(LEADER, KEYTOOL, &[]));
    assert_eq!(argvs[2][..9], nsenter(LEADER, OPENSSL, &["pkcs12"]));
    assert!(argvs[3].contains(&"-importkeystore".to_string()));
    let calls = rec.calls.lock().unwrap();
    for call in calls.iter() {
        assert!(
            !call
                .argv
                .iter()
                .any(|a| a.contains(STORE_SECRET) || a.contains(DIR_PASSWORD)),
            "{:?}",
            call.argv
        );
    }
    // keytool gets keyStoreSecret in its environment, openssl on stdin.
    for i in [1, 3] {
        assert!(
            calls[i]
                .env
                .iter()
                .any(|(k, v)| k == PASS_ENV && v == STORE_SECRET),
            "{:?}",
            calls[i].argv
        );
    }
    let stdin = calls[2].stdin.as_ref().unwrap().expose().clone();
    assert_eq!(stdin, format!("{STORE_SECRET}\n").into_bytes());
    drop(calls);
    // Both secrets are masked in every later line of the job's log.
    l.line(format!("echo {STORE_SECRET} {DIR_PASSWORD}"));
    drop(l);
    let mut lines = Vec::new();
    while let Ok((_, line)) = rx.try_recv() {
        assert!(
            !line.contains(STORE_SECRET)
                && !line.contains(DIR_PASSWORD)
                && !line.contains("SECRET"),
            "{line}"
        );
        lines.push(line);
    }
    assert!(lines.iter().any(|x| x.contains("JKS")), "{lines:?}");
    assert_eq!(lines.last().map(String::as_str), Some("echo *** ***"));
}

#[tokio::test]
async fn detect_on_the_standin_updates_the_json_without_the_directory() {
    let (_d, c, rec, ctx) = gluu_root(&[("oxauth-keys.json", r#"{"old": "PEM"}"#)]);
    let source = given_secret();
    let (mut l, _rx) = log();
    let out = update_keystore_with(
        &ctx,
        detect_request(vec![key("new_rs256")], Vec::new()),
        &source,
        &mut l,
    )
    .await
    .unwrap();
    assert_eq!(out.kids, ["new_rs256", "old"]);
    assert!(rec.argvs().is_empty(), "no keytool for JSON");
    assert!(source.asked.lock().unwrap().is_empty(), "no directory read");
    let file: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(c.join("etc/certs/oxauth-keys.json")).unwrap())
            .unwrap();
    assert_eq!(file.keys().collect::<Vec<_>>(), ["new_rs256", "old"]);
    // Without any keystore the node refuses, naming both files.
    let (_d, _c, _rec, ctx) = gluu_root(&[]);
    let e = update_keystore_with(&ctx, detect_request(vec![], s(&["x"])), &source, &mut l)
        .await
        .unwrap_err();
    assert!(
        e.0.contains("oxauth-keys.jks") && e.0.contains("oxauth-keys.json"),
        "{e:?}"
    );
}

#[tokio::test]
async fn jks_without_key_store_secret_fails_before_keytool() {
    let (_d, _c, rec, ctx) = gluu_root(&[("oxauth-keys.jks", "")]);
    let source = Given {
        dynamic: r#"{"webKeysStorage":"keystore","keyStoreSecret":""}"#.into(),
        ..Default::default()
    };
    let (mut l, _rx) = log();
    let e = update_keystore_with(
        &ctx,
        detect_request(vec![key("n")], vec![]),
        &source,
        &mut l,
    )
    .await
    .unwrap_err();
    assert!(e.0.contains("keyStoreSecret"), "{e:?}");
    assert!(rec.argvs().is_empty());
}

#[test]
fn web_keys_leave_keystore_mode_and_its_secret_alone() {
    let cur = r#"{"keyRegenerationEnabled":true,"webKeysStorage":"keystore","keyStoreSecret":"abc-123","keyStoreFile":"/etc/certs/oxauth-keys.jks"}"#;
    let next: serde_json::Value = serde_json::from_str(&web_keys_dynamic(cur).unwrap()).unwrap();
    assert_eq!(next["keyRegenerationEnabled"], false);
    assert_eq!(next["webKeysStorage"], "keystore");
    assert_eq!(next["keyStoreSecret"], "abc-123");
    assert_eq!(next["keyStoreFile"], "/etc/certs/oxauth-keys.jks");
    let other: serde_json::Value =
        serde_json::from_str(&web_keys_dynamic(r#"{"webKeysStorage":"ldap"}"#).unwrap()).unwrap();
    assert_eq!(other["webKeysStorage"], "ldap");
    assert!(other.get("keyStoreSecret").is_none());
}

/// The JKS update's exact argv after the machine check, each program run through `inside`.
fn jks_argvs(inside: &dyn Fn(&str, &[&str]) -> Vec<String>) -> Vec<Vec<String>> {
    vec![
        inside(
            KEYTOOL,
            &[
                "-list",
                "-keystore",
                JKS_KEYSTORE,
                "-storepass:env",
                PASS_ENV,
            ],
        ),
        inside(
            OPENSSL,
            &[
                "pkcs12",
                "-export",
                "-inkey",
                "/etc/certs/.rotation-new_rs256.key",
                "-in",
                "/etc/certs/.rotation-new_rs256.crt",
                "-name",
                "new_rs256",
                "-out",
                "/etc/certs/.rotation-new_rs256.p12",
                "-passout",
                "stdin",
            ],
        ),
        inside(
            KEYTOOL,
            &[
                "-importkeystore",
                "-srckeystore",
                "/etc/certs/.rotation-new_rs256.p12",
                "-srcstoretype",
                "PKCS12",
                "-srcstorepass:env",
                PASS_ENV,
                "-srcalias",
                "new_rs256",
                "-destkeystore",
                JKS_KEYSTORE,
                "-deststoretype",
                "JKS",
                "-deststorepass:env",
                PASS_ENV,
                "-destalias",
                "new_rs256",
                "-noprompt",
            ],
        ),
        inside(
            KEYTOOL,
            &[
                "-delete",
                "-alias",
                "old_rs256",
                "-keystore",
                JKS_KEYSTORE,
                "-storepass:env",
                PASS_ENV,
            ],
        ),
    ]
}

/// Rotates on a node of `flavor`: adds new_rs256, retires old_rs256; returns the argv run.
async fn rotate_jks(flavor: Flavor) -> (Vec<Vec<String>>, std::path::PathBuf) {
    let (d, c, rec, ctx) = gluu_root_of(flavor, &[]);
    if flavor == Flavor::Machine {
        rec.answer(0, "running\n");
    }
    // keytool -list answers with the old key.
    rec.answer(0, "Keystore type: JKS\n\nold_rs256, Nov 1, 2026, PrivateKeyEntry,\nCertificate fingerprint (SHA-256): AA\n");
    let (mut l, mut rx) = log();
    let out = update_keystore(
        &ctx,
        UpdateOxauthKeystore {
            kind: KeystoreKind::Jks as i32,
            add: vec![key("new_rs256")],
            keep_kids: s(&["new_rs256"]),
            keystore_password: b"s3cret!pw".to_vec(),
            ..Default::default()
        },
        &mut l,
    )
    .await
    .unwrap();
    assert_eq!(out.kids, ["new_rs256"]);
    let calls = rec.calls.lock().unwrap();
    assert!(
        calls
            .iter()
            .all(|c| !c.argv.iter().any(|a| a.contains("s3cret")))
    );
    // keytool gets the password in its environment (through nsenter or chroot), openssl on
    // stdin.
    let n = calls.len();
    assert!(
        calls[n - 2]
            .env
            .iter()
            .any(|(k, v)| k == PASS_ENV && v == "s3cret!pw")
    );
    assert_eq!(
        calls[n - 3].stdin.as_ref().unwrap().expose(),
        b"s3cret!pw\n"
    );
    drop(calls);
    // The temporary key files are gone.
    let left: Vec<_> = std::fs::read_dir(c.join("etc/certs")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    drop(l);
    while let Ok((_, line)) = rx.try_recv() {
        assert!(
            !line.contains("SECRET") && !line.contains("s3cret"),
            "{line}"
        );
    }
    drop(d);
    (rec.argvs(), c)
}

#[tokio::test]
async fn a_machine_rotates_with_its_own_openssl_and_keytool_the_password_off_argv() {
    let (argvs, _) = rotate_jks(Flavor::Machine).await;
    let mut want = vec![is_system_running()];
    want.extend(jks_argvs(&|p, a| nsenter(LEADER, p, a)));
    assert_eq!(argvs, want);
}

#[tokio::test]
async fn the_initd_chroot_rotates_through_chroot() {
    let (argvs, c) = rotate_jks(Flavor::InitdChroot).await;
    let base = c.display().to_string();
    let want = jks_argvs(&|p, a| {
        let mut v = s(&["chroot", &base, p]);
        v.extend(a.iter().map(|x| x.to_string()));
        v
    });
    assert_eq!(argvs, want);
}

#[tokio::test]
async fn a_stopped_machine_is_started_before_the_rotation() {
    let (d, _c, rec, ctx) = gluu_root_of(Flavor::Machine, &[("oxauth-keys.jks", "")]);
    std::fs::remove_dir_all(d.path().join("proc")).unwrap();
    let (root, proc) = (d.path().to_path_buf(), ctx.host.proc.clone());
    rec.on(
        |argv| argv.last().is_some_and(|a| a == "start"),
        move || start_machine(&root, &proc, LEADER),
    );
    let (mut l, _rx) = log();
    update_keystore(
        &ctx,
        UpdateOxauthKeystore {
            kind: KeystoreKind::Jks as i32,
            keep_kids: s(&["new_rs256"]),
            keystore_password: b"pw-123456".to_vec(),
            ..Default::default()
        },
        &mut l,
    )
    .await
    .unwrap();
    let serverd = d.path().join("sbin/gluu-serverd").display().to_string();
    assert_eq!(
        rec.argvs(),
        [
            s(&[&serverd, "enable"]),
            s(&[&serverd, "start"]),
            is_system_running(),
            nsenter(
                LEADER,
                KEYTOOL,
                &[
                    "-list",
                    "-keystore",
                    JKS_KEYSTORE,
                    "-storepass:env",
                    PASS_ENV
                ]
            ),
        ]
    );
}
