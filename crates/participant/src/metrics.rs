//! The participant's processing metrics (served on the HTTP port's `/metrics`).

use std::time::Duration;

/// A batch of events processed and committed: how many events, the time from receiving
/// them to the end of the commit, and the commit alone (the fence and the durable write).
pub fn batch(events: usize, took: Duration, commit: Duration) {
    metrics::histogram!("ordo_participant_batch_events").record(events as f64);
    metrics::histogram!("ordo_participant_batch_seconds").record(took.as_secs_f64());
    metrics::histogram!("ordo_participant_commit_seconds").record(commit.as_secs_f64());
}
