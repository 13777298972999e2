//! Messages between a community node and its district hub on the replication link
//! (`menjin-sync`). One [`SyncFrame`] per message; the transport (a QUIC stream, framed by
//! length) carries them in order within a connection.
//!
//! A frame carries either a summary of the documents the two peers share (one hash of the
//! sorted heads per document, so that an idle link costs one small message per period), or
//! one Automerge sync message for one document. The Automerge bytes are opaque here: the sync
//! crate decodes and checks them (authority, size) before they touch a document.
//!
//! Architecture invariant: [`SyncFrame::decode`] is the only way a replica reads these
//! messages: size-checked, fully consumed, every field bounded, typed errors.

use serde::{Deserialize, Serialize};

use crate::wire::{self, WireError};

/// Largest frame either side sends or accepts. The biggest legitimate frame is an Automerge
/// sync message that carries a whole roster shard (Automerge sends the compressed document
/// when a peer has nothing yet or lacks more than a third of it): about 17 bytes per
/// resident plus history, so a 100,000-resident community in 16 shards sends about 110 KB
/// per shard when fresh. It travels inside a link frame, so it is bounded by what a frame
/// carries ([`crate::link::LINK_SYNC_LEN_MAX`], just under 8 MiB): a message the link could
/// not send is never made, and one it could not receive is never accepted.
pub const SYNC_MESSAGE_LEN_MAX: usize = crate::link::LINK_SYNC_LEN_MAX;
/// A document id is `policy` or `roster/<u32>/<u8>`: at most 21 characters.
pub const DOC_ID_LEN_MAX: usize = 32;
/// One peer pair shares the policy and one community's roster shards (at most 256).
pub const SUMMARY_DOCS_MAX: usize = 512;

/// One message on the replication link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncFrame {
    /// The sender's session with this peer. A replica starts a new session at every
    /// (re)connection and whenever it gives up on a stalled one; the receiver drops frames
    /// from sessions older than the newest it has seen, and resets its per-document sync
    /// state when a newer one appears.
    pub session: u64,
    /// A summary or one document's sync message.
    pub body: SyncBody,
}

/// What a frame carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncBody {
    /// What the sender holds of the documents this pair shares. `reply` is false for a probe
    /// (the receiver answers with its own summary) and true for the answer.
    Summary {
        /// True for the answer to a probe, false for the probe.
        reply: bool,
        /// At most [`SUMMARY_DOCS_MAX`] documents.
        docs: Vec<DocDigest>,
    },
    /// One Automerge sync message (`automerge::sync::Message::encode`) for one document.
    Doc {
        /// The document's string form, at most [`DOC_ID_LEN_MAX`] bytes.
        doc: String,
        /// The encoded message, not empty; decoded and checked by the sync crate.
        msg: Vec<u8>,
    },
}

/// One document in a summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocDigest {
    /// The document's stable string form (`policy`, `roster/<community>/<shard>`).
    pub doc: String,
    /// SHA-256 over the document's heads, sorted, concatenated. Documents without any
    /// change are left out of a summary.
    pub heads_hash: [u8; 32],
    /// The sender is exchanging sync messages for this document right now (or has some
    /// queued): a difference is expected and is no sign of a stalled session.
    pub busy: bool,
}

impl SyncFrame {
    /// Encodes a frame.
    pub fn encode(&self) -> Vec<u8> {
        wire::encode(self)
    }

    /// Decodes a frame, refusing oversized input, trailing bytes and fields over their
    /// limits.
    ///
    /// # Errors
    /// [`WireError`] saying what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<SyncFrame, WireError> {
        let frame: SyncFrame = wire::decode(bytes, SYNC_MESSAGE_LEN_MAX)?;
        match &frame.body {
            SyncBody::Summary { docs, .. } => {
                if docs.len() > SUMMARY_DOCS_MAX {
                    return Err(WireError::Malformed(format!(
                        "summary of {} documents exceeds the limit of {SUMMARY_DOCS_MAX}",
                        docs.len()
                    )));
                }
                for d in docs {
                    check_doc_id(&d.doc)?;
                }
            }
            SyncBody::Doc { doc, msg } => {
                check_doc_id(doc)?;
                if msg.is_empty() {
                    return Err(WireError::Malformed("empty sync message".into()));
                }
            }
        }
        Ok(frame)
    }
}

fn check_doc_id(doc: &str) -> Result<(), WireError> {
    if doc.is_empty() || doc.len() > DOC_ID_LEN_MAX {
        return Err(WireError::Malformed(format!(
            "document id of {} bytes (1 to {DOC_ID_LEN_MAX} allowed)",
            doc.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frames = [
            SyncFrame {
                session: 7 << 32 | 3,
                body: SyncBody::Summary {
                    reply: false,
                    docs: vec![DocDigest {
                        doc: "roster/12/3".into(),
                        heads_hash: [9; 32],
                        busy: true,
                    }],
                },
            },
            SyncFrame {
                session: 1,
                body: SyncBody::Doc {
                    doc: "policy".into(),
                    msg: vec![0x42, 1, 2, 3],
                },
            },
        ];
        for f in frames {
            assert_eq!(SyncFrame::decode(&f.encode()).unwrap(), f);
        }
    }

    #[test]
    fn oversized_trailing_and_unbounded_frames_are_refused() {
        let long_id = SyncFrame {
            session: 1,
            body: SyncBody::Doc {
                doc: "x".repeat(DOC_ID_LEN_MAX + 1),
                msg: vec![1],
            },
        };
        assert!(matches!(
            SyncFrame::decode(&long_id.encode()),
            Err(WireError::Malformed(_))
        ));
        let empty = SyncFrame {
            session: 1,
            body: SyncBody::Doc {
                doc: "policy".into(),
                msg: vec![],
            },
        };
        assert!(SyncFrame::decode(&empty.encode()).is_err());
        let mut bytes = SyncFrame {
            session: 1,
            body: SyncBody::Summary {
                reply: true,
                docs: vec![],
            },
        }
        .encode();
        bytes.push(0);
        assert_eq!(SyncFrame::decode(&bytes), Err(WireError::Trailing(1)));
        let huge = vec![0u8; SYNC_MESSAGE_LEN_MAX + 1];
        assert!(matches!(
            SyncFrame::decode(&huge),
            Err(WireError::TooLong(_, SYNC_MESSAGE_LEN_MAX))
        ));
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = SyncFrame::decode(&bytes);
        }
    }
}
