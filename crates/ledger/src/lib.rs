//! ordo's deterministic ledger core: ledger values and types, template packages, the
//! sandboxed script engine, interpretation of commands into transactions with Daml-style
//! authorization, projections and views, and view re-interpretation (conformance).
//!
//! Pure code: no I/O, no async, no clock, no randomness. Callers run it off the async
//! executor (interpretation is CPU-bound).

pub mod error;
pub mod interpret;
pub mod package;
pub mod script;
pub mod transaction;
pub mod types;
pub mod value;
pub mod view;
pub mod wellformed;

pub use error::{ErrorKind, LedgerError};
pub use interpret::{Command, ContractLookup, Limits, interpret, interpret_all};
pub use ordo_core::{Hash, PartyId};
pub use package::{ARCHIVE, Choice, Package, PackageStore, Template};
pub use transaction::{
    ContractInstance, Node, NodeId, Projection, Transaction, TxInput, View, ViewRoot,
};
pub use types::{ContractId, PackageId, TemplateId, Type};
pub use value::Value;
pub use view::reinterpret_view;
pub use wellformed::check_view;
