//! What gates, consoles and hubs send a node (one request per stream), what a node answers,
//! and the link frames between a node and its hub.

use std::fmt::Debug;

use menjin_net::frame;
use menjin_proto::wire::{self, ConsoleRequest, GateRequest, HubRequest, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Decodes as the server or the client does (`wire::decode` with the role's limit); what
/// decodes encodes to bytes that decode to the same value.
fn round_trip<T>(data: &[u8], limit: usize)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Ok(msg) = wire::decode::<T>(data, limit) else {
        return;
    };
    let bytes = wire::encode(&msg);
    let again: T = wire::decode(&bytes, usize::MAX).expect("what decoded, encoded, decodes");
    assert_eq!(again, msg, "wire round trip");
}

/// A gate's request (`server::serve_requests` for a gate connection).
pub fn gate_request(data: &[u8]) {
    round_trip::<GateRequest>(data, wire::GATE_REQUEST_LEN_MAX);
}

/// A console's request.
pub fn console_request(data: &[u8]) {
    round_trip::<ConsoleRequest>(data, wire::CONSOLE_REQUEST_LEN_MAX);
}

/// The hub console's request.
pub fn hub_request(data: &[u8]) {
    round_trip::<HubRequest>(data, wire::CONSOLE_REQUEST_LEN_MAX);
}

/// A node's answer, as `NodeClient` reads it.
pub fn response(data: &[u8]) {
    round_trip::<Response>(data, wire::RESPONSE_LEN_MAX);
}

/// A link stream: each frame's length prefix through `frame::frame_len`, its body through
/// `frame::decode_body`, as `frame::read_frame` does.
pub fn link_frames(data: &[u8]) {
    let mut rest = data;
    while rest.len() >= 4 {
        let prefix = [rest[0], rest[1], rest[2], rest[3]];
        rest = &rest[4..];
        let Ok(len) = frame::frame_len(prefix) else {
            return;
        };
        let body = &rest[..len.min(rest.len())];
        rest = &rest[body.len()..];
        if let Ok(f) = frame::decode_body(body) {
            let again = frame::decode_body(&wire::encode(&f)).expect("re-encoded frame decodes");
            assert_eq!(again, f, "link frame round trip");
        }
    }
}
