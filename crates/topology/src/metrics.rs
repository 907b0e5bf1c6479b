//! The topology manager's metrics.

use metrics::Unit;

/// Every kind of topology change (`plan::kind`).
const CHANGES: [&str; 9] = [
    "add_member",
    "allocate_party",
    "vet_package",
    "set_sequencers",
    "set_parameters",
    "create_user",
    "delete_user",
    "grant_user_rights",
    "revoke_user_rights",
];

/// Every alarm the topology manager raises (docs/security.md#alarms).
const ALARMS: [&str; 6] = [
    "malformed_message",
    "signer_not_sender",
    "bad_signature",
    "unexpected_message",
    "duplicate_topology_transaction",
    "poison_event",
];

/// Help text, and the series registered at 0 before the first change or alarm.
pub fn describe() {
    ordo_node::metrics::describe();
    ordo_lease::metrics::describe();
    metrics::describe_gauge!(
        "ordo_topology_serial",
        "Serial of the latest topology state this replica knows."
    );
    metrics::describe_counter!(
        "ordo_topology_changes_total",
        Unit::Count,
        "Topology changes applied, by kind (add_member, allocate_party, vet_package, …)."
    );
    for kind in CHANGES {
        metrics::counter!("ordo_topology_changes_total", "kind" => kind).increment(0);
    }
    ordo_node::metrics::describe_alarms("ordo_topology_alarms_total", &ALARMS);
}
