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
//! [`View`] decides what is sent (pure); a `ShardReader` reads one shard's updates across
//! failovers; `serve` runs the socket.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use ordo_ledger_client::{
    ActiveContracts, Archived, Contract, Event, Filter, LedgerError, Transaction, UpdateStream,
    is_failover_error,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use utoipa::ToSchema;

use super::{ArchivedView, ContractView, EventView, Failure, matches};
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
/// The pause before reopening a shard's update stream that broke, doubled per further
/// break without a transaction in between, up to `MAX_REOPEN_PAUSE`.
const REOPEN_PAUSE: Duration = Duration::from_millis(50);
const MAX_REOPEN_PAUSE: Duration = Duration::from_secs(1);
/// How long a closing socket waits for the client's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The client's first message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StreamRequest {
    /// `package:Template` ids; empty: every template.
    #[serde(default)]
    template_ids: Vec<String>,
    /// Payload fields and the values they must equal, as in `/v1/query`.
    #[serde(default)]
    #[schema(value_type = Object)]
    query: Map<String, Value>,
    /// Per shard, the offset to resume after (from the last message received): no
    /// snapshot, only what happened since. A followed shard missing here is read from its
    /// beginning.
    #[serde(default)]
    offset: Option<BTreeMap<String, i64>>,
}

impl StreamRequest {
    /// The first message, checked against the network's `shards`.
    fn parse(text: &[u8], shards: &[String]) -> Result<Self, ApiError> {
        let req: Self = body::parse(text, "the first message")?;
        for (i, t) in req.template_ids.iter().enumerate() {
            body::required(&format!("templateIds[{i}]"), t)?;
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

/// `{"events": [...], "offset": {shard: offset}}`: contracts of the snapshot, or what one
/// transaction did.
#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub struct Events {
    events: Vec<EventView>,
    offset: BTreeMap<String, i64>,
}

/// `{"live": true, "offset": {shard: offset}}`: the snapshot is complete; what follows is
/// live.
#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub struct Live {
    live: bool,
    offset: BTreeMap<String, i64>,
}

/// What one stream has told its client, and so what it tells next.
#[derive(Debug)]
struct View {
    query: Map<String, Value>,
    /// Per followed shard, the offset of the latest transaction read (or the snapshot's).
    offsets: BTreeMap<String, i64>,
    /// Contracts sent as created and not yet as archived: a contract on two of the
    /// caller's shards comes from each, and is sent once.
    sent: HashSet<String>,
    /// Resumed from offsets: the client may hold contracts created before them, so their
    /// archives are sent (it ignores those of contracts it does not hold).
    resumed: bool,
    /// (Resumed only.) Contracts seen created that did not match: their archives are not
    /// sent.
    withheld: HashSet<String>,
}

impl View {
    /// A view starting from each shard's active contracts: the matching ones to send.
    fn snapshot(
        query: Map<String, Value>,
        shards: Vec<(String, ActiveContracts)>,
    ) -> (Self, Vec<EventView>) {
        let mut view = Self::new(query, BTreeMap::new(), false);
        let mut events = Vec::new();
        for (shard, acs) in shards {
            view.offsets.insert(shard, acs.offset);
            events.extend(acs.contracts.iter().filter_map(|c| view.created(c)));
        }
        (view, events)
    }

    /// A view resuming after `given` offsets; `followed` shards missing from them start
    /// at their beginning.
    fn resume<'a>(
        query: Map<String, Value>,
        given: &BTreeMap<String, i64>,
        followed: impl IntoIterator<Item = &'a String>,
    ) -> Self {
        let offsets = followed
            .into_iter()
            .map(|shard| (shard.clone(), given.get(shard).copied().unwrap_or(0)))
            .collect();
        Self::new(query, offsets, true)
    }

    fn new(query: Map<String, Value>, offsets: BTreeMap<String, i64>, resumed: bool) -> Self {
        Self {
            query,
            offsets,
            sent: HashSet::new(),
            resumed,
            withheld: HashSet::new(),
        }
    }

    fn offset(&self, shard: &str) -> i64 {
        self.offsets.get(shard).copied().unwrap_or(0)
    }

    fn live(&self) -> Live {
        Live {
            live: true,
            offset: self.offsets.clone(),
        }
    }

    fn events(&self, events: Vec<EventView>) -> Events {
        Events {
            events,
            offset: self.offsets.clone(),
        }
    }

    /// What `tx`, read from `shard`, tells the client: nothing when none of its events is
    /// for it.
    fn transaction(&mut self, shard: &str, tx: &Transaction) -> Option<Events> {
        self.offsets.insert(shard.to_owned(), tx.offset);
        let events: Vec<EventView> = tx
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Created(c) => self.created(c),
                Event::Archived(a) => self.archived(a),
            })
            .collect();
        (!events.is_empty()).then(|| self.events(events))
    }

    fn created(&mut self, c: &Contract) -> Option<EventView> {
        if !matches(&c.payload, &self.query) {
            if self.resumed {
                self.withheld.insert(c.contract_id.clone());
            }
            return None;
        }
        self.sent
            .insert(c.contract_id.clone())
            .then(|| EventView::Created(ContractView::from(c)))
    }

    fn archived(&mut self, a: &Archived) -> Option<EventView> {
        let send = self.sent.remove(&a.contract_id)
            || (self.resumed && !self.withheld.remove(&a.contract_id));
        send.then(|| EventView::Archived(ArchivedView::from(a)))
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
        .on_upgrade(move |socket| serve(socket, gw, token, parties, expires_at)))
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
        ended = run(&mut socket, &gw, &token, &parties) => {
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

/// The whole stream: the query, the snapshot (unless resumed), then live until it ends.
async fn run(
    socket: &mut WebSocket,
    gw: &Arc<Gateway>,
    token: &str,
    parties: &[String],
) -> Result<Infallible, End> {
    let text = first_message(socket).await?;
    let request = StreamRequest::parse(&text, &gw.network().shards())?;
    let followed = gw.parties_by_shard(parties).await?;
    let filter = |parties: &Vec<String>| Filter {
        parties: parties.clone(),
        templates: request.template_ids.clone(),
    };
    let mut view = match &request.offset {
        Some(given) => View::resume(request.query.clone(), given, followed.keys()),
        None => {
            let reads = followed.iter().map(|(shard, parties)| {
                let filter = filter(parties);
                async move {
                    let acs = active_contracts(gw, token, shard, &filter).await?;
                    Ok::<_, ApiError>((shard.clone(), acs))
                }
            });
            let snapshots = futures::future::try_join_all(reads).await?;
            let (view, events) = View::snapshot(request.query.clone(), snapshots);
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

fn on_shard(shard: &str, e: LedgerError) -> ApiError {
    let pruned = e.is(ordo_proto::errors::PARTICIPANT_PRUNED_DATA_ACCESSED);
    let mut e = ApiError::from(e);
    e.message = if pruned {
        format!(
            "shard {shard} pruned the updates this stream would resume from: open the stream again without `offset` to start from a new snapshot ({})",
            e.message
        )
    } else {
        format!("shard {shard}: {}", e.message)
    };
    e
}

/// A shard's transaction, or why its stream ended.
type Update = Result<(String, Transaction), ApiError>;

/// One shard's update stream, for one socket.
struct ShardReader {
    gw: Arc<Gateway>,
    token: String,
    shard: String,
    filter: Filter,
}

impl ShardReader {
    /// Sends the shard's transactions after offset `after` to `updates`, from its active
    /// replica: a stream broken by a failover is opened again after the last transaction
    /// sent, so nothing is skipped or repeated. Ends after sending an error that is not a
    /// failover's, or when `updates` is closed.
    async fn follow(self, mut after: i64, updates: mpsc::Sender<Update>) {
        let mut pause = REOPEN_PAUSE;
        loop {
            let mut stream = match self.open(after).await {
                Ok(stream) => stream,
                Err(e) => {
                    let _ = updates.send(Err(e)).await;
                    return;
                }
            };
            while let Some(item) = stream.next().await {
                match item {
                    Ok(tx) => {
                        after = tx.offset;
                        pause = REOPEN_PAUSE;
                        if updates.send(Ok((self.shard.clone(), tx))).await.is_err() {
                            return;
                        }
                    }
                    Err(e) if is_failover_error(&e) => {
                        tracing::info!(shard = %self.shard, after, error = %e, "update stream broke; resuming on the active replica");
                        break;
                    }
                    Err(e) => {
                        let _ = updates.send(Err(on_shard(&self.shard, e))).await;
                        return;
                    }
                }
            }
            // A stream that ends (its replica stopped) is resumed like a broken one.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_REOPEN_PAUSE);
        }
    }

    /// The shard's live update stream after `after`, from its active replica (looked up
    /// again each time, so that a replica added to the network is among those tried).
    async fn open(&self, after: i64) -> Result<UpdateStream, ApiError> {
        let client = self.gw.shard_client(&self.shard, &self.token)?;
        client
            .read(|c| {
                let filter = self.filter.clone();
                async move { c.updates(&filter, after, true).await }
            })
            .await
            .map_err(|e| on_shard(&self.shard, e))
    }
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
    use serde_json::json;

    use super::*;

    fn shards() -> Vec<String> {
        vec!["shard-1".into(), "shard-2".into()]
    }

    fn parse_err(text: &str) -> String {
        StreamRequest::parse(text.as_bytes(), &shards())
            .unwrap_err()
            .message
    }

    fn contract(id: &str, owner: &str) -> Contract {
        Contract {
            contract_id: id.into(),
            template_id: "iou:Iou".into(),
            package_id: "p".into(),
            payload: json!({"owner": owner}),
            signatories: vec!["bank".into()],
            observers: vec![owner.into()],
            key: None,
            witnesses: vec![],
            offset: 1,
            created_at: 0,
        }
    }

    fn archived(id: &str) -> Event {
        Event::Archived(Archived {
            contract_id: id.into(),
            template_id: "iou:Iou".into(),
            witnesses: vec![],
        })
    }

    fn tx(offset: i64, events: Vec<Event>) -> Transaction {
        Transaction {
            update_id: format!("u{offset}"),
            command_id: String::new(),
            workflow_id: String::new(),
            offset,
            effective_at: 0,
            events,
        }
    }

    fn ids(events: &Events) -> Vec<String> {
        events
            .events
            .iter()
            .map(|e| match e {
                EventView::Created(c) => format!("+{}", c.contract_id),
                EventView::Archived(a) => format!("-{}", a.contract_id),
            })
            .collect()
    }

    fn alice() -> Map<String, Value> {
        json!({"owner": "alice"})
            .as_object()
            .cloned()
            .unwrap_or_default()
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

    #[test]
    fn a_snapshot_sends_matching_contracts_once_and_their_archives() {
        let acs = |offset, contracts| ActiveContracts { offset, contracts };
        let (mut view, events) = View::snapshot(
            alice(),
            vec![
                (
                    "shard-1".into(),
                    acs(5, vec![contract("c1", "alice"), contract("c2", "bob")]),
                ),
                // c1 again, from the other shard hosting the caller's parties.
                ("shard-2".into(), acs(9, vec![contract("c1", "alice")])),
            ],
        );
        let live = view.live();
        assert_eq!(ids(&view.events(events)), ["+c1"]);
        assert_eq!(
            live.offset,
            BTreeMap::from([("shard-1".into(), 5), ("shard-2".into(), 9)])
        );
        // c2 did not match: its archive is not sent; nor is a create that does not match.
        let t = tx(
            6,
            vec![
                archived("c2"),
                Event::Created(contract("c3", "bob")),
                archived("c1"),
                Event::Created(contract("c4", "alice")),
            ],
        );
        let sent = view.transaction("shard-1", &t).expect("events");
        assert_eq!(ids(&sent), ["-c1", "+c4"]);
        assert_eq!(
            sent.offset,
            BTreeMap::from([("shard-1".into(), 6), ("shard-2".into(), 9)])
        );
        // The same transaction seen from shard-2: nothing new, but the offset moves.
        assert!(
            view.transaction("shard-2", &tx(10, t.events.clone()))
                .is_none()
        );
        assert_eq!(view.offset("shard-2"), 10);
    }

    #[test]
    fn a_resumed_view_sends_archives_of_contracts_it_did_not_see_created() {
        let given = BTreeMap::from([("shard-2".into(), 17)]);
        let followed = shards();
        let mut view = View::resume(alice(), &given, &followed);
        assert_eq!(
            view.live().offset,
            BTreeMap::from([("shard-1".into(), 0), ("shard-2".into(), 17)])
        );
        let t = tx(
            18,
            vec![
                Event::Created(contract("c5", "bob")),
                // Created before the resumed offset: the client may hold it.
                archived("c0"),
            ],
        );
        assert_eq!(
            ids(&view.transaction("shard-2", &t).expect("events")),
            ["-c0"]
        );
        // c5 was seen not to match: its archive is not sent.
        assert!(
            view.transaction("shard-2", &tx(19, vec![archived("c5")]))
                .is_none()
        );
        assert_eq!(view.offset("shard-2"), 19);
    }
}
