//! Length-prefixed [`LinkFrame`]s on a QUIC stream between a node and its hub.

use menjin_proto::link::{LINK_FRAME_LEN_MAX, LinkFrame};
use menjin_proto::wire;

/// Why a link frame could not be written or read; any of them ends the link (the uplink
/// reconnects).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer finished the stream between frames (a clean end).
    #[error("link stream closed")]
    Closed,
    /// The stream failed while writing (connection lost or reset).
    #[error("link stream: {0}")]
    Write(#[from] quinn::WriteError),
    /// The stream failed or ended inside a frame.
    #[error("link stream: {0}")]
    Read(#[from] quinn::ReadExactError),
    /// A frame's length (bytes) is over [`LINK_FRAME_LEN_MAX`]: refused before reading the body.
    #[error("link frame of {0} bytes exceeds the limit")]
    TooLong(usize),
    /// The body is not a [`LinkFrame`].
    #[error("malformed link frame: {0}")]
    Malformed(#[from] wire::WireError),
}

/// Writes one frame.
///
/// # Errors
/// [`FrameError`] if the stream fails.
pub async fn write_frame(
    send: &mut quinn::SendStream,
    frame: &LinkFrame,
) -> Result<(), FrameError> {
    let body = wire::encode(frame);
    if body.len() > LINK_FRAME_LEN_MAX {
        return Err(FrameError::TooLong(body.len()));
    }
    let len = (body.len() as u32).to_be_bytes();
    send.write_all(&len).await?;
    Ok(send.write_all(&body).await?)
}

/// Reads one frame, refusing oversized and malformed ones.
///
/// # Errors
/// [`FrameError::Closed`] at a clean end of stream, otherwise what went wrong.
pub async fn read_frame(recv: &mut quinn::RecvStream) -> Result<LinkFrame, FrameError> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Err(FrameError::Closed),
        Err(e) => return Err(FrameError::Read(e)),
    }
    let len = frame_len(len)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await?;
    decode_body(&body)
}

/// A frame's length from its 4-byte big-endian prefix, refused over [`LINK_FRAME_LEN_MAX`]
/// before anything is allocated.
///
/// # Errors
/// [`FrameError::TooLong`].
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > LINK_FRAME_LEN_MAX {
        return Err(FrameError::TooLong(len));
    }
    Ok(len)
}

/// A frame's body (what follows its length prefix).
///
/// # Errors
/// [`FrameError::Malformed`].
pub fn decode_body(body: &[u8]) -> Result<LinkFrame, FrameError> {
    Ok(wire::decode(body, LINK_FRAME_LEN_MAX)?)
}
