//! Alarms: what an honest member never sends, seen by a node (DESIGN §4, *Trust*). Each is
//! logged at error level as `protocol alarm` (its kind, the event's timestamp, its sender,
//! what was wrong) and counted in the node's `<role>_alarms_total{kind}` counter; the node
//! goes on. docs/security.md lists the kinds.

use ordo_core::{MemberId, Timestamp};

/// Logs and counts one alarm of kind `kind` in `counter` (e.g.
/// `ordo_participant_alarms_total`), raised by the event at `at` that `sender` sent.
pub fn raise(
    counter: &'static str,
    kind: &'static str,
    at: Timestamp,
    sender: &MemberId,
    details: &str,
) {
    tracing::error!(alarm = kind, at = at.micros(), %sender, %details, "protocol alarm");
    metrics::counter!(counter, "kind" => kind).increment(1);
}
