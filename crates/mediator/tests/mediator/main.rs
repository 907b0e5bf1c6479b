//! End-to-end tests of the mediator: a throwaway Postgres, an in-process sequencer node,
//! the test playing the topology manager and two participants, and the mediator
//! in-process.

mod harness;

mod t01_decisions;
mod t02_timeout;
mod t03_restart;
mod t04_provisioning;
mod t05_failover;
