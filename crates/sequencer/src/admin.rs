//! SequencerAdminService: operator calls, authenticated with the node's admin token.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use hmac::Mac;
use ordo_core::{MemberId, PublicKey};
use ordo_proto::sequencer::v1 as pb;
use ordo_proto::sequencer::v1::sequencer_admin_service_server::SequencerAdminService;
use tonic::{Request, Response, Status};

use crate::auth;
use crate::error::SequencerError;
use crate::service::Shared;
use crate::store::{self, MemberRow};

pub struct AdminApi(pub Arc<Shared>);

impl AdminApi {
    fn check<T>(&self, req: &Request<T>) -> Result<(), SequencerError> {
        let expected = &self.0.config.admin_token;
        if expected.is_empty() {
            return Err(SequencerError::FailedPrecondition(
                "admin API disabled: set admin_token in the sequencer's configuration".into(),
            ));
        }
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let token = auth::bearer(header).map_err(|_| {
            SequencerError::Unauthenticated(
                "admin calls need `authorization: Bearer <admin token>`".into(),
            )
        })?;
        if !constant_time_eq(token.as_bytes(), expected.as_bytes()) {
            return Err(SequencerError::Unauthenticated("wrong admin token".into()));
        }
        Ok(())
    }
}

/// Compares via HMAC tags so timing does not leak how much of the token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let tag = |x: &[u8]| {
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"ordo-admin").ok()?;
        m.update(x);
        Some(m.finalize().into_bytes())
    };
    match (tag(a), tag(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn member_info(m: &MemberRow) -> pb::MemberInfo {
    pb::MemberInfo {
        member: m.member_id.clone(),
        public_key: m.public_key.clone(),
        enabled: m.enabled,
        registered_at: m.registered_at,
        acknowledged: m.acknowledged,
    }
}

#[tonic::async_trait]
impl SequencerAdminService for AdminApi {
    async fn register_member(
        &self,
        req: Request<pb::RegisterMemberRequest>,
    ) -> Result<Response<pb::RegisterMemberResponse>, Status> {
        self.check(&req)?;
        let r = req.into_inner();
        let key = PublicKey::from_bytes(&r.public_key)
            .map_err(|e| SequencerError::InvalidArgument(format!("invalid public_key: {e}")))?;
        let id = MemberId::new(&r.name, &key)
            .map_err(|e| SequencerError::InvalidArgument(format!("invalid name: {e}")))?;
        let id = id.to_string();
        let created = store::register_member(&self.0.pool, &id, key.as_bytes()).await?;
        self.0.registry.refresh().await?;
        Ok(Response::new(pb::RegisterMemberResponse {
            member: id,
            created,
        }))
    }

    async fn disable_member(
        &self,
        req: Request<pb::DisableMemberRequest>,
    ) -> Result<Response<pb::DisableMemberResponse>, Status> {
        self.check(&req)?;
        let member = req.into_inner().member;
        if !store::disable_member(&self.0.pool, &member).await? {
            return Err(
                SequencerError::NotFound(format!("member {member} is not registered")).into(),
            );
        }
        self.0.registry.refresh().await?;
        Ok(Response::new(pb::DisableMemberResponse {}))
    }

    async fn list_members(
        &self,
        req: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        self.check(&req)?;
        let members = store::load_members(&self.0.pool).await?;
        Ok(Response::new(pb::ListMembersResponse {
            members: members.iter().map(member_info).collect(),
        }))
    }

    async fn prune(
        &self,
        req: Request<pb::PruneRequest>,
    ) -> Result<Response<pb::PruneResponse>, Status> {
        self.check(&req)?;
        let up_to = req.into_inner().up_to;
        if up_to < 0 {
            return Err(SequencerError::InvalidArgument(format!(
                "invalid up_to: {up_to} is negative"
            ))
            .into());
        }
        let out = store::prune(&self.0.pool, up_to).await?;
        tracing::info!(
            pruned = out.pruned_events,
            lower_bound = out.lower_bound,
            "pruned events"
        );
        Ok(Response::new(pb::PruneResponse {
            pruned_events: out.pruned_events,
            lower_bound: out.lower_bound,
            lagging_members: out.lagging_members,
        }))
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.check(&req)?;
        let s = &self.0;
        let head = store::head(&s.pool).await?;
        let lower_bound = store::lower_bound(&s.pool).await?;
        let events = store::count_events(&s.pool).await?;
        let members = store::load_members(&s.pool).await?;
        Ok(Response::new(pb::StatusResponse {
            node: s.config.node_name.clone(),
            head_timestamp: head,
            lower_bound,
            events,
            subscriptions: s.subscriptions.active.load(Ordering::Relaxed),
            members: members.iter().map(member_info).collect(),
        }))
    }
}
