//! How every node's metrics read (docs/operations.md, *Health and metrics*): Prometheus
//! names (counters end in `_total`, durations in `_seconds`, sizes in `_bytes`), a HELP
//! line for each, and histograms with buckets chosen for the figure they measure, never
//! summaries (summaries cannot be aggregated across replicas and nodes).
//!
//! Each crate lists its own metrics in a `metrics` module whose `describe()` gives their
//! help text and registers the series an alert may ask about before anything happened
//! (gauges set, counters at 0, histograms empty), so that `rate()` and `absent()` work on
//! a freshly started node. The bucket lists live here, with the recorder.

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// One database transaction: a group commit, a lease renewal, a batch's commit.
pub const DB_WRITE_SECONDS: &[f64] = &[
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
];
/// One stage of the work on a node: a processing batch, an interpretation, a send.
pub const STAGE_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// A caller's wait end to end: a command until its completion, a request until its
/// verdict, an API request.
pub const END_TO_END_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// A failover: from winning a lease to serving (resuming from the database).
pub const TAKEOVER_SECONDS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];
/// How many items one batch holds (events, submissions, commands).
pub const BATCH_ITEMS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Histograms measured against another list than their suffix says (`_seconds` →
/// [`STAGE_SECONDS`], `_events` and `_submissions` → [`BATCH_ITEMS`]).
const BY_NAME: &[(&str, &[f64])] = &[
    ("ordo_sequencer_commit_seconds", DB_WRITE_SECONDS),
    ("ordo_participant_commit_seconds", DB_WRITE_SECONDS),
    ("ordo_lease_renew_seconds", DB_WRITE_SECONDS),
    ("ordo_participant_command_seconds", END_TO_END_SECONDS),
    (
        "ordo_participant_ledger_api_request_duration_seconds",
        END_TO_END_SECONDS,
    ),
    ("ordo_mediator_decision_latency_seconds", END_TO_END_SECONDS),
    ("ordo_gateway_request_duration_seconds", END_TO_END_SECONDS),
    ("ordo_lease_takeover_seconds", TAKEOVER_SECONDS),
];

/// The buckets of every histogram; a histogram no matcher names still gets
/// [`STAGE_SECONDS`], so that no metric is ever rendered as a summary.
pub fn with_buckets(
    builder: PrometheusBuilder,
) -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    let suffixes: [(&str, &[f64]); 3] = [
        ("_seconds", STAGE_SECONDS),
        ("_events", BATCH_ITEMS),
        ("_submissions", BATCH_ITEMS),
    ];
    let by_name = BY_NAME
        .iter()
        .map(|(name, buckets)| (Matcher::Full((*name).into()), *buckets));
    let by_suffix = suffixes
        .into_iter()
        .map(|(suffix, buckets)| (Matcher::Suffix(suffix.into()), buckets));
    by_name
        .chain(by_suffix)
        .try_fold(builder.set_buckets(STAGE_SECONDS)?, |b, (m, buckets)| {
            b.set_buckets_for_metric(m, buckets)
        })
}

/// Installs the recorder (if no other is) and describes the metrics every node exports:
/// the rate limits' (`limits`). Each role's `metrics::describe` calls it first, and
/// [`throttled`] with the limits it enforces.
pub fn describe() {
    crate::metrics_handle();
    metrics::describe_counter!(
        "ordo_throttled_total",
        Unit::Count,
        "Calls refused over a rate limit, by limit (member_sends, member_send_bytes, \
         unauthenticated, token_requests)."
    );
    metrics::describe_gauge!(
        "ordo_throttling",
        "1 while the node has refused a call over a rate limit in the last 10 s, else 0."
    );
    metrics::gauge!("ordo_throttling").set(0.0);
}

/// Registers `ordo_throttled_total` at 0 for each of the node's `limits` (the names its
/// `limits::Limiter`s count under), so that `rate()` over it works before a refusal.
pub fn throttled(limits: &[&'static str]) {
    for limit in limits {
        metrics::counter!("ordo_throttled_total", "limit" => *limit).increment(0);
    }
}

/// Describes a role's alarm counter (`crate::alarm`) and registers it at 0 for each of
/// its `kinds`, so that an alert on its increase works from the start.
pub fn describe_alarms(counter: &'static str, kinds: &[&'static str]) {
    metrics::describe_counter!(
        counter,
        Unit::Count,
        "Protocol alarms by kind: messages no honest member sends (docs/security.md#alarms)."
    );
    for kind in kinds {
        metrics::counter!(counter, "kind" => *kind).increment(0);
    }
}

/// What `record` records, rendered by a recorder of its own with the nodes' buckets (not
/// the process's, which other tests share): for tests of what a crate exports.
pub fn render_isolated(record: impl FnOnce()) -> String {
    let recorder = with_buckets(PrometheusBuilder::new())
        .expect("bucket lists are not empty")
        .build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, record);
    handle.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One value of each figure, rendered.
    fn rendered() -> String {
        render_isolated(|| {
            describe();
            throttled(&["token_requests"]);
            metrics::describe_histogram!("ordo_test_batch_seconds", Unit::Seconds, "A stage.");
            describe_alarms("ordo_test_alarms_total", &["bad_signature", "poison_event"]);
            for (name, _) in BY_NAME {
                metrics::describe_histogram!(*name, Unit::Seconds, "A duration.");
                metrics::histogram!(*name).record(0.003);
            }
            metrics::histogram!("ordo_test_batch_seconds").record(0.003);
            metrics::histogram!("ordo_test_batch_events").record(3.0);
            metrics::histogram!("ordo_test_batch_submissions").record(3.0);
            // Registered, never recorded: still rendered, with empty buckets.
            let _ = metrics::histogram!("ordo_test_idle_seconds");
            let _ = metrics::histogram!("ordo_test_unmatched");
        })
    }

    fn buckets_of(text: &str, name: &str) -> Vec<String> {
        let prefix = format!("{name}_bucket{{le=\"");
        text.lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|l| l.split('"').next())
            .map(str::to_owned)
            .collect()
    }

    fn expected(buckets: &[f64]) -> Vec<String> {
        buckets
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".to_owned()])
            .collect()
    }

    #[test]
    fn every_histogram_has_the_buckets_of_its_figure_and_none_is_a_summary() {
        let text = rendered();
        assert!(!text.contains("summary"), "{text}");
        assert!(!text.contains("quantile="), "{text}");
        for (name, buckets) in BY_NAME {
            assert_eq!(buckets_of(&text, name), expected(buckets), "{name}\n{text}");
        }
        for (name, buckets) in [
            ("ordo_test_batch_seconds", STAGE_SECONDS),
            ("ordo_test_batch_events", BATCH_ITEMS),
            ("ordo_test_batch_submissions", BATCH_ITEMS),
            ("ordo_test_idle_seconds", STAGE_SECONDS),
            ("ordo_test_unmatched", STAGE_SECONDS),
        ] {
            assert_eq!(buckets_of(&text, name), expected(buckets), "{name}\n{text}");
            assert!(
                text.contains(&format!("# TYPE {name} histogram")),
                "{name}\n{text}"
            );
        }
        assert!(
            text.contains("ordo_test_idle_seconds_count 0"),
            "a registered histogram renders before its first value:\n{text}"
        );
    }

    #[test]
    fn described_metrics_have_help_and_are_exported_from_the_start() {
        let text = rendered();
        assert!(
            text.contains("ordo_throttled_total{limit=\"token_requests\"} 0"),
            "{text}"
        );
        for name in [
            "ordo_throttled_total",
            "ordo_throttling",
            "ordo_test_batch_seconds",
            "ordo_test_alarms_total",
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}\n{text}");
        }
        assert!(text.contains("ordo_throttling 0"), "{text}");
        assert!(
            text.contains("ordo_test_alarms_total{kind=\"bad_signature\"} 0"),
            "{text}"
        );
    }
}
