//! The lease runtime against a throwaway Postgres: competition, takeover after a crash,
//! fencing of a deposed replica, graceful handover.

mod harness;

mod t01_compete;
mod t02_takeover;
mod t03_fence;
mod t04_handover;
mod t05_replica;
