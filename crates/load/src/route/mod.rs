//! The two ways a simulated client reaches the ledger: the shards' Ledger API over gRPC
//! ([`grpc`]) and the JSON API gateway over HTTP ([`http`]). [`Conn`] is one client's
//! connection acting as one party; both routes submit the same Iou commands with the
//! run's command ids, and turn every failure into a [`Failure`] whose kind comes from the
//! gRPC code or the HTTP status, never from message text.

pub(crate) mod grpc;
pub(crate) mod http;

use ordo_ledger_client::DisclosedContract;
use serde_json::{Value, json};

/// The templates of `examples/packages/iou.toml`.
pub(crate) const IOU: &str = "iou:Iou";
pub(crate) const SWAP: &str = "iou:SwapProposal";
/// Every Iou of a run is worth the same, so that any Iou a counterparty holds answers any
/// swap proposal.
pub(crate) const CURRENCY: &str = "USD";
pub(crate) const AMOUNT: &str = "10";
/// The application id gRPC commands are submitted as.
pub(crate) const APPLICATION_ID: &str = "ordo-load";

/// Why a command did not commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    /// Stable: `FAILED_PRECONDITION` (gRPC), `HTTP_409`, `HTTP_TRANSPORT`, `BAD_ANSWER`.
    pub kind: String,
    /// The server's words, for the report's examples only.
    pub message: String,
    /// Whether the ledger certainly did not commit the command. An indefinite failure
    /// (no serving replica, a broken connection, a 503) may still have committed.
    pub definite: bool,
}

impl Failure {
    /// A committed command whose answer lacks what the client needs from it.
    pub(crate) fn bad_answer(what: &str, answer: impl std::fmt::Display) -> Self {
        Failure {
            kind: "BAD_ANSWER".into(),
            message: format!("{what}: {answer}"),
            definite: false,
        }
    }
}

/// One client's connection, acting as one party.
pub(crate) enum Conn {
    // Boxed: a `ShardClient` with its retry state is several times an HTTP client.
    Grpc(Box<grpc::GrpcConn>),
    Http(http::HttpConn),
}

/// The payload of a run's Iou.
pub(crate) fn iou(issuer: &str, owner: &str) -> Value {
    json!({"issuer": issuer, "owner": owner, "currency": CURRENCY, "amount": AMOUNT})
}

/// The payload of a proposal to swap `offered` for any Iou of the run the counterparty
/// holds.
pub(crate) fn proposal(proposer: &str, counterparty: &str, offered: &str, issuer: &str) -> Value {
    json!({
        "proposer": proposer, "counterparty": counterparty, "offeredCid": offered,
        "wantedIssuer": issuer, "wantedCurrency": CURRENCY, "wantedAmount": AMOUNT,
    })
}

impl Conn {
    /// The party this connection acts as.
    pub(crate) fn party(&self) -> &str {
        match self {
            Conn::Grpc(c) => c.party(),
            Conn::Http(c) => c.party(),
        }
    }

    /// Creates an Iou of this party (the issuer) owned by `owner`; its contract id.
    pub(crate) async fn create_iou(
        &self,
        owner: &str,
        command_id: &str,
    ) -> Result<String, Failure> {
        let payload = iou(self.party(), owner);
        match self {
            Conn::Grpc(c) => c.create(IOU, payload, command_id).await,
            Conn::Http(c) => c.create(IOU, payload, command_id).await,
        }
    }

    /// Transfers this party's Iou `cid` to `to`; the new Iou's id.
    pub(crate) async fn transfer(
        &self,
        cid: &str,
        to: &str,
        command_id: &str,
    ) -> Result<String, Failure> {
        let argument = json!({ "newOwner": to });
        let result = match self {
            Conn::Grpc(c) => {
                c.exercise(IOU, cid, "Transfer", argument, None, command_id)
                    .await?
            }
            Conn::Http(c) => {
                c.exercise(IOU, cid, "Transfer", argument, None, command_id)
                    .await?
            }
        };
        result
            .result
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Failure::bad_answer("Transfer returned no contract id", &result.result))
    }

    /// Proposes to `counterparty` to swap this party's Iou `offered`; the proposal's id.
    pub(crate) async fn propose(
        &self,
        offered: &str,
        counterparty: &str,
        issuer: &str,
        command_id: &str,
    ) -> Result<String, Failure> {
        let payload = proposal(self.party(), counterparty, offered, issuer);
        match self {
            Conn::Grpc(c) => c.create(SWAP, payload, command_id).await,
            Conn::Http(c) => c.create(SWAP, payload, command_id).await,
        }
    }

    /// Accepts `proposal` with this party's Iou `counter`, handing over the offered Iou
    /// (which this party does not see) by explicit disclosure; the offered Iou as this
    /// party now holds it.
    pub(crate) async fn accept(
        &self,
        proposal: &str,
        counter: &str,
        offered: &DisclosedContract,
        command_id: &str,
    ) -> Result<DisclosedContract, Failure> {
        let argument = json!({ "counterCid": counter });
        let disclosed = Some(offered);
        let result = match self {
            Conn::Grpc(c) => {
                c.exercise(SWAP, proposal, "Accept", argument, disclosed, command_id)
                    .await?
            }
            Conn::Http(c) => {
                c.exercise(SWAP, proposal, "Accept", argument, disclosed, command_id)
                    .await?
            }
        };
        let new = result.result["offered"]
            .as_str()
            .ok_or_else(|| Failure::bad_answer("Accept returned no offered Iou", &result.result))?;
        result
            .created
            .into_iter()
            .find(|c| c.contract_id == new)
            .ok_or_else(|| Failure::bad_answer("Accept's events lack the offered Iou", new))
    }

    /// The Ious this party owns, as its shard (or the gateway's cache of it) shows them.
    pub(crate) async fn holdings(&self) -> Result<Vec<DisclosedContract>, Failure> {
        let all = match self {
            Conn::Grpc(c) => c.active(IOU).await?,
            Conn::Http(c) => c.query(IOU, json!({ "owner": self.party() })).await?,
        };
        Ok(all
            .into_iter()
            .filter(|c| c.payload["owner"] == self.party())
            .collect())
    }

    /// Whether this party's shard shows the swap proposal `cid` yet.
    pub(crate) async fn sees_proposal(&self, cid: &str) -> Result<bool, Failure> {
        match self {
            Conn::Grpc(c) => Ok(c.active(SWAP).await?.iter().any(|p| p.contract_id == cid)),
            Conn::Http(c) => c.fetch(cid).await.map(|found| found.is_some()),
        }
    }
}

/// What an exercise returned, in the same form through both routes.
pub(crate) struct Exercised {
    /// The choice's result.
    pub result: Value,
    /// The contracts it created that the submitter sees.
    pub created: Vec<DisclosedContract>,
}
