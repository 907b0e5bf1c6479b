//! The four node roles, each a binding of its library's `init`/`Listeners`/`run` to
//! [`Role`]. The libraries share one shape (config fields, error variants), so one macro
//! writes the bindings; what differs is spelled out in its four uses.

use std::net::SocketAddr;

use ordo_mediator::{MediatorConfig, MediatorError};
use ordo_participant::{ParticipantConfig, ParticipantError};
use ordo_sequencer::{SequencerConfig, SequencerError};
use ordo_topology::{TopologyConfig, TopologyError};

use crate::node::{Basics, ErrorKind, Identity, Role, Step};

pub struct Sequencer;
pub struct Topology;
pub struct Mediator;
pub struct Participant;

macro_rules! role {
    (
        $role:ident { name: $name:literal, env: $prefix:literal, lib: $lib:ident,
        config: $config:ty, error: $error:ident,
        init_check: $init_check:ident, identity: |$o:ident| $identity:expr,
        shard: |$sc:ident| $shard:expr $(,)? }
    ) => {
        impl Role for $role {
            const NAME: &'static str = $name;
            const ENV_PREFIX: &'static str = $prefix;
            type Config = $config;
            type Error = $error;
            type Listeners = $lib::Listeners;

            fn basics(c: &Self::Config) -> Basics<'_> {
                Basics {
                    node_name: &c.node_name,
                    database_url: &c.database_url,
                    grpc_listen: c.grpc_listen,
                    http_listen: c.http_listen,
                }
            }
            fn shard($sc: &Self::Config) -> Option<&str> {
                $shard
            }
            fn tls(c: &Self::Config) -> Option<&ordo_node::tls::TlsConfig> {
                c.tls.as_ref()
            }
            fn listen_mut(c: &mut Self::Config) -> (&mut SocketAddr, &mut SocketAddr) {
                (&mut c.grpc_listen, &mut c.http_listen)
            }
            fn validate(c: &Self::Config, step: Step) -> anyhow::Result<()> {
                match step {
                    Step::Init => Ok(c.$init_check()?),
                    Step::Run => Ok(c.validate()?),
                }
            }
            fn kind(e: &Self::Error) -> ErrorKind {
                match e {
                    $error::Config(_) => ErrorKind::Config,
                    $error::Database(_) => ErrorKind::Database,
                    _ => ErrorKind::Other,
                }
            }
            async fn init(c: &Self::Config) -> Result<Identity, Self::Error> {
                let $o = $lib::init(c).await?;
                Ok($identity)
            }
            async fn bind(c: &Self::Config) -> std::io::Result<Self::Listeners> {
                $lib::Listeners::bind(c).await
            }
            async fn run(
                c: Self::Config,
                l: Self::Listeners,
                shutdown: impl Future<Output = ()> + Send + 'static,
            ) -> Result<(), Self::Error> {
                $lib::run(c, l, shutdown).await
            }
        }
    };
}

role!(Sequencer {
    name: "sequencer",
    env: "ORDO_SEQUENCER_",
    lib: ordo_sequencer,
    config: SequencerConfig,
    error: SequencerError,
    init_check: validate,
    // Not a member: no id, no key.
    identity: |o| Identity {
        created: o.created,
        member: None,
        public_key: None
    },
    shard: |_c| None,
});

role!(Topology {
    name: "topology",
    env: "ORDO_TOPOLOGY_",
    lib: ordo_topology,
    config: TopologyConfig,
    error: TopologyError,
    // The manager's `init` checks its whole configuration.
    init_check: validate,
    identity: |o| Identity {
        created: o.created,
        member: Some(o.member),
        public_key: Some(o.public_key)
    },
    shard: |_c| None,
});

role!(Mediator {
    name: "mediator",
    env: "ORDO_MEDIATOR_",
    lib: ordo_mediator,
    config: MediatorConfig,
    error: MediatorError,
    // Provisioning comes before the topology manager's id is known.
    init_check: validate_for_init,
    identity: |o| Identity {
        created: o.created,
        member: Some(o.member),
        public_key: Some(o.public_key)
    },
    shard: |_c| None,
});

role!(Participant {
    name: "participant",
    env: "ORDO_PARTICIPANT_",
    lib: ordo_participant,
    config: ParticipantConfig,
    error: ParticipantError,
    init_check: validate_for_init,
    identity: |o| Identity {
        created: o.created,
        member: Some(o.member),
        public_key: Some(o.public_key)
    },
    shard: |c| Some(c.shard.as_str()),
});
