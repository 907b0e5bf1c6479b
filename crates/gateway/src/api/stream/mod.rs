//! `GET /v1/stream/query`: a WebSocket of the active contracts matching a query, then
//! their live creates and archives, resumable from per-shard offsets.
//!
//! The client's first text message is the query ([`StreamRequest`]). Without an `offset`
//! the gateway sends the matching active contracts of every shard hosting one of the
//! token's parties (`{"events": [{"created": …}], "offset"}`, in chunks), then
//! `{"live": true, "offset"}`, then one `{"events", "offset"}` per transaction with
//! matching events, following each shard's update stream from its snapshot's offset. With
//! an `offset` it skips the snapshot: the `live` marker first, then the transactions after
//! those offsets. Every `offset` carries each followed shard's latest offset, so a client
//! resumes from the last one it received. Every `websocket_heartbeat` (5 s by default) it
//! sends `{"events": [], "offset"}`, so that a client (and any proxy) sees the stream alive
//! when nothing happens.
//!
//! Several queries on one socket: the first message is a list of `{templateIds, query}`
//! (or `{"queries": [...], "offset"?}`), and each created or archived event names the
//! queries its contract matches (`"matchedQueries": [0, 2]`), as in Daml's JSON API.
//! `GET /v1/stream/fetch` is the same stream over contract keys: the first message lists
//! `{templateId, key}`, and the stream sends the active contract with each key, then each
//! contract created with one of the keys and each archive of one sent.
//!
//! `view::View` decides what is sent (pure); a `reader::ShardReader` reads one shard's
//! updates across failovers; `serve` runs the socket.

mod reader;
mod view;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use ordo_ledger_client::{ActiveContracts, Filter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use utoipa::ToSchema;

use self::reader::{ShardReader, on_shard};
use self::view::View;
pub use self::view::{Events, Live, StreamEvent};
use self::view::{Matcher, Queries};
use super::Failure;
use crate::auth::Caller;
use crate::body;
use crate::error::ApiError;
use crate::state::Gateway;

/// The subprotocol that carries no token and that the server selects when a browser
/// authenticates with `Sec-WebSocket-Protocol: jwt.token.<JWT>, ordo.ws.auth` (a server
/// never echoes the token back as the selected protocol).
const AUTH_PROTOCOL: &str = "ordo.ws.auth";
const TOKEN_PROTOCOL: &str = "jwt.token.";
/// Created events per snapshot message.
const CHUNK: usize = 100;
/// The largest message a client may send (its query).
const MAX_CLIENT_MESSAGE: usize = 1024 * 1024;
/// Transactions read ahead of the socket per stream, across its shards.
const READ_AHEAD: usize = 64;
/// How long a closing socket waits for the client's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The client's first message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StreamRequest {
    /// `package:Template` ids; empty: every template.
    #[serde(default)]
    template_ids: Vec<String>,
    /// Payload fields and the values they must equal, or their operators (`%lt`, `%lte`,
    /// `%gt`, `%gte`, `%in`), as in `/v1/query`.
    #[serde(default)]
    #[schema(value_type = Object)]
    query: Map<String, Value>,
    /// Several queries at once, instead of `templateIds` and `query`: each event then
    /// names the queries it matches (`matchedQueries`, indices into this list). The first
    /// message may also be this list alone.
    #[serde(default)]
    queries: Vec<QuerySpec>,
    /// Per shard, the offset to resume after (from the last message received): no
    /// snapshot, only what happened since. A followed shard missing here is read from its
    /// beginning.
    #[serde(default)]
    offset: Option<BTreeMap<String, i64>>,
}

/// One of several queries of a stream.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QuerySpec {
    #[serde(default)]
    template_ids: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    query: Map<String, Value>,
}

/// One contract key of a `/v1/stream/fetch` stream.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FetchSpec {
    template_id: String,
    #[schema(value_type = Object)]
    key: Value,
}

/// Which stream a socket serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Query,
    Fetch,
}

/// Wraps a first message that is a bare list as `{"queries": [...]}`.
fn as_object(text: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match text.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => {
            let mut wrapped = b"{\"queries\": ".to_vec();
            wrapped.extend_from_slice(text);
            wrapped.push(b'}');
            std::borrow::Cow::Owned(wrapped)
        }
        _ => std::borrow::Cow::Borrowed(text),
    }
}

impl StreamRequest {
    /// The first message, checked against the network's `shards`.
    fn parse(text: &[u8], shards: &[String]) -> Result<Self, ApiError> {
        let req: Self = body::parse(&as_object(text), "the first message")?;
        for (i, t) in req.template_ids.iter().enumerate() {
            body::required(&format!("templateIds[{i}]"), t)?;
        }
        if !req.queries.is_empty() && (!req.template_ids.is_empty() || !req.query.is_empty()) {
            return Err(ApiError::bad_request(
                "give one query (`templateIds`, `query`) or several (`queries`), not both",
            ));
        }
        for (q, spec) in req.queries.iter().enumerate() {
            for (i, t) in spec.template_ids.iter().enumerate() {
                body::required(&format!("queries[{q}].templateIds[{i}]"), t)?;
            }
        }
        for (shard, at) in req.offset.iter().flatten() {
            if !shards.contains(shard) {
                return Err(ApiError::bad_request(format!(
                    "field `offset.{shard}`: unknown shard {shard:?} (shards: {})",
                    shards.join(", ")
                )));
            }
            if *at < 0 {
                return Err(ApiError::bad_request(format!(
                    "field `offset.{shard}`: an offset is 0 or more, got {at}"
                )));
            }
        }
        Ok(req)
    }
}

/// Takes the token from the subprotocols when the request has no Authorization header:
/// `Sec-WebSocket-Protocol: jwt.token.<JWT>, ordo.ws.auth`, since browsers cannot set
/// headers on a WebSocket.
fn token_from_protocols(headers: &mut HeaderMap) -> Result<(), ApiError> {
    if headers.contains_key(AUTHORIZATION) {
        return Ok(());
    }
    let offered: Vec<&str> = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let Some(token) = offered.iter().find_map(|p| p.strip_prefix(TOKEN_PROTOCOL)) else {
        return Err(ApiError::unauthorized(format!(
            "missing token: send `Authorization: Bearer <token>`, or offer the subprotocols \
             `{TOKEN_PROTOCOL}<token>, {AUTH_PROTOCOL}`"
        )));
    };
    if !offered.contains(&AUTH_PROTOCOL) {
        return Err(ApiError::unauthorized(format!(
            "the subprotocol `{TOKEN_PROTOCOL}<token>` must be offered with `{AUTH_PROTOCOL}`"
        )));
    }
    let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| ApiError::unauthorized("the token subprotocol is not a valid token"))?;
    headers.insert(AUTHORIZATION, bearer);
    Ok(())
}

#[utoipa::path(
    get,
    path = "/v1/stream/query",
    operation_id = "stream_query",
    tag = "query",
    description = "A WebSocket (GET with `Upgrade: websocket`). The client's first text \
        message is a `StreamRequest`. Without `offset`: the matching active contracts as \
        `Events` messages (`{\"created\": …}` events), then one `Live` marker, then one \
        `Events` message per transaction with matching creates or archives of contracts \
        sent. With `offset`: the `Live` marker, then the transactions after those offsets. \
        A malformed first message, or a stream that fails, gets one `Failure` message and \
        a close frame (1008 for a 4xx status). Browsers send the token as the subprotocols \
        `jwt.token.<JWT>, ordo.ws.auth`; the server then selects `ordo.ws.auth`. Parties \
        allocated after the stream started are not followed.",
    params(
        ("Sec-WebSocket-Protocol" = Option<String>, Header,
         description = "`jwt.token.<JWT>, ordo.ws.auth`: the token, for clients that cannot set the Authorization header"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "Switching to the WebSocket; messages are `Events`, `Live` and, last, `Failure`"),
        (status = 400, description = "A malformed WebSocket handshake", body = Failure),
        (status = 401, description = "No token, or one that does not verify", body = Failure),
        (status = 403, description = "The token names no party", body = Failure),
        (status = 426, description = "Not a WebSocket handshake (no `Connection: upgrade`)", body = Failure),
    )
)]
pub async fn stream(
    State(gw): State<Arc<Gateway>>,
    request: Request,
) -> Result<Response, ApiError> {
    open(gw, request, Kind::Query).await
}

#[utoipa::path(
    get,
    path = "/v1/stream/fetch",
    operation_id = "stream_fetch",
    tag = "query",
    description = "A WebSocket like `/v1/stream/query`, over contract keys: the client's \
        first text message is a list of `FetchSpec` (`[{\"templateId\", \"key\"}]`). The \
        active contracts with those keys that the token's parties see come as `Events` \
        (each event's `matchedQueries` names the keys it has, by index), then the `Live` \
        marker, then each contract created with one of the keys and each archive of one \
        sent. A key not of its template's key type, or a template without a key, gets a \
        `Failure` (400) and a close frame 1008.",
    params(
        ("Sec-WebSocket-Protocol" = Option<String>, Header,
         description = "`jwt.token.<JWT>, ordo.ws.auth`: the token, for clients that cannot set the Authorization header"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "Switching to the WebSocket; messages are `Events`, `Live` and, last, `Failure`"),
        (status = 400, description = "A malformed WebSocket handshake", body = Failure),
        (status = 401, description = "No token, or one that does not verify", body = Failure),
        (status = 403, description = "The token names no party", body = Failure),
        (status = 426, description = "Not a WebSocket handshake (no `Connection: upgrade`)", body = Failure),
    )
)]
pub async fn stream_fetch(
    State(gw): State<Arc<Gateway>>,
    request: Request,
) -> Result<Response, ApiError> {
    open(gw, request, Kind::Fetch).await
}

/// Checks the handshake and the token, and upgrades to a stream of `kind`.
async fn open(gw: Arc<Gateway>, request: Request, kind: Kind) -> Result<Response, ApiError> {
    let (mut parts, _) = request.into_parts();
    token_from_protocols(&mut parts.headers)?;
    let caller = Caller::from_request_parts(&mut parts, &gw).await?;
    let parties = caller.readable()?;
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &gw)
        .await
        .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let expires_at = caller.rights.expires_at;
    let token = caller.token;
    Ok(upgrade
        .protocols([AUTH_PROTOCOL])
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| serve(socket, gw, token, parties, expires_at, kind)))
}

/// Why a stream ended.
enum End {
    /// The client closed the socket or could not be sent to: nothing more to say.
    Gone,
    /// Told to the client, then the socket is closed.
    Failed(ApiError),
}

impl From<ApiError> for End {
    fn from(e: ApiError) -> Self {
        Self::Failed(e)
    }
}

/// Serves the stream until it ends, or until the token it was opened with expires (then
/// a 401 `Failure` and a close frame 1008: the client reopens with a fresh token and the
/// last offsets it received).
async fn serve(
    mut socket: WebSocket,
    gw: Arc<Gateway>,
    token: String,
    parties: Vec<String>,
    expires_at: Option<std::time::SystemTime>,
    kind: Kind,
) {
    let expired = async {
        match expires_at {
            Some(at) => {
                let left = at
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default();
                tokio::time::sleep(left).await;
            }
            None => std::future::pending().await,
        }
    };
    let end = tokio::select! {
        biased;
        () = expired => End::Failed(ApiError::unauthorized(
            "the token expired: the stream ends; open it again with a fresh token and the \
             offsets last received",
        )),
        ended = run(&mut socket, &gw, &token, &parties, kind) => {
            let Err(end) = ended;
            end
        }
    };
    match end {
        End::Gone => tracing::debug!(?parties, "stream closed by the client"),
        End::Failed(e) => {
            if e.status.is_server_error() {
                tracing::warn!(?parties, status = e.status.as_u16(), error = %e.message, "stream failed");
            } else {
                tracing::debug!(?parties, status = e.status.as_u16(), error = %e.message, "stream refused");
            }
            fail(&mut socket, &e).await;
        }
    }
}

/// What the first message asks for: the matchers, the templates to read (empty: all) and
/// the offsets to resume after, if any.
async fn matchers(
    gw: &Gateway,
    text: &[u8],
    kind: Kind,
) -> Result<(Queries, Vec<String>, Option<BTreeMap<String, i64>>), ApiError> {
    if kind == Kind::Fetch {
        let specs: Vec<FetchSpec> = body::parse(text, "the first message")?;
        if specs.is_empty() {
            return Err(ApiError::bad_request(
                "the first message lists no key: give [{\"templateId\", \"key\"}, …]",
            ));
        }
        let mut matchers = Vec::new();
        let mut templates = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            body::required(&format!("[{i}].templateId"), &spec.template_id)?;
            let key = gw
                .templates
                .canonical_key(gw, &spec.template_id, &spec.key)
                .await
                .map_err(|e| ApiError::new(e.status, format!("[{i}]: {}", e.message)))?;
            let key = serde_json::from_str(&key).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("a canonical key does not parse: {e}"),
                )
            })?;
            templates.push(spec.template_id.clone());
            matchers.push(Matcher::Key {
                template: spec.template_id,
                key,
            });
        }
        templates.sort();
        templates.dedup();
        let queries = Queries {
            matchers,
            multiplexed: true,
        };
        return Ok((queries, templates, None));
    }
    let request = StreamRequest::parse(text, &gw.network().shards())?;
    if request.queries.is_empty() {
        let matching = super::filter(gw, &request.template_ids, &request.query).await?;
        return Ok((matching.into(), request.template_ids, request.offset));
    }
    let mut matchers = Vec::new();
    for spec in &request.queries {
        matchers.push(Matcher::Query(
            super::filter(gw, &spec.template_ids, &spec.query).await?,
        ));
    }
    // The union of the queries' templates; one over every template reads them all.
    let mut templates: Vec<String> = if request.queries.iter().any(|q| q.template_ids.is_empty()) {
        Vec::new()
    } else {
        request
            .queries
            .iter()
            .flat_map(|q| q.template_ids.iter().cloned())
            .collect()
    };
    templates.sort();
    templates.dedup();
    let queries = Queries {
        matchers,
        multiplexed: true,
    };
    Ok((queries, templates, request.offset))
}

/// The whole stream: the query, the snapshot (unless resumed), then live until it ends.
async fn run(
    socket: &mut WebSocket,
    gw: &Arc<Gateway>,
    token: &str,
    parties: &[String],
    kind: Kind,
) -> Result<Infallible, End> {
    let text = first_message(socket).await?;
    let (matching, templates, offset) = matchers(gw, &text, kind).await?;
    let followed = gw.parties_by_shard(parties).await?;
    let filter = |parties: &Vec<String>| Filter {
        parties: parties.clone(),
        templates: templates.clone(),
    };
    let mut view = match &offset {
        Some(given) => View::resume(matching, given, followed.keys()),
        None => {
            let reads = followed.iter().map(|(shard, parties)| {
                let filter = filter(parties);
                async move {
                    let acs = active_contracts(gw, token, shard, &filter).await?;
                    Ok::<_, ApiError>((shard.clone(), acs))
                }
            });
            let snapshots = futures::future::try_join_all(reads).await?;
            let (view, events) = View::snapshot(matching, snapshots);
            for chunk in events.chunks(CHUNK) {
                send(socket, &view.events(chunk.to_vec())).await?;
            }
            view
        }
    };
    send(socket, &view.live()).await?;

    let (updates_tx, mut updates) = mpsc::channel(READ_AHEAD);
    // Dropped when the stream ends, which stops every shard's reader.
    let mut readers = JoinSet::new();
    for (shard, parties) in &followed {
        let reader = ShardReader {
            gw: gw.clone(),
            token: token.to_owned(),
            shard: shard.clone(),
            filter: filter(parties),
        };
        readers.spawn(reader.follow(view.offset(shard), updates_tx.clone()));
    }
    let mut heartbeat = tokio::time::interval(gw.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.reset();
    loop {
        tokio::select! {
            // Every offset the client holds, and no events: it is alive.
            _ = heartbeat.tick() => send(socket, &view.events(Vec::new())).await?,
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return Err(End::Gone),
                // Later messages change nothing.
                Some(Ok(_)) => {}
            },
            // `updates_tx` lives as long as this loop: the channel never closes.
            Some(update) = updates.recv() => {
                let (shard, tx) = update?;
                if let Some(events) = view.transaction(&shard, &tx) {
                    send(socket, &events).await?;
                }
            }
        }
    }
}

/// The first text message; pings and pongs before it are skipped.
async fn first_message(socket: &mut WebSocket) -> Result<Vec<u8>, End> {
    loop {
        match socket.recv().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().as_bytes().to_vec()),
            Some(Ok(Message::Binary(_))) => {
                return Err(ApiError::bad_request(
                    "the first message must be a text message: the query as JSON",
                )
                .into());
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_)) | Err(_)) | None => return Err(End::Gone),
        }
    }
}

async fn active_contracts(
    gw: &Gateway,
    token: &str,
    shard: &str,
    filter: &Filter,
) -> Result<ActiveContracts, ApiError> {
    let client = gw.shard_client(shard, token)?;
    client
        .read(|c| async move { c.active_contracts(filter).await })
        .await
        .map_err(|e| on_shard(shard, e))
}

async fn send(socket: &mut WebSocket, message: &impl Serialize) -> Result<(), End> {
    let text = serde_json::to_string(message).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding a message: {e}"),
        )
    })?;
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(|_| End::Gone)
}

/// Tells the client why the stream ends, closes the socket (1008 for a client error,
/// 1013 for an unavailable shard, else 1011), and waits a moment for the client's close.
async fn fail(socket: &mut WebSocket, e: &ApiError) {
    if send(socket, &Failure::from(e)).await.is_err() {
        return;
    }
    let code = if e.status.is_client_error() {
        close_code::POLICY
    } else if e.status == StatusCode::SERVICE_UNAVAILABLE {
        close_code::AGAIN
    } else {
        close_code::ERROR
    };
    let reason = e.status.canonical_reason().unwrap_or("error");
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards() -> Vec<String> {
        vec!["shard-1".into(), "shard-2".into()]
    }

    fn parse_err(text: &str) -> String {
        StreamRequest::parse(text.as_bytes(), &shards())
            .unwrap_err()
            .message
    }

    #[test]
    fn the_first_message_is_checked_field_by_field() {
        let ok = StreamRequest::parse(
            br#"{"templateIds": ["iou:Iou"], "query": {"owner": "alice"}, "offset": {"shard-2": 17}}"#,
            &shards(),
        );
        let ok = ok.unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(ok.offset, Some(BTreeMap::from([("shard-2".into(), 17)])));
        assert!(parse_err("{").contains("the first message is not JSON"));
        assert!(parse_err(r#"{"templateIds": "iou:Iou"}"#).contains("`templateIds`"));
        assert!(parse_err(r#"{"templateIds": [""]}"#).contains("`templateIds[0]`"));
        assert!(parse_err(r#"{"filter": 1}"#).contains("`filter`"));
        assert!(parse_err(r#"{"offset": {"shard-1": "x"}}"#).contains("`offset.shard-1`"));
        let unknown = parse_err(r#"{"offset": {"shard-9": 1}}"#);
        assert!(unknown.contains("unknown shard \"shard-9\""), "{unknown}");
        let negative = parse_err(r#"{"offset": {"shard-1": -1}}"#);
        assert!(negative.contains("`offset.shard-1`") && negative.contains("-1"));
    }

    #[test]
    fn the_token_comes_from_the_subprotocols_only_with_ordo_ws_auth() {
        let mut headers = HeaderMap::new();
        let protocols = |v: &'static str| HeaderValue::from_static(v);
        assert!(token_from_protocols(&mut headers).is_err());
        headers.insert(SEC_WEBSOCKET_PROTOCOL, protocols("jwt.token.abc"));
        let alone = token_from_protocols(&mut headers).unwrap_err();
        assert_eq!(alone.status, StatusCode::UNAUTHORIZED);
        assert!(alone.message.contains(AUTH_PROTOCOL), "{}", alone.message);
        headers.insert(
            SEC_WEBSOCKET_PROTOCOL,
            protocols("jwt.token.abc.def, ordo.ws.auth"),
        );
        assert!(token_from_protocols(&mut headers).is_ok());
        assert_eq!(headers[AUTHORIZATION], "Bearer abc.def");
        // A header wins over the subprotocol.
        headers.insert(AUTHORIZATION, protocols("Bearer xyz"));
        assert!(token_from_protocols(&mut headers).is_ok());
        assert_eq!(headers[AUTHORIZATION], "Bearer xyz");
    }
}
