//! A network of sequencer node processes over one private Postgres, for the tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ordo_core::{KeyPair, MemberId, SequencedEvent, Timestamp};
use ordo_sequencer_client::admin::AdminClient;
use ordo_sequencer_client::{ClientConfig, SequencerClient};
use ordo_testkit::{NodeProcess, PgCluster, PgOptions, free_addr, wait_for};

pub const ADMIN_TOKEN: &str = "e2e-admin-token";
pub const HEALTH_SERVICE: &str = "ordo.sequencer.v1.SequencerService";

pub struct Node {
    pub name: String,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    config: PathBuf,
    log: PathBuf,
    process: Option<NodeProcess>,
}

impl Node {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }
}

pub struct Network {
    pub nodes: Vec<Node>,
    pub database_url: String,
    // Node configs and logs; kept until the network is dropped.
    _dir: tempfile::TempDir,
    // Dropped last: the nodes must go before their database.
    _pg: PgCluster,
}

fn ordo_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ordo"))
}

impl Network {
    /// Starts Postgres, provisions the sequencer database and starts `n` nodes, each
    /// ready (SERVING) before this returns.
    pub async fn start(n: usize) -> anyhow::Result<Self> {
        ordo_testkit::init_tracing();
        let pg = tokio::task::spawn_blocking(|| PgCluster::start(PgOptions::default())).await??;
        let database_url = pg.create_database("sequencer").await?;
        let dir = tempfile::Builder::new().prefix("ordo-e2e-").tempdir()?;
        let mut nodes = Vec::new();
        for i in 1..=n {
            let name = format!("sequencer-{i}");
            let (grpc, http) = (free_addr(), free_addr());
            let config = dir.path().join(format!("{name}.toml"));
            std::fs::write(
                &config,
                format!(
                    "node_name = \"{name}\"\ndatabase_url = \"{database_url}\"\n\
                     grpc_listen = \"{grpc}\"\nhttp_listen = \"{http}\"\n\
                     admin_token = \"{ADMIN_TOKEN}\"\n"
                ),
            )?;
            ordo_testkit::write_secret(&config, std::fs::read(&config)?)?;
            let log = dir.path().join(format!("{name}.log"));
            nodes.push(Node {
                name,
                grpc,
                http,
                config,
                log,
                process: None,
            });
        }
        let mut net = Self {
            nodes,
            database_url,
            _dir: dir,
            _pg: pg,
        };
        net.init()?;
        for i in 0..n {
            net.start_node(i).await?;
        }
        Ok(net)
    }

    fn init(&self) -> anyhow::Result<()> {
        let node = &self.nodes[0];
        let out = std::process::Command::new(ordo_bin())
            .args(["sequencer", "init", "--config"])
            .arg(&node.config)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "ordo sequencer init failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Starts (or restarts) node `i` and waits until it reports SERVING.
    pub async fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let config = node.config.to_str().context("config path")?.to_owned();
        node.process = Some(NodeProcess::spawn(
            &node.name,
            &ordo_bin(),
            &["sequencer", "--config", &config],
            &node.log,
        )?);
        let endpoint = node.endpoint();
        let name = node.name.clone();
        let ready = wait_for(&format!("{name} SERVING"), Duration::from_secs(30), || {
            let endpoint = endpoint.clone();
            async move { is_serving(&endpoint).await.then_some(()) }
        })
        .await;
        if ready.is_err() {
            anyhow::bail!("{name} did not become ready; its log:\n{}", self.log(i));
        }
        Ok(())
    }

    /// SIGKILL node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].process.take() {
            p.kill();
        }
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(Node::endpoint).collect()
    }

    /// Registers a member through node 0's admin API.
    pub async fn register(&self, name: &str) -> anyhow::Result<(MemberId, Arc<KeyPair>)> {
        let key = KeyPair::generate();
        let admin = AdminClient::connect(&self.nodes[0].endpoint(), ADMIN_TOKEN).await?;
        let (member, _) = admin.register_member(name, &key.public()).await?;
        Ok((member, Arc::new(key)))
    }

    pub async fn client(
        &self,
        member: &MemberId,
        key: &Arc<KeyPair>,
    ) -> anyhow::Result<SequencerClient> {
        let config = ClientConfig::new(self.endpoints(), member.clone(), key.clone());
        Ok(SequencerClient::connect(config).await?)
    }

    /// A client whose endpoint list starts at node `i % n`, so that tests spread their
    /// clients' first choices over the nodes.
    pub async fn client_preferring(
        &self,
        member: &MemberId,
        key: &Arc<KeyPair>,
        i: usize,
    ) -> anyhow::Result<SequencerClient> {
        let mut endpoints = self.endpoints();
        let n = endpoints.len();
        endpoints.rotate_left(i % n);
        let config = ClientConfig::new(endpoints, member.clone(), key.clone());
        Ok(SequencerClient::connect(config).await?)
    }

    /// The authoritative order: every event's timestamp and recipients (by member id; an
    /// empty list for broadcast), read straight from the database.
    pub async fn events_for(&self, member: &MemberId) -> anyhow::Result<Vec<Timestamp>> {
        let pool = sqlx::PgPool::connect(&self.database_url).await?;
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT e.ts FROM events e, members m \
             WHERE m.member_id = $1 AND (e.broadcast OR m.idx = ANY(e.recipients)) ORDER BY e.ts",
        )
        .bind(member.to_string())
        .fetch_all(&pool)
        .await?;
        pool.close().await;
        Ok(rows.into_iter().map(|(ts,)| Timestamp(ts)).collect())
    }

    /// Text of node `i`'s Prometheus `/metrics`.
    pub async fn metrics(&self, i: usize) -> anyhow::Result<String> {
        let url = format!("http://{}/metrics", self.nodes[i].http);
        Ok(ordo_node::http_client::get_ok(&url).await?)
    }
}

pub async fn is_serving(endpoint: &str) -> bool {
    ordo_node::serving(endpoint, HEALTH_SERVICE).await
}

/// The value of the first sample of `metric` (summed over its label sets) in Prometheus text.
pub fn metric_sum(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Checks one subscriber's received events against the database's order for its member:
/// the same timestamps in the same order, strictly increasing, the chain intact.
pub fn check_stream(
    who: &str,
    received: &[SequencedEvent],
    expected: &[Timestamp],
) -> anyhow::Result<()> {
    let mut previous = Timestamp::MIN;
    for e in received {
        anyhow::ensure!(
            e.timestamp > previous,
            "{who}: timestamp {:?} after {:?} (not strictly increasing)",
            e.timestamp,
            previous
        );
        anyhow::ensure!(
            e.previous_timestamp == previous,
            "{who}: event {:?} names previous {:?}, but the previous delivered was {:?}",
            e.timestamp,
            e.previous_timestamp,
            previous
        );
        previous = e.timestamp;
    }
    let got: Vec<Timestamp> = received.iter().map(|e| e.timestamp).collect();
    anyhow::ensure!(
        got == expected,
        "{who}: received {} events, the database holds {} for it; first difference at index {:?}",
        got.len(),
        expected.len(),
        got.iter().zip(expected).position(|(a, b)| a != b)
    );
    Ok(())
}
