//! The tar (ustar) archives PostgreSQL sends in `BASE_BACKUP`, parsed incrementally: feed
//! [`TarParser::push`] the stream in pieces of any size and it says where entries start,
//! which bytes are file data (slices of the piece, never copied), and where entries and the
//! archive end.
//!
//! What the server writes is narrow, and this parser follows it (`tarCreateHeader()` and
//! `print_tar_number()` in src/port/tar.c, `_tarWriteHeader()` in
//! src/backend/backup/basebackup.c):
//!
//! - ustar headers with the name in the 100-byte name field only. PostgreSQL has no long
//!   name extension: `tarCreateHeader()` answers `TAR_NAME_TOO_LONG` for a name over 99
//!   bytes and the server fails the backup, so no GNU `L` or pax `x` entries ever appear
//!   (they are refused here as unsupported entry types). The ustar prefix field is still
//!   read, as other writers use it.
//! - Regular files (`0`), directories (`5`) and symbolic links (`2`, tablespace links in
//!   `pg_tblspc`). Directory and link names carry a trailing `/`, which [`TarEntry::path`]
//!   does not keep.
//! - Numbers in octal, or GNU base-256 (a leading `0x80` byte) when they do not fit: a file
//!   of 8 GiB or more.
//! - Data padded with zeroes to 512-byte blocks, and two zero blocks at the end.
//!
//! ```
//! use cairn_pgformat::tar::{TarEntry, TarEvent, TarKind, TarParser, encode_header};
//! let entry = TarEntry { path: "PG_VERSION".into(), kind: TarKind::File, mode: 0o600, size: 3, mtime: 0 };
//! let mut archive = encode_header(&entry).unwrap().to_vec();
//! archive.extend_from_slice(b"17\n");
//! archive.resize(512 * 4, 0); // padding, then the two zero blocks
//!
//! let mut parser = TarParser::new();
//! let mut data = Vec::new();
//! for piece in archive.chunks(100) {
//!     for event in parser.push(piece).unwrap() {
//!         if let TarEvent::Data(bytes) = event {
//!             data.extend_from_slice(bytes);
//!         }
//!     }
//! }
//! parser.finish().unwrap();
//! assert_eq!(data, b"17\n");
//! ```

use std::ops::Range;

/// The tar block size (`TAR_BLOCK_SIZE`).
pub const BLOCK: usize = 512;

/// Header fields, as `tarHeaderOffset` in src/include/pgtar.h names them.
const NAME: Range<usize> = 0..100;
const MODE: Range<usize> = 100..108;
const UID: Range<usize> = 108..116;
const GID: Range<usize> = 116..124;
const SIZE: Range<usize> = 124..136;
const MTIME: Range<usize> = 136..148;
const CHECKSUM: Range<usize> = 148..156;
const TYPEFLAG: usize = 156;
const LINKNAME: Range<usize> = 157..257;
const MAGIC: Range<usize> = 257..263;
const VERSION: Range<usize> = 263..265;
const PREFIX: Range<usize> = 345..500;

/// What an archive member is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarKind {
    File,
    Dir,
    /// A symbolic link; PostgreSQL sends the links of `pg_tblspc` this way.
    Symlink {
        target: String,
    },
}

/// One archive member's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    /// Relative to the archive's root, without a trailing `/`.
    pub path: String,
    pub kind: TarKind,
    /// Permission bits (`mode & 07777`).
    pub mode: u32,
    /// Bytes of data that follow; 0 for directories and links.
    pub size: u64,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
}

/// What a piece of the stream contained, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarEvent<'a> {
    /// A member starts; its data (if any) follows as [`TarEvent::Data`].
    Entry(TarEntry),
    /// Data of the current member: a slice of the piece given to [`TarParser::push`].
    Data(&'a [u8]),
    /// The current member's data is complete.
    EntryEnd,
    /// The end-of-archive marker.
    End,
}

/// Why bytes are not a tar archive PostgreSQL would send. Not retryable: the same bytes
/// give the same answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TarError {
    #[error("tar header at byte {offset}: checksum {found} does not match {computed}")]
    Checksum {
        offset: u64,
        found: u64,
        computed: u64,
    },
    #[error("tar header at byte {offset}: {field} is not a number")]
    Number { offset: u64, field: &'static str },
    #[error("tar header at byte {offset}: entry type {typeflag:?} is not supported")]
    Type { offset: u64, typeflag: char },
    #[error("tar header at byte {offset}: the name is not UTF-8")]
    Name { offset: u64 },
    #[error("tar archive ends at byte {offset} {within}, before its end-of-archive marker")]
    Truncated { offset: u64, within: String },
    #[error("tar archive has data after its end-of-archive marker (at byte {offset})")]
    AfterEnd { offset: u64 },
    #[error("cannot write a tar header for {path:?}: {why}")]
    Unrepresentable { path: String, why: &'static str },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Header,
    Data { path: String, left: u64, pad: usize },
    End,
}

/// An incremental parser over one tar archive.
#[derive(Debug, Clone)]
pub struct TarParser {
    state: State,
    /// A header that arrived in pieces.
    header: Vec<u8>,
    /// Bytes of the archive consumed so far, for error messages.
    offset: u64,
}

impl Default for TarParser {
    fn default() -> Self {
        TarParser {
            state: State::Header,
            header: Vec::with_capacity(BLOCK),
            offset: 0,
        }
    }
}

/// A NUL-terminated string field (`strlcpy()` fills them).
fn text_field(h: &[u8], r: Range<usize>) -> &[u8] {
    let f = &h[r];
    let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
    &f[..end]
}

/// A number field as `read_tar_number()` reads it: octal digits (leading spaces allowed,
/// ended by a space or NUL), or GNU base-256 when the first byte has its high bit set.
fn number(h: &[u8], r: Range<usize>, offset: u64, name: &'static str) -> Result<u64, TarError> {
    let bad = || TarError::Number {
        offset,
        field: name,
    };
    let f = &h[r];
    if f[0] & 0x80 != 0 {
        // 0xff starts a negative number, which PostgreSQL never writes.
        if f[0] == 0xff {
            return Err(bad());
        }
        let mut v = u64::from(f[0] & 0x7f);
        for &b in &f[1..] {
            v = v.checked_mul(256).ok_or_else(bad)? | u64::from(b);
        }
        return Ok(v);
    }
    let digits = f
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|&&b| b != b' ' && b != 0);
    let mut v: u64 = 0;
    for &b in digits {
        if !(b'0'..=b'7').contains(&b) {
            return Err(bad());
        }
        v = v.checked_mul(8).ok_or_else(bad)? | u64::from(b - b'0');
    }
    Ok(v)
}

/// `tarChecksum()`: the unsigned sum of the header bytes, the checksum field counted as
/// eight spaces.
fn checksum(h: &[u8]) -> u64 {
    let spaces = 8 * u64::from(b' ');
    h.iter()
        .enumerate()
        .filter(|(i, _)| !CHECKSUM.contains(i))
        .map(|(_, &b)| u64::from(b))
        .sum::<u64>()
        + spaces
}

fn parse_header(h: &[u8], offset: u64) -> Result<TarEntry, TarError> {
    let found = number(h, CHECKSUM, offset, "checksum")?;
    let computed = checksum(h);
    if found != computed {
        return Err(TarError::Checksum {
            offset,
            found,
            computed,
        });
    }
    let text = |r: Range<usize>| {
        String::from_utf8(text_field(h, r).to_vec()).map_err(|_| TarError::Name { offset })
    };
    let name = text(NAME)?;
    // POSIX ustar ("ustar\0") has a name prefix; GNU tar's "ustar  " uses those bytes for
    // other things.
    let prefix = if &h[MAGIC] == b"ustar\0" {
        text(PREFIX)?
    } else {
        String::new()
    };
    let mut path = if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    };
    let kind = match h[TYPEFLAG] {
        b'0' | 0 => TarKind::File,
        b'5' => TarKind::Dir,
        b'2' => TarKind::Symlink {
            target: text(LINKNAME)?,
        },
        other => {
            return Err(TarError::Type {
                offset,
                typeflag: other as char,
            });
        }
    };
    if kind != TarKind::File && path.len() > 1 && path.ends_with('/') {
        path.pop();
    }
    let size = match kind {
        TarKind::File => number(h, SIZE, offset, "size")?,
        _ => 0,
    };
    Ok(TarEntry {
        path,
        kind,
        mode: (number(h, MODE, offset, "mode")? & 0o7777) as u32,
        size,
        mtime: i64::try_from(number(h, MTIME, offset, "mtime")?).map_err(|_| TarError::Number {
            offset,
            field: "mtime",
        })?,
    })
}

fn padding(size: u64) -> usize {
    (BLOCK - (size % BLOCK as u64) as usize) % BLOCK
}

impl TarParser {
    pub fn new() -> TarParser {
        TarParser::default()
    }

    /// Whether the end-of-archive marker was seen.
    pub fn finished(&self) -> bool {
        self.state == State::End
    }

    /// Bytes of the archive consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset + self.header.len() as u64
    }

    /// The stream is over: an error unless the end-of-archive marker was seen.
    pub fn finish(&self) -> Result<(), TarError> {
        let within = match &self.state {
            State::End => return Ok(()),
            State::Header if self.header.is_empty() => "between members".to_string(),
            State::Header => "inside a header".to_string(),
            State::Data { path, left, .. } if *left > 0 => {
                format!("inside {path:?} with {left} bytes of it missing")
            }
            State::Data { path, .. } => format!("in the padding after {path:?}"),
        };
        Err(TarError::Truncated {
            offset: self.offset(),
            within,
        })
    }

    /// Parse the next piece of the stream.
    pub fn push<'a>(&mut self, input: &'a [u8]) -> Result<Vec<TarEvent<'a>>, TarError> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < input.len() {
            match &mut self.state {
                State::End => {
                    // Writers may pad the archive with zero blocks; anything else is not
                    // part of it.
                    if let Some(at) = input[i..].iter().position(|&b| b != 0) {
                        return Err(TarError::AfterEnd {
                            offset: self.offset + at as u64,
                        });
                    }
                    self.offset += (input.len() - i) as u64;
                    i = input.len();
                }
                State::Header => {
                    let take = (BLOCK - self.header.len()).min(input.len() - i);
                    self.header.extend_from_slice(&input[i..i + take]);
                    i += take;
                    if self.header.len() < BLOCK {
                        break;
                    }
                    let at = self.offset;
                    self.offset += BLOCK as u64;
                    let header = std::mem::replace(&mut self.header, Vec::with_capacity(BLOCK));
                    if header.iter().all(|&b| b == 0) {
                        self.state = State::End;
                        out.push(TarEvent::End);
                        continue;
                    }
                    let entry = parse_header(&header, at)?;
                    let (size, path) = (entry.size, entry.path.clone());
                    out.push(TarEvent::Entry(entry));
                    if size == 0 {
                        out.push(TarEvent::EntryEnd);
                    } else {
                        self.state = State::Data {
                            path,
                            left: size,
                            pad: padding(size),
                        };
                    }
                }
                State::Data { left, pad, .. } => {
                    if *left > 0 {
                        let take = (*left).min((input.len() - i) as u64) as usize;
                        out.push(TarEvent::Data(&input[i..i + take]));
                        i += take;
                        self.offset += take as u64;
                        *left -= take as u64;
                        if *left == 0 {
                            out.push(TarEvent::EntryEnd);
                        }
                    } else {
                        let take = (*pad).min(input.len() - i);
                        i += take;
                        self.offset += take as u64;
                        *pad -= take;
                    }
                    if let State::Data {
                        left: 0, pad: 0, ..
                    } = self.state
                    {
                        self.state = State::Header;
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Write `v` as `print_tar_number()` does: octal with a trailing space when it fits,
/// else `0x80` and base-256.
fn put_number(h: &mut [u8; BLOCK], r: Range<usize>, v: u64) {
    let len = r.len();
    let f = &mut h[r];
    if v < 1u64 << ((len - 1) * 3) {
        f[len - 1] = b' ';
        let mut v = v;
        for b in f[..len - 1].iter_mut().rev() {
            *b = b'0' + (v & 7) as u8;
            v >>= 3;
        }
    } else {
        let mut v = v;
        for b in f[1..].iter_mut().rev() {
            *b = v as u8;
            v >>= 8;
        }
        f[0] = 0x80;
    }
}

/// A header for `entry` as PostgreSQL writes it (`tarCreateHeader()`): directories and
/// links get a trailing `/`, owner `postgres`. A path that does not fit the name field is
/// split into the ustar prefix (which PostgreSQL never needs); one that does not fit
/// either way, or a link target over 99 bytes, is refused.
pub fn encode_header(entry: &TarEntry) -> Result<[u8; BLOCK], TarError> {
    let refuse = |why| TarError::Unrepresentable {
        path: entry.path.clone(),
        why,
    };
    let mut name = entry.path.clone();
    if entry.kind != TarKind::File {
        name.push('/');
    }
    let (prefix, name) = if name.len() <= NAME.len() {
        ("", name.as_str())
    } else {
        // The longest prefix that fits, split at a '/', leaving a name that fits.
        let split = name
            .match_indices('/')
            .map(|(i, _)| i)
            .filter(|&i| i <= PREFIX.len() && name.len() - i - 1 <= NAME.len())
            .find(|&i| i > 0)
            .ok_or_else(|| refuse("the path is too long for a ustar header"))?;
        (&name[..split], &name[split + 1..])
    };
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[PREFIX.start..PREFIX.start + prefix.len()].copy_from_slice(prefix.as_bytes());
    put_number(&mut h, MODE, u64::from(entry.mode & 0o7777));
    put_number(&mut h, UID, 0);
    put_number(&mut h, GID, 0);
    put_number(&mut h, SIZE, entry.size);
    let mtime = u64::try_from(entry.mtime).map_err(|_| refuse("the mtime is negative"))?;
    put_number(&mut h, MTIME, mtime);
    h[TYPEFLAG] = match &entry.kind {
        TarKind::File => b'0',
        TarKind::Dir => b'5',
        TarKind::Symlink { target } => {
            if target.len() >= LINKNAME.len() {
                return Err(refuse("the link target is longer than 99 bytes"));
            }
            h[LINKNAME.start..LINKNAME.start + target.len()].copy_from_slice(target.as_bytes());
            b'2'
        }
    };
    if entry.kind != TarKind::File && entry.size != 0 {
        return Err(refuse("directories and links have no data"));
    }
    h[MAGIC].copy_from_slice(b"ustar\0");
    h[VERSION].copy_from_slice(b"00");
    h[265..273].copy_from_slice(b"postgres");
    h[297..305].copy_from_slice(b"postgres");
    put_number(&mut h, 329..337, 0);
    put_number(&mut h, 337..345, 0);
    let sum = checksum(&h);
    put_number(&mut h, CHECKSUM, sum);
    Ok(h)
}

/// The zero bytes that pad `size` bytes of data to a whole block.
pub fn data_padding(size: u64) -> usize {
    padding(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn archive(entries: &[(TarEntry, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (e, data) in entries {
            out.extend_from_slice(&encode_header(e).unwrap());
            out.extend_from_slice(data);
            out.resize(out.len() + data_padding(data.len() as u64), 0);
        }
        out.extend_from_slice(&[0u8; 2 * BLOCK]);
        out
    }

    fn parse_in_pieces(bytes: &[u8], piece: usize) -> Vec<(TarEntry, Vec<u8>)> {
        let mut p = TarParser::new();
        let mut out: Vec<(TarEntry, Vec<u8>)> = Vec::new();
        let mut open = false;
        for chunk in bytes.chunks(piece.max(1)) {
            for ev in p.push(chunk).unwrap() {
                match ev {
                    TarEvent::Entry(e) => {
                        assert!(!open);
                        open = true;
                        out.push((e, Vec::new()));
                    }
                    TarEvent::Data(d) => out.last_mut().unwrap().1.extend_from_slice(d),
                    TarEvent::EntryEnd => {
                        assert!(open);
                        open = false;
                    }
                    TarEvent::End => assert!(!open),
                }
            }
        }
        p.finish().unwrap();
        out
    }

    fn entry(path: &str, kind: TarKind, size: u64) -> TarEntry {
        TarEntry {
            path: path.into(),
            kind,
            mode: 0o600,
            size,
            mtime: 1_700_000_000,
        }
    }

    proptest! {
        #[test]
        fn round_trips_in_any_chunking(
            files in proptest::collection::vec(("[a-z]{1,20}(/[a-z0-9_.]{1,40}){0,4}", proptest::collection::vec(any::<u8>(), 0..3000), 0o600u32..0o777), 1..6),
            piece in 1usize..2000,
        ) {
            let mut entries = vec![(TarEntry { path: "base".into(), kind: TarKind::Dir, mode: 0o700, size: 0, mtime: 5 }, vec![])];
            entries.push((TarEntry { path: "pg_tblspc/16384".into(), kind: TarKind::Symlink { target: "/srv/ts".into() }, mode: 0o777, size: 0, mtime: 5 }, vec![]));
            for (path, data, mode) in files {
                entries.push((TarEntry { path, kind: TarKind::File, mode, size: data.len() as u64, mtime: 1_700_000_000 }, data));
            }
            let bytes = archive(&entries);
            prop_assert_eq!(parse_in_pieces(&bytes, piece), entries);
        }

        #[test]
        fn numbers_round_trip(v in any::<u64>().prop_map(|v| v >> 1), width in prop_oneof![Just(SIZE), Just(MTIME), Just(MODE)]) {
            let mut h = [0u8; BLOCK];
            let max = if width.len() == 8 { u64::MAX >> 8 } else { u64::MAX >> 1 };
            let v = v & max;
            put_number(&mut h, width.clone(), v);
            prop_assert_eq!(number(&h, width, 0, "n").unwrap(), v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..3000), piece in 1usize..600) {
            let mut p = TarParser::new();
            for chunk in bytes.chunks(piece) {
                if p.push(chunk).is_err() {
                    break;
                }
            }
        }
    }

    #[test]
    fn a_damaged_header_is_refused() {
        let mut bytes = archive(&[(entry("PG_VERSION", TarKind::File, 3), b"15\n".to_vec())]);
        bytes[10] ^= 1;
        assert!(matches!(
            TarParser::new().push(&bytes),
            Err(TarError::Checksum { offset: 0, .. })
        ));
    }

    #[test]
    fn directories_and_links_lose_the_trailing_slash() {
        let h = encode_header(&entry("base/1", TarKind::Dir, 0)).unwrap();
        assert_eq!(&h[..7], b"base/1/");
        assert_eq!(parse_header(&h, 0).unwrap().path, "base/1");
    }

    #[test]
    fn the_checksum_is_octal_with_a_trailing_space_like_postgres() {
        let h = encode_header(&entry("PG_VERSION", TarKind::File, 3)).unwrap();
        let field = &h[CHECKSUM];
        assert_eq!(field[7], b' ');
        assert!(field[..7].iter().all(u8::is_ascii_digit));
        assert_eq!(number(&h, CHECKSUM, 0, "c").unwrap(), checksum(&h));
    }

    #[test]
    fn large_sizes_use_base_256() {
        let e = entry("big", TarKind::File, 10 << 30);
        let h = encode_header(&e).unwrap();
        assert_eq!(h[SIZE.start], 0x80);
        assert_eq!(parse_header(&h, 0).unwrap().size, 10 << 30);
        // Just under 8 GiB still fits in eleven octal digits.
        let h = encode_header(&entry("big", TarKind::File, (8 << 30) - 1)).unwrap();
        assert_eq!(&h[SIZE], b"77777777777 ");
    }

    #[test]
    fn long_paths_use_the_prefix_or_are_refused() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let h = encode_header(&entry(&long, TarKind::File, 0)).unwrap();
        assert_eq!(parse_header(&h, 0).unwrap().path, long);
        // A full name field needs no NUL (a 99-byte directory name plus its '/').
        let full = "d".repeat(99);
        let h = encode_header(&entry(&full, TarKind::Dir, 0)).unwrap();
        assert_eq!(parse_header(&h, 0).unwrap().path, full);
        let too_long = "x".repeat(120);
        assert!(matches!(
            encode_header(&entry(&too_long, TarKind::File, 0)),
            Err(TarError::Unrepresentable { .. })
        ));
    }

    #[test]
    fn extension_headers_are_refused() {
        for flag in [b'L', b'x', b'g', b'1'] {
            let mut h = encode_header(&entry("a", TarKind::File, 0)).unwrap();
            h[TYPEFLAG] = flag;
            h[CHECKSUM].fill(b' ');
            let sum = checksum(&h);
            put_number(&mut h, CHECKSUM, sum);
            assert!(matches!(
                parse_header(&h, 0),
                Err(TarError::Type { typeflag, .. }) if typeflag == flag as char
            ));
        }
    }

    #[test]
    fn truncation_and_trailing_garbage_are_errors() {
        let bytes = archive(&[(entry("f", TarKind::File, 700), vec![1; 700])]);
        let mut p = TarParser::new();
        p.push(&bytes[..600]).unwrap();
        assert!(
            matches!(p.finish(), Err(TarError::Truncated { within, .. }) if within.contains("612 bytes"))
        );
        let mut p = TarParser::new();
        p.push(&bytes[..bytes.len() - BLOCK]).unwrap();
        p.finish().unwrap();
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 4096]);
        let mut p = TarParser::new();
        p.push(&padded).unwrap();
        p.finish().unwrap();
        padded.push(1);
        assert!(matches!(
            TarParser::new().push(&padded),
            Err(TarError::AfterEnd { .. })
        ));
    }
}
