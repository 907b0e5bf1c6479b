//! The participant's stage metrics (served on the HTTP port's `/metrics`): histograms with
//! buckets (see `ordo_node::http`), so that they aggregate across replicas and shards.
//! Together they say where a command's time goes: submission (of which interpretation),
//! the sequencer send, the batches that process the request and its verdict (of which the
//! commit), and the command end to end.

use std::time::Duration;

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
