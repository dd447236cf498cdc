//! The svault binary-protocol client: the one module that names svault's crates (the
//! protocol's client and the core's command types), so moving them changes one line here.

pub use proto::client::{Answer, Call, Client, ClientError, Command, Status};
pub use svault_core::command::{CardId, Channel, Method, TxnId};
pub use svault_core::money::Amount;
pub use svault_core::outcome::DeclineCode;
