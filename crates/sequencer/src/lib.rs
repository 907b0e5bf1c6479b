//! The ordo sequencer node: active-active ordered multicast over one shared Postgres.

pub mod config;

pub use config::{ConfigError, SequencerConfig};
