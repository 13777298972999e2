//! Bounds on the change chunks inside a peer's sync message, checked before Automerge loads
//! them. Automerge 0.12 inflates every DEFLATE-compressed part it is given with
//! `read_to_end` and no output limit: a compressed change chunk, and the compressed columns
//! of a document or a bundle chunk (which an honest peer sends on a first sync: the whole
//! document). DEFLATE reaches about 1,000:1, so one 16 MiB frame could ask the hub for
//! 16 GiB. Here each chunk's header and column metadata are read (the layout of the
//! Automerge binary format: magic, checksum, type, length; then per type the actors, heads
//! or dependencies, and two column lists), each compressed part is inflated into nothing
//! with a limit, and the message is refused whole if all it would inflate to is over
//! [`SYNC_INFLATED_MAX`]. Counts in the metadata are bounded too, since Automerge allocates
//! by them.
//!
//! Nothing here trusts the chunk: every length is checked against what is left, and a chunk
//! that does not parse is refused (Automerge would refuse it too, later).

use std::io::Read;

use automerge::sync::ChunkList;

use crate::doc_id::DocId;
use crate::error::SyncError;

/// What all the chunks of one sync message may come to once inflated. A whole roster shard
/// of 30,000 residents' community is a few MB inflated (16 shards); this leaves room for a
/// district's largest and refuses a compression bomb.
pub const SYNC_INFLATED_MAX: u64 = 64 * 1024 * 1024;
/// Columns in one column list of a chunk: Automerge 0.12 writes about 20.
pub const CHUNK_COLUMNS_MAX: u64 = 256;
/// Actors named in one chunk: the writers of a document (a node's incarnations, the hub).
pub const CHUNK_ACTORS_MAX: u64 = 65_536;
/// Bytes of one actor id (Automerge's own are 16).
pub const CHUNK_ACTOR_LEN_MAX: u64 = 1_024;
/// Heads or dependencies listed in one chunk.
pub const CHUNK_HASHES_MAX: u64 = 65_536;

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// The DEFLATE bit of a column specification.
const COLUMN_DEFLATE: u64 = 0b1000;

/// Refuses `chunks` (the changes of a message for `doc`) if a chunk is malformed, a count is
/// over its limit, or everything would inflate to more than [`SYNC_INFLATED_MAX`].
pub(crate) fn check_chunks(doc: DocId, chunks: &ChunkList) -> Result<(), SyncError> {
    let mut budget = Budget {
        left: SYNC_INFLATED_MAX,
    };
    for bytes in chunks.iter() {
        let mut rest = bytes;
        while !rest.is_empty() {
            rest = chunk(rest, &mut budget).map_err(|why| SyncError::Chunk { doc, why })?;
        }
    }
    Ok(())
}

struct Budget {
    left: u64,
}

impl Budget {
    fn take(&mut self, n: u64) -> Result<(), String> {
        self.left = self
            .left
            .checked_sub(n)
            .ok_or_else(|| format!("it would inflate to more than {SYNC_INFLATED_MAX} bytes"))?;
        Ok(())
    }

    /// Inflates `data` into nothing, counting; fails past the budget or on a bad stream.
    fn inflate(&mut self, data: &[u8]) -> Result<(), String> {
        let mut limited = flate2::bufread::DeflateDecoder::new(data).take(self.left + 1);
        let n = std::io::copy(&mut limited, &mut std::io::sink())
            .map_err(|e| format!("a compressed part does not inflate: {e}"))?;
        self.take(n)
    }
}

/// One chunk at the start of `input`; returns what follows it.
fn chunk<'a>(input: &'a [u8], budget: &mut Budget) -> Result<&'a [u8], String> {
    let mut r = Reader(input);
    if r.bytes(4)? != MAGIC {
        return Err("not an Automerge chunk (bad magic bytes)".into());
    }
    r.bytes(4)?; // checksum, Automerge's to verify
    let kind = r.bytes(1)?[0];
    let len = r.uleb()?;
    let data = r.bytes(len)?;
    let after = r.0;
    match kind {
        // A change: its columns are never compressed on their own.
        1 => budget.take(len)?,
        // A compressed change: one DEFLATE stream.
        2 => budget.inflate(data)?,
        // A document: actors, heads, change and op column lists, then their data.
        0 => {
            let mut d = Reader(data);
            d.actors()?;
            d.hashes()?;
            let changes = d.columns()?;
            let ops = d.columns()?;
            d.column_data(&changes, budget)?;
            d.column_data(&ops, budget)?;
            budget.take(d.0.len() as u64)?;
        }
        // A bundle: dependencies, actors, change and op column lists each with its data.
        3 => {
            let mut d = Reader(data);
            d.hashes()?;
            d.actors()?;
            let changes = d.columns()?;
            d.column_data(&changes, budget)?;
            let ops = d.columns()?;
            d.column_data(&ops, budget)?;
        }
        other => return Err(format!("unknown chunk type {other}")),
    }
    Ok(after)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: u64) -> Result<&'a [u8], String> {
        let n = usize::try_from(n).map_err(|_| "a length past the address space")?;
        if n > self.0.len() {
            return Err(format!(
                "truncated: {n} bytes wanted, {} left",
                self.0.len()
            ));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    /// An unsigned LEB128 of at most 64 bits.
    fn uleb(&mut self) -> Result<u64, String> {
        let mut value: u64 = 0;
        for (i, byte) in self.0.iter().enumerate().take(10) {
            let bits = u64::from(byte & 0x7f);
            if i == 9 && bits > 1 {
                break;
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Ok(value);
            }
        }
        Err("a bad LEB128 number".into())
    }

    fn count(&mut self, what: &str, max: u64) -> Result<u64, String> {
        let n = self.uleb()?;
        if n > max {
            return Err(format!("{n} {what} (at most {max})"));
        }
        Ok(n)
    }

    fn actors(&mut self) -> Result<(), String> {
        for _ in 0..self.count("actors", CHUNK_ACTORS_MAX)? {
            let len = self.count("bytes of an actor id", CHUNK_ACTOR_LEN_MAX)?;
            self.bytes(len)?;
        }
        Ok(())
    }

    fn hashes(&mut self) -> Result<(), String> {
        let n = self.count("hashes", CHUNK_HASHES_MAX)?;
        self.bytes(n * 32)?;
        Ok(())
    }

    /// A column list: (specification, length) pairs.
    fn columns(&mut self) -> Result<Vec<(u64, u64)>, String> {
        let n = self.count("columns", CHUNK_COLUMNS_MAX)?;
        (0..n).map(|_| Ok((self.uleb()?, self.uleb()?))).collect()
    }

    /// The data of `columns`, in order: compressed ones inflated against the budget.
    fn column_data(&mut self, columns: &[(u64, u64)], budget: &mut Budget) -> Result<(), String> {
        for &(spec, len) in columns {
            let data = self.bytes(len)?;
            if spec & COLUMN_DEFLATE != 0 {
                budget.inflate(data)?;
            } else {
                budget.take(len)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};

    fn doc_with(n: usize, text_len: usize) -> AutoCommit {
        let mut doc = AutoCommit::new();
        for i in 0..n {
            doc.put(ROOT, format!("k{i}"), "x".repeat(text_len))
                .unwrap();
            doc.commit();
        }
        doc
    }

    fn check(bytes: Vec<u8>) -> Result<(), SyncError> {
        check_chunks(DocId::Policy, &ChunkList::from(bytes))
    }

    #[test]
    fn what_automerge_writes_passes() {
        let mut doc = doc_with(50, 300);
        // A whole document (compressed columns), each change (some compressed), a bundle.
        check(doc.save()).expect("a saved document");
        for change in doc.get_changes(&[]) {
            check(change.raw_bytes().to_vec()).expect("a change");
        }
        let mut both = doc.save();
        both.extend(doc.save_after(&[]));
        check(both).expect("two chunks back to back");
        check(Vec::new()).expect("nothing");
    }

    /// A compressed change chunk around `payload`'s DEFLATE stream (the checksum is not
    /// Automerge's: this is refused before anything would verify it).
    fn compressed_chunk(payload: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut z, payload).unwrap();
        let data = z.finish().unwrap();
        let mut out = MAGIC.to_vec();
        out.extend([0, 0, 0, 0, 2]);
        let mut len = data.len() as u64;
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            out.push(if len == 0 { b } else { b | 0x80 });
            if len == 0 {
                break;
            }
        }
        out.extend(data);
        out
    }

    #[test]
    fn a_compression_bomb_is_refused_before_it_inflates() {
        let bomb = compressed_chunk(&vec![0u8; SYNC_INFLATED_MAX as usize + 1]);
        assert!(bomb.len() < 200_000, "{} bytes on the wire", bomb.len());
        let err = check(bomb).unwrap_err();
        assert!(matches!(err, SyncError::Chunk { .. }), "{err}");
        assert!(err.to_string().contains("inflate"), "{err}");
        // Under the budget, the same kind of chunk is not refused for its size.
        check(compressed_chunk(&[1u8; 1000])).expect("a small compressed part");
    }

    #[test]
    fn malformed_chunks_and_huge_counts_are_refused() {
        let good = doc_with(3, 10).save();
        // Every truncation of a good chunk.
        for cut in [1, 4, 9, 10, good.len() / 2, good.len() - 1] {
            assert!(check(good[..cut].to_vec()).is_err(), "cut at {cut}");
        }
        let mut bad_magic = good.clone();
        bad_magic[0] ^= 0xff;
        assert!(check(bad_magic).is_err());
        let mut bad_type = good.clone();
        bad_type[8] = 9;
        assert!(check(bad_type).unwrap_err().to_string().contains("type 9"));
        // A document claiming 2^40 actors, in a tiny chunk.
        let mut huge = MAGIC.to_vec();
        huge.extend([0, 0, 0, 0, 0, 6, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20]);
        let err = check(huge).unwrap_err().to_string();
        assert!(err.contains("actors"), "{err}");
    }
}
