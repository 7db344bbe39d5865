//! The wire contract (proto/PROTOCOL.md), without I/O: constants, names and patterns, client and server frames,
//! filters, tokens and the sender of client actions.

pub mod constants;
pub(crate) mod decimal;
pub mod filter;
pub mod frames;
pub mod names;
pub mod sender;
pub mod token;
