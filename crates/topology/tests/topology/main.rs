//! End-to-end tests of the topology manager: a throwaway Postgres, in-process sequencer
//! nodes and the manager in-process on 127.0.0.1:0, driven through its gRPC admin API.

mod harness;

mod t01_lifecycle;
mod t02_bad_input;
mod t03_restart;
mod t04_provisioning;
mod t05_replicas;
mod t06_fence;
mod t07_users;
