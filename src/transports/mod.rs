//! The transports: how a connection reaches its [`crate::session::Session`] (raw WebSocket, Server-Sent Events,
//! actix-ws embedding), what they share (admission, client address, the connection task and its writer).

pub mod actix;
pub(crate) mod admission;
pub(crate) mod client_ip;
pub(crate) mod sse;
pub(crate) mod streams;
pub(crate) mod writer;
pub(crate) mod ws;
