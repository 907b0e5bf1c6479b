//! `ordo load`: a load generator users run against any network a network.json describes.
//! Independent simulated clients, each with its own party, token and connection, submit
//! the Iou package's commands through the Ledger API (gRPC) or the JSON API gateway
//! (HTTP), in a closed or an open loop; the report gives throughput, latency
//! percentiles, errors by kind, the nodes' CPU and memory, and a cross-check of what it
//! counted committed against the shards' update logs. docs/load.md is the user's guide.
//!
//! The engine is a library, so that a benchmark can run it against a network it starts
//! itself: [`run`] with [`LoadOptions`] gives a [`Report`]. `ordo load` is [`cli`] with
//! [`LoadArgs`].
//!
//! - `options`: the command line and the validated options.
//! - `setup`: package, parties, clients, their first Ious (not measured).
//! - `client`: one simulated client; `route`: its gRPC or HTTP connection.
//! - `driver`: the closed and open loops; `stats`: outcomes and histograms.
//! - `crosscheck`, `procfs`, `report`, `progress`.

mod client;
mod crosscheck;
mod driver;
mod error;
mod options;
mod procfs;
mod progress;
mod report;
mod route;
mod setup;
mod stats;

use std::sync::Arc;

use ordo_ledger_client::{LedgerError, Network};

pub use crosscheck::CrossCheck;
pub use error::LoadError;
pub use options::{
    DEFAULT_DURATION, Kind, LoadArgs, LoadOptions, Mix, Scenario, Stop, Via, parse_duration,
    random_run_id,
};
pub use procfs::NodeUsage;
pub use progress::Progress;
pub use report::{Report, html};
pub use stats::{Counts, Op, SecondFigures};

use crate::progress::{Bar, Length};
use crate::setup::Target;
use crate::stats::Recorder;

/// Runs the load `opts` describes against `network`: setup, the measured run, the
/// cross-check. Fails only when the run cannot be set up, or its figures do not add up;
/// commands that fail are counted in the report. A report whose cross-check does not
/// match is still returned (`report.cross_check.matches`).
pub async fn run(
    network: &Network,
    opts: &LoadOptions,
    progress: Progress,
) -> Result<Report, LoadError> {
    opts.validate()?;
    let target = Target::of(network, opts.via)?;
    let mut bar = Bar::new(progress);
    let outcome = measured(network, opts, &target, &mut bar).await;
    bar.finish();
    outcome
}

async fn measured(
    network: &Network,
    opts: &LoadOptions,
    target: &Target,
    bar: &mut Bar,
) -> Result<Report, LoadError> {
    let recorder = Arc::new(Recorder::new());
    let clients = setup::prepare(network, opts, target, recorder.clone(), bar).await?;
    let marks = crosscheck::mark(network).await?;
    let sampler = procfs::Sampler::start(network);
    bar.measuring(match (opts.stop.count, opts.stop.duration) {
        (Some(n), _) => Length::Count(n),
        (None, Some(d)) => Length::Seconds(d.as_secs().max(1)),
        (None, None) => Length::Count(0),
    });
    recorder.begin();
    driver::drive(clients, opts, &recorder, bar).await;
    let nodes = sampler.finish();
    bar.status("cross-checking the shards' update logs");
    // Every client (and its share of the recorder) is gone once the loops end.
    let recorder = Arc::try_unwrap(recorder).map_err(|_| {
        LoadError::Accounting("a client still holds the recorder after the run".into())
    })?;
    let totals = recorder.finish();
    let prefix = format!("{}-m-", opts.prefix());
    let cross_check = crosscheck::check(network, &marks, &prefix, &totals.ids).await?;
    report::Report::new(opts, totals, nodes, cross_check)
}

/// `ordo load`: runs, prints the report (text, or one JSON object with `--json`), writes
/// the HTML report, and fails when the cross-check does not match.
pub async fn cli(args: LoadArgs) -> Result<(), LoadError> {
    let opts = args.options()?;
    let network = Network::load(&args.network).map_err(|e| match e {
        LedgerError::NetworkFile { path, reason } => LoadError::Network { path, reason },
        other => LoadError::ledger("reading the network file")(other),
    })?;
    let progress = if args.json {
        Progress::Hidden
    } else {
        Progress::for_terminal(args.quiet)
    };
    let report = run(&network, &opts, progress).await?;
    if let Some(path) = &args.report {
        std::fs::write(path, html::render(&report)).map_err(|source| LoadError::Write {
            path: path.clone(),
            source,
        })?;
    }
    if args.json {
        let line = serde_json::to_string(&report)
            .map_err(|e| LoadError::Accounting(format!("the report does not serialise: {e}")))?;
        println!("{line}");
    } else {
        print!("{}", report.text());
        if let Some(path) = &args.report {
            println!("  report        {}", path.display());
        }
    }
    if !report.cross_check.matches {
        return Err(LoadError::CrossCheck(report.cross_check.explain()));
    }
    Ok(())
}
