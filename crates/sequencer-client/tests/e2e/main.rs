//! End-to-end behaviour of the client against in-memory fake sequencer nodes.

mod admin;
mod fake;
mod frozen;
mod sends;
mod subscriptions;

use std::sync::Arc;
use std::time::Duration;

use fake::{FakeNode, Ledger};
use ordo_core::{Envelope, KeyPair, MemberId, Recipients, Submission, Timestamp};
use ordo_sequencer_client::{ClientConfig, SequencerClient};

pub struct Setup {
    pub ledger: Arc<Ledger>,
    pub alice: MemberId,
    pub key: Arc<KeyPair>,
}

impl Setup {
    fn new() -> Self {
        let ledger = Ledger::new();
        let key = Arc::new(KeyPair::generate());
        let alice = ledger.register("alice", &key);
        Self { ledger, alice, key }
    }

    pub fn config(&self, endpoints: Vec<String>) -> ClientConfig {
        let mut c = ClientConfig::new(endpoints, self.alice.clone(), self.key.clone());
        c.health_retry = Duration::from_millis(50);
        c.connect_timeout = Duration::from_secs(3);
        c.request_timeout = Duration::from_secs(2);
        c
    }

    pub async fn client(&self, nodes: &[&FakeNode]) -> SequencerClient {
        let urls = nodes.iter().map(|n| n.url.clone()).collect();
        SequencerClient::connect(self.config(urls)).await.unwrap()
    }

    /// Two fake nodes over one order and a client of both, once both are healthy.
    pub async fn two_nodes(&self) -> (FakeNode, FakeNode, SequencerClient) {
        let (a, b) = (
            FakeNode::start(&self.ledger).await,
            FakeNode::start(&self.ledger).await,
        );
        let client = self.client(&[&a, &b]).await;
        eventually("both endpoints are healthy", || {
            client.healthy_endpoints().len() == 2
        })
        .await;
        (a, b, client)
    }

    /// A submission addressed to alice herself, valid for 10 s.
    pub fn submission(&self, id: &str) -> Submission {
        Submission {
            message_id: id.to_string(),
            max_sequencing_time: now().plus(Duration::from_secs(10)),
            envelopes: vec![Envelope {
                recipients: Recipients::members([self.alice.clone()]),
                content: id.as_bytes().to_vec(),
            }],
        }
    }
}

pub fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

/// Polls `condition` every 10 ms until it holds; panics with `what` after 5 s.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
