//! End-to-end tests of the ledger: real nodes on loopback over a throwaway Postgres.
//!
//! Every test module starts its own network (`common::LedgerNet`): one or more sequencer
//! nodes, the topology manager, the mediator and two participant shards (and, for the
//! replica tests, a second replica of a shard), each in-process on a runtime of its own,
//! over one shared Postgres cluster with fresh databases per network.

mod common;

mod t01_transfer;
mod t02_swap;
mod t03_double_spend;
mod t04_authorization;
mod t05_timeout;
mod t06_deduplication;
mod t07_restart;
mod t08_bad_input;
mod t09_replicas;
mod t10_create_and_exercise;
mod t11_read_your_writes;
mod t12_pruning;
mod t13_choice_observers;
mod t14_multi_command;
mod t15_contract_keys;
mod t16_users;
