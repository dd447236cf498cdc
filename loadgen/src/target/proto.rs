//! The svault binary-protocol client: the one module that names the engine's crates, so
//! moving the client to another crate changes one line here.

pub use engine::client::{Answer, Call, Client, ClientError, Op, Status};
pub use engine::command::{CardId, Channel, Method, TxnId};
pub use engine::money::Amount;
pub use engine::outcome::DeclineCode;
