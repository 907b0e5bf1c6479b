//! Generated protobuf types and gRPC services of ordo. Conversions to domain types live in
//! the crate that owns each concept, never here.

#![allow(clippy::all, missing_docs)]

pub mod sequencer {
    pub mod v1 {
        tonic::include_proto!("ordo.sequencer.v1");
    }
}

pub mod admin {
    pub mod v1 {
        tonic::include_proto!("ordo.admin.v1");
    }
}

pub mod ledger {
    pub mod v1 {
        tonic::include_proto!("ordo.ledger.v1");
    }
}

/// The encoded `FileDescriptorSet` of every ordo proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ordo_descriptor");

pub mod convert;
pub mod errors;
