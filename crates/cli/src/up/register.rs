//! Adding the members to topology through the topology manager's admin API. Both calls
//! are idempotent, so a resumed network registers again and changes nothing.

use std::time::Duration;

use anyhow::{Context, bail};
use ordo_proto::admin::v1::topology_admin_service_client::TopologyAdminServiceClient;
use ordo_proto::admin::v1::{RegisterMediatorRequest, RegisterParticipantRequest};
use tonic::Code;
use tonic::metadata::MetadataValue;

use crate::node::InitReport;

/// How long the manager may stay UNAVAILABLE (a replica reports SERVING before it is
/// asked, so this covers a sequencer hiccup or a failover only).
const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);

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

/// The topology manager's admin API across its replicas: calls go to the replica that
/// last answered, and move to the next one while the current one is UNAVAILABLE (passive)
/// or unreachable.
pub struct Registrar {
    clients: Vec<(
        String,
        TopologyAdminServiceClient<tonic::transport::Channel>,
    )>,
    current: usize,
    bearer: MetadataValue<tonic::metadata::Ascii>,
}

impl Registrar {
    pub fn connect(endpoints: &[String], token: &str) -> anyhow::Result<Self> {
        let mut clients = Vec::new();
        for endpoint in endpoints {
            // Lazy: a replica that is down now is simply skipped when called.
            let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
                .with_context(|| format!("the topology admin endpoint {endpoint:?}"))?
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(30))
                .connect_lazy();
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

    /// Registers the mediator (`shard` None) or a shard's participant, retrying on the
    /// next replica while the one asked is UNAVAILABLE.
    pub async fn register(&mut self, m: &Member, shard: Option<&str>) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + REGISTER_TIMEOUT;
        loop {
            let (endpoint, client) = &self.clients[self.current];
            let mut client = client.clone();
            let (name, public_key) = (m.name.clone(), m.public_key.clone());
            let registered = match shard {
                None => client
                    .register_mediator(self.request(RegisterMediatorRequest { name, public_key }))
                    .await
                    .map(|r| r.into_inner().member),
                Some(shard) => client
                    .register_participant(self.request(RegisterParticipantRequest {
                        name,
                        public_key,
                        shard: shard.to_owned(),
                    }))
                    .await
                    .map(|r| r.into_inner().member),
            };
            match registered {
                Ok(member) => return check(m, &member),
                Err(s)
                    if s.code() == Code::Unavailable && tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(member = %m.name, %endpoint, status = %s, "topology manager replica unavailable; trying the next");
                    self.current = (self.current + 1) % self.clients.len();
                    if self.current == 0 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Err(s) => bail!(
                    "registering {} with the topology manager ({endpoint}) failed: {:?}: {}",
                    m.name,
                    s.code(),
                    s.message()
                ),
            }
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        req.metadata_mut()
            .insert("authorization", self.bearer.clone());
        req
    }
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
