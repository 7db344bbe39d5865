//! The node's open SSE streams (proto/PROTOCOL.md section 10.1): stream id -> the sender into that connection's
//! inbound channel and its connection id, so that `POST /sse/{stream}` reaches the connection's session
//! ([`crate::transports::sse`] serves both) once it is connected.
//! Owned by the node ([`crate::node::Gateway`]); a stream id is a secret of its connection, never logged.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::{mpsc, Semaphore};

use crate::{node::hub::ConnId, session::inbound::Inbound};

/// What the session of an SSE connection reads: the client frames, opening and posted.
pub type Uplink = mpsc::Sender<Inbound<String>>;

/// Most `POST /sse/{stream}` bodies one stream reads at once (a client has one in flight; more answer 429).
pub const POSTS_IN_FLIGHT: usize = 4;

/// An open stream: the sender into its connection's inbound channel, the connection, and the permits of the
/// POST bodies being read for it ([`POSTS_IN_FLIGHT`]).
#[derive(Clone)]
pub struct Stream {
    pub uplink: Uplink,
    pub conn: ConnId,
    pub posts: Arc<Semaphore>,
}

/// The node's open SSE streams: stream id -> [`Stream`]. An entry lives as long as the connection's session.
#[derive(Default)]
pub struct Streams {
    open: Mutex<HashMap<String, Stream>>,
}

impl Streams {
    /// Registers the stream of connection `conn` under a new random stream id, which it returns.
    pub fn open(&self, uplink: Uplink, conn: ConnId) -> String {
        let mut open = self.open.lock().expect("streams lock");
        loop {
            let id = new_stream_id();
            if !open.contains_key(&id) {
                open.insert(id.clone(), Stream { uplink, conn, posts: Arc::new(Semaphore::new(POSTS_IN_FLIGHT)) });
                return id;
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<Stream> {
        self.open.lock().expect("streams lock").get(id).cloned()
    }

    pub fn remove(&self, id: &str) {
        self.open.lock().expect("streams lock").remove(id);
    }

    /// How many SSE streams are open on this node.
    pub fn len(&self) -> usize {
        self.open.lock().expect("streams lock").len()
    }
}

/// 128 random bits, base64url without padding: 22 characters.
fn new_stream_id() -> String {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).expect("system random number generator failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_22_base64url_characters() {
        let (a, b) = (new_stream_id(), new_stream_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}
