//! Adding the members to topology through the topology manager's admin API. Both calls
//! are idempotent, so a resumed network registers again and changes nothing. The shards
//! already in topology are read the same way (`ordo admin shard add` refuses those).

use std::time::Duration;

use anyhow::{Context, bail};
use ordo_proto::admin::v1::topology_admin_service_client::TopologyAdminServiceClient;
use ordo_proto::admin::v1::{
    ListShardsRequest, RegisterMediatorRequest, RegisterParticipantRequest,
};
use tonic::Code;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::node::InitReport;

/// How long the manager may stay UNAVAILABLE (a replica reports SERVING before it is
/// asked, so this covers a sequencer hiccup or a failover only).
const UNAVAILABLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A member as `init` reported it.
pub struct Member {
    pub name: String,
    pub member: String,
    pub public_key: Vec<u8>,
}

impl Member {
    pub fn from_report(report: &InitReport) -> anyhow::Result<Self> {
        let member = report
            .member
            .clone()
            .with_context(|| format!("`init` of {} reported no member id", report.node_name))?;
        let key = report
            .public_key
            .as_deref()
            .with_context(|| format!("`init` of {} reported no public key", report.node_name))?;
        Ok(Self {
            name: report.node_name.clone(),
            member,
            public_key: hex::decode(key)
                .with_context(|| format!("public key of {}: {key:?}", report.node_name))?,
        })
    }
}

type Client = TopologyAdminServiceClient<Channel>;

/// The topology manager's admin API across its replicas: calls go to the replica that
/// last answered, and move to the next one while the current one is UNAVAILABLE (passive)
/// or unreachable.
pub struct Registrar {
    clients: Vec<(String, Client)>,
    current: usize,
    bearer: MetadataValue<Ascii>,
}

impl Registrar {
    /// Connects with the process's trusted client certificate (the network file's).
    pub fn connect(endpoints: &[String], token: &str) -> anyhow::Result<Self> {
        Self::connect_with(endpoints, token, ordo_node::tls::trusted().as_ref())
    }

    /// Connects presenting `tls` to `https://` endpoints (a node's own certificate).
    pub fn connect_with(
        endpoints: &[String],
        token: &str,
        tls: Option<&ordo_node::tls::ClientTls>,
    ) -> anyhow::Result<Self> {
        let mut clients = Vec::new();
        for endpoint in endpoints {
            // Lazy: a replica that is down now is simply skipped when called.
            let channel = ordo_node::tls::lazy_channel(endpoint, tls, |e| {
                e.connect_timeout(Duration::from_secs(2))
                    .timeout(Duration::from_secs(30))
            })
            .with_context(|| format!("the topology admin endpoint {endpoint:?}"))?;
            clients.push((endpoint.clone(), TopologyAdminServiceClient::new(channel)));
        }
        anyhow::ensure!(!clients.is_empty(), "no topology manager endpoint");
        Ok(Self {
            clients,
            current: 0,
            bearer: format!("Bearer {token}")
                .parse()
                .context("the topology admin token is not valid in a header")?,
        })
    }

    /// Registers the mediator (`shard` None) or a shard's participant.
    pub async fn register(&mut self, m: &Member, shard: Option<&str>) -> anyhow::Result<()> {
        let (name, public_key) = (m.name.clone(), m.public_key.clone());
        let bearer = self.bearer.clone();
        let registered = match shard {
            None => {
                let req = RegisterMediatorRequest { name, public_key };
                self.call(&format!("registering {}", m.name), |mut c| {
                    let req = authorized(req.clone(), &bearer);
                    async move { Ok(c.register_mediator(req).await?.into_inner().member) }
                })
                .await?
            }
            Some(shard) => {
                let req = RegisterParticipantRequest {
                    name,
                    public_key,
                    shard: shard.to_owned(),
                };
                self.call(&format!("registering {}", m.name), |mut c| {
                    let req = authorized(req.clone(), &bearer);
                    async move { Ok(c.register_participant(req).await?.into_inner().member) }
                })
                .await?
            }
        };
        check(m, &registered)
    }

    /// Every shard in topology with its participant's member id.
    pub async fn shards(&mut self) -> anyhow::Result<Vec<(String, String)>> {
        let bearer = self.bearer.clone();
        let listed = self
            .call("listing the shards", |mut c| {
                let req = authorized(ListShardsRequest {}, &bearer);
                async move { Ok(c.list_shards(req).await?.into_inner().shards) }
            })
            .await?;
        Ok(listed
            .into_iter()
            .map(|s| (s.shard, s.participant))
            .collect())
    }

    /// The `authorization` header of the calls (for [`authorized`]).
    pub fn bearer(&self) -> MetadataValue<Ascii> {
        self.bearer.clone()
    }

    /// Runs `call` on the current replica's client, moving on to the next replica while
    /// the one asked is UNAVAILABLE (for up to [`UNAVAILABLE_TIMEOUT`]).
    pub async fn call<T, F>(
        &mut self,
        what: &str,
        mut call: impl FnMut(Client) -> F,
    ) -> anyhow::Result<T>
    where
        F: Future<Output = Result<T, tonic::Status>>,
    {
        let deadline = tokio::time::Instant::now() + UNAVAILABLE_TIMEOUT;
        loop {
            let (endpoint, client) = &self.clients[self.current];
            match call(client.clone()).await {
                Ok(answer) => return Ok(answer),
                Err(s)
                    if s.code() == Code::Unavailable && tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(%endpoint, status = %s, "{what}: topology manager replica unavailable; trying the next");
                    self.current = (self.current + 1) % self.clients.len();
                    if self.current == 0 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Err(s) => bail!(
                    "{what} with the topology manager ({endpoint}) failed: {:?}: {}",
                    s.code(),
                    s.message()
                ),
            }
        }
    }
}

pub fn authorized<T>(message: T, bearer: &MetadataValue<Ascii>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut().insert("authorization", bearer.clone());
    req
}

/// The manager derives the id from the name and key; a different one means the data
/// directory mixes keys of two networks.
fn check(m: &Member, registered: &str) -> anyhow::Result<()> {
    if registered != m.member {
        bail!(
            "the topology manager registered {} as {registered}, but its key makes it {}",
            m.name,
            m.member
        );
    }
    tracing::info!(member = %m.member, "registered with the topology manager");
    Ok(())
}
