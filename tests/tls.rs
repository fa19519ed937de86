//! NATS over TLS with client certificates (a CA made at test time) and user/password and
//! nkey authentication, through the worker's own `[nats]` options against a real nats-server.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::Duration;

use ai_failover::bus::setup;
use ai_failover::config::NatsConfig;
use ai_failover::contract::{Names, Status, StatusReply};
use common::nats::NatsServer;
use common::workers::{ask, fleet, start_worker_with};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

const PASSWORD_VAR: &str = "AI_FAILOVER_TLS_TEST_PASSWORD";

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`.
fn certificates(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "ai-failover test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |name: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    };
    leaf(
        "server",
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    leaf("client", Vec::new(), ExtendedKeyUsagePurpose::ClientAuth);
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
}

#[test]
fn workers_and_clients_connect_over_tls_with_passwords_and_nkeys() {
    let password = uuid::Uuid::new_v4().simple().to_string();
    let envs = [(PASSWORD_VAR.to_string(), password.clone())];
    common::control::with_env(&envs, || tls(password));
}

async fn tls(password: String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certificates(d);
    let user_key = nkeys::KeyPair::new_user();
    std::fs::write(d.join("user.nk"), user_key.seed().unwrap()).unwrap();
    let conf = d.join("server.conf");
    std::fs::write(
        &conf,
        format!(
            r#"
tls {{
  cert_file: "{d}/server.pem"
  key_file: "{d}/server-key.pem"
  ca_file: "{d}/ca.pem"
  verify: true
}}
authorization {{
  users: [
    {{ user: fleet, password: ${PASSWORD_VAR} }}
    {{ nkey: {nkey} }}
  ]
}}
"#,
            d = d.display(),
            nkey = user_key.public_key()
        ),
    )
    .unwrap();
    let server = NatsServer::start_with_env(
        vec!["-c".into(), conf.display().to_string()],
        vec![(PASSWORD_VAR.into(), password)],
    );
    let url = format!("tls://127.0.0.1:{}", server.port());
    let file = |name: &str| format!("\"{}\"", d.join(name).display());

    // A worker over TLS, with a client certificate and a password from its variable.
    let tls = fleet(&url, "ai")
        .set("nats", "tls_ca_file", &file("ca.pem"))
        .set("nats", "tls_cert_file", &file("client.pem"))
        .set("nats", "tls_key_file", &file("client-key.pem"));
    let mut cfg = tls
        .clone()
        .set("nats", "user", "\"fleet\"")
        .set("nats", "password_env", &format!("\"{PASSWORD_VAR}\""))
        .load_for_client();
    cfg.worker.id = Some("w1".into());
    let client = tokio::time::timeout(Duration::from_secs(10), setup::connect(&cfg.nats))
        .await
        .expect("connected within 10 s")
        .unwrap();
    let w = start_worker_with(cfg).await;
    let names = Names::default();
    assert_eq!(ask(&client, &names, "TLS").await.status, Status::Ok);

    // A client authenticated by an nkey seed file, over the same TLS.
    let nk: NatsConfig = tls
        .set("nats", "nkey_file", &file("user.nk"))
        .load_for_client()
        .nats;
    let nk_client = tokio::time::timeout(Duration::from_secs(10), setup::connect(&nk))
        .await
        .expect("connected within 10 s")
        .unwrap();
    let reply = nk_client
        .request(names.control("status"), "{}".into())
        .await
        .unwrap();
    let status: StatusReply = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(status.answered_by, "w1");

    // Without a client certificate, or without TLS, or with a wrong password: no connection.
    let ca = d.join("ca.pem");
    let attempts = [
        async_nats::ConnectOptions::with_user_and_password("fleet".into(), "x".into())
            .add_root_certificates(ca.clone())
            .add_client_certificate(d.join("client.pem"), d.join("client-key.pem"))
            .require_tls(true),
        async_nats::ConnectOptions::new()
            .add_root_certificates(ca.clone())
            .require_tls(true),
        async_nats::ConnectOptions::new(),
    ];
    for (i, opts) in attempts.into_iter().enumerate() {
        let connected = tokio::time::timeout(Duration::from_secs(10), opts.connect(&url)).await;
        assert!(
            matches!(connected, Ok(Err(_))),
            "attempt {i} was let in, or hung"
        );
    }
    w.running.stop().await;
}
