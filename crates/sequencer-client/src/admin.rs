//! A thin operator client for one sequencer node's `SequencerAdminService`, authenticated
//! with that node's admin token.

use std::time::Duration;

use ordo_core::{MemberId, PublicKey, Timestamp};
use ordo_proto::convert::{self, DecodeError};
use ordo_proto::sequencer::v1 as pb;
use ordo_proto::sequencer::v1::sequencer_admin_service_client::SequencerAdminServiceClient;
use ordo_tls::ClientTls;
use tonic::transport::Channel;

use crate::auth::authorize;
use crate::error::ClientError;

/// A registered member as the sequencer knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub member: MemberId,
    pub public_key: PublicKey,
    pub enabled: bool,
    pub registered_at: Timestamp,
    /// Latest acknowledged timestamp; `Timestamp::MIN` if it never acknowledged.
    pub acknowledged: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PruneResult {
    pub pruned_events: i64,
    /// Events at or before this are gone.
    pub lower_bound: Timestamp,
    /// Enabled members whose acknowledgements hold pruning back, oldest first.
    pub lagging_members: Vec<MemberId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub node: String,
    pub head_timestamp: Timestamp,
    pub lower_bound: Timestamp,
    pub events: i64,
    pub subscriptions: i64,
    pub members: Vec<MemberInfo>,
}

#[derive(Clone)]
pub struct AdminClient {
    client: SequencerAdminServiceClient<Channel>,
    token: String,
    timeout: Duration,
}

impl AdminClient {
    /// Connects to one node (e.g. `https://127.0.0.1:4001`), an `https://` one verified as
    /// [`ordo_tls::trust`] says.
    pub async fn connect(
        endpoint: impl Into<String>,
        admin_token: impl Into<String>,
    ) -> Result<Self, ClientError> {
        Self::connect_with_tls(endpoint, admin_token, ordo_tls::trusted().as_ref()).await
    }

    /// Connects to one node; an `https://` endpoint over TLS with `tls`.
    pub async fn connect_with_tls(
        endpoint: impl Into<String>,
        admin_token: impl Into<String>,
        tls: Option<&ClientTls>,
    ) -> Result<Self, ClientError> {
        let endpoint = endpoint.into();
        let timeout = Duration::from_secs(5);
        let channel = ordo_tls::channel(&endpoint, tls, |e| {
            e.connect_timeout(timeout).timeout(timeout)
        })
        .await
        .map_err(|source| ClientError::InvalidEndpoint {
            endpoint: endpoint.clone(),
            source,
        })?;
        Ok(Self {
            client: SequencerAdminServiceClient::new(channel),
            token: admin_token.into(),
            timeout,
        })
    }

    /// Registers `name` with `key`; `created` is false when it already was, with this key.
    pub async fn register_member(
        &self,
        name: &str,
        key: &PublicKey,
    ) -> Result<(MemberId, bool), ClientError> {
        let request = pb::RegisterMemberRequest {
            name: name.to_string(),
            public_key: key.as_bytes().to_vec(),
        };
        let response = self
            .client
            .clone()
            .register_member(authorize(request, &self.token)?)
            .await
            .map_err(ClientError::Rejected)?
            .into_inner();
        Ok((
            convert::member("member", &response.member)?,
            response.created,
        ))
    }

    pub async fn disable_member(&self, member: &MemberId) -> Result<(), ClientError> {
        let request = pb::DisableMemberRequest {
            member: member.to_string(),
        };
        self.client
            .clone()
            .disable_member(authorize(request, &self.token)?)
            .await
            .map_err(ClientError::Rejected)?;
        Ok(())
    }

    pub async fn list_members(&self) -> Result<Vec<MemberInfo>, ClientError> {
        let response = self
            .client
            .clone()
            .list_members(authorize(pb::ListMembersRequest {}, &self.token)?)
            .await
            .map_err(ClientError::Rejected)?
            .into_inner();
        members_from_pb(response.members)
    }

    /// Deletes the events every enabled member acknowledged, no further than `up_to`
    /// (`None`: no bound).
    pub async fn prune(&self, up_to: Option<Timestamp>) -> Result<PruneResult, ClientError> {
        let request = pb::PruneRequest {
            up_to: up_to.map_or(0, Timestamp::micros),
        };
        let r = self
            .client
            .clone()
            .prune(authorize(request, &self.token)?)
            .await
            .map_err(ClientError::Rejected)?
            .into_inner();
        let lagging_members = r
            .lagging_members
            .iter()
            .enumerate()
            .map(|(i, m)| convert::member(&format!("lagging_members[{i}]"), m))
            .collect::<Result<_, _>>()?;
        Ok(PruneResult {
            pruned_events: r.pruned_events,
            lower_bound: Timestamp(r.lower_bound),
            lagging_members,
        })
    }

    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        let r = self
            .client
            .clone()
            .status(authorize(pb::StatusRequest {}, &self.token)?)
            .await
            .map_err(ClientError::Rejected)?
            .into_inner();
        Ok(NodeStatus {
            node: r.node,
            head_timestamp: Timestamp(r.head_timestamp),
            lower_bound: Timestamp(r.lower_bound),
            events: r.events,
            subscriptions: r.subscriptions,
            members: members_from_pb(r.members)?,
        })
    }

    /// The per-call deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

fn members_from_pb(members: Vec<pb::MemberInfo>) -> Result<Vec<MemberInfo>, ClientError> {
    members
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let field = format!("members[{i}]");
            let public_key = PublicKey::from_bytes(&m.public_key)
                .map_err(|e| DecodeError::new(format!("{field}.public_key"), e.to_string()))?;
            Ok(MemberInfo {
                member: convert::member(&format!("{field}.member"), &m.member)?,
                public_key,
                enabled: m.enabled,
                registered_at: Timestamp(m.registered_at),
                acknowledged: Timestamp(m.acknowledged),
            })
        })
        .collect()
}
