//! svault's binary protocol: the length-prefixed frame codec ([`codec`], specified in
//! `docs/protocol.md`) and the async Rust [`client`] that pipelines calls over one socket.
//!
//! May depend on: svault-core (the command and outcome types a frame carries, the input
//! bounds) and tokio's sockets and tasks. Not on the runtime, the server or HTTP, so a load
//! generator or a gateway that links this crate pulls in no engine.
//!
//! Start reading at [`client::Client`]; the frame layout is [`codec`]'s module doc.
#![deny(unsafe_code)]

pub mod client;
pub mod codec;
