//! End-to-end tests of the sequencer: a throwaway Postgres, `init`, nodes run in-process on
//! 127.0.0.1:0, driven through the generated gRPC clients.

mod harness;

mod t01_order;
mod t02_dedup;
mod t03_bad_input;
mod t04_pruning;
mod t05_provisioning;
mod t06_burst;
mod t07_heartbeats;
mod t08_token_expiry;
mod t09_signed_acks;
mod t10_flooding;
mod t11_reflection;
