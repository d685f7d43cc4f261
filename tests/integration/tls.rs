//! Who may talk to the controller. Under TLS 1.3 a client without an acceptable certificate can
//! complete `connect()`; the refusal shows on the first RPC, so every case asserts on an RPC.

use clustermgr_proto::agent_session_client::AgentSessionClient;
use clustermgr_proto::operator_client::OperatorClient;
use clustermgr_proto::{ListNodesRequest, RenewRequest, WhoAmIRequest};
use clustermgr_shared::Secret;
use clustermgr_shared::dial::{DialOptions, connect};
use clustermgr_shared::pki::{Ca, Usage, new_key_and_csr};
use clustermgr_shared::tls::{client_config, install_crypto_provider};
use clustermgr_tests::{Agent, Controller, text};
use std::time::Duration;
use time::OffsetDateTime;

fn rt() -> tokio::runtime::Runtime {
    install_crypto_provider();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// How a call was refused: its gRPC code, and its message followed by the text of every
/// underlying error (a TLS alert from the server shows only there).
#[derive(Debug)]
struct Refusal {
    code: tonic::Code,
    text: String,
}

fn refusal(s: tonic::Status) -> Refusal {
    let mut text = s.message().to_string();
    let mut source = std::error::Error::source(&s);
    while let Some(e) = source {
        text.push_str(" / ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    Refusal {
        code: s.code(),
        text,
    }
}

/// Calls WhoAmI with the given identity. Under TLS 1.3 the client's side of the handshake
/// completes before the server has looked at the client certificate, so connecting succeeds
/// (this panics otherwise) and the refusal shows on the call.
async fn whoami(
    ctl: &Controller,
    ident: Option<(&str, &Secret<String>)>,
) -> Result<String, Refusal> {
    let tls = client_config(&ctl.ca_cert_pem(), ident).unwrap();
    let ch = connect(&ctl.addr, tls, DialOptions::default())
        .await
        .unwrap();
    OperatorClient::new(ch)
        .who_am_i(WhoAmIRequest {})
        .await
        .map(|r| r.into_inner().name)
        .map_err(refusal)
}

/// The alert the server ends a TLS connection with when it refuses the client's certificate.
/// Under TLS 1.3 the server judges the certificate after the client's side of the handshake
/// is done; reading before sending anything gets the alert itself, which a gRPC call can lose
/// (its first bytes make the server's close a reset).
async fn refusal_alert(ctl: &Controller, ident: (&str, &Secret<String>)) -> String {
    use tokio::io::AsyncReadExt as _;
    use tokio_rustls::rustls::pki_types::ServerName;
    let cfg = client_config(&ctl.ca_cert_pem(), Some(ident)).unwrap();
    let (host, _) = ctl.addr.rsplit_once(':').unwrap();
    let name = ServerName::try_from(host.to_string()).unwrap();
    let tcp = tokio::net::TcpStream::connect(&ctl.addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .expect("the client's side of a TLS 1.3 handshake completes");
    let mut buf = [0u8; 256];
    match tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await {
        Err(_) => panic!("the server kept the connection open"),
        Ok(Ok(n)) => panic!("the server closed without an alert or sent {n} bytes"),
        Ok(Err(e)) => e.to_string(),
    }
}

/// A call the server never answered: the TLS connection was refused under it, so the status
/// is the client's own (its code depends on when the client noticed), never the server's.
fn assert_transport_refusal(e: &Refusal) {
    assert!(
        matches!(
            e.code,
            tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Unavailable
        ) && e.text.contains("transport error"),
        "not a transport-level refusal: {e:?}"
    );
}

fn sign(ca: &Ca, cn: &str, nb: OffsetDateTime, na: OffsetDateTime) -> (String, Secret<String>) {
    let (key, csr) = new_key_and_csr(cn).unwrap();
    (ca.sign_csr(&csr, cn, Usage::Client, (nb, na)).unwrap(), key)
}

#[test]
fn clients_without_an_acceptable_certificate_are_refused_on_the_rpc() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let rt = rt();
    let bundle =
        clustermgr_shared::config::ClientBundle::load(&ctl.data.join("admin.toml")).unwrap();
    // Control: the admin credential works.
    let name = rt
        .block_on(whoami(&ctl, Some((&bundle.cert_pem, &bundle.key_pem))))
        .unwrap();
    assert_eq!(name, "admin");

    // No certificate at all.
    let e = rt.block_on(whoami(&ctl, None)).unwrap_err();
    assert_eq!(e.code, tonic::Code::Unauthenticated, "{e:?}");
    assert!(
        e.text
            .contains("a client certificate issued by this cluster's CA is required"),
        "{e:?}"
    );

    // A certificate from another CA.
    let other = Ca::generate("other", Duration::from_secs(3600)).unwrap();
    let now = OffsetDateTime::now_utc();
    let (cert, key) = sign(
        &other,
        "admin",
        now - Duration::from_secs(60),
        now + Duration::from_secs(3600),
    );
    let e = rt.block_on(whoami(&ctl, Some((&cert, &key)))).unwrap_err();
    assert_transport_refusal(&e);
    let alert = rt.block_on(refusal_alert(&ctl, (&cert, &key)));
    assert_eq!(alert, "received fatal alert: UnknownCA");

    // An expired certificate from the cluster CA itself.
    let ca = Ca::load(&ctl.ca_cert_pem(), &Secret::new(ctl.ca_key_pem())).unwrap();
    let (cert, key) = sign(
        &ca,
        "admin",
        now - Duration::from_secs(7200),
        now - Duration::from_secs(3600),
    );
    let e = rt.block_on(whoami(&ctl, Some((&cert, &key)))).unwrap_err();
    assert_transport_refusal(&e);
    let alert = rt.block_on(refusal_alert(&ctl, (&cert, &key)));
    assert_eq!(alert, "received fatal alert: CertificateExpired");

    // A valid certificate from the cluster CA that the controller never issued (forged by
    // someone holding a copy of an old CA key, say) is not a principal either.
    let (cert, key) = sign(
        &ca,
        "admin",
        now - Duration::from_secs(60),
        now + Duration::from_secs(3600),
    );
    let e = rt.block_on(whoami(&ctl, Some((&cert, &key)))).unwrap_err();
    assert_eq!(e.code, tonic::Code::Unauthenticated, "{e:?}");
    assert!(
        e.text.contains("or was never issued by this controller"),
        "{e:?}"
    );
}

#[test]
fn a_removed_node_is_cut_off_at_once_and_its_certificate_refused() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut a = Agent::new("doomed");
    a.join(&ctl, "gluu-node");
    a.start();
    ctl.wait_status(&a.node_id, "online");
    let ident = a.identity_pem();
    let (cert, key) = {
        let end = ident.find("-----END CERTIFICATE-----").unwrap() + 25;
        (
            ident[..end].to_string(),
            Secret::new(ident[end..].trim().to_string()),
        )
    };
    let ca = ctl.ca_cert_pem();
    let rt = rt();
    // The node certificate does not open the operator API.
    let e = rt
        .block_on(async {
            let tls = client_config(&ca, Some((&cert, &key))).unwrap();
            let ch = connect(&ctl.addr, tls, DialOptions::default())
                .await
                .unwrap();
            OperatorClient::new(ch)
                .list_nodes(ListNodesRequest {})
                .await
        })
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(
        e.message()
            .contains("this API needs an operator credential, not a node certificate"),
        "{e:?}"
    );

    let out = ctl.cli(&["node", "remove", "doomed"]);
    assert!(
        text(&out.stderr).contains("live session dropped"),
        "{}",
        text(&out.stderr)
    );
    // The agent's live session is dropped and it stops with a clear message.
    let code = a.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(2), "agent log:\n{}", a.log());
    assert!(a.log().contains("removed"), "{}", a.log());
    assert!(ctl.json(&["node", "list"]).as_array().unwrap().is_empty());

    // Its certificate is refused from now on (assert on the RPC).
    let e = rt
        .block_on(async {
            let tls = client_config(&ca, Some((&cert, &key))).unwrap();
            let ch = connect(&ctl.addr, tls, DialOptions::default())
                .await
                .unwrap();
            let (csr_key, csr) = new_key_and_csr("x").unwrap();
            let _ = csr_key;
            AgentSessionClient::new(ch)
                .renew(RenewRequest { csr_der: csr })
                .await
        })
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    assert!(
        e.message()
            .contains("or was never issued by this controller"),
        "{e:?}"
    );

    // Restarting the controller does not bring the identity back.
    ctl.stop();
    ctl.start(&[]);
    let mut again = Agent::new("doomed");
    again.state = a.state.clone();
    again.start();
    assert_eq!(
        again.wait_exit(Duration::from_secs(10)),
        Some(2),
        "{}",
        again.log()
    );
    assert!(
        text(again.log().as_bytes()).contains("revoked"),
        "{}",
        again.log()
    );
}

#[test]
fn health_and_reflection_are_served_to_authenticated_callers_only() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let mut ctl = Controller::init();
    ctl.start(&[]);
    let rt = rt();
    let bundle =
        clustermgr_shared::config::ClientBundle::load(&ctl.data.join("admin.toml")).unwrap();
    let ca = ctl.ca_cert_pem();
    let channel = |ident: bool| {
        let tls = if ident {
            client_config(&ca, Some((&bundle.cert_pem, &bundle.key_pem))).unwrap()
        } else {
            client_config(&ca, None).unwrap()
        };
        let addr = ctl.addr.clone();
        async move { connect(&addr, tls, DialOptions::default()).await.unwrap() }
    };
    rt.block_on(async {
        let status = HealthClient::new(channel(true).await)
            .check(HealthCheckRequest {
                service: "clustermgr.v1.Operator".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32);
        let e = HealthClient::new(channel(false).await)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);

        let list = |ch| async move {
            let req = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut stream = ServerReflectionClient::new(ch)
                .server_reflection_info(tokio_stream::iter(vec![req]))
                .await?
                .into_inner();
            let mut names = Vec::new();
            if let Some(resp) = stream.message().await?
                && let Some(MessageResponse::ListServicesResponse(l)) = resp.message_response
            {
                names = l.service.into_iter().map(|s| s.name).collect();
            }
            Ok::<_, tonic::Status>(names)
        };
        let names = list(channel(true).await).await.unwrap();
        for svc in [
            "clustermgr.v1.Operator",
            "clustermgr.v1.AgentSession",
            "grpc.health.v1.Health",
        ] {
            assert!(
                names.iter().any(|n| n == svc),
                "{svc} missing from {names:?}"
            );
        }
        let e = list(channel(false).await).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    });
}
