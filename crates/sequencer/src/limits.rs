//! The node's rate limits (`[limits]`), applied by its gRPC services: submissions and
//! submission bytes per member, and unauthenticated calls per client address. A caller
//! over a limit is answered late and RESOURCE_EXHAUSTED with the time after which a retry
//! can pass (`ordo_node::limits`).

use std::net::IpAddr;

use ordo_node::limits::{Limiter, Throttled};
use tonic::{Request, Status};

use crate::config::SequencerLimits;
use crate::store::MemberRow;

pub struct Limits {
    sends: Limiter<i32>,
    send_bytes: Limiter<i32>,
    unauthenticated: Limiter<IpAddr>,
}

impl Limits {
    pub fn new(config: &SequencerLimits) -> Self {
        Self {
            sends: Limiter::new("member_sends", config.member_sends),
            send_bytes: Limiter::new("member_send_bytes", config.member_send_bytes),
            unauthenticated: Limiter::new("unauthenticated", config.unauthenticated),
        }
    }

    /// Takes `count` submissions of `bytes` in all from `member`'s allowance, or refuses
    /// them after holding the refusal.
    pub async fn sends(
        &self,
        member: &MemberRow,
        count: usize,
        bytes: usize,
    ) -> Result<(), Status> {
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        let checked = self
            .sends
            .check_n(&member.idx, count)
            .and_then(|()| self.send_bytes.check_n(&member.idx, bytes));
        refuse(checked, || format!("member {}", member.member_id)).await
    }

    /// Takes one unauthenticated call (`Challenge`, `Authenticate`) from the caller's
    /// address's allowance, or refuses it after holding the refusal.
    pub async fn unauthenticated<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let remote = ordo_node::tls::conn_info(req)
            .and_then(|c| c.remote)
            .or_else(|| req.remote_addr());
        let Some(remote) = remote else {
            return Ok(());
        };
        let checked = self.unauthenticated.check(&remote.ip());
        refuse(checked, || format!("client {}", remote.ip())).await
    }
}

async fn refuse(
    checked: Result<(), Throttled>,
    who: impl FnOnce() -> String,
) -> Result<(), Status> {
    match checked {
        Ok(()) => Ok(()),
        Err(throttled) => {
            let who = who();
            tracing::debug!(who, limit = throttled.limit, "refused over a rate limit");
            throttled.delay().await;
            Err(throttled.status(&who))
        }
    }
}
