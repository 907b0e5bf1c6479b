//! What a run does: the command line ([`LoadArgs`], which `ordo load` flattens) and the
//! validated options the engine takes ([`LoadOptions`], which a benchmark builds directly).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::ValueEnum;
use rand::Rng;
use serde::Serialize;

use crate::error::LoadError;

/// What the clients do (docs/load.md describes each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// One issuer on the first shard creates Ious for holders on the other shards.
    Issue,
    /// Each client moves Ious it holds to random holders on another shard.
    Transfer,
    /// Each client proposes swaps of its Ious to holders on another shard, who accept.
    Swap,
    /// Issue, transfer and swap, drawn per command by `--mix` weights.
    Mix,
}

/// The API the clients submit through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// The shards' Ledger API (gRPC), through the failover-aware `ShardClient`.
    Grpc,
    /// The JSON API gateway (`gateways[0].http` in network.json).
    Http,
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Via::Grpc => "grpc",
            Via::Http => "http",
        })
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scenario::Issue => "issue",
            Scenario::Transfer => "transfer",
            Scenario::Swap => "swap",
            Scenario::Mix => "mix",
        })
    }
}

/// What one command slot of a client does (before an incoming swap proposal, which a
/// client always accepts first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Issue,
    Transfer,
    Swap,
}

/// Weights of the kinds of command (`issue=1,transfer=8,swap=1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Mix {
    pub issue: u32,
    pub transfer: u32,
    pub swap: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            issue: 1,
            transfer: 8,
            swap: 1,
        }
    }
}

impl Mix {
    /// The mix a single-kind scenario amounts to.
    pub fn of(scenario: Scenario, mix: Mix) -> Mix {
        let only = |issue, transfer, swap| Mix {
            issue,
            transfer,
            swap,
        };
        match scenario {
            Scenario::Issue => only(1, 0, 0),
            Scenario::Transfer => only(0, 1, 0),
            Scenario::Swap => only(0, 0, 1),
            Scenario::Mix => mix,
        }
    }

    /// A kind drawn by weight.
    pub fn pick(&self, rng: &mut impl Rng) -> Kind {
        let total = self.issue + self.transfer + self.swap;
        let r = rng.random_range(0..total.max(1));
        if r < self.issue {
            Kind::Issue
        } else if r < self.issue + self.transfer {
            Kind::Transfer
        } else {
            Kind::Swap
        }
    }

    /// Whether clients move Ious they hold (and so need some to start with).
    pub fn holds_ious(&self) -> bool {
        self.transfer > 0 || self.swap > 0
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut mix = Mix {
            issue: 0,
            transfer: 0,
            swap: 0,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not KIND=WEIGHT (e.g. transfer=8)"))?;
            let weight: u32 = weight.trim().parse().map_err(|_| {
                format!("the weight of {kind} must be a whole number, got {weight:?}")
            })?;
            let slot = match kind.trim() {
                "issue" => &mut mix.issue,
                "transfer" => &mut mix.transfer,
                "swap" => &mut mix.swap,
                other => {
                    return Err(format!(
                        "unknown kind {other:?} (kinds: issue, transfer, swap)"
                    ));
                }
            };
            *slot = weight;
        }
        if mix.issue + mix.transfer + mix.swap == 0 {
            return Err("every weight is 0: give at least one kind a weight".into());
        }
        Ok(mix)
    }
}

/// `60s`, `500ms`, `2m`: a duration with its unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 60s, 500ms, 2m)"))
}

/// `ordo load`'s command line.
#[derive(Clone, Debug, clap::Args)]
pub struct LoadArgs {
    /// The network file `ordo up` wrote.
    #[arg(long, value_name = "FILE", default_value = "ordo-data/network.json")]
    pub network: PathBuf,
    /// What the clients do.
    #[arg(long, value_enum, default_value_t = Scenario::Transfer)]
    pub scenario: Scenario,
    /// With `--scenario mix`: the weight of each kind of command (default
    /// issue=1,transfer=8,swap=1).
    #[arg(long, value_name = "KIND=W,…", value_parser = Mix::from_str)]
    pub mix: Option<Mix>,
    /// Submit through the shards' Ledger API (gRPC) or the JSON API gateway (HTTP).
    #[arg(long, value_enum, default_value_t = Via::Grpc)]
    pub via: Via,
    /// Simulated clients, each with its own party, token and connection. Without
    /// `--rate`: a closed loop, each client sending its next command once the last one is
    /// answered. With `--rate` it defaults to one client per 2 commands/s.
    #[arg(long, value_name = "N")]
    pub clients: Option<usize>,
    /// An open loop: R commands per second in all, due on a fixed schedule and spread
    /// over the clients; a command that cannot start when due waits, and its latency
    /// counts from when it was due.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// How long to send commands (default 60s unless `--count` is given).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// How many commands to send in all (with `--duration`: whichever ends first). Counts
    /// the commands clients choose (issues, transfers, swap proposals); the accepts of
    /// proposals come on top.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Start the clients (closed loop) or raise the rate (open loop) linearly over this
    /// time.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    pub ramp_up: Duration,
    /// A command without an answer this long after it was sent (open loop: due) counts
    /// as timed out.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// Ious issued to each client during setup (transfer, swap, mix; at least 2 with
    /// swaps, as a client keeps one back to answer proposals).
    #[arg(long, value_name = "K", default_value_t = 4)]
    pub ious: usize,
    /// The prefix of this run's party names and command ids (default: random). Runs on
    /// one network need different ids.
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// Print the report as one JSON object on stdout (no progress bar).
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Also write a self-contained HTML report with charts to this file.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
}

/// Default clients of an open loop without `--clients`: one per 2 commands/s, so each
/// client keeps up while its commands take less than 500 ms.
const RATE_PER_DEFAULT_CLIENT: f64 = 2.0;
const MAX_DEFAULT_CLIENTS: usize = 1000;
/// How long a run lasts without `--duration` or `--count`.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(60);

/// When a run stops sending commands (the first limit reached).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Stop {
    #[serde(with = "secs_opt")]
    pub duration: Option<Duration>,
    pub count: Option<u64>,
}

/// A validated run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadOptions {
    pub scenario: Scenario,
    pub mix: Mix,
    pub via: Via,
    pub clients: usize,
    /// Open loop at this many commands per second; `None`: closed loop.
    pub rate: Option<f64>,
    pub stop: Stop,
    #[serde(with = "secs")]
    pub ramp_up: Duration,
    #[serde(with = "secs")]
    pub timeout: Duration,
    pub ious_per_client: usize,
    pub run_id: String,
}

impl LoadArgs {
    /// The run these flags describe, or what is wrong with them.
    pub fn options(&self) -> Result<LoadOptions, LoadError> {
        let usage = |m: String| Err(LoadError::Usage(m));
        if self.mix.is_some() && self.scenario != Scenario::Mix {
            return usage(format!(
                "--mix applies to --scenario mix only (this run is --scenario {})",
                self.scenario
            ));
        }
        let clients = match (self.clients, self.rate) {
            (Some(n), _) => n,
            (None, Some(rate)) => {
                ((rate / RATE_PER_DEFAULT_CLIENT).ceil() as usize).clamp(2, MAX_DEFAULT_CLIENTS)
            }
            (None, None) => {
                return usage(
                    "say how to load the network: --clients N (closed loop: each client \
                     waits for its answer) or --rate R (open loop: R commands/s in all)"
                        .into(),
                );
            }
        };
        let stop = Stop {
            duration: match (self.duration, self.count) {
                (None, None) => Some(DEFAULT_DURATION),
                (d, _) => d,
            },
            count: self.count,
        };
        let options = LoadOptions {
            scenario: self.scenario,
            mix: Mix::of(self.scenario, self.mix.unwrap_or_default()),
            via: self.via,
            clients,
            rate: self.rate,
            stop,
            ramp_up: self.ramp_up,
            timeout: self.timeout,
            ious_per_client: self.ious,
            run_id: self.run_id.clone().unwrap_or_else(random_run_id),
        };
        options.validate()?;
        Ok(options)
    }
}

/// Eight hex digits: unique enough that runs on one network do not collide.
pub fn random_run_id() -> String {
    hex::encode(rand::random::<[u8; 4]>())
}

impl LoadOptions {
    /// Checks what the type cannot: positive counts and rates, usable ids.
    pub fn validate(&self) -> Result<(), LoadError> {
        let fail = |m: &str| Err(LoadError::Usage(m.to_owned()));
        if self.clients == 0 {
            return fail("--clients must be at least 1");
        }
        if self.mix.holds_ious() && self.clients < 2 {
            return fail(&format!(
                "--scenario {} needs at least 2 clients: Ious move between holders on \
                 different shards",
                self.scenario
            ));
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return fail("--rate must be a positive number of commands per second");
        }
        if self.stop.count == Some(0) {
            return fail("--count must be at least 1");
        }
        if self.stop.duration == Some(Duration::ZERO) {
            return fail("--duration must be longer than 0s");
        }
        if self.stop.duration.is_none() && self.stop.count.is_none() {
            return fail("give --duration or --count");
        }
        if self.timeout.is_zero() {
            return fail("--timeout must be longer than 0s");
        }
        if self.mix.holds_ious() && self.ious_per_client == 0 {
            return fail("--ious must be at least 1: clients transfer and swap Ious they hold");
        }
        if self.mix.swap > 0 && self.ious_per_client < 2 {
            return fail(
                "--ious must be at least 2 with swaps: a client proposes one Iou and keeps \
                 one back to answer proposals",
            );
        }
        let id_ok = !self.run_id.is_empty()
            && self.run_id.len() <= 24
            && self
                .run_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !id_ok {
            return fail(&format!(
                "--run-id {:?}: 1 to 24 letters, digits or '-' (it prefixes party names)",
                self.run_id
            ));
        }
        Ok(())
    }

    /// The party and command id prefix of this run.
    pub fn prefix(&self) -> String {
        format!("ld-{}", self.run_id)
    }
}

mod secs {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

mod secs_opt {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        load: LoadArgs,
    }

    fn parse(args: &[&str]) -> Result<LoadOptions, String> {
        let cli = Cli::try_parse_from(std::iter::once("load").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.load.options().map_err(|e| e.to_string())
    }

    #[test]
    fn closed_and_open_loops() {
        let o = parse(&["--clients", "4", "--count", "40"]).unwrap();
        assert_eq!((o.clients, o.rate), (4, None));
        assert_eq!(
            o.stop,
            Stop {
                duration: None,
                count: Some(40)
            }
        );
        assert_eq!(o.mix, Mix::of(Scenario::Transfer, Mix::default()));
        let o = parse(&["--rate", "250", "--duration", "90s", "--ramp-up", "500ms"]).unwrap();
        assert_eq!((o.clients, o.rate), (125, Some(250.0)));
        assert_eq!(o.stop.duration, Some(Duration::from_secs(90)));
        assert_eq!(o.ramp_up, Duration::from_millis(500));
        let o = parse(&["--clients", "2"]).unwrap();
        assert_eq!(o.stop.duration, Some(DEFAULT_DURATION));
        assert_eq!(o.run_id.len(), 8);
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        let e = parse(&["--count", "5"]).unwrap_err();
        assert!(e.contains("--clients N") && e.contains("--rate R"), "{e}");
        let e = parse(&["--scenario", "bogus", "--clients", "2"]).unwrap_err();
        assert!(e.contains("invalid value 'bogus'"), "{e}");
        let e = parse(&["--clients", "2", "--duration", "soon"]).unwrap_err();
        assert!(e.contains("60s"), "{e}");
        let e = parse(&["--clients", "1"]).unwrap_err();
        assert!(e.contains("at least 2 clients"), "{e}");
        assert!(parse(&["--clients", "1", "--scenario", "issue"]).is_ok());
        let e = parse(&["--clients", "2", "--mix", "issue=1"]).unwrap_err();
        assert!(e.contains("--scenario mix only"), "{e}");
        let e = parse(&["--clients", "2", "--rate=0"]).unwrap_err();
        assert!(e.contains("--rate"), "{e}");
        let e = parse(&["--clients", "2", "--scenario", "swap", "--ious", "1"]).unwrap_err();
        assert!(e.contains("at least 2 with swaps"), "{e}");
        let e = parse(&["--clients", "2", "--run-id", "a b"]).unwrap_err();
        assert!(e.contains("--run-id"), "{e}");
    }

    #[test]
    fn mix_weights_parse_and_draw() {
        let mix: Mix = "issue=1, transfer=8,swap=0".parse().unwrap();
        assert_eq!((mix.issue, mix.transfer, mix.swap), (1, 8, 0));
        assert!(
            "issue=1,steal=2"
                .parse::<Mix>()
                .unwrap_err()
                .contains("steal")
        );
        assert!(
            "issue=x"
                .parse::<Mix>()
                .unwrap_err()
                .contains("whole number")
        );
        assert!(
            "swap=0"
                .parse::<Mix>()
                .unwrap_err()
                .contains("every weight")
        );
        let mut rng = rand::rng();
        let only_swap = Mix::of(Scenario::Swap, mix);
        assert!((0..100).all(|_| only_swap.pick(&mut rng) == Kind::Swap));
        let draws: Vec<Kind> = (0..2000).map(|_| mix.pick(&mut rng)).collect();
        let issues = draws.iter().filter(|k| **k == Kind::Issue).count();
        assert!(!draws.contains(&Kind::Swap));
        assert!((100..400).contains(&issues), "{issues} issues of 2000");
    }
}
