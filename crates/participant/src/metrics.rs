//! The participant's metrics (served on the HTTP port's `/metrics`). The stage histograms
//! (buckets per figure, see `ordo_node::metrics`) say where a command's time goes:
//! submission (of which interpretation), the sequencer send, the batches that process the
//! request and its verdict (of which the commit), and the command end to end. Beside them:
//! the Ledger API's requests (`api::observe`), submissions by outcome, the ledger end and
//! the size of the active contract set.

use std::time::Duration;

use metrics::Unit;

use crate::alarm::Alarm;

/// Help text of every participant metric, and the series an alert or a dashboard asks
/// about registered before the first call, batch or alarm (histograms empty, counters at
/// 0). `ledger_end` and `active_contracts` are the shard's as this replica last read them.
pub fn describe(ledger_end: i64, active_contracts: i64) {
    ordo_node::metrics::describe();
    ordo_node::metrics::throttled(&["token_requests"]);
    ordo_lease::metrics::describe();
    let histograms: [(&str, Unit, &str); 9] = [
        (
            "ordo_participant_batch_events",
            Unit::Count,
            "Events per processing batch of the active replica.",
        ),
        (
            "ordo_participant_batch_seconds",
            Unit::Seconds,
            "From checking a batch's events to the end of its commit.",
        ),
        (
            "ordo_participant_commit_seconds",
            Unit::Seconds,
            "A batch's commit alone (the lease fence and the durable write).",
        ),
        (
            "ordo_participant_submission_group_events",
            Unit::Count,
            "Accepted commands written per group-commit transaction.",
        ),
        (
            "ordo_participant_interpretation_seconds",
            Unit::Seconds,
            "One interpretation of a submitted command.",
        ),
        (
            "ordo_participant_submission_seconds",
            Unit::Seconds,
            "From the call to the confirmation request durable in the outbox (checks, interpretation, views, signing, the group write).",
        ),
        (
            "ordo_participant_send_seconds",
            Unit::Seconds,
            "One send to the sequencer until its answer, by outcome: sequenced, refused, failed.",
        ),
        (
            "ordo_participant_command_seconds",
            Unit::Seconds,
            "SubmitAndWait* end to end, from the call to the completion, by outcome: committed, rejected, failed.",
        ),
        (
            "ordo_participant_ledger_api_request_duration_seconds",
            Unit::Seconds,
            "Ledger API calls until their response headers, by method (a stream: until it opened).",
        ),
    ];
    for (name, unit, help) in histograms {
        metrics::describe_histogram!(name, unit, help);
    }
    metrics::describe_counter!(
        "ordo_participant_ledger_api_requests_total",
        Unit::Count,
        "Ledger API calls by method and gRPC status code (OK, InvalidArgument, Unavailable, …; \
         a stream counts OK when it opened)."
    );
    metrics::describe_gauge!(
        "ordo_participant_ledger_api_requests_in_flight",
        "Ledger API calls received and not yet answered (a stream until it opened)."
    );
    metrics::describe_counter!(
        "ordo_participant_submissions_total",
        Unit::Count,
        "Commands completed, by outcome: committed, rejected."
    );
    metrics::describe_gauge!(
        "ordo_participant_ledger_end",
        "The shard's ledger end: the offset of its last update."
    );
    metrics::describe_gauge!(
        "ordo_participant_active_contracts",
        "Contracts active on the shard (counted at start and at each term's start, then \
         maintained from each batch's creates and archives)."
    );
    metrics::describe_gauge!(
        "ordo_participant_pruned_offset",
        "The offset up to which the update log was pruned."
    );
    metrics::describe_counter!(
        "ordo_participant_pruned_rows_total",
        Unit::Count,
        "Rows pruned, by log: updates, completions, commands."
    );
    ledger_end_is(ledger_end);
    metrics::gauge!("ordo_participant_active_contracts").set(active_contracts as f64);
    metrics::gauge!("ordo_participant_ledger_api_requests_in_flight").set(0.0);
    for outcome in ["committed", "rejected"] {
        metrics::counter!("ordo_participant_submissions_total", "outcome" => outcome).increment(0);
    }
    for log in ["updates", "completions", "commands"] {
        metrics::counter!("ordo_participant_pruned_rows_total", "log" => log).increment(0);
    }
    for name in [
        "ordo_participant_batch_events",
        "ordo_participant_batch_seconds",
        "ordo_participant_commit_seconds",
        "ordo_participant_submission_group_events",
        "ordo_participant_interpretation_seconds",
        "ordo_participant_submission_seconds",
    ] {
        let _ = metrics::histogram!(name);
    }
    let _ = metrics::histogram!("ordo_participant_send_seconds", "outcome" => "sequenced");
    for outcome in ["committed", "rejected"] {
        let _ = metrics::histogram!("ordo_participant_command_seconds", "outcome" => outcome);
    }
    crate::api::observe::register();
    let kinds = Alarm::ALL.map(Alarm::kind);
    ordo_node::metrics::describe_alarms("ordo_participant_alarms_total", &kinds);
}

/// The shard's ledger end moved (a batch committed updates, or a term reloaded it).
pub fn ledger_end_is(offset: i64) {
    metrics::gauge!("ordo_participant_ledger_end").set(offset as f64);
}

/// The active contract set as counted in the database.
pub fn active_contracts_are(n: i64) {
    metrics::gauge!("ordo_participant_active_contracts").set(n as f64);
}

/// A batch committed: `created` contracts still active at its end, `archived` contracts
/// stored before it archived.
pub fn active_contracts_changed(created: usize, archived: usize) {
    let gauge = metrics::gauge!("ordo_participant_active_contracts");
    gauge.increment(created as f64);
    gauge.decrement(archived as f64);
}

/// Completions written (a command committed or rejected).
pub fn completed(rows: &[crate::store::CompletionRow]) {
    for c in rows {
        let outcome = if c.outcome.code == 0 {
            "committed"
        } else {
            "rejected"
        };
        metrics::counter!("ordo_participant_submissions_total", "outcome" => outcome).increment(1);
    }
}

/// A batch of events processed and committed: how many events, the time from receiving
/// them to the end of the commit, and the commit alone (the fence and the durable write).
pub fn batch(events: usize, took: Duration, commit: Duration) {
    metrics::histogram!("ordo_participant_batch_events").record(events as f64);
    metrics::histogram!("ordo_participant_batch_seconds").record(took.as_secs_f64());
    metrics::histogram!("ordo_participant_commit_seconds").record(commit.as_secs_f64());
}

/// One interpretation of a submitted command (on a blocking thread).
pub fn interpretation(took: Duration) {
    metrics::histogram!("ordo_participant_interpretation_seconds").record(took.as_secs_f64());
}

/// A command accepted: from the call to its confirmation request durable in the outbox
/// (checks, interpretation, views, signing, the group write).
pub fn submission(took: Duration) {
    metrics::histogram!("ordo_participant_submission_seconds").record(took.as_secs_f64());
}

/// One send to the sequencer, until its answer (`outcome`: `sequenced`, `refused` or
/// `failed`).
pub fn send(took: Duration, outcome: &'static str) {
    metrics::histogram!("ordo_participant_send_seconds", "outcome" => outcome)
        .record(took.as_secs_f64());
}

/// A command end to end, from the call to its completion (`outcome`: `committed`,
/// `rejected` or `failed` for an error before a completion).
pub fn command(took: Duration, outcome: &'static str) {
    metrics::histogram!("ordo_participant_command_seconds", "outcome" => outcome)
        .record(took.as_secs_f64());
}
