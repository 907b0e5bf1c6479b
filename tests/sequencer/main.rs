//! End-to-end tests of the sequencer: real `ordo sequencer` processes on loopback, one
//! throwaway Postgres, real clients. Each test is bounded in count and time.

mod common;
mod failover;
mod order_under_crash;
mod up;
