//! One sequenced event at a time: decode and verify each envelope, fold topology, feed
//! informee trees and responses to the deciding core, and let the event's timestamp (the
//! domain clock) time out due requests. The result is the [`Changes`] the runtime commits
//! with the cursor in one transaction.

use std::sync::Arc;

use ordo_core::{KeyPair, MemberId, PublicKey, SequencedEvent, Timestamp};
use ordo_protocol::{
    MemberRole, Message, SignedMessage, TopologyChange, TopologyState, TopologyTransaction,
};

use crate::error::MediatorError;
use crate::metrics;
use crate::store::{Changes, OutboxMessage, Resumed};
use crate::verdict::{Aggregator, Answered, Decision, Opened};

/// The deterministic message id of a request's verdict: a resend after a crash is
/// deduplicated by the sequencer.
pub fn verdict_message_id(d: &Decision) -> String {
    format!("verdict-{}", d.request.micros())
}

pub struct Processor {
    me: MemberId,
    key: Arc<KeyPair>,
    topology_manager: MemberId,
    /// The last processed (committed or about to be) event.
    pub cursor: Timestamp,
    pub topology: TopologyState,
    pub core: Aggregator,
}

impl Processor {
    pub fn resume(
        me: MemberId,
        key: Arc<KeyPair>,
        topology_manager: MemberId,
        resumed: Resumed,
    ) -> Self {
        Self {
            me,
            key,
            topology_manager,
            cursor: resumed.cursor,
            topology: resumed.topology,
            core: Aggregator::new(resumed.pending),
        }
    }

    /// What `event` changes. The in-memory state moves along; if the commit fails the
    /// runtime discards this processor and resumes from the database.
    pub async fn handle(&mut self, event: SequencedEvent) -> Result<Changes, MediatorError> {
        let at = event.timestamp;
        let mut changes = Changes::default();
        let mut decisions = Vec::new();
        let mut topology_changed = false;
        for envelope in event.envelopes {
            let Some(signed) = self.verified(&envelope.content, &event.sender, at).await else {
                continue;
            };
            let signer = signed.signer;
            match signed.message {
                Message::Topology(tx) => {
                    if signer != self.topology_manager {
                        tracing::warn!(%signer, serial = tx.serial, %at, "topology transaction not signed by the configured topology manager; skipped");
                        metrics::ignored("topology_not_from_manager");
                        continue;
                    }
                    match self.topology.apply(&tx, at) {
                        Ok(()) => topology_changed = true,
                        Err(e) => {
                            tracing::warn!(error = %e, %at, "topology transaction refused");
                            metrics::ignored("topology_refused");
                        }
                    }
                }
                Message::InformeeTree(tree) => {
                    match self.core.on_request(at, &tree, &signer, &self.topology) {
                        Ok(Opened::Pending(request)) => {
                            tracing::debug!(request = %at, root_hash = %tree.root_hash, "confirmation request pending");
                            changes.opened.push(request);
                        }
                        Ok(Opened::Decided(d)) => decisions.push(d),
                        Err(ignored) => {
                            tracing::warn!(reason = %ignored, %at, "informee tree ignored");
                            metrics::ignored(ignored.label());
                        }
                    }
                }
                Message::Response(response) => {
                    match self.core.on_response(&response, &signer, at) {
                        Ok(Answered::Recorded { request, parties }) => {
                            changes.answered.push((request, parties));
                        }
                        Ok(Answered::Decided(d)) => decisions.push(d),
                        Err(ignored) => {
                            tracing::warn!(reason = %ignored, %at, "confirmation response ignored");
                            metrics::ignored(ignored.label());
                        }
                    }
                }
                // Its timestamp is all that matters, and every event's drives the clock.
                Message::TimeProof(_) => {}
                Message::View(_) | Message::Verdict(_) => {
                    tracing::warn!(%signer, %at, "message kind not meant for the mediator; skipped");
                    metrics::ignored("not_for_mediator");
                }
            }
        }
        decisions.extend(self.core.on_time(at));
        if topology_changed {
            changes.topology = Some(self.topology.clone());
        }
        changes.decided = self.sign(decisions).await?;
        self.cursor = at;
        Ok(changes)
    }

    /// The decoded message if its signature verifies against the signer's key in
    /// topology; `None` (logged) otherwise.
    async fn verified(
        &self,
        content: &[u8],
        sender: &MemberId,
        at: Timestamp,
    ) -> Option<SignedMessage> {
        let signed = match SignedMessage::decode(content) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, %sender, %at, "malformed envelope skipped");
                metrics::ignored("malformed");
                return None;
            }
        };
        let Some(key) = self.key_for(&signed) else {
            tracing::warn!(signer = %signed.signer, %sender, %at, "message from a signer topology does not know; skipped");
            metrics::ignored("unknown_signer");
            return None;
        };
        // Signature checks run off the async workers.
        let checked = tokio::task::spawn_blocking(move || signed.verify(&key).map(|()| signed))
            .await
            .ok()?;
        match checked {
            Ok(signed) => Some(signed),
            Err(e) => {
                tracing::warn!(error = %e, %sender, %at, "wrongly signed message skipped");
                metrics::ignored("bad_signature");
                None
            }
        }
    }

    fn key_for(&self, signed: &SignedMessage) -> Option<PublicKey> {
        if signed.signer == self.me {
            return Some(self.key.public());
        }
        if let Some(key) = self.topology.key_of(&signed.signer) {
            return Some(key);
        }
        // The topology manager introduces itself: its key comes from its own AddMember,
        // serial 1, which must be bound to the configured id.
        match &signed.message {
            Message::Topology(
                tx @ TopologyTransaction {
                    serial: 1,
                    change:
                        TopologyChange::AddMember {
                            member,
                            role: MemberRole::TopologyManager,
                            ..
                        },
                },
            ) if *member == signed.signer && self.topology.serial == 0 => {
                let mut probe = TopologyState::default();
                probe.apply(tx, Timestamp::MIN).ok()?;
                probe.key_of(member)
            }
            _ => None,
        }
    }

    /// Signs each decision's verdict (off the async workers) for the outbox.
    async fn sign(
        &self,
        decisions: Vec<Decision>,
    ) -> Result<Vec<(Decision, OutboxMessage)>, MediatorError> {
        if decisions.is_empty() {
            return Ok(Vec::new());
        }
        let me = self.me.clone();
        let key = self.key.clone();
        tokio::task::spawn_blocking(move || {
            decisions
                .into_iter()
                .map(|d| {
                    let payload = SignedMessage::encode(&me, &key, &Message::Verdict(d.verdict()));
                    let message = OutboxMessage {
                        message_id: verdict_message_id(&d),
                        recipients: d.recipients.iter().cloned().collect(),
                        payload,
                    };
                    (d, message)
                })
                .collect()
        })
        .await
        .map_err(|e| MediatorError::Internal(format!("signing verdicts: {e}")))
    }
}
