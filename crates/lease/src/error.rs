//! The lease's errors: a failed fence check, and everything else.

/// Why a write must not commit: this replica does not hold the lease (any more).
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error(
        "lease of service {service:?} is not held by this replica; it is passive and must not write"
    )]
    NotActive { service: String },
    #[error(
        "no lease row for service {service:?}: the lease was never taken; run the lease runtime before writing"
    )]
    NoLease { service: String },
    #[error(
        "lease of service {service:?} was taken over: {holder:?} wrote with fencing token {token}, \
         but the lease is held by {current_holder:?} with token {current_token}; this replica is deposed and must stop"
    )]
    Deposed {
        service: String,
        holder: String,
        token: i64,
        current_holder: String,
        current_token: i64,
    },
    #[error(
        "lease of service {service:?} held by {holder:?} with fencing token {token} has expired by the database clock; \
         this replica must stop writing until it re-acquires the lease"
    )]
    Expired {
        service: String,
        holder: String,
        token: i64,
    },
    #[error("checking the lease fence: {0}")]
    Db(#[from] sqlx::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(transparent)]
    Fence(#[from] FenceError),
    #[error("lease database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Config(#[from] ordo_node::config::ConfigError),
    #[error("the lease runtime of service {service:?} has stopped")]
    Stopped { service: String },
}
