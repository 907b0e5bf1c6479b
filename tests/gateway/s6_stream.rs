//! The WebSocket stream `/v1/stream/query` with a real WebSocket client: a sender's and a
//! receiver's stream see an Iou transferred across shards, streams resumed from an offset
//! see exactly the transfer, the token travels as a header or as subprotocols, a bad
//! handshake or first message is refused, and a stream ends within a second of its
//! token's expiry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::harness::{CROSS_SHARD, Env, IOU};

/// How the stream's client sends its token.
pub enum Token<'a> {
    Header(&'a str),
    /// `Sec-WebSocket-Protocol: jwt.token.<JWT>, ordo.ws.auth`, as a browser must.
    Subprotocol(&'a str),
    Missing,
}

pub struct Stream {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The subprotocol the server selected.
    protocol: Option<String>,
}

/// A heartbeat: no events, the offsets (`{"events": [], "offset": {…}}`).
fn is_heartbeat(m: &Value) -> bool {
    m["events"].as_array().is_some_and(Vec::is_empty) && m["offset"].is_object()
}

/// Opens the stream; the handshake's refusal is `Err(WsError::Http(..))`.
pub async fn open(env: &Env, token: Token<'_>) -> Result<Stream, WsError> {
    open_at(env, "/v1/stream/query", token).await
}

/// Opens the WebSocket stream at `path`.
pub async fn open_at(env: &Env, path: &str, token: Token<'_>) -> Result<Stream, WsError> {
    let url = format!("{}{path}", env.base.replacen("http", "ws", 1));
    let mut request = url.into_client_request()?;
    let header = match token {
        Token::Header(t) => Some(("authorization", format!("Bearer {t}"))),
        Token::Subprotocol(t) => Some((
            "sec-websocket-protocol",
            format!("jwt.token.{t}, ordo.ws.auth"),
        )),
        Token::Missing => None,
    };
    if let Some((name, value)) = header {
        let value = HeaderValue::from_str(&value).map_err(|e| WsError::HttpFormat(e.into()))?;
        request.headers_mut().insert(name, value);
    }
    let (ws, response) = connect_async(request).await?;
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(Stream { ws, protocol })
}

impl Stream {
    pub async fn send(&mut self, query: &Value) -> Result<()> {
        Ok(self.ws.send(Message::text(query.to_string())).await?)
    }

    /// The next message other than a heartbeat: a text message's JSON, or the close
    /// frame's code as `{"close": code}`.
    pub async fn next(&mut self) -> Result<Value> {
        loop {
            let m = self.next_or_heartbeat().await?;
            if !is_heartbeat(&m) {
                return Ok(m);
            }
        }
    }

    /// The next message, heartbeats included.
    async fn next_or_heartbeat(&mut self) -> Result<Value> {
        loop {
            let message = tokio::time::timeout(CROSS_SHARD, self.ws.next())
                .await
                .context("no message from the stream in time")?
                .context("the stream ended without a close frame")??;
            match message {
                Message::Text(text) => return Ok(serde_json::from_str(text.as_str())?),
                Message::Close(frame) => {
                    return Ok(json!({ "close": frame.map(|f| u16::from(f.code)) }));
                }
                Message::Ping(_) | Message::Pong(_) => {}
                other => bail!("unexpected message {other:?}"),
            }
        }
    }

    /// The snapshot's events, up to the `live` marker; and the marker.
    pub async fn until_live(&mut self) -> Result<(Vec<Value>, Value)> {
        let mut events = Vec::new();
        loop {
            let m = self.next().await?;
            if m["live"] == true {
                ensure!(m["offset"].is_object(), "{m}");
                return Ok((events, m));
            }
            ensure!(
                m["offset"].is_object(),
                "a snapshot message without offset: {m}"
            );
            events.extend(m["events"].as_array().context("events")?.iter().cloned());
        }
    }
}

pub async fn run(env: &Env) -> Result<()> {
    let admin = env.admin()?;
    for (party, shard) in [
        ("s6-bank", "shard-1"),
        ("s6-alice", "shard-1"),
        ("s6-bob", "shard-2"),
    ] {
        env.ok(
            "/v1/parties/allocate",
            &admin,
            &json!({"identifierHint": party, "shard": shard}),
        )
        .await?;
    }
    let (bank, alice, bob) = (
        env.party("s6-bank")?,
        env.party("s6-alice")?,
        env.party("s6-bob")?,
    );
    let iou = env
        .ok(
            "/v1/create",
            &bank,
            &json!({"templateId": IOU, "payload":
                {"issuer": "s6-bank", "owner": "s6-alice", "currency": "CHF", "amount": "10"}}),
        )
        .await?;
    let cid = iou["contractId"].as_str().context("contractId")?.to_owned();

    // The sender's stream: the Iou in the snapshot, then live.
    let ious = json!({"templateIds": [IOU], "query": {"currency": "CHF"}});
    let mut sender = open(env, Token::Header(&alice)).await?;
    sender.send(&ious).await?;
    let (snapshot, sender_live) = sender.until_live().await?;
    ensure!(snapshot == vec![json!({ "created": iou })], "{snapshot:?}");
    ensure!(
        sender_live["offset"]["shard-1"]
            .as_i64()
            .is_some_and(|o| o > 0)
            && sender_live["offset"].as_object().map(|o| o.len()) == Some(1),
        "the sender's party is on shard-1 only: {sender_live}"
    );
    // Idle, the stream sends heartbeats with the offsets it is at (every second here).
    let waited = std::time::Instant::now();
    let beat = sender.next_or_heartbeat().await?;
    ensure!(
        is_heartbeat(&beat) && beat["offset"] == sender_live["offset"],
        "expected a heartbeat at {}: {beat}",
        sender_live["offset"]
    );
    ensure!(
        waited.elapsed() < Duration::from_secs(3),
        "the heartbeat took {:?}",
        waited.elapsed()
    );
    // The receiver's, authenticated by subprotocol as a browser would: nothing yet.
    let mut receiver = open(env, Token::Subprotocol(&bob)).await?;
    ensure!(
        receiver.protocol.as_deref() == Some("ordo.ws.auth"),
        "the server selects ordo.ws.auth: {:?}",
        receiver.protocol
    );
    receiver.send(&json!({"templateIds": [IOU]})).await?;
    let (snapshot, receiver_live) = receiver.until_live().await?;
    ensure!(snapshot.is_empty(), "{snapshot:?}");
    ensure!(
        receiver_live["offset"].get("shard-2").is_some(),
        "{receiver_live}"
    );

    // s6-alice (shard-1) → s6-bob (shard-2).
    let moved = env
        .ok(
            "/v1/exercise",
            &alice,
            &json!({"templateId": IOU, "contractId": cid, "choice": "Transfer",
                    "argument": {"newOwner": "s6-bob"}}),
        )
        .await?;
    let new_cid = moved["exerciseResult"].as_str().context("exerciseResult")?;
    let archived = sender.next().await?;
    ensure!(
        archived["events"] == json!([{"archived": {"contractId": cid, "templateId": IOU}}]),
        "{archived}"
    );
    ensure!(
        archived["offset"]["shard-1"].as_i64() > sender_live["offset"]["shard-1"].as_i64(),
        "the offset moves on: {archived}"
    );
    let created = receiver.next().await?;
    let events = created["events"].as_array().context("events")?;
    ensure!(
        events.len() == 1
            && events[0]["created"]["contractId"] == new_cid
            && events[0]["created"]["payload"]["owner"] == "s6-bob",
        "{created}"
    );

    // Resumed from the offset of the last message before the transfer: the live marker,
    // then exactly the transfer's message.
    for (token, live, transfer) in [
        (Token::Header(&alice), &sender_live, &archived),
        (Token::Header(&bob), &receiver_live, &created),
    ] {
        let mut resumed = open(env, token).await?;
        resumed
            .send(&json!({"templateIds": [IOU], "offset": live["offset"]}))
            .await?;
        let first = resumed.next().await?;
        ensure!(first == *live, "resumed: {first}, expected {live}");
        let next = resumed.next().await?;
        ensure!(next == *transfer, "resumed: {next}, expected {transfer}");
    }

    // shard-1 fails over under the sender's open stream: the stream goes on from the new
    // active replica, nothing skipped or repeated.
    let failover = tokio::process::Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["admin", "failover", "--service", "shard-1", "--network"])
        .arg(&env.network.path)
        .output()
        .await?;
    ensure!(
        failover.status.success(),
        "ordo admin failover: {}",
        String::from_utf8_lossy(&failover.stderr)
    );
    let second = env
        .ok(
            "/v1/create",
            &bank,
            &json!({"templateId": IOU, "payload":
                {"issuer": "s6-bank", "owner": "s6-alice", "currency": "CHF", "amount": "20"}}),
        )
        .await?;
    let after_failover = sender.next().await?;
    ensure!(
        after_failover["events"] == json!([{ "created": second }]),
        "{after_failover}"
    );
    ensure!(
        after_failover["offset"]["shard-1"].as_i64() > archived["offset"]["shard-1"].as_i64(),
        "{after_failover}"
    );

    // The handshake: no token is 401, a token naming no party 403.
    for (token, status) in [(Token::Missing, 401), (Token::Header(&admin), 403)] {
        match open(env, token).await {
            Err(WsError::Http(response)) => {
                ensure!(response.status() == status, "{response:?}");
                let body: Value =
                    serde_json::from_slice(response.body().as_deref().unwrap_or(b""))?;
                ensure!(
                    body["status"] == status && body["errors"][0].is_string(),
                    "{body}"
                );
            }
            Err(e) => bail!("expected {status}, got {e}"),
            Ok(_) => bail!("expected {status}, the handshake succeeded"),
        }
    }

    // A malformed first message: one 400 naming the field, then a close (1008).
    for (query, field) in [
        (json!({"templateIds": IOU}), "`templateIds`"),
        (json!({"offset": {"shard-9": 3}}), "shard-9"),
        (json!({"offset": {"shard-1": -1}}), "`offset.shard-1`"),
    ] {
        let mut stream = open(env, Token::Header(&alice)).await?;
        stream.send(&query).await?;
        let refused = stream.next().await?;
        ensure!(
            refused["status"] == 400
                && refused["errors"][0]
                    .as_str()
                    .is_some_and(|e| e.contains(field)),
            "{query}: {refused}"
        );
        let close = stream.next().await?;
        ensure!(close == json!({"close": 1008}), "{query}: {close}");
    }

    // A shard refusing its update stream (an offset past its end) ends the socket with
    // the status the gateway maps the shard's answer to.
    let mut stream = open(env, Token::Header(&alice)).await?;
    stream
        .send(&json!({"templateIds": [IOU], "offset": {"shard-1": 1_000_000_000}}))
        .await?;
    let live = stream.next().await?;
    ensure!(live["live"] == true, "{live}");
    let refused = stream.next().await?;
    ensure!(
        refused["status"] == 400
            && refused["errors"][0]
                .as_str()
                .is_some_and(|e| e.contains("shard-1") && e.contains("1000000000")),
        "{refused}"
    );
    let close = stream.next().await?;
    ensure!(close == json!({"close": 1008}), "{close}");

    // A stream opened with a token that expires in three seconds: a 401 naming the
    // expiry, then a close (1008), within a second of it.
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let expiry = UNIX_EPOCH + Duration::from_secs(now + 3);
    let short = env
        .network
        .token_signer()?
        .mint(
            &ordo_participant::auth::LedgerClaims {
                act_as: vec!["s6-alice".into()],
                ..Default::default()
            },
            now + 3,
        )
        .map_err(anyhow::Error::msg)?;
    let mut stream = open(env, Token::Header(&short)).await?;
    stream.send(&json!({"templateIds": [IOU]})).await?;
    stream.until_live().await?;
    let expired = loop {
        let m = stream.next().await?;
        if m["status"].is_number() {
            break m;
        }
    };
    let at = SystemTime::now();
    ensure!(
        expired["status"] == 401
            && expired["errors"][0]
                .as_str()
                .is_some_and(|e| e.contains("expired")),
        "{expired}"
    );
    let close = stream.next().await?;
    ensure!(close == json!({"close": 1008}), "{close}");
    let late = at.duration_since(expiry).unwrap_or_default();
    ensure!(
        at >= expiry && late <= Duration::from_secs(1),
        "the stream ended {late:?} after the expiry (or before it)"
    );
    Ok(())
}
