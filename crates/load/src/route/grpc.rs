//! The Ledger API route: each connection is its own `ShardClient` (its own HTTP/2
//! connection to the shard's active replica, riding through failovers with the same
//! command id) with a token acting as its one party.

use ordo_ledger_client::error::code_name;
use ordo_ledger_client::{
    Command, DisclosedContract, Filter, LedgerError, Network, ShardClient, Submission,
    TransactionResult, is_failover_error,
};
use serde_json::Value;
use tonic::Code;

use super::{APPLICATION_ID, Exercised, Failure};

pub(crate) struct GrpcConn {
    party: String,
    client: ShardClient,
}

impl From<LedgerError> for Failure {
    fn from(e: LedgerError) -> Self {
        let code = e.code();
        // A failover error or a missing answer leaves the outcome open: the command may
        // have reached the ledger before the connection or the replica went away.
        let open = is_failover_error(&e)
            || matches!(
                code,
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
            );
        Failure {
            kind: code_name(code).to_owned(),
            message: e.message(),
            definite: !open,
        }
    }
}

impl GrpcConn {
    /// A connection to `shard` acting as `party`. Nothing is dialled until the first call.
    pub(crate) fn new(network: &Network, shard: &str, party: &str) -> Result<Self, LedgerError> {
        let token = network.party_token(&[party])?;
        let client = network
            .shard_client(shard, &token)?
            .with_application_id(APPLICATION_ID);
        Ok(Self {
            party: party.to_owned(),
            client,
        })
    }

    pub(crate) fn party(&self) -> &str {
        &self.party
    }

    async fn submit(
        &self,
        command: Command,
        disclosed: Option<&DisclosedContract>,
        command_id: &str,
    ) -> Result<TransactionResult, Failure> {
        let mut submission = Submission::new(self.party.clone(), command);
        submission.command_id = Some(command_id.to_owned());
        submission.disclosed_contracts = disclosed.into_iter().cloned().collect();
        Ok(self.client.submit(submission).await?)
    }

    pub(crate) async fn create(
        &self,
        template_id: &str,
        payload: Value,
        command_id: &str,
    ) -> Result<String, Failure> {
        let command = Command::Create {
            template_id: template_id.to_owned(),
            payload,
        };
        let tx = self.submit(command, None, command_id).await?;
        tx.created_of(template_id)
            .first()
            .map(|c| (*c).to_owned())
            .ok_or_else(|| Failure::bad_answer("the create created nothing", &tx.update_id))
    }

    pub(crate) async fn exercise(
        &self,
        template_id: &str,
        contract_id: &str,
        choice: &str,
        argument: Value,
        disclosed: Option<&DisclosedContract>,
        command_id: &str,
    ) -> Result<Exercised, Failure> {
        let command = Command::Exercise {
            template_id: template_id.to_owned(),
            contract_id: contract_id.to_owned(),
            choice: choice.to_owned(),
            argument,
        };
        let tx = self.submit(command, disclosed, command_id).await?;
        Ok(Exercised {
            result: tx.exercise_result.unwrap_or(Value::Null),
            created: tx.created.iter().map(DisclosedContract::from).collect(),
        })
    }

    /// This party's active contracts of `template_id` on its shard.
    pub(crate) async fn active(
        &self,
        template_id: &str,
    ) -> Result<Vec<DisclosedContract>, Failure> {
        let filter = Filter::party(&self.party).template(template_id);
        let acs = self
            .client
            .read(|c| {
                let filter = filter.clone();
                async move { c.active_contracts(&filter).await }
            })
            .await?;
        Ok(acs.contracts.iter().map(DisclosedContract::from).collect())
    }
}
