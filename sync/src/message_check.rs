//! Bounds on a peer's Automerge sync message, checked after `sync::Message::decode` and
//! before Automerge acts on it. Automerge 0.12 decodes messages it cannot then process: a
//! Bloom filter that claims entries but carries no bits makes `generate_sync_message`
//! divide by zero (`sync/bloom.rs:74`), and one with billions of probes makes it allocate
//! and loop billions of times. So every filter's parameters are checked against what an
//! honest Automerge writes, and every list against a limit.

use automerge::sync::{BloomFilter, Message};

use crate::doc_id::DocId;
use crate::error::{MessageLimit, SyncError};

/// Heads of one document in a message (`heads`, and each `have`'s `last_sync`). A document
/// has as many heads as actors that wrote it concurrently; one community's incarnations
/// never come near this.
pub const SYNC_HEADS_MAX: usize = 1024;
/// Hashes a peer may ask for in one message (`need`): the missing dependencies it found.
/// 32 bytes each, so this stays 2 MiB, well inside `SYNC_MESSAGE_LEN_MAX`.
pub const SYNC_NEEDS_MAX: usize = 65_536;
/// `have` summaries in one message: Automerge writes at most one.
pub const SYNC_HAVES_MAX: usize = 4;
/// Change chunks in one message. A change chunk is at least about 60 bytes (header, hash,
/// actor), so a frame under `SYNC_MESSAGE_LEN_MAX` cannot honestly carry more.
pub const SYNC_CHANGES_MAX: usize = 262_144;
/// Entries of one Bloom filter: the changes the sender has since the last sync, the same
/// order as `SYNC_CHANGES_MAX` with headroom (4 Mi entries are 5 MiB of bits at 10 per entry).
pub const BLOOM_ENTRIES_MAX: u32 = 1 << 22;
/// Bits per entry of a Bloom filter: at least one, or the filter has no bits to probe
/// (Automerge 0.12 uses 10; it may change this, the wire carries it).
pub const BLOOM_BITS_PER_ENTRY_MAX: u32 = 64;
/// Probes per hash of a Bloom filter: at least one (Automerge 0.12 uses 7). Automerge
/// allocates and loops once per probe for every change it considers sending.
pub const BLOOM_PROBES_MAX: u32 = 32;

/// Refuses `msg` (for `doc`) if a list is over its limit or a Bloom filter is inconsistent.
pub(crate) fn check_message(doc: DocId, msg: &Message) -> Result<(), SyncError> {
    let over = |what: MessageLimit, len: usize, max: usize| {
        if len > max {
            Err(SyncError::OverLimit { doc, what, len })
        } else {
            Ok(())
        }
    };
    over(MessageLimit::Heads, msg.heads.len(), SYNC_HEADS_MAX)?;
    over(MessageLimit::Needs, msg.need.len(), SYNC_NEEDS_MAX)?;
    over(MessageLimit::Haves, msg.have.len(), SYNC_HAVES_MAX)?;
    over(MessageLimit::Changes, msg.changes.len(), SYNC_CHANGES_MAX)?;
    for have in &msg.have {
        over(MessageLimit::Heads, have.last_sync.len(), SYNC_HEADS_MAX)?;
        check_bloom(&have.bloom).map_err(|why| SyncError::Bloom { doc, why })?;
    }
    Ok(())
}

/// The filter's parameters, read back from its canonical encoding (its fields are private):
/// an empty encoding is a filter with no entries, which Automerge never probes.
fn check_bloom(bloom: &BloomFilter) -> Result<(), String> {
    let bytes = bloom.to_bytes();
    let mut rest = bytes.as_slice();
    if rest.is_empty() {
        return Ok(());
    }
    let mut next = || leb128_u32(&mut rest).ok_or("truncated header");
    let (entries, bits_per_entry, probes) = (next()?, next()?, next()?);
    if entries == 0 || entries > BLOOM_ENTRIES_MAX {
        return Err(format!("{entries} entries (1 to {BLOOM_ENTRIES_MAX})"));
    }
    if bits_per_entry == 0 || bits_per_entry > BLOOM_BITS_PER_ENTRY_MAX {
        return Err(format!(
            "{bits_per_entry} bits per entry (1 to {BLOOM_BITS_PER_ENTRY_MAX})"
        ));
    }
    if probes == 0 || probes > BLOOM_PROBES_MAX {
        return Err(format!("{probes} probes (1 to {BLOOM_PROBES_MAX})"));
    }
    // Automerge's own sizing (`bits_capacity`): ceil(entries * bits per entry / 8) bytes.
    let want = (u64::from(entries) * u64::from(bits_per_entry)).div_ceil(8);
    if rest.len() as u64 != want || rest.is_empty() {
        return Err(format!(
            "{} bytes of bits for {entries} entries at {bits_per_entry} bits each ({want} expected)",
            rest.len()
        ));
    }
    Ok(())
}

/// One unsigned LEB128 value of at most 32 bits, advancing `input`.
fn leb128_u32(input: &mut &[u8]) -> Option<u32> {
    let mut value: u64 = 0;
    for (i, byte) in input.iter().enumerate().take(5) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *input = &input[i + 1..];
            return u32::try_from(value).ok();
        }
    }
    None
}
