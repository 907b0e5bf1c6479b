use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::HealthServer;

use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// `name`'s certificate from `ca` written as `name.pem` / `name.key`, and the CA as
/// `ca_file`.
fn node_files(
    dir: &Path,
    ca: &LocalCa,
    ca_file: &str,
    name: &str,
    member: Option<&str>,
) -> TlsConfig {
    let issued = ca.issue(&Subject::loopback(name, member)).unwrap();
    TlsConfig {
        cert: write(dir, &format!("{name}.pem"), &issued.cert_pem),
        key: write(dir, &format!("{name}.key"), &issued.key_pem),
        ca: write(dir, ca_file, ca.cert_pem()),
        client_auth: ClientAuth::Required,
    }
}

/// A health server on loopback with `tls`; what each call's connection said of its peer.
async fn serve(tls: ServerTls) -> (String, Arc<Mutex<Vec<ConnInfo>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (reporter, _) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let service = {
        let seen = seen.clone();
        HealthServer::with_interceptor(
            tonic_health::server::HealthService::from_health_reporter(reporter),
            move |req: tonic::Request<()>| {
                seen.lock().unwrap().extend(conn_info(&req).cloned());
                Ok(req)
            },
        )
    };
    let incoming = accept(listener, Some(tls), "test").into_stream();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming),
    );
    (url, seen)
}

async fn check(url: &str, tls: &ClientTls) -> Result<(), String> {
    let channel = channel(url, Some(tls), |e| e.timeout(Duration::from_secs(5)))
        .await
        .map_err(|e| format!("{e:?}"))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn mutual_tls_names_the_member_of_the_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::generate().unwrap();
    let server = node_files(dir.path(), &ca, "ca.pem", "sequencer-1", None);
    let client = node_files(dir.path(), &ca, "ca.pem", "shard-1", Some("shard-1"));
    let (url, seen) = serve(ServerTls::load(&server).unwrap()).await;

    check(&url, &ClientTls::of_node(&client).unwrap())
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].tls);
    let peer = seen[0].peer.as_ref().expect("the client's certificate");
    assert!(peer.is_member("shard-1"), "{peer}");
    assert!(!peer.is_member("shard-2"));
    assert_eq!(peer.members().collect::<Vec<_>>(), ["shard-1"]);
    assert!(
        peer.to_string().contains("urn:ordo:member:shard-1"),
        "{peer}"
    );
}

#[tokio::test]
async fn a_client_without_a_certificate_or_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::generate().unwrap();
    let other = LocalCa::generate().unwrap();
    let server = node_files(dir.path(), &ca, "ca.pem", "sequencer-1", None);
    let (url, seen) = serve(ServerTls::load(&server).unwrap()).await;

    let anonymous = ClientTls::load(&server.ca, None).unwrap();
    assert!(check(&url, &anonymous).await.is_err());

    // A certificate of another CA, while trusting the server's CA.
    let mut stranger = node_files(
        dir.path(),
        &other,
        "other-ca.pem",
        "intruder",
        Some("shard-1"),
    );
    stranger.ca = server.ca.clone();
    assert!(
        check(&url, &ClientTls::of_node(&stranger).unwrap())
            .await
            .is_err()
    );

    // A client that does not trust the server's CA refuses the server.
    let mut distrustful = node_files(dir.path(), &ca, "ca.pem", "shard-1", Some("shard-1"));
    distrustful.ca = write(dir.path(), "only-other.pem", other.cert_pem());
    assert!(
        check(&url, &ClientTls::of_node(&distrustful).unwrap())
            .await
            .is_err()
    );
    assert!(seen.lock().unwrap().is_empty(), "no call got through");
}

#[tokio::test]
async fn optional_client_auth_serves_applications_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::generate().unwrap();
    let mut server = node_files(dir.path(), &ca, "ca.pem", "shard-1", Some("shard-1"));
    server.client_auth = ClientAuth::Optional;
    let (url, seen) = serve(ServerTls::load(&server).unwrap()).await;
    check(&url, &ClientTls::load(&server.ca, None).unwrap())
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(seen[0].tls && seen[0].peer.is_none());
}

#[tokio::test]
async fn endpoints_say_whether_they_need_tls() {
    let e = lazy_channel("https://127.0.0.1:1", None, |e| e).unwrap_err();
    assert!(matches!(e, TlsError::NoCa { .. }), "{e}");
    assert!(lazy_channel("http://127.0.0.1:1", None, |e| e).is_ok());
    let e = lazy_channel("not a url", None, |e| e).unwrap_err();
    assert!(matches!(e, TlsError::Endpoint { .. }), "{e}");
}

#[tokio::test]
async fn a_key_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::generate().unwrap();
    let server = node_files(dir.path(), &ca, "ca.pem", "sequencer-1", None);
    std::fs::set_permissions(&server.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = ServerTls::load(&server).unwrap_err().to_string();
    assert!(
        e.contains("sequencer-1.key") && e.contains("644") && e.contains("chmod 600"),
        "{e}"
    );
}

#[tokio::test]
async fn new_certificates_are_served_after_their_files_change_and_old_connections_stay() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = LocalCa::generate().unwrap();
    let new_ca = LocalCa::generate().unwrap();
    let server = node_files(dir.path(), &old_ca, "ca.pem", "sequencer-1", None);
    let (url, _) = serve(ServerTls::load_checking(&server, CHECK).unwrap()).await;

    let old_client = ClientTls::of_node(&node_files(
        dir.path(),
        &old_ca,
        "old-ca.pem",
        "a",
        Some("a"),
    ))
    .unwrap();
    let new_client = ClientTls::of_node(&node_files(
        dir.path(),
        &new_ca,
        "new-ca.pem",
        "b",
        Some("b"),
    ))
    .unwrap();
    let established = channel(&url, Some(&old_client), |e| e).await.unwrap();
    assert!(check(&url, &new_client).await.is_err());

    // Rotate to the new CA: its server certificate, and it as the CA clients are checked by.
    let rotated = new_ca
        .issue(&Subject::loopback("sequencer-1", None))
        .unwrap();
    write(dir.path(), "sequencer-1.pem", &rotated.cert_pem);
    write(dir.path(), "sequencer-1.key", &rotated.key_pem);
    write(dir.path(), "ca.pem", new_ca.cert_pem());
    eventually(|| async { check(&url, &new_client).await.is_ok() }).await;

    // The connection made before the rotation still works; a new one with the old CA does not.
    HealthClient::new(established)
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    assert!(check(&url, &old_client).await.is_err());
}

/// How often the rotation test's server checks its files.
const CHECK: Duration = Duration::from_millis(100);

/// Polls `ok` until it holds, for at most 10 s.
async fn eventually<F, Fut>(mut ok: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !ok().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reloaded in time"
        );
        tokio::time::sleep(CHECK).await;
    }
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new().route(
        "/",
        axum::routing::get(
            |axum::Extension(info): axum::Extension<ConnInfo>| async move {
                format!("tls={}", info.tls)
            },
        ),
    );
    let header_timeout = Duration::from_millis(500);
    tokio::spawn(http::serve_http_with(
        accept(listener, None, "test"),
        router,
        std::future::pending(),
        header_timeout,
    ));

    // A whole request is served, and the handler sees its connection.
    let mut good = tokio::net::TcpStream::connect(addr).await.unwrap();
    good.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    good.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("tls=false"),
        "{answer}"
    );

    // A slowloris client: half a request, then silence.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(
        header_timeout + Duration::from_secs(5),
        slow.read_to_end(&mut rest),
    )
    .await
    .expect("the connection outlived the header timeout")
    .ok();
    assert!(
        started.elapsed() >= header_timeout - Duration::from_millis(100),
        "closed after {:?}, before the timeout",
        started.elapsed()
    );
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[test]
fn the_expiry_of_a_served_certificate_is_read_from_its_leaf() {
    let ca = LocalCa::generate().unwrap();
    let issued = ca.issue(&Subject::loopback("node", None)).unwrap();
    let certs = files::certs_in(issued.cert_pem.as_bytes(), Path::new("node.pem")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let days = (files::not_after(&certs).unwrap() - now) / 86_400;
    // Issued for 365 days (mint::VALID_DAYS); a day of slack for the clock.
    assert!((364..=365).contains(&days), "{days} days");
    assert_eq!(files::not_after(&[]), None);
}
