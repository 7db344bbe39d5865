//! What a transport read from its client, in the terms of the protocol core ([`crate::session::Session`]):
//! every transport (raw WebSocket, actix-ws, SSE) turns its input into a stream of [`Inbound`] items.

/// What a transport read from its client, in the terms of the protocol core.
#[derive(Debug)]
pub enum Inbound<T> {
    /// A text frame: one client frame.
    Text(T),
    /// A binary frame (not supported: a bad frame).
    Binary,
    /// Transport-level traffic (a WebSocket ping or pong control frame): counts as life and, like a data frame,
    /// takes a token of the request rate (the transport answers a ping itself).
    Alive,
    /// The client closed the connection (an end of the stream counts as this too).
    Closed,
    /// A frame over `limits.max_frame_bytes`: close 1009.
    TooBig,
    /// The connection broke: the client is gone.
    Gone,
    /// The transport's protocol was violated (the error, for the log): close 1008.
    ProtocolError(String),
}
