//! Domain types shared by every ordo node: member ids, ed25519 keys and signatures,
//! content hashes and the sequencer's microsecond timestamps.

pub mod crypto;
pub mod error;
pub mod hash;
pub mod ids;
pub mod party;
pub mod sequencing;
pub mod time;

pub use crypto::{KeyPair, PublicKey, Signature, verify_batch};
pub use error::CoreError;
pub use hash::Hash;
pub use ids::{Fingerprint, MemberId};
pub use party::PartyId;
pub use sequencing::{Envelope, Recipients, Sequenced, SequencedEvent, Submission};
pub use time::{Clock, SystemClock, Timestamp};
