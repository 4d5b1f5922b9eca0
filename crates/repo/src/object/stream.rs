//! Decoding an object straight into its destination ([`decode_into`]): the frames are
//! authenticated and decrypted in place in the encoded bytes, then each zstd piece is
//! decompressed in small blocks that are hashed and written at their offset while they are
//! still in cache, one piece per thread. No plaintext-sized buffer is ever allocated, so a
//! 16 MiB WAL segment costs its compressed size in memory, not 16 MiB of fresh pages.
//!
//! Every check of [`super::decode_with_id`] is made; the content id, which covers the whole
//! plaintext, can only be checked at the end, so the sink holds unchecked bytes until
//! `decode_into` returns `Ok` (write to a temporary file and rename it only then).

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, Tag};
use blake3::hazmat::{ChainingValue, HasherExt};

use super::{
    Compression, FrameAad, HEADER_LEN, ObjectHeader, ObjectKind, TAG_LEN, checked_header,
    frame_nonce, zstd_frames,
};
use crate::content_tree::PieceTree;
use crate::error::ObjectError;
use crate::keys::{ContentId, KeySet};
use crate::layout::Identity;

/// Plaintext is handed to the sink in blocks of this size: small enough to stay in cache
/// between decompressing, hashing and writing.
const BLOCK: usize = 256 * 1024;
/// Below this many frames, decrypting on one thread costs less than starting another.
const PARALLEL_FRAMES: usize = 32;

/// Where decoded plaintext goes: each block at its offset, from several threads at once.
pub trait PlaintextSink: Sync {
    fn write_at(&self, offset: u64, bytes: &[u8]) -> std::io::Result<()>;
    /// Drop everything written so far (to decode another copy instead).
    fn reset(&self) -> std::io::Result<()>;
}

impl PlaintextSink for std::fs::File {
    fn write_at(&self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, bytes, offset)
    }

    fn reset(&self) -> std::io::Result<()> {
        self.set_len(0)
    }
}

/// Why [`decode_into`] failed: the object, or the sink.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("cannot write the decoded object: {0}")]
    Sink(#[source] std::io::Error),
}

/// Decode `encoded` (consumed: it is decrypted in place) as an object of `expected` known as
/// `identity`, writing the plaintext into `sink`. Returns the plaintext length and the
/// content id, both checked against the header.
pub fn decode_into<S: PlaintextSink + ?Sized>(
    keys: &KeySet,
    expected: ObjectKind,
    identity: &Identity,
    mut encoded: Vec<u8>,
    sink: &S,
) -> Result<(u64, ContentId), StreamError> {
    let header = checked_header(keys, expected, identity, &encoded)?;
    let payload: &[u8] = if header.encrypted {
        decrypt_in_place(keys, &header, identity, &mut encoded)?;
        &encoded[HEADER_LEN..HEADER_LEN + header.payload_len as usize]
    } else {
        &encoded[HEADER_LEN..]
    };
    let (len, id) = match header.compression {
        Compression::None => write_plain(keys, payload, sink)?,
        Compression::Zstd => inflate_into(keys, payload, header.plaintext_len, sink)?,
    };
    if len != header.plaintext_len || id != header.content_id {
        return Err(ObjectError::Hash.into());
    }
    Ok((len, id))
}

/// Authenticate and decrypt every frame in place, then move the plaintext frames together
/// so the payload is contiguous right after the header.
fn decrypt_in_place(
    keys: &KeySet,
    header: &ObjectHeader,
    identity: &Identity,
    encoded: &mut [u8],
) -> Result<(), ObjectError> {
    let hbytes: [u8; HEADER_LEN] = encoded[..HEADER_LEN].try_into().expect("length checked");
    let cipher = keys.object_cipher(&header.salt);
    let frames = header.frames();
    let stride = header.frame_size as usize + TAG_LEN;
    let body = &mut encoded[HEADER_LEN..];
    let open = |first: u64, part: &mut [u8]| -> Result<(), ObjectError> {
        let mut aad = FrameAad::new(&hbytes, identity);
        for (i, sealed) in part.chunks_mut(stride).enumerate() {
            let index = first + i as u64;
            let last = index + 1 == frames;
            let (ct, tag) = sealed.split_at_mut(sealed.len() - TAG_LEN);
            let tag = Tag::<Aes256Gcm>::try_from(&*tag)
                .map_err(|_| ObjectError::Auth { frame: index })?;
            cipher
                .decrypt_inout_detached(
                    &frame_nonce(index, last),
                    aad.at(index, last),
                    ct.into(),
                    &tag,
                )
                .map_err(|_| ObjectError::Auth { frame: index })?;
        }
        Ok(())
    };
    if frames as usize >= PARALLEL_FRAMES {
        // Two halves on two threads: AES-GCM is a fifth of the decode on one core.
        let half = (frames as usize / 2) * stride;
        let (a, b) = body.split_at_mut(half);
        let open = &open;
        std::thread::scope(|scope| {
            let second = scope.spawn(move || open((half / stride) as u64, b));
            let first = open(0, a);
            let second = second.join().map_err(|_| ObjectError::Decompress {
                message: "decryption thread panicked".into(),
            })?;
            first.and(second)
        })?;
    } else {
        open(0, body)?;
    }
    // Close the gaps the tags leave: frame i's plaintext moves back by i tags.
    let frame = header.frame_size as usize;
    for i in 1..frames as usize {
        let from = i * stride;
        let len = frame.min(body.len() - TAG_LEN - from);
        body.copy_within(from..from + len, i * frame);
    }
    Ok(())
}

/// A stored (uncompressed) payload: hash and write it, in pieces on several threads.
fn write_plain<S: PlaintextSink + ?Sized>(
    keys: &KeySet,
    payload: &[u8],
    sink: &S,
) -> Result<(u64, ContentId), StreamError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let piece = crate::content_tree::piece_len(payload.len(), threads, 4 << 20);
    let lens: Vec<u64> = payload
        .chunks(piece.max(1))
        .map(|p| p.len() as u64)
        .collect();
    let put = |offset: u64, bytes: &[u8]| -> Result<(), StreamError> {
        for (i, block) in bytes.chunks(BLOCK).enumerate() {
            sink.write_at(offset + (i * BLOCK) as u64, block)
                .map_err(StreamError::Sink)?;
        }
        Ok(())
    };
    let Some(tree) = PieceTree::new(&lens) else {
        put(0, payload)?;
        return Ok((payload.len() as u64, keys.content_id(payload)));
    };
    let values = in_pieces(lens.len(), |i| {
        let start = tree.offset(i);
        let bytes = &payload[start as usize..start as usize + lens[i] as usize];
        let mut hasher = tree.hasher(keys, i);
        hasher.update(bytes);
        put(start, bytes)?;
        Ok(hasher.finalize_non_root())
    })?;
    Ok((payload.len() as u64, tree.join(keys, &values)))
}

/// Run `piece` for each piece index, the first on this thread and the others on their own.
fn in_pieces(
    n: usize,
    piece: impl Fn(usize) -> Result<ChainingValue, StreamError> + Sync,
) -> Result<Vec<ChainingValue>, StreamError> {
    std::thread::scope(|scope| {
        let piece = &piece;
        let others: Vec<_> = (1..n).map(|i| scope.spawn(move || piece(i))).collect();
        let mut values = vec![piece(0)?];
        for w in others {
            values.push(w.join().map_err(|_| ObjectError::Decompress {
                message: "decompression thread panicked".into(),
            })??);
        }
        Ok(values)
    })
}

/// A zstd payload: each frame (the encoder's pieces) on its own thread when the pieces fit
/// the content id's tree, else all on this thread with one hasher.
fn inflate_into<S: PlaintextSink + ?Sized>(
    keys: &KeySet,
    payload: &[u8],
    plaintext_len: u64,
    sink: &S,
) -> Result<(u64, ContentId), StreamError> {
    let bad = |message: &str| ObjectError::Decompress {
        message: message.into(),
    };
    let frames = zstd_frames(payload).ok_or_else(|| bad("malformed zstd frames"))?;
    let lens: Vec<u64> = frames.iter().map(|(_, n)| *n as u64).collect();
    if lens.iter().sum::<u64>() != plaintext_len {
        return Err(bad("frame sizes do not add up to the plaintext length").into());
    }
    let Some(tree) = PieceTree::new(&lens) else {
        let mut hasher = keys.content_hasher();
        let len = inflate(payload, 0, plaintext_len, |offset, block| {
            hasher.update(block);
            sink.write_at(offset, block).map_err(StreamError::Sink)
        })?;
        return Ok((len, ContentId(*hasher.finalize().as_bytes())));
    };
    let values = in_pieces(frames.len(), |i| {
        let mut hasher = tree.hasher(keys, i);
        let start = tree.offset(i);
        let len = inflate(frames[i].0, start, lens[i], |offset, block| {
            hasher.update(block);
            sink.write_at(offset, block).map_err(StreamError::Sink)
        })?;
        if len != lens[i] {
            return Err(bad("frame shorter than it says").into());
        }
        Ok(hasher.finalize_non_root())
    })?;
    Ok((plaintext_len, tree.join(keys, &values)))
}

/// Decompress `input` (whole zstd frames) in blocks, handing each to `each` with its
/// offset (counted from `start`); fails beyond `limit` bytes. Returns the bytes produced.
fn inflate<F>(input: &[u8], start: u64, limit: u64, mut each: F) -> Result<u64, StreamError>
where
    F: FnMut(u64, &[u8]) -> Result<(), StreamError>,
{
    use zstd::stream::raw::{Decoder, Operation};
    let bad = |message: String| ObjectError::Decompress { message };
    let mut decoder = Decoder::new().map_err(|e| bad(e.to_string()))?;
    let mut block = vec![0u8; BLOCK];
    let mut rest = input;
    let mut done = 0u64;
    loop {
        let status = decoder
            .run_on_buffers(rest, &mut block)
            .map_err(|e| bad(e.to_string()))?;
        rest = &rest[status.bytes_read..];
        if status.bytes_written > 0 {
            if done + status.bytes_written as u64 > limit {
                return Err(bad("frame longer than it says".into()).into());
            }
            each(start + done, &block[..status.bytes_written])?;
            done += status.bytes_written as u64;
        }
        // 0: a frame ended and everything it held was handed out.
        if status.remaining == 0 && rest.is_empty() {
            return Ok(done);
        }
        if status.bytes_read == 0 && status.bytes_written == 0 {
            return Err(bad("truncated zstd frame".into()).into());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::object::tests::{here, keysets};
    use crate::object::{decode, encode};
    use proptest::prelude::*;

    /// A sink that records what was written where, and can fail on purpose.
    #[derive(Default)]
    struct Memory {
        bytes: Mutex<Vec<u8>>,
        fail_at: Option<u64>,
    }

    impl PlaintextSink for Memory {
        fn write_at(&self, offset: u64, b: &[u8]) -> std::io::Result<()> {
            if self
                .fail_at
                .is_some_and(|f| f >= offset && f < offset + b.len() as u64)
            {
                return Err(std::io::Error::other("disk full"));
            }
            let mut v = self.bytes.lock().unwrap();
            let end = offset as usize + b.len();
            if v.len() < end {
                v.resize(end, 0);
            }
            v[offset as usize..end].copy_from_slice(b);
            Ok(())
        }

        fn reset(&self) -> std::io::Result<()> {
            self.bytes.lock().unwrap().clear();
            Ok(())
        }
    }

    fn streamed(keys: &KeySet, enc: &[u8]) -> Result<Vec<u8>, StreamError> {
        let sink = Memory::default();
        let (len, id) = decode_into(keys, ObjectKind::WalFile, &here(), enc.to_vec(), &sink)?;
        let out = sink.bytes.into_inner().unwrap();
        assert_eq!(len, out.len() as u64);
        assert_eq!(id, keys.content_id(&out));
        Ok(out)
    }

    /// Like WAL: mostly zeros and repeats, some noise.
    fn wal_like(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| match i % 8192 {
                0..=40 => (i / 8192) as u8,
                n if n % 5 == 0 => rand::random::<u8>() & 0x7,
                _ => 0,
            })
            .collect()
    }

    #[test]
    fn large_objects_stream_in_parallel_pieces_to_the_same_bytes() {
        for keys in keysets() {
            for len in [16 << 20, (16 << 20) - 8192, (9 << 20) + 3] {
                let data = wal_like(len);
                let (enc, _) = encode(&keys, ObjectKind::WalFile, &here(), &data, 3).unwrap();
                assert_eq!(streamed(&keys, &enc).unwrap(), data, "len {len}");
            }
            // Incompressible: stored as is, hashed in pieces.
            let data: Vec<u8> = (0..(12 << 20)).map(|_| rand::random::<u8>()).collect();
            let (enc, _) = encode(&keys, ObjectKind::WalFile, &here(), &data, 3).unwrap();
            assert_eq!(streamed(&keys, &enc).unwrap(), data);
        }
    }

    #[test]
    fn damage_anywhere_in_a_large_object_fails_the_decode() {
        let keys = &keysets()[1];
        let data = wal_like(16 << 20);
        let (enc, _) = encode(keys, ObjectKind::WalFile, &here(), &data, 3).unwrap();
        for pos in [HEADER_LEN + 10, enc.len() / 2, enc.len() - 1] {
            let mut bad = enc.clone();
            bad[pos] ^= 0x10;
            assert!(streamed(keys, &bad).is_err(), "byte {pos}");
        }
        let plain = &keysets()[0];
        let (enc, _) = encode(plain, ObjectKind::WalFile, &here(), &data, 3).unwrap();
        let mut bad = enc.clone();
        // In the second zstd piece's data: decompresses, but to other bytes.
        let pos = enc.len() * 3 / 4;
        bad[pos] ^= 0x01;
        assert!(streamed(plain, &bad).is_err());
    }

    #[test]
    fn a_failing_sink_is_reported_as_such() {
        let keys = &keysets()[1];
        let data = wal_like(16 << 20);
        let (enc, _) = encode(keys, ObjectKind::WalFile, &here(), &data, 3).unwrap();
        let sink = Memory {
            fail_at: Some(12 << 20),
            ..Default::default()
        };
        let err = decode_into(keys, ObjectKind::WalFile, &here(), enc, &sink).unwrap_err();
        assert!(matches!(err, StreamError::Sink(_)), "{err:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn streaming_agrees_with_decode(data in proptest::collection::vec(any::<u8>(), 0..300_000), zeros in 0usize..600_000, cut in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut data = data;
            data.resize(data.len() + zeros, 0);
            for keys in keysets() {
                let (enc, _) = encode(&keys, ObjectKind::WalFile, &here(), &data, 1).unwrap();
                prop_assert_eq!(streamed(&keys, &enc).unwrap(), data.clone());
                // Any flipped bit: both decoders refuse.
                let mut bad = enc.clone();
                let i = cut.index(bad.len());
                bad[i] ^= 1 << bit;
                prop_assert!(decode(&keys, ObjectKind::WalFile, &here(), &bad).is_err());
                prop_assert!(streamed(&keys, &bad).is_err());
                // Truncated: refused.
                prop_assert!(streamed(&keys, &enc[..i]).is_err());
            }
        }
    }
}
