//! The encoding of every repository object except the plain-JSON key files:
//!
//! ```text
//! header (128 bytes, plaintext, authenticated as associated data of every frame)
//!   0  magic "CAIRNOBJ"     8  format version (2)   9  kind   10 compression   11 cipher
//!   12 frame size (u32 LE)  16 plaintext length (u64 LE)      24 payload length (u64 LE)
//!   32 content id (keyed BLAKE3 of the plaintext)             64 salt (random, 32 bytes)
//!   96 header check: BLAKE3 of bytes 0..96, first 16 bytes (unkeyed)
//!  112 binding: BLAKE3 keyed with the binding key over bytes 0..112 ++ identity, 16 bytes
//! body: the payload (zstd stream of the plaintext), cut into frames of `frame size`;
//!   encrypted: each frame AES-256-GCM sealed with the object's own key (keyed BLAKE3 of
//!   the salt), nonce = frame index (u64 BE) ++ last-frame flag ++ 0 0 0, and the header,
//!   the identity, the index and the flag as associated data, so truncation, reordering,
//!   splicing between objects, header edits and moving an object under another key all
//!   fail authentication.
//! ```
//! The *identity* is what the object is, as its reader names it: the object key for most
//! objects, the stanza and content id for a chunk (chunks move between packs when packs are
//! repacked). An object decodes only under the identity it was written with.
//!
//! Decoding always checks the header check, the binding, lengths and the content id, so an
//! unencrypted repository still detects damage and misplaced objects (against accidents
//! only: its keys are stored in the clear). The header check tells a damaged header
//! (check fails) from an object moved under another key (check passes, binding fails).

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, Nonce, Tag};

use blake3::hazmat::{ChainingValue, HasherExt};

use crate::content_tree::{self, PieceTree};
use crate::error::ObjectError;
use crate::keys::{ContentId, KeySet};
use crate::layout::Identity;

mod stream;

pub use stream::{PlaintextSink, StreamError, decode_into};

pub const HEADER_LEN: usize = 128;
/// Bytes covered by the header check.
const CHECKED_LEN: usize = 96;
const MAGIC: &[u8; 8] = b"CAIRNOBJ";
const FORMAT: u8 = 2;
const TAG_LEN: usize = 16;
/// Plaintext bytes per encrypted frame: small enough to keep streaming memory low, large
/// enough that the 16-byte tag costs 0.02%.
pub const FRAME_SIZE: u32 = 64 * 1024;

/// What an object holds; checked on decode so one kind is never read as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    StanzaInfo = 1,
    WalFile = 2,
    WalSummary = 3,
    WalCatalog = 4,
    Chunk = 5,
    BackupManifest = 6,
    PackIndex = 7,
    BackupCatalog = 8,
    Lock = 9,
    Record = 10,
    GcState = 11,
    ChunkIndexSnapshot = 12,
}

impl ObjectKind {
    fn from_u8(v: u8) -> Option<ObjectKind> {
        Some(match v {
            1 => ObjectKind::StanzaInfo,
            2 => ObjectKind::WalFile,
            3 => ObjectKind::WalSummary,
            4 => ObjectKind::WalCatalog,
            5 => ObjectKind::Chunk,
            6 => ObjectKind::BackupManifest,
            7 => ObjectKind::PackIndex,
            8 => ObjectKind::BackupCatalog,
            9 => ObjectKind::Lock,
            10 => ObjectKind::Record,
            11 => ObjectKind::GcState,
            12 => ObjectKind::ChunkIndexSnapshot,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::StanzaInfo => "stanza info",
            ObjectKind::WalFile => "WAL file",
            ObjectKind::WalSummary => "WAL summary",
            ObjectKind::WalCatalog => "WAL catalog",
            ObjectKind::Chunk => "chunk",
            ObjectKind::BackupManifest => "backup manifest",
            ObjectKind::PackIndex => "pack index",
            ObjectKind::BackupCatalog => "backup catalog",
            ObjectKind::Lock => "lock",
            ObjectKind::Record => "record",
            ObjectKind::GcState => "garbage collection state",
            ObjectKind::ChunkIndexSnapshot => "chunk index snapshot",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None = 0,
    Zstd = 1,
}

/// The parsed fixed header of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHeader {
    pub kind: ObjectKind,
    pub encrypted: bool,
    compression: Compression,
    pub frame_size: u32,
    pub plaintext_len: u64,
    pub payload_len: u64,
    pub content_id: ContentId,
    salt: [u8; 32],
}

impl ObjectHeader {
    /// The header bytes, with the check and the binding for `identity`.
    fn encode(&self, keys: &KeySet, identity: &Identity) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(MAGIC);
        h[8] = FORMAT;
        h[9] = self.kind as u8;
        h[10] = self.compression as u8;
        h[11] = u8::from(self.encrypted);
        h[12..16].copy_from_slice(&self.frame_size.to_le_bytes());
        h[16..24].copy_from_slice(&self.plaintext_len.to_le_bytes());
        h[24..32].copy_from_slice(&self.payload_len.to_le_bytes());
        h[32..64].copy_from_slice(&self.content_id.0);
        h[64..96].copy_from_slice(&self.salt);
        let check = header_check(&h);
        h[96..112].copy_from_slice(&check);
        let binding = keys.binding(&h[..112], identity.as_bytes());
        h[112..128].copy_from_slice(&binding);
        h
    }

    /// Parse the first [`HEADER_LEN`] bytes of an object, checking the header check (so
    /// damage in the header is reported as such) but not the binding.
    pub fn parse(b: &[u8]) -> Result<ObjectHeader, ObjectError> {
        if b.len() < HEADER_LEN {
            return Err(ObjectError::Truncated {
                have: b.len() as u64,
                want: HEADER_LEN as u64,
            });
        }
        if &b[0..8] != MAGIC {
            return Err(ObjectError::BadMagic);
        }
        if b[8] != FORMAT {
            return Err(ObjectError::Version {
                found: b[8],
                supported: FORMAT,
            });
        }
        let header = |m: &str| ObjectError::Header { message: m.into() };
        if header_check(b) != b[96..112] {
            return Err(header("header check failed"));
        }
        let kind = ObjectKind::from_u8(b[9]).ok_or_else(|| header("unknown kind"))?;
        let compression = match b[10] {
            0 => Compression::None,
            1 => Compression::Zstd,
            _ => return Err(header("unknown compression")),
        };
        let encrypted = match b[11] {
            0 => false,
            1 => true,
            _ => return Err(header("unknown cipher")),
        };
        let frame_size = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes"));
        if frame_size != FRAME_SIZE {
            return Err(header("unexpected frame size"));
        }
        if !encrypted && b[64..96].iter().any(|&x| x != 0) {
            return Err(header("salt in an unencrypted object"));
        }
        Ok(ObjectHeader {
            kind,
            encrypted,
            compression,
            frame_size,
            plaintext_len: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
            payload_len: u64::from_le_bytes(b[24..32].try_into().expect("8 bytes")),
            content_id: ContentId(b[32..64].try_into().expect("32 bytes")),
            salt: b[64..96].try_into().expect("32 bytes"),
        })
    }

    fn frames(&self) -> u64 {
        self.payload_len.div_ceil(u64::from(self.frame_size)).max(1)
    }

    /// Total encoded length the header promises.
    pub fn encoded_len(&self) -> u64 {
        let tags = if self.encrypted {
            self.frames() * TAG_LEN as u64
        } else {
            0
        };
        HEADER_LEN as u64 + self.payload_len + tags
    }
}

fn header_check(h: &[u8]) -> [u8; 16] {
    blake3::hash(&h[..CHECKED_LEN]).as_bytes()[..16]
        .try_into()
        .expect("16 bytes")
}

/// Check that a parsed header was written for `identity`.
fn check_binding(keys: &KeySet, b: &[u8], identity: &Identity) -> Result<(), ObjectError> {
    if keys.binding(&b[..112], identity.as_bytes()) == b[112..128] {
        Ok(())
    } else {
        Err(ObjectError::Misplaced)
    }
}

fn frame_nonce(index: u64, last: bool) -> Nonce<Aes256Gcm> {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&index.to_be_bytes());
    n[8] = u8::from(last);
    Nonce::<Aes256Gcm>::from(n)
}

/// Associated data of every frame: header ++ identity ++ frame index ++ last flag. Built
/// once per object; [`FrameAad::at`] patches the index and flag.
struct FrameAad(Vec<u8>);

impl FrameAad {
    fn new(header: &[u8; HEADER_LEN], identity: &Identity) -> FrameAad {
        let mut v = Vec::with_capacity(HEADER_LEN + identity.as_bytes().len() + 9);
        v.extend_from_slice(header);
        v.extend_from_slice(identity.as_bytes());
        v.extend_from_slice(&[0; 9]);
        FrameAad(v)
    }

    fn at(&mut self, index: u64, last: bool) -> &[u8] {
        let n = self.0.len();
        self.0[n - 9..n - 1].copy_from_slice(&index.to_be_bytes());
        self.0[n - 1] = u8::from(last);
        &self.0
    }
}

/// Plaintext per independently compressed zstd frame when an object is large enough to
/// split. Each piece compresses on its own thread; zstd decodes concatenated frames as one.
const PARALLEL_PIECE: usize = 4 << 20;

thread_local! {
    /// One zstd context per thread and level: a fresh context per 256 KiB chunk costs more
    /// in allocation and page faults than the compression of a small chunk.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Compress one piece on this thread, reusing the thread's zstd context.
fn compress_piece(piece: &[u8], level: i32) -> Result<Vec<u8>, String> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            let c = zstd::bulk::Compressor::new(level).map_err(|e| e.to_string())?;
            *slot = Some((level, c));
        }
        let (_, c) = slot.as_mut().expect("just set");
        c.compress(piece).map_err(|e| e.to_string())
    })
}

/// Compress `plaintext` while computing its content id. Large inputs are cut into pieces
/// that are subtrees of the content id's hash tree ([`content_tree`]), each compressed and
/// hashed on its own thread, so a 16 MiB WAL segment keeps every core busy from start to end.
fn compress_and_hash(
    keys: &KeySet,
    plaintext: &[u8],
    level: i32,
) -> Result<(Vec<u8>, ContentId), String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let piece_len = content_tree::piece_len(plaintext.len(), threads, PARALLEL_PIECE);
    let lens: Vec<u64> = plaintext
        .chunks(piece_len.max(1))
        .map(|p| p.len() as u64)
        .collect();
    let Some(tree) = PieceTree::new(&lens) else {
        return Ok((
            compress_piece(plaintext, level)?,
            keys.content_id(plaintext),
        ));
    };
    let work = |i: usize, piece: &[u8]| -> Result<(Vec<u8>, ChainingValue), String> {
        let mut hasher = tree.hasher(keys, i);
        hasher.update(piece);
        Ok((compress_piece(piece, level)?, hasher.finalize_non_root()))
    };
    std::thread::scope(|scope| {
        let mut pieces = plaintext.chunks(piece_len);
        let first = pieces.next().expect("two pieces or more");
        let workers: Vec<_> = pieces
            .enumerate()
            .map(|(i, piece)| scope.spawn(move || work(i + 1, piece)))
            .collect();
        let mut done = vec![work(0, first)?];
        for w in workers {
            done.push(
                w.join()
                    .map_err(|_| "compression thread panicked".to_string())??,
            );
        }
        let values: Vec<ChainingValue> = done.iter().map(|(_, v)| *v).collect();
        let mut out = Vec::with_capacity(done.iter().map(|(c, _)| c.len()).sum());
        for (compressed, _) in &done {
            out.extend_from_slice(compressed);
        }
        Ok((out, tree.join(keys, &values)))
    })
}

/// Split a payload into its zstd frames, each with the size it decompresses to.
fn zstd_frames(payload: &[u8]) -> Option<Vec<(&[u8], usize)>> {
    let mut frames = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        let len = zstd::zstd_safe::find_frame_compressed_size(rest).ok()?;
        let size = zstd::zstd_safe::get_frame_content_size(&rest[..len]).ok()??;
        frames.push((&rest[..len], usize::try_from(size).ok()?));
        rest = &rest[len..];
    }
    Some(frames)
}

/// Decompress (frames on their own threads, as [`compress_and_hash`] made them) and hash
/// each piece as soon as it is ready.
fn decompress_and_hash(
    keys: &KeySet,
    payload: &[u8],
    cap: usize,
) -> Result<(Vec<u8>, ContentId), ObjectError> {
    let bad = |message: String| ObjectError::Decompress { message };
    let frames = zstd_frames(payload).ok_or_else(|| bad("malformed zstd frames".into()))?;
    if frames.iter().map(|(_, n)| *n).sum::<usize>() != cap {
        return Err(bad(
            "frame sizes do not add up to the plaintext length".into()
        ));
    }
    let mut out = vec![0u8; cap];
    let mut hasher = keys.content_hasher();
    let decompress = |(frame, _): &(&[u8], usize), dest: &mut [u8]| -> Result<(), ObjectError> {
        let n = zstd::bulk::decompress_to_buffer(frame, dest).map_err(|e| bad(e.to_string()))?;
        if n != dest.len() {
            Err(bad("frame shorter than it says".into()))
        } else {
            Ok(())
        }
    };
    std::thread::scope(|scope| {
        let mut dests = Vec::with_capacity(frames.len());
        let mut rest: &mut [u8] = &mut out;
        for (_, n) in &frames {
            let (d, r) = rest.split_at_mut(*n);
            dests.push(d);
            rest = r;
        }
        let mut dests = dests.into_iter();
        let first = dests.next();
        let workers: Vec<_> = frames[1..]
            .iter()
            .zip(dests)
            .map(|(f, d)| scope.spawn(move || decompress(f, d).map(|()| &*d)))
            .collect();
        if let (Some(f), Some(d)) = (frames.first(), first) {
            decompress(f, d)?;
            hasher.update(d);
        }
        for w in workers {
            let piece = w
                .join()
                .map_err(|_| bad("decompression thread panicked".into()))??;
            hasher.update(piece);
        }
        Ok::<_, ObjectError>(())
    })?;
    Ok((out, ContentId(*hasher.finalize().as_bytes())))
}

/// Encode `plaintext` as an object of `kind` known as `identity`. Returns the bytes and
/// the content id.
pub fn encode(
    keys: &KeySet,
    kind: ObjectKind,
    identity: &Identity,
    plaintext: &[u8],
    level: i32,
) -> Result<(Vec<u8>, ContentId), String> {
    let (payload, content_id) = compress_and_hash(keys, plaintext, level)?;
    seal(keys, kind, identity, plaintext, payload, content_id).map(|bytes| (bytes, content_id))
}

/// Encode a small object (one chunk of a backup) whose content id the caller has already
/// computed, on the calling thread only: chunks are encoded many at a time on all cores,
/// and hashing each one twice would cost a tenth of a backup's CPU.
pub fn encode_with_id(
    keys: &KeySet,
    kind: ObjectKind,
    identity: &Identity,
    plaintext: &[u8],
    level: i32,
    content_id: ContentId,
) -> Result<Vec<u8>, String> {
    let payload = compress_piece(plaintext, level)?;
    seal(keys, kind, identity, plaintext, payload, content_id)
}

/// Frame, and with a key encrypt, `payload` (zstd of `plaintext`). A payload that did not
/// shrink is dropped for the plaintext itself: incompressible data (random bytes, already
/// compressed columns) then costs no decompression on restore.
fn seal(
    keys: &KeySet,
    kind: ObjectKind,
    identity: &Identity,
    plaintext: &[u8],
    payload: Vec<u8>,
    content_id: ContentId,
) -> Result<Vec<u8>, String> {
    let (compression, payload): (Compression, std::borrow::Cow<'_, [u8]>) =
        if payload.len() >= plaintext.len() {
            (Compression::None, plaintext.into())
        } else {
            (Compression::Zstd, payload.into())
        };
    let encrypted = keys.encrypts();
    let header = ObjectHeader {
        kind,
        encrypted,
        compression,
        frame_size: FRAME_SIZE,
        plaintext_len: plaintext.len() as u64,
        payload_len: payload.len() as u64,
        content_id,
        salt: if encrypted { rand::random() } else { [0; 32] },
    };
    let hbytes = header.encode(keys, identity);
    let mut out = Vec::with_capacity(header.encoded_len() as usize);
    out.extend_from_slice(&hbytes);
    if !encrypted {
        out.extend_from_slice(&payload);
        return Ok(out);
    }
    let cipher = keys.object_cipher(&header.salt);
    let mut aad = FrameAad::new(&hbytes, identity);
    let frames = header.frames();
    let mut chunks = payload.chunks(FRAME_SIZE as usize);
    for index in 0..frames {
        let last = index + 1 == frames;
        let chunk = chunks.next().unwrap_or(&[]);
        let start = out.len();
        out.extend_from_slice(chunk);
        let tag = cipher
            .encrypt_inout_detached(
                &frame_nonce(index, last),
                aad.at(index, last),
                (&mut out[start..]).into(),
            )
            .map_err(|_| "frame encryption failed".to_string())?;
        out.extend_from_slice(tag.as_slice());
    }
    Ok(out)
}

/// No object cairn writes comes near this; a damaged length must not allocate the world.
const MAX_PLAINTEXT: u64 = 2 << 30;

/// Parse `bytes`' header and check everything that does not need the body: kind, key,
/// binding to `identity`, and the total length the header promises.
fn checked_header(
    keys: &KeySet,
    expected: ObjectKind,
    identity: &Identity,
    bytes: &[u8],
) -> Result<ObjectHeader, ObjectError> {
    let header = ObjectHeader::parse(bytes)?;
    if header.kind != expected {
        return Err(ObjectError::WrongKind {
            expected: expected.name(),
            found: header.kind.name().into(),
        });
    }
    if header.encrypted && !keys.encrypts() {
        return Err(ObjectError::NeedsKey);
    }
    check_binding(keys, bytes, identity)?;
    let want = header.encoded_len();
    let have = bytes.len() as u64;
    if have < want {
        return Err(ObjectError::Truncated { have, want });
    }
    if have > want {
        return Err(ObjectError::Trailing { extra: have - want });
    }
    if header.plaintext_len > MAX_PLAINTEXT {
        return Err(ObjectError::Header {
            message: "plaintext length too large".into(),
        });
    }
    Ok(header)
}

/// Decode an object, checking kind, identity, framing, authentication, length and
/// content id.
pub fn decode(
    keys: &KeySet,
    expected: ObjectKind,
    identity: &Identity,
    bytes: &[u8],
) -> Result<Vec<u8>, ObjectError> {
    decode_with_id(keys, expected, identity, bytes).map(|(plain, _)| plain)
}

/// [`decode`], also returning the content id it checked (so a caller that needs it does
/// not hash the plaintext again).
pub fn decode_with_id(
    keys: &KeySet,
    expected: ObjectKind,
    identity: &Identity,
    bytes: &[u8],
) -> Result<(Vec<u8>, ContentId), ObjectError> {
    let header = checked_header(keys, expected, identity, bytes)?;
    let hbytes: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().expect("length checked");
    let body = &bytes[HEADER_LEN..];
    let payload: std::borrow::Cow<'_, [u8]> = if header.encrypted {
        let cipher = keys.object_cipher(&header.salt);
        let mut aad = FrameAad::new(&hbytes, identity);
        let frames = header.frames();
        let mut out = Vec::with_capacity(header.payload_len as usize);
        let stride = header.frame_size as usize + TAG_LEN;
        for (index, sealed) in body.chunks(stride).enumerate() {
            let index = index as u64;
            let last = index + 1 == frames;
            let (ct, tag) = sealed.split_at(sealed.len() - TAG_LEN);
            let start = out.len();
            out.extend_from_slice(ct);
            let tag =
                Tag::<Aes256Gcm>::try_from(tag).map_err(|_| ObjectError::Auth { frame: index })?;
            cipher
                .decrypt_inout_detached(
                    &frame_nonce(index, last),
                    aad.at(index, last),
                    (&mut out[start..]).into(),
                    &tag,
                )
                .map_err(|_| ObjectError::Auth { frame: index })?;
        }
        out.into()
    } else {
        body.into()
    };
    let cap = header.plaintext_len as usize;
    let (plaintext, id) = match header.compression {
        Compression::None => {
            let id = keys.content_id(&payload);
            (payload.into_owned(), id)
        }
        Compression::Zstd => decompress_and_hash(keys, &payload, cap)?,
    };
    if plaintext.len() as u64 != header.plaintext_len || id != header.content_id {
        return Err(ObjectError::Hash);
    }
    Ok((plaintext, id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KdfParams, KeyStorage};
    use crate::layout::ObjectKey;
    use proptest::prelude::*;

    const FAST: KdfParams = KdfParams {
        m_kib: 64,
        t: 1,
        p: 1,
    };

    pub(super) fn keysets() -> [KeySet; 2] {
        [
            KeyStorage::create(None, FAST).unwrap().1,
            KeyStorage::create(Some("p"), FAST).unwrap().1,
        ]
    }

    pub(super) fn here() -> Identity {
        Identity::of(
            &ObjectKey::new("stanza/main/wal/1/00000001/000000010000000000000001").unwrap(),
        )
    }

    fn elsewhere() -> Identity {
        Identity::of(
            &ObjectKey::new("stanza/main/wal/1/00000001/000000010000000000000002").unwrap(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..200_000), level in 1i32..5) {
            for keys in keysets() {
                let (enc, id) = encode(&keys, ObjectKind::Chunk, &here(), &data, level).unwrap();
                prop_assert_eq!(id, keys.content_id(&data));
                prop_assert_eq!(decode(&keys, ObjectKind::Chunk, &here(), &enc).unwrap(), data.clone());
                let enc = encode_with_id(&keys, ObjectKind::Chunk, &here(), &data, level, id).unwrap();
                prop_assert_eq!(decode(&keys, ObjectKind::Chunk, &here(), &enc).unwrap(), data.clone());
            }
        }

        #[test]
        fn any_flipped_byte_is_detected(data in proptest::collection::vec(any::<u8>(), 1..100_000), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            for keys in keysets() {
                let (mut enc, _) = encode(&keys, ObjectKind::WalFile, &here(), &data, 1).unwrap();
                let i = pos.index(enc.len());
                enc[i] ^= 1 << bit;
                prop_assert!(decode(&keys, ObjectKind::WalFile, &here(), &enc).is_err());
            }
        }

        #[test]
        fn truncation_is_detected(data in proptest::collection::vec(any::<u8>(), 1..300_000), cut in any::<prop::sample::Index>()) {
            for keys in keysets() {
                let (enc, _) = encode(&keys, ObjectKind::WalFile, &here(), &data, 1).unwrap();
                let n = cut.index(enc.len());
                prop_assert!(decode(&keys, ObjectKind::WalFile, &here(), &enc[..n]).is_err());
            }
        }

        #[test]
        fn an_object_decodes_only_under_its_identity(data in proptest::collection::vec(any::<u8>(), 0..10_000)) {
            for keys in keysets() {
                let (enc, _) = encode(&keys, ObjectKind::WalFile, &here(), &data, 1).unwrap();
                prop_assert_eq!(
                    decode(&keys, ObjectKind::WalFile, &elsewhere(), &enc),
                    Err(ObjectError::Misplaced)
                );
            }
        }
    }

    #[test]
    fn a_damaged_header_reads_as_damage_not_as_a_move() {
        for keys in keysets() {
            let (enc, _) = encode(&keys, ObjectKind::WalFile, &here(), b"some wal", 1).unwrap();
            for i in [9usize, 20, 40, 70] {
                let mut bad = enc.clone();
                bad[i] ^= 0x01;
                let err = decode(&keys, ObjectKind::WalFile, &here(), &bad).unwrap_err();
                assert!(
                    matches!(err, ObjectError::Header { .. }),
                    "byte {i}: {err:?}"
                );
            }
            // The binding itself damaged: indistinguishable from a move, and refused.
            let mut bad = enc.clone();
            bad[120] ^= 0x01;
            assert_eq!(
                decode(&keys, ObjectKind::WalFile, &here(), &bad),
                Err(ObjectError::Misplaced)
            );
        }
    }

    #[test]
    fn format_1_objects_are_refused_by_version() {
        let keys = &keysets()[0];
        let (mut enc, _) = encode(keys, ObjectKind::WalFile, &here(), b"x", 1).unwrap();
        enc[8] = 1;
        assert_eq!(
            decode(keys, ObjectKind::WalFile, &here(), &enc),
            Err(ObjectError::Version {
                found: 1,
                supported: 2
            })
        );
    }

    #[test]
    fn frames_cannot_be_reordered() {
        let keys = KeyStorage::create(Some("p"), FAST).unwrap().1;
        // Incompressible data so the payload spans several frames.
        let data: Vec<u8> = (0..300_000).map(|_| rand::random::<u8>()).collect();
        let (enc, _) = encode(&keys, ObjectKind::Chunk, &here(), &data, 1).unwrap();
        let stride = FRAME_SIZE as usize + TAG_LEN;
        let mut swapped = enc.clone();
        let (a, b) = (HEADER_LEN, HEADER_LEN + stride);
        let f0 = enc[a..a + stride].to_vec();
        let f1 = enc[b..b + stride].to_vec();
        swapped[a..a + stride].copy_from_slice(&f1);
        swapped[b..b + stride].copy_from_slice(&f0);
        assert_eq!(
            decode(&keys, ObjectKind::Chunk, &here(), &swapped),
            Err(ObjectError::Auth { frame: 0 })
        );
    }

    #[test]
    fn large_objects_compress_in_pieces_and_round_trip() {
        for keys in keysets() {
            // Large enough for the parallel path, compressible like WAL.
            let data: Vec<u8> = (0..(20u32 << 20))
                .map(|i| if i % 7 == 0 { (i >> 9) as u8 } else { 0 })
                .collect();
            let (mut enc, id) = encode(&keys, ObjectKind::WalFile, &here(), &data, 3).unwrap();
            assert_eq!(id, keys.content_id(&data));
            assert!(enc.len() < data.len() / 4);
            assert_eq!(
                decode(&keys, ObjectKind::WalFile, &here(), &enc).unwrap(),
                data
            );
            let last = enc.len() - 1;
            enc[last] ^= 0x80;
            assert!(decode(&keys, ObjectKind::WalFile, &here(), &enc).is_err());
        }
    }

    #[test]
    fn incompressible_data_is_stored_as_is_and_round_trips() {
        let data: Vec<u8> = (0..256 * 1024).map(|_| rand::random::<u8>()).collect();
        for keys in keysets() {
            let id = keys.content_id(&data);
            let enc = encode_with_id(&keys, ObjectKind::Chunk, &here(), &data, 3, id).unwrap();
            let header = ObjectHeader::parse(&enc).unwrap();
            assert_eq!(header.compression, Compression::None);
            assert_eq!(header.payload_len, data.len() as u64);
            assert_eq!(
                decode(&keys, ObjectKind::Chunk, &here(), &enc).unwrap(),
                data
            );
            // A wrong id given by the caller is caught on decode, not stored silently.
            let bad = encode_with_id(
                &keys,
                ObjectKind::Chunk,
                &here(),
                &data,
                3,
                ContentId([7; 32]),
            )
            .unwrap();
            assert_eq!(
                decode(&keys, ObjectKind::Chunk, &here(), &bad),
                Err(ObjectError::Hash)
            );
        }
        // Compressible data still is.
        let text = b"pgbench_accounts ".repeat(10_000);
        let keys = &keysets()[1];
        let enc = encode_with_id(
            keys,
            ObjectKind::Chunk,
            &here(),
            &text,
            3,
            keys.content_id(&text),
        )
        .unwrap();
        assert_eq!(
            ObjectHeader::parse(&enc).unwrap().compression,
            Compression::Zstd
        );
        assert!(enc.len() < text.len() / 10);
        assert_eq!(
            decode(keys, ObjectKind::Chunk, &here(), &enc).unwrap(),
            text
        );
    }

    #[test]
    fn wrong_kind_and_wrong_key() {
        let [plain, enc_keys] = keysets();
        let (enc, _) = encode(&enc_keys, ObjectKind::WalFile, &here(), b"hello", 3).unwrap();
        assert!(matches!(
            decode(&enc_keys, ObjectKind::Chunk, &here(), &enc),
            Err(ObjectError::WrongKind { .. })
        ));
        assert_eq!(
            decode(&plain, ObjectKind::WalFile, &here(), &enc),
            Err(ObjectError::NeedsKey)
        );
        // Another repository's key: the binding key differs too.
        let other = KeyStorage::create(Some("p"), FAST).unwrap().1;
        assert_eq!(
            decode(&other, ObjectKind::WalFile, &here(), &enc),
            Err(ObjectError::Misplaced)
        );
    }
}
