//! Leader leases for active-passive nodes (DESIGN §3): one lease row per logical service
//! in the service's own database, taken and renewed atomically, with a fencing token that
//! grows on every change of holder and is checked inside every write transaction of the
//! active replica.
//!
//! - [`state`]: the pure state machine (passive, acquiring, active, stepping down);
//! - [`store`]: the table and its statements, including [`store::check_fence`];
//! - [`runtime`]: [`Lease::spawn`], which drives the machine against the database and
//!   publishes the [`Role`];
//! - [`replica`]: [`Replica`], the lease as a node uses it: terms, health, `/status`.

pub mod client;
pub mod config;
pub mod error;
pub mod metrics;
pub mod replica;
pub mod runtime;
pub mod state;
pub mod store;

pub use config::LeaseConfig;
pub use error::{FenceError, LeaseError};
pub use replica::{Replica, ReplicaConfig, ReplicaStatus, Term, holder_name};
pub use runtime::{Lease, LeaseHandle};
pub use state::Role;
pub use store::{SCHEMA, check_fence, ensure_schema};
