//! TLS on an `ordo up` network (DESIGN §8): every endpoint is `https://`; the node-to-node
//! services refuse a caller without a certificate, with one from another CA, or in plain
//! text, and log the refusal with the caller; a member's certificate acts only for the
//! member it names, whatever key is presented; every file holding a secret or a key is
//! its owner's only; the private Postgres wants its password; a participant's certificate
//! lets it allocate parties on its own shard, never change the domain.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use ordo_core::{KeyPair, MemberId};
use ordo_ledger_client::Network;
use ordo_node::tls::{ClientTls, LocalCa, Subject};
use ordo_proto::admin::v1 as admin;
use ordo_proto::admin::v1::topology_admin_service_client::TopologyAdminServiceClient;
use ordo_sequencer_client::{ClientConfig, SequencerClient};

use crate::up::up;

/// Whether `url` answers a health check (whatever its status: a passive replica is not
/// serving) over TLS with `tls`, plain text without.
async fn answers(url: &str, tls: Option<&ClientTls>) -> bool {
    ordo_node::health(url, tls, "").await.is_some()
}

fn log_of(dir: &Path, node: &str) -> String {
    std::fs::read_to_string(dir.join(format!("net/logs/{node}.log"))).unwrap_or_default()
}

fn mode(path: &Path) -> anyhow::Result<u32> {
    Ok(std::fs::metadata(path)
        .with_context(|| path.display().to_string())?
        .permissions()
        .mode()
        & 0o777)
}

#[tokio::test]
async fn up_runs_tls_and_holds_each_certificate_to_its_member() -> anyhow::Result<()> {
    let _serial = crate::SERIAL.lock().await;
    let dir = tempfile::tempdir()?;
    let mut net = up(dir.path()).await?;
    let network = Network::load(dir.path().join("net/network.json"))?;
    let tls = network.tls.clone().context("ordo up runs TLS by default")?;
    let ca_pem = std::fs::read_to_string(&tls.ca)?;

    let grpc = |nodes: &[ordo_ledger_client::network::NodeEntry]| {
        nodes.iter().map(|n| n.grpc.clone()).collect::<Vec<_>>()
    };
    let node_to_node: Vec<String> = [
        grpc(&network.sequencers),
        grpc(&network.topology),
        grpc(&network.mediators),
    ]
    .concat();
    let participants: Vec<String> = network
        .participants
        .iter()
        .map(|p| p.grpc.clone())
        .collect();
    for url in node_to_node.iter().chain(&participants) {
        ensure!(url.starts_with("https://"), "{url} is not TLS");
    }
    for g in &network.gateways {
        ensure!(
            g.http.starts_with("https://"),
            "gateway {} is not TLS",
            g.http
        );
    }

    let operator = ordo_node::tls::trusted().context("network.json's operator certificate")?;
    let anonymous = ClientTls::from_pem(&ca_pem, None)?;
    // A certificate naming a member of this network, from another CA.
    let other = LocalCa::generate()?;
    let forged = other.issue(&Subject::loopback("participant-1", Some("participant-1")))?;
    let stranger = ClientTls::from_pem(&ca_pem, Some((&forged.cert_pem, &forged.key_pem)))?;
    for url in &node_to_node {
        ensure!(
            answers(url, Some(&operator)).await,
            "{url} refused the operator"
        );
        ensure!(
            !answers(url, Some(&anonymous)).await,
            "{url} served a caller without a certificate"
        );
        ensure!(
            !answers(url, Some(&stranger)).await,
            "{url} served another CA's certificate"
        );
        let plain = url.replacen("https://", "http://", 1);
        ensure!(!answers(&plain, None).await, "{plain} served plain text");
    }
    // `ordo up`'s control API: TLS, and only for a caller with a certificate of the CA.
    ensure!(
        network.control.http.starts_with("https://"),
        "the control API is {}",
        network.control.http
    );
    let shards = format!("{}/shards", network.control.http);
    let call = |tls: &ClientTls| {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls.rustls_http1())
            .timeout(std::time::Duration::from_secs(10))
            .build();
        let shards = shards.clone();
        async move { client?.post(&shards).body("{}").send().await }
    };
    let answer = call(&operator).await?;
    ensure!(
        answer.status() == 401,
        "the operator without the control token: {}",
        answer.status()
    );
    for (who, tls) in [("no certificate", &anonymous), ("another CA's", &stranger)] {
        ensure!(
            call(tls).await.is_err(),
            "the control API served a caller with {who}"
        );
    }
    // The Ledger API: applications may come without a certificate, never with a bad one.
    for url in &participants {
        ensure!(
            answers(url, Some(&anonymous)).await,
            "{url} refused server-only TLS"
        );
        ensure!(
            !answers(url, Some(&stranger)).await,
            "{url} served another CA's certificate"
        );
    }
    let refusals = log_of(dir.path(), "sequencer-1");
    ensure!(
        refusals.contains("TLS handshake refused") && refusals.contains("peer=127.0.0.1:"),
        "the refused handshakes are not logged with their peer:\n{refusals}"
    );

    // participant-2's own key, presented with participant-1's certificate: refused. Its
    // own certificate with the same key: served.
    let net_dir = dir.path().join("net");
    let key = Arc::new(KeyPair::read_file(&net_dir.join("keys/participant-2.key"))?);
    let member = MemberId::new("participant-2", &key.public())?;
    let endpoints: Vec<String> = grpc(&network.sequencers);
    let as_participant_2 = |cert: &str| -> anyhow::Result<ClientConfig> {
        let tls = ClientTls::load(
            &tls.ca,
            Some((
                &net_dir.join(format!("tls/{cert}.pem")),
                &net_dir.join(format!("tls/{cert}.key")),
            )),
        )?;
        Ok(ClientConfig {
            tls: Some(tls),
            ..ClientConfig::new(endpoints.clone(), member.clone(), key.clone())
        })
    };
    let impostor = SequencerClient::connect(as_participant_2("participant-1-a")?).await?;
    let refused = impostor
        .time()
        .await
        .expect_err("participant-1's certificate acted for participant-2");
    let said = refused.to_string();
    ensure!(
        said.contains("does not name member participant-2"),
        "not refused for its certificate: {said}"
    );
    let logged = format!(
        "{}{}",
        log_of(dir.path(), "sequencer-1"),
        log_of(dir.path(), "sequencer-2")
    );
    ensure!(
        logged.contains("does not name the member")
            && logged.contains("urn:ordo:member:participant-1"),
        "the refusal is not logged with the certificate's identity"
    );
    let genuine = SequencerClient::connect(as_participant_2("participant-2-a")?).await?;
    genuine
        .time()
        .await
        .context("participant-2 with its own certificate")?;

    // A participant's certificate cannot change the domain; it may allocate a party on its
    // own shard only. ordo up gives the participants no topology admin token.
    let p1 = ClientTls::load(
        &tls.ca,
        Some((
            &net_dir.join("tls/participant-1-a.pem"),
            &net_dir.join("tls/participant-1-a.key"),
        )),
    )?;
    let mut allocated = None;
    for replica in network.topology_replicas() {
        let channel = ordo_node::tls::channel(&replica.grpc, Some(&p1), |e| e).await?;
        let mut topology = TopologyAdminServiceClient::new(channel);
        match topology
            .allocate_party(admin::AllocatePartyRequest {
                party: "p1-own".into(),
                shard: String::new(),
            })
            .await
        {
            Ok(r) => allocated = Some(r.into_inner().shard),
            Err(s) if s.code() == tonic::Code::Unavailable => continue, // the passive replica
            Err(s) => anyhow::bail!("participant-1 could not allocate on its own shard: {s:?}"),
        }
        // On the active replica, everything else is refused.
        let denied = [
            topology
                .register_mediator(admin::RegisterMediatorRequest {
                    name: "intruder".into(),
                    public_key: KeyPair::generate().public().as_bytes().to_vec(),
                })
                .await
                .map(drop),
            topology
                .set_parameters(admin::SetParametersRequest::default())
                .await
                .map(drop),
            topology
                .allocate_party(admin::AllocatePartyRequest {
                    party: "p1-elsewhere".into(),
                    shard: "shard-2".into(),
                })
                .await
                .map(drop),
        ];
        for d in denied {
            let status = d.expect_err("a participant's certificate changed the domain");
            ensure!(status.code() == tonic::Code::PermissionDenied, "{status:?}");
        }
        break;
    }
    ensure!(allocated.as_deref() == Some("shard-1"), "{allocated:?}");
    for replica in ["participant-1-a", "participant-2-b"] {
        let config = std::fs::read_to_string(net_dir.join(format!("config/{replica}.toml")))?;
        ensure!(
            config.contains("topology_admin_token = \"\""),
            "{replica} holds the topology admin token"
        );
    }

    // Owner-only: every key, every config (they hold tokens), network.json, the tokens.
    for d in ["keys", "tls", "config", "logs"] {
        ensure!(
            mode(&net_dir.join(d))? == 0o700,
            "{d}/ is {:o}",
            mode(&net_dir.join(d))?
        );
    }
    let mut secrets = vec![net_dir.join("network.json")];
    for name in [
        "admin-token",
        "topology-admin-token",
        "token-signing-key.pem",
        "gateway-1-cache-token",
        "replica-admin-token",
        "control-token",
    ] {
        secrets.push(net_dir.join(name));
    }
    for d in ["keys", "config", "tls"] {
        for entry in std::fs::read_dir(net_dir.join(d))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "pem") {
                continue; // certificates are public
            }
            secrets.push(path);
        }
    }
    ensure!(secrets.len() > 20, "too few files checked: {secrets:?}");
    // The gateway holds nothing that mints a token: it verifies with the public key.
    let gateway: toml::Table =
        std::fs::read_to_string(net_dir.join("config/gateway-1.toml"))?.parse()?;
    let auth = &gateway["auth"];
    ensure!(auth["algorithm"].as_str() == Some("EdDSA"), "{gateway}");
    ensure!(
        auth.get("secret")
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .is_empty(),
        "the gateway's config holds a token secret"
    );
    let signing_key = std::fs::read_to_string(net_dir.join("token-signing-key.pem"))?;
    let named = |v: &toml::Value| v.as_str().map(std::path::PathBuf::from);
    for file in [
        named(&auth["key_file"]),
        named(&gateway["cache"]["token_file"]),
    ]
    .into_iter()
    .flatten()
    {
        ensure!(
            std::fs::read_to_string(&file)? != signing_key,
            "the gateway names the signing key {}",
            file.display()
        );
    }
    ensure!(!gateway.to_string().contains("PRIVATE KEY"), "{gateway}");
    for path in &secrets {
        ensure!(
            mode(path)? & 0o077 == 0,
            "{} is {:o}",
            path.display(),
            mode(path)?
        );
    }

    // The private Postgres asks every connection for the password (SCRAM).
    let url = &network.postgres.url;
    let (userinfo, host) = url
        .strip_prefix("postgres://")
        .and_then(|rest| rest.split_once('@'))
        .context("a postgres:// URL with a user")?;
    ensure!(
        userinfo.starts_with("ordo:"),
        "the URL carries no password: {url}"
    );
    sqlx::PgPool::connect(url)
        .await
        .context("with the password")?
        .close()
        .await;
    let refused = sqlx::PgPool::connect(&format!("postgres://ordo@{host}"))
        .await
        .expect_err("a connection without the password was accepted")
        .to_string();
    ensure!(refused.contains("password"), "{refused}");

    ensure!(
        net.process.terminate(Duration::from_secs(30)),
        "ordo up did not stop on SIGTERM"
    );
    Ok(())
}
