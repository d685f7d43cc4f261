//! `job run` and roles: kinds that read secrets or skip a workflow's checks need role admin;
//! an operator is refused with a clear message, and the audit log says which kind and why.

use clustermgr_proto::operator_client::OperatorClient;
use clustermgr_proto::{NodeRef, Operation, ReadSetupProperties, SubmitJobRequest, operation};
use clustermgr_shared::config::ClientBundle;
use clustermgr_shared::dial::{DialOptions, connect};
use clustermgr_shared::tls::{client_config, install_crypto_provider};
use clustermgr_tests::{Agent, Controller, text};

#[test]
fn secret_reading_kinds_need_admin_and_the_audit_says_why() {
    install_crypto_provider();
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut a = Agent::new("roles-node");
    a.join(&ctl, "gluu-node");
    a.start();
    ctl.wait_status(&a.node_id, "online");
    let certs = a.root.join("etc/certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("httpd.key"), "PRIVATE KEY MATERIAL\n").unwrap();
    std::fs::write(certs.join("httpd.crt"), "PUBLIC CERTIFICATE\n").unwrap();
    let olga = ctl.dir.path().join("olga.toml");
    let o = olga.to_str().unwrap();
    ctl.cli_ok(&[
        "operator", "create", "olga", "--role", "operator", "--out", o,
    ]);

    // The operator reads a certificate but not its key.
    let crt = ctl.cli_ok(&[
        "--config",
        o,
        "job",
        "run",
        "roles-node",
        "read-file",
        "/etc/certs/httpd.crt",
    ]);
    assert!(crt.contains("PUBLIC CERTIFICATE"), "{crt}");
    let r = ctl.cli(&[
        "--config",
        o,
        "job",
        "run",
        "roles-node",
        "read-file",
        "/etc/certs/httpd.key",
    ]);
    let err = text(&r.stderr);
    assert!(
        !r.status.success(),
        "an operator read a private key: {}",
        text(&r.stdout)
    );
    assert!(!text(&r.stdout).contains("PRIVATE KEY MATERIAL"));
    assert!(
        err.contains("permission denied")
            && err.contains("read-file (reads secrets)")
            && err.contains("needs role admin"),
        "{err}"
    );

    // Kinds the CLI does not offer are refused as well (PermissionDenied), e.g. setup.properties.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        let b = ClientBundle::load(&olga).unwrap();
        let tls = client_config(&b.ca_pem, Some((&b.cert_pem, &b.key_pem))).unwrap();
        let ch = connect(&ctl.addr, tls, DialOptions::default())
            .await
            .unwrap();
        OperatorClient::new(ch)
            .submit_job(SubmitJobRequest {
                node: Some(NodeRef {
                    node: "roles-node".into(),
                }),
                operation: Some(Operation {
                    kind: Some(operation::Kind::ReadSetupProperties(
                        ReadSetupProperties::default(),
                    )),
                }),
                wait: true,
                ..Default::default()
            })
            .await
            .unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("read-setup-properties (reads secrets)"),
        "{status:?}"
    );

    // The admin may, and the audit row marks it.
    let key = ctl.cli_ok(&[
        "job",
        "run",
        "roles-node",
        "read-file",
        "/etc/certs/httpd.key",
    ]);
    assert!(key.contains("PRIVATE KEY MATERIAL"), "{key}");
    let audit = ctl.json(&["audit"]);
    let rows = audit.as_array().unwrap();
    let refused: Vec<_> = rows
        .iter()
        .filter(|e| e["who"] == "operator:olga" && e["action"] == "job.submit")
        .filter(|e| e["result"].as_str().unwrap().contains("reads secrets"))
        .collect();
    assert_eq!(refused.len(), 2, "{audit}");
    assert!(
        rows.iter().any(|e| e["who"] == "operator:admin"
            && e["action"] == "job.submit"
            && e["result"] == "ok"
            && e["detail"]
                .as_str()
                .unwrap()
                .contains("read /etc/certs/httpd.key [admin: reads secrets]")),
        "{audit}"
    );
    assert!(!audit.to_string().contains("PRIVATE KEY MATERIAL"));
}
