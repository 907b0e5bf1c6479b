//! `LedgerClient`: typed calls to one participant's Ledger API with a bearer token.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use ordo_proto::ledger::v1 as pb;
use serde_json::Value;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::error::LedgerError;
use crate::types::{
    self, ActiveContracts, Command, Completion, Filter, LedgerEnds, PackageDetails,
    ParticipantInfo, PartyDetails, Submission, Transaction, TransactionResult, UploadedPackage,
};

/// The application id commands are submitted as unless told otherwise.
pub const DEFAULT_APPLICATION_ID: &str = "ordo-cli";
/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Large enough for any page of active contracts or any package.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How often an open connection with calls in flight is pinged, and how long a ping may
/// go unanswered before the calls fail UNAVAILABLE: a frozen server (SIGSTOP, partition)
/// is noticed instead of waited on forever.
const KEEP_ALIVE: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A stream of flat transactions.
pub type UpdateStream = Pin<Box<dyn Stream<Item = Result<Transaction, LedgerError>> + Send>>;
/// A stream of command completions.
pub type CompletionStream = Pin<Box<dyn Stream<Item = Result<Completion, LedgerError>> + Send>>;

/// Adds `authorization: Bearer <token>` to every request, and the request id of the work
/// it is part of ([`crate::request_id`]).
#[derive(Clone)]
pub struct BearerToken(MetadataValue<Ascii>);

impl BearerToken {
    pub fn new(token: &str) -> Result<Self, LedgerError> {
        format!("Bearer {token}")
            .parse()
            .map(Self)
            .map_err(|_| LedgerError::invalid("token", "not printable ASCII"))
    }
}

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let metadata = request.metadata_mut();
        metadata.insert("authorization", self.0.clone());
        if let Some(id) = crate::request_id::current() {
            metadata.insert(crate::request_id::KEY, id);
        }
        Ok(request)
    }
}

pub(crate) type Authed = InterceptedService<Channel, BearerToken>;

/// A client of one participant's Ledger API. Cheap to clone (one shared connection).
#[derive(Clone)]
pub struct LedgerClient {
    channel: Channel,
    token: BearerToken,
    endpoint: String,
    application_id: String,
}

impl std::fmt::Debug for LedgerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerClient")
            .field("endpoint", &self.endpoint)
            .field("application_id", &self.application_id)
            .finish_non_exhaustive()
    }
}

impl LedgerClient {
    /// Connects to `endpoint`, failing fast when nothing listens: `http://host:port` in
    /// plain text, `https://host:port` verified as [`ordo_tls::trust`] says (reading a
    /// network file with a CA sets it).
    pub async fn connect(endpoint: &str, token: &str) -> Result<Self, LedgerError> {
        Self::connect_with_tls(endpoint, token, ordo_tls::trusted().as_ref()).await
    }

    /// [`LedgerClient::connect`] with `https://` endpoints verified by `tls`.
    pub async fn connect_with_tls(
        endpoint: &str,
        token: &str,
        tls: Option<&ordo_tls::ClientTls>,
    ) -> Result<Self, LedgerError> {
        let channel = ordo_tls::channel(endpoint, tls, |e| {
            e.connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(KEEP_ALIVE)
                .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        })
        .await
        .map_err(|e| tls_error(endpoint, e))?;
        Self::from_channel(channel, endpoint, token)
    }

    /// A client over an existing channel (tests, custom TLS or timeouts).
    pub fn from_channel(
        channel: Channel,
        endpoint: &str,
        token: &str,
    ) -> Result<Self, LedgerError> {
        Ok(Self {
            channel,
            token: BearerToken::new(token)?,
            endpoint: endpoint.to_owned(),
            application_id: DEFAULT_APPLICATION_ID.to_owned(),
        })
    }

    /// The same client submitting as another application id.
    pub fn with_application_id(mut self, application_id: impl Into<String>) -> Self {
        self.application_id = application_id.into();
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn application_id(&self) -> &str {
        &self.application_id
    }

    pub(crate) fn authed(&self) -> Authed {
        InterceptedService::new(self.channel.clone(), self.token.clone())
    }

    fn parties(&self) -> pb::party_management_service_client::PartyManagementServiceClient<Authed> {
        pb::party_management_service_client::PartyManagementServiceClient::new(self.authed())
    }

    fn packages(&self) -> pb::package_service_client::PackageServiceClient<Authed> {
        pb::package_service_client::PackageServiceClient::new(self.authed())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn commands(&self) -> pb::command_service_client::CommandServiceClient<Authed> {
        pb::command_service_client::CommandServiceClient::new(self.authed())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn state(&self) -> pb::state_service_client::StateServiceClient<Authed> {
        pb::state_service_client::StateServiceClient::new(self.authed())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn completions_client(
        &self,
    ) -> pb::command_completion_service_client::CommandCompletionServiceClient<Authed> {
        pb::command_completion_service_client::CommandCompletionServiceClient::new(self.authed())
    }

    fn updates_client(&self) -> pb::update_service_client::UpdateServiceClient<Authed> {
        pb::update_service_client::UpdateServiceClient::new(self.authed())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    // --- parties -----------------------------------------------------------------------

    /// Allocates `party` on this participant's shard (admin token). ALREADY_EXISTS if the
    /// party exists anywhere in the domain.
    pub async fn allocate_party(&self, party: &str) -> Result<PartyDetails, LedgerError> {
        let r = self
            .parties()
            .allocate_party(pb::AllocatePartyRequest {
                party_id_hint: party.to_owned(),
            })
            .await?
            .into_inner();
        let d = r.party_details.ok_or_else(|| {
            LedgerError::Protocol("AllocateParty answered without party details".into())
        })?;
        Ok(party_details(d))
    }

    /// Every party of the domain with its shard (admin token).
    pub async fn list_parties(&self) -> Result<Vec<PartyDetails>, LedgerError> {
        let r = self
            .parties()
            .list_known_parties(pb::ListKnownPartiesRequest {})
            .await?
            .into_inner();
        Ok(r.party_details.into_iter().map(party_details).collect())
    }

    /// This participant's member id and shard.
    pub async fn participant_id(&self) -> Result<ParticipantInfo, LedgerError> {
        let r = self
            .parties()
            .get_participant_id(pb::GetParticipantIdRequest {})
            .await?
            .into_inner();
        Ok(ParticipantInfo {
            participant_id: r.participant_id,
            shard: r.shard,
        })
    }

    // --- packages ----------------------------------------------------------------------

    /// Uploads a package file (admin token); answers once it is vetted on this shard.
    pub async fn upload_package(&self, package: Vec<u8>) -> Result<UploadedPackage, LedgerError> {
        let r = self
            .packages()
            .upload_package(pb::UploadPackageRequest { package })
            .await?
            .into_inner();
        Ok(UploadedPackage {
            package_id: r.package_id,
            name: r.name,
        })
    }

    pub async fn list_packages(&self) -> Result<Vec<PackageDetails>, LedgerError> {
        let r = self
            .packages()
            .list_packages(pb::ListPackagesRequest {})
            .await?
            .into_inner();
        Ok(r.packages
            .into_iter()
            .map(|p| PackageDetails {
                package_id: p.package_id,
                name: p.name,
                template_ids: p.template_ids,
            })
            .collect())
    }

    /// The package file `package_id` as uploaded (TOML), e.g. to read its templates' field
    /// types.
    pub async fn get_package(&self, package_id: &str) -> Result<Vec<u8>, LedgerError> {
        let r = self
            .packages()
            .get_package(pb::GetPackageRequest {
                package_id: package_id.to_owned(),
            })
            .await?
            .into_inner();
        Ok(r.package)
    }

    // --- commands ----------------------------------------------------------------------

    /// Submits a command and waits until it is committed on this shard; the transaction as
    /// the submitting parties see it. A rejection keeps the server's code (e.g.
    /// FAILED_PRECONDITION for an inactive contract, ALREADY_EXISTS for a duplicate
    /// command id).
    pub async fn submit(&self, submission: Submission) -> Result<TransactionResult, LedgerError> {
        let commands = pb::Commands {
            application_id: self.application_id.clone(),
            command_id: submission.command_id.unwrap_or_else(new_command_id),
            submission_id: submission.submission_id,
            workflow_id: submission.workflow_id,
            act_as: submission.act_as,
            read_as: submission.read_as,
            command: Some(submission.command.to_pb()),
            disclosed_contracts: submission
                .disclosed_contracts
                .iter()
                .map(|d| d.to_pb())
                .collect(),
            commands: Vec::new(),
            deduplication_duration_ms: submission
                .deduplication_duration
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            deduplication_offset: submission.deduplication_offset.unwrap_or(0),
        };
        let r = self
            .commands()
            .submit_and_wait_for_transaction(pb::SubmitAndWaitRequest {
                commands: Some(commands),
            })
            .await?
            .into_inner();
        types::transaction_result(r)
    }

    /// Creates a contract of `template_id` (`iou:Iou`) as `act_as`.
    pub async fn create(
        &self,
        act_as: &str,
        template_id: &str,
        payload: Value,
    ) -> Result<TransactionResult, LedgerError> {
        self.submit(Submission::new(
            act_as,
            Command::Create {
                template_id: template_id.to_owned(),
                payload,
            },
        ))
        .await
    }

    /// Exercises `choice` on an active contract as `act_as`.
    pub async fn exercise(
        &self,
        act_as: &str,
        template_id: &str,
        contract_id: &str,
        choice: &str,
        argument: Value,
    ) -> Result<TransactionResult, LedgerError> {
        self.submit(Submission::new(
            act_as,
            Command::Exercise {
                template_id: template_id.to_owned(),
                contract_id: contract_id.to_owned(),
                choice: choice.to_owned(),
                argument,
            },
        ))
        .await
    }

    /// Creates a contract and exercises `choice` on it in one transaction.
    pub async fn create_and_exercise(
        &self,
        act_as: &str,
        template_id: &str,
        payload: Value,
        choice: &str,
        argument: Value,
    ) -> Result<TransactionResult, LedgerError> {
        self.submit(Submission::new(
            act_as,
            Command::CreateAndExercise {
                template_id: template_id.to_owned(),
                payload,
                choice: choice.to_owned(),
                argument,
            },
        ))
        .await
    }

    // --- state and updates -------------------------------------------------------------

    /// The active contracts the filter's parties see, at the shard's current ledger end.
    pub async fn active_contracts(&self, filter: &Filter) -> Result<ActiveContracts, LedgerError> {
        let mut stream = self
            .state()
            .get_active_contracts(pb::GetActiveContractsRequest {
                filter: Some(filter.to_pb()),
            })
            .await?
            .into_inner();
        let mut acs = ActiveContracts::default();
        while let Some(page) = stream.message().await? {
            acs.offset = page.offset;
            for c in page.active_contracts {
                acs.contracts.push(types::contract(c)?);
            }
        }
        Ok(acs)
    }

    /// The offset of the latest update on this shard (0 when none).
    pub async fn ledger_end(&self) -> Result<i64, LedgerError> {
        Ok(self.ledger_ends().await?.offset)
    }

    /// The ends of this shard's update log and completion log.
    pub async fn ledger_ends(&self) -> Result<LedgerEnds, LedgerError> {
        let r = self
            .state()
            .get_ledger_end(pb::GetLedgerEndRequest {})
            .await?
            .into_inner();
        Ok(LedgerEnds {
            offset: r.offset,
            completion_offset: r.completion_offset,
        })
    }

    /// The completions of this client's application id for commands acting as one of
    /// `parties` (each must be in the token's act_as), after completion offset
    /// `begin_exclusive`; live once caught up.
    pub async fn completions(
        &self,
        parties: &[String],
        begin_exclusive: i64,
    ) -> Result<CompletionStream, LedgerError> {
        let stream = self
            .completions_client()
            .completion_stream(pb::CompletionStreamRequest {
                application_id: self.application_id.clone(),
                parties: parties.to_vec(),
                begin_exclusive,
            })
            .await?
            .into_inner();
        Ok(Box::pin(stream.filter_map(|item| async move {
            match item {
                Err(s) => Some(Err(LedgerError::from(s))),
                Ok(r) => r.completion.map(|c| Ok(types::completion(c))),
            }
        })))
    }

    /// A committed transaction as `parties` see it, in the form [`LedgerClient::submit`]
    /// returns (flat events and the exercised choices).
    pub async fn transaction_by_id(
        &self,
        update_id: &str,
        parties: &[String],
    ) -> Result<TransactionResult, LedgerError> {
        let filter = pb::TransactionFilter {
            parties: parties.to_vec(),
            template_ids: Vec::new(),
        };
        let fetch = |shape: pb::UpdateShape| {
            let mut client = self.updates_client();
            let request = pb::GetTransactionByIdRequest {
                update_id: update_id.to_owned(),
                filter: Some(filter.clone()),
                shape: shape as i32,
            };
            async move {
                Ok::<_, LedgerError>(client.get_transaction_by_id(request).await?.into_inner())
            }
        };
        let flat = fetch(pb::UpdateShape::Flat).await?;
        let tree = fetch(pb::UpdateShape::Tree).await?;
        let transaction = match flat.update {
            Some(pb::get_updates_response::Update::Transaction(t)) => Some(t),
            _ => None,
        };
        let transaction_tree = match tree.update {
            Some(pb::get_updates_response::Update::TransactionTree(t)) => Some(t),
            _ => None,
        };
        types::transaction_result(pb::SubmitAndWaitForTransactionResponse {
            transaction,
            transaction_tree,
        })
    }

    /// The transactions after offset `from` that the filter's parties see, in offset
    /// order. With `follow` the stream goes on live; otherwise it ends at the ledger end
    /// as of this call.
    pub async fn updates(
        &self,
        filter: &Filter,
        from: i64,
        follow: bool,
    ) -> Result<UpdateStream, LedgerError> {
        let end_inclusive = if follow {
            0
        } else {
            let end = self.ledger_end().await?;
            if end <= from {
                return Ok(Box::pin(futures::stream::empty()));
            }
            end
        };
        let stream = self
            .updates_client()
            .get_updates(pb::GetUpdatesRequest {
                begin_exclusive: from,
                end_inclusive,
                filter: Some(filter.to_pb()),
                shape: pb::UpdateShape::Flat as i32,
            })
            .await?
            .into_inner();
        Ok(Box::pin(stream.filter_map(|item| async move {
            match item {
                Err(s) => Some(Err(LedgerError::from(s))),
                Ok(pb::GetUpdatesResponse {
                    update: Some(pb::get_updates_response::Update::Transaction(t)),
                }) => Some(types::transaction(t)),
                // A flat stream carries only flat transactions.
                Ok(_) => None,
            }
        })))
    }
}

fn party_details(d: pb::PartyDetails) -> PartyDetails {
    PartyDetails {
        party: d.party,
        shard: d.shard,
        is_local: d.is_local,
    }
}

/// A fresh command id: random, so a retry must pass the same id explicitly.
pub fn new_command_id() -> String {
    format!("cmd-{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// An error with its causes, since tonic's transport error alone says only "transport
/// error".
/// A failure to reach `endpoint`: a bad endpoint (or an `https://` one without a CA) is an
/// invalid argument, an unreachable one a connection error.
pub(crate) fn tls_error(endpoint: &str, e: ordo_tls::TlsError) -> LedgerError {
    match e {
        ordo_tls::TlsError::Connect { source, .. } => LedgerError::Connect {
            endpoint: endpoint.to_owned(),
            reason: source_chain(&source),
        },
        other => LedgerError::invalid(format!("endpoint {endpoint:?}"), other),
    }
}

pub fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
