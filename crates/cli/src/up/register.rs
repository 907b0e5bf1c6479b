//! Adding the members to topology through the topology manager's admin API. Both calls
//! are idempotent, so a resumed network registers again and changes nothing.

use std::time::Duration;

use anyhow::{Context, bail};
use ordo_proto::admin::v1::topology_admin_service_client::TopologyAdminServiceClient;
use ordo_proto::admin::v1::{RegisterMediatorRequest, RegisterParticipantRequest};
use tonic::Code;
use tonic::metadata::MetadataValue;

use crate::node::InitReport;

/// How long the manager may stay UNAVAILABLE (it reports SERVING before it is asked, so
/// this covers a sequencer hiccup only).
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

pub struct Registrar {
    client: TopologyAdminServiceClient<tonic::transport::Channel>,
    bearer: MetadataValue<tonic::metadata::Ascii>,
}

impl Registrar {
    pub async fn connect(endpoint: &str, token: &str) -> anyhow::Result<Self> {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .with_context(|| format!("connecting to the topology manager at {endpoint}"))?;
        Ok(Self {
            client: TopologyAdminServiceClient::new(channel),
            bearer: format!("Bearer {token}")
                .parse()
                .context("the topology admin token is not valid in a header")?,
        })
    }

    /// Registers the mediator (`shard` None) or a shard's participant, retrying while the
    /// manager is UNAVAILABLE.
    pub async fn register(&mut self, m: &Member, shard: Option<&str>) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + REGISTER_TIMEOUT;
        loop {
            let mut client = self.client.clone();
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
                    tracing::debug!(member = %m.name, status = %s, "topology manager unavailable; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(s) => bail!(
                    "registering {} with the topology manager failed: {:?}: {}",
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
