//! The rogue: a participant member registered like any other (its own key and shard, its
//! parties allocated by the topology manager), that builds and signs raw protocol messages
//! itself and sends them through the real sequencer. It runs no participant node: it
//! interprets with the ledger core, splits and seals requests with the participant's own
//! code, then tampers with them as each attack needs, answers for its parties when it
//! wants, and records every verdict the mediator sends it.
//!
//! New attacks are written against this API: build a transaction ([`Rogue::interpret`] or
//! by hand), [`Rogue::plan`] it, change `plan.views` and [`Rogue::seal`] (or change the
//! messages and leave the seal broken), then [`Rogue::submit`] or [`Rogue::send`] raw
//! envelopes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ordo_core::{
    Envelope, Hash, KeyPair, MemberId, PartyId, Recipients, SequencedEvent, Submission, Timestamp,
};
use ordo_ledger::{
    Command, ContractId, ContractInstance, Limits, PackageStore, TemplateId, Transaction, Value,
};
use ordo_ledger_client::Network;
use ordo_participant::views::{self, RequestPlan};
use ordo_proto::admin::v1 as admin;
use ordo_proto::admin::v1::topology_admin_service_client::TopologyAdminServiceClient;
use ordo_protocol::{
    ConfirmationResponse, Message, ResponseOutcome, SignedMessage, TopologyState, Verdict, merkle,
};
use ordo_sequencer_client::{ClientConfig, SequencerClient};
use ordo_testkit::wait_for;
use parking_lot::Mutex;
use tonic::transport::Channel;

/// A verdict the rogue received: the event's timestamp and the verdict.
pub type Received = (Timestamp, Verdict);

pub struct Rogue {
    pub member: MemberId,
    pub key: Arc<KeyPair>,
    pub client: SequencerClient,
    pub packages: PackageStore,
    verdicts: Arc<Mutex<Vec<Received>>>,
    /// The task recording verdicts: its subscription ends with the rogue.
    recording: tokio::task::AbortHandle,
    acked: Mutex<BTreeMap<Timestamp, Timestamp>>,
    network: Network,
    sends: std::sync::atomic::AtomicU64,
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// A call on whichever topology replica is active (a passive one answers UNAVAILABLE).
async fn on_topology<T, F, Fut>(network: &Network, call: F) -> Result<T>
where
    F: Fn(TopologyAdminServiceClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut last = None;
    for replica in &network.topology {
        let tls = ordo_node::tls::trusted();
        let Ok(channel) = ordo_node::tls::channel(&replica.grpc, tls.as_ref(), |e| e).await else {
            continue;
        };
        match call(TopologyAdminServiceClient::new(channel)).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if s.code() == tonic::Code::Unavailable => last = Some(s),
            Err(s) => bail!("topology admin call failed: {s:?}"),
        }
    }
    bail!("no active topology replica answered: {last:?}")
}

impl Rogue {
    /// Registers a participant `name` serving `shard`, allocates `parties` there, connects
    /// to the sequencers and starts recording verdicts. `packages` are the package files
    /// the network has vetted that the rogue interprets with.
    pub async fn join(
        network: &Network,
        name: &str,
        shard: &str,
        parties: &[&str],
        packages: &[&[u8]],
    ) -> Result<Self> {
        let key = Arc::new(KeyPair::generate());
        let token = network.auth.topology_admin_token.clone();
        let registered = on_topology(network, |mut c| {
            let request = with_token(
                admin::RegisterParticipantRequest {
                    name: name.to_owned(),
                    public_key: key.public().as_bytes().to_vec(),
                    shard: shard.to_owned(),
                },
                &token,
            );
            async move { c.register_participant(request).await }
        })
        .await?;
        let member: MemberId = registered.member.parse()?;
        for party in parties {
            on_topology(network, |mut c| {
                let request = with_token(
                    admin::AllocatePartyRequest {
                        party: (*party).to_owned(),
                        shard: shard.to_owned(),
                    },
                    &token,
                );
                async move { c.allocate_party(request).await }
            })
            .await?;
        }
        let endpoints = network.sequencers.iter().map(|s| s.grpc.clone()).collect();
        // Its own certificate from the network's CA, naming it: the sequencers hold every
        // connection to the member its certificate names.
        let client = SequencerClient::connect(ClientConfig {
            tls: network.member_tls(name)?,
            ..ClientConfig::new(endpoints, member.clone(), key.clone())
        })
        .await?;
        let mut store = PackageStore::new();
        for p in packages {
            store.upload(p)?;
        }
        let verdicts = Arc::new(Mutex::new(Vec::new()));
        let mut subscription = client.subscribe(Timestamp::MIN);
        let sink = verdicts.clone();
        let recording = tokio::spawn(async move {
            while let Ok(event) = subscription.next().await {
                record_verdicts(&event, &sink);
            }
        })
        .abort_handle();
        Ok(Self {
            member,
            key,
            client,
            packages: store,
            verdicts,
            recording,
            acked: Mutex::new(BTreeMap::new()),
            network: network.clone(),
            sends: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The domain's topology now, as the topology manager serves it.
    pub async fn topology(&self) -> Result<TopologyState> {
        let token = self.network.auth.topology_admin_token.clone();
        let answer = on_topology(&self.network, |mut c| {
            let request = with_token(admin::GetTopologyRequest {}, &token);
            async move { c.get_topology(request).await }
        })
        .await?;
        Ok(serde_json::from_str(&answer.state_json)?)
    }

    /// Waits until the topology satisfies `check` (e.g. the rogue's parties are known).
    pub async fn wait_topology(
        &self,
        what: &str,
        check: impl Fn(&TopologyState) -> bool,
    ) -> Result<()> {
        wait_for(what, Duration::from_secs(30), || async {
            self.topology().await.ok().filter(|t| check(t)).map(drop)
        })
        .await
    }

    /// Replaces the domain parameters (as the operator would, with the admin token).
    pub async fn set_parameters(&self, parameters: admin::DomainParameters) -> Result<()> {
        let token = self.network.auth.topology_admin_token.clone();
        on_topology(&self.network, |mut c| {
            let request = with_token(
                admin::SetParametersRequest {
                    parameters: Some(parameters),
                },
                &token,
            );
            async move { c.set_parameters(request).await }
        })
        .await?;
        Ok(())
    }

    /// The contract instance of `template` with `payload` (JSON), as its creation on its
    /// signatories' authority computes it.
    pub fn instance(&self, template: &str, payload: serde_json::Value) -> Result<ContractInstance> {
        let template: TemplateId = template.parse()?;
        let payload = self.packages.payload_from_json(&template, &payload)?;
        // The signatories are what the template computes; any authority suffices here, so
        // interpret on behalf of every party the payload names.
        let parties: BTreeSet<PartyId> = match &payload {
            Value::Record(fields) => fields
                .values()
                .filter_map(|v| match v {
                    Value::Party(p) => Some(p.clone()),
                    _ => None,
                })
                .collect(),
            _ => BTreeSet::new(),
        };
        let tx = ordo_ledger::interpret(
            &self.packages,
            &Command::Create { template, payload },
            &parties,
            &BTreeMap::<ContractId, ContractInstance>::new(),
            Hash::of(b"instance"),
            &Limits::default(),
        )?;
        tx.created()
            .into_values()
            .next()
            .context("the create created nothing")
    }

    /// Interprets `command` as `act_as` with the given contracts known, under generous
    /// limits (the rogue is bound by nothing), with a fresh seed.
    pub fn interpret(
        &self,
        command: Command,
        act_as: &[&str],
        contracts: &[(ContractId, ContractInstance)],
    ) -> Result<Transaction> {
        let act_as: BTreeSet<PartyId> = act_as
            .iter()
            .map(|p| PartyId::new(p))
            .collect::<Result<_, _>>()?;
        let known: BTreeMap<ContractId, ContractInstance> = contracts.iter().cloned().collect();
        let limits = Limits {
            max_operations: 100_000_000,
            max_nodes: 1_000_000,
            ..Limits::default()
        };
        let mut seed = [0u8; 16];
        rand::fill(&mut seed[..]);
        Ok(ordo_ledger::interpret(
            &self.packages,
            &command,
            &act_as,
            &known,
            Hash::of(&seed),
            &limits,
        )?)
    }

    /// The command exercising `choice` on contract `cid` of `template` with `argument`.
    pub fn exercise(
        &self,
        template: &str,
        cid: ContractId,
        choice: &str,
        argument: serde_json::Value,
    ) -> Result<Command> {
        let template: TemplateId = template.parse()?;
        let argument = self
            .packages
            .argument_from_json(&template, choice, &argument)?;
        Ok(Command::Exercise {
            template,
            contract_id: cid,
            choice: choice.to_owned(),
            argument,
        })
    }

    /// The command creating a contract of `template` with `payload`.
    pub fn create(&self, template: &str, payload: serde_json::Value) -> Result<Command> {
        let template: TemplateId = template.parse()?;
        let payload = self.packages.payload_from_json(&template, &payload)?;
        Ok(Command::Create { template, payload })
    }

    /// The participant member serving `shard`.
    pub async fn participant_of(&self, shard: &str) -> Result<MemberId> {
        self.topology()
            .await?
            .shards
            .get(shard)
            .map(|s| s.participant.clone())
            .with_context(|| format!("no shard {shard}"))
    }

    /// The update id every shard derives for the transaction of `plan` sequenced at
    /// `request`.
    pub fn update_id(plan: &RequestPlan, request: Timestamp) -> Result<String> {
        Ok(merkle::update_id(&plan.root_hash.parse()?, request))
    }

    /// Splits `tx` into views and the informee tree, as an honest submitter would.
    pub async fn plan(&self, tx: &Transaction) -> Result<RequestPlan> {
        let topology = self.topology().await?;
        views::plan_request(tx, &topology, &self.member, "rogue", "rogue-command")
            .map_err(|e| anyhow::anyhow!(e))
    }

    /// The honest commitments of `plan`'s views, in order.
    pub fn commitments(&self, plan: &RequestPlan) -> Vec<ordo_protocol::ViewCommitment> {
        plan.views
            .iter()
            .map(|(m, payload)| views::commitment(m, payload, &views::view_json(payload)))
            .collect()
    }

    /// Re-seals `plan` after its views were changed: each view's commitment (its hash and
    /// the parties its actions have), the leaves, the root, the messages and the tree, all
    /// consistent again, so that only the checks of the views themselves can object.
    pub fn seal(&self, plan: &mut RequestPlan) -> Result<()> {
        let commitments = self.commitments(plan);
        self.seal_with(plan, commitments)
    }

    /// Seals `plan` with the given commitments (one per view, in order): whatever they
    /// declare, the root is recomputed over them.
    pub fn seal_with(
        &self,
        plan: &mut RequestPlan,
        commitments: Vec<ordo_protocol::ViewCommitment>,
    ) -> Result<()> {
        let jsons = plan
            .views
            .iter()
            .map(|(m, payload)| (m.clone(), views::view_json(payload)))
            .collect();
        let (root_hash, messages, tree) = views::seal(&self.member, &jsons, commitments)
            .context("a commitment's view hash is not a hash")?;
        plan.root_hash = root_hash;
        plan.messages = messages;
        plan.informee_tree = tree;
        Ok(())
    }

    /// The domain's mediator.
    pub async fn mediator(&self) -> Result<MemberId> {
        self.topology()
            .await?
            .mediator()
            .cloned()
            .context("no mediator in topology")
    }

    /// Signs `message` as the rogue.
    pub fn sign(&self, message: &Message) -> Vec<u8> {
        SignedMessage::encode(&self.member, &self.key, message)
    }

    /// The envelopes of `plan`: each other participant's view, and the informee tree for
    /// the mediator (the rogue sends itself nothing).
    pub async fn envelopes(&self, plan: &RequestPlan) -> Result<Vec<Envelope>> {
        let mediator = self.mediator().await?;
        let mut envelopes: Vec<Envelope> = plan
            .messages
            .iter()
            .filter(|(m, _)| **m != self.member)
            .map(|(m, message)| Envelope {
                recipients: Recipients::members([m.clone()]),
                content: self.sign(&Message::View(message.clone())),
            })
            .collect();
        envelopes.push(Envelope {
            recipients: Recipients::members([mediator]),
            content: self.sign(&Message::InformeeTree(plan.informee_tree.clone())),
        });
        Ok(envelopes)
    }

    /// Sends `envelopes` as one submission; its sequencing timestamp.
    pub async fn send(&self, envelopes: Vec<Envelope>) -> Result<Timestamp> {
        let n = self.sends.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut nonce = [0u8; 8];
        rand::fill(&mut nonce[..]);
        let submission = Submission {
            message_id: format!("rogue-{n}-{}", hex::encode(nonce)),
            max_sequencing_time: Timestamp::from_system_time(std::time::SystemTime::now())
                .plus(Duration::from_secs(60)),
            envelopes,
        };
        let at = self.client.send(submission).await?.timestamp;
        self.acked.lock().insert(
            at,
            Timestamp::from_system_time(std::time::SystemTime::now()),
        );
        Ok(at)
    }

    /// When the sequencer acknowledged the send sequenced at `at` (this machine's clock,
    /// which the sequencer's timestamps also come from): the moment the request was
    /// committed, after its timestamp was assigned and its payload written.
    pub fn acked(&self, at: Timestamp) -> Timestamp {
        self.acked.lock().get(&at).copied().unwrap_or(at)
    }

    /// Sends `plan`'s views and informee tree; the request id (its timestamp).
    pub async fn submit(&self, plan: &RequestPlan) -> Result<Timestamp> {
        let envelopes = self.envelopes(plan).await?;
        self.send(envelopes).await
    }

    /// A response for `parties` of `request` to the mediator, signed by the rogue.
    pub async fn response(
        &self,
        request: Timestamp,
        root_hash: &str,
        parties: &[&str],
        outcome: ResponseOutcome,
    ) -> Result<Envelope> {
        let mediator = self.mediator().await?;
        let response = ConfirmationResponse {
            request,
            root_hash: root_hash.to_owned(),
            parties: parties
                .iter()
                .map(|p| PartyId::new(p))
                .collect::<Result<_, _>>()?,
            outcome,
        };
        Ok(Envelope {
            recipients: Recipients::members([mediator]),
            content: self.sign(&Message::Response(response)),
        })
    }

    /// Approves `request` for `parties`.
    pub async fn approve(
        &self,
        request: Timestamp,
        root_hash: &str,
        parties: &[&str],
    ) -> Result<Timestamp> {
        let envelope = self
            .response(request, root_hash, parties, ResponseOutcome::Approve)
            .await?;
        self.send(vec![envelope]).await
    }

    /// Every verdict received for `request`.
    pub fn verdicts_for(&self, request: Timestamp) -> Vec<Received> {
        self.verdicts
            .lock()
            .iter()
            .filter(|(_, v)| v.request == request)
            .cloned()
            .collect()
    }

    /// Waits for the verdict on `request`.
    pub async fn verdict(&self, request: Timestamp, timeout: Duration) -> Result<Received> {
        wait_for(
            &format!("the verdict on request {request}"),
            timeout,
            || async { self.verdicts_for(request).into_iter().next() },
        )
        .await
    }
}

impl Drop for Rogue {
    fn drop(&mut self) {
        self.recording.abort();
    }
}

/// Records the verdicts of `event` (signatures are the mediator's business: the test
/// only reads what arrived).
fn record_verdicts(event: &SequencedEvent, sink: &Mutex<Vec<Received>>) {
    for envelope in &event.envelopes {
        if let Ok(signed) = SignedMessage::decode(&envelope.content)
            && let Message::Verdict(v) = signed.message
        {
            sink.lock().push((event.timestamp, v));
        }
    }
}
