//! The tar (ustar) streams PostgreSQL sends in `BASE_BACKUP`, parsed incrementally: feed it
//! the stream in pieces of any size and it says where entries start, which bytes are file
//! data, and where entries end. Headers follow `tarCreateHeader()` (src/port/tar.c):
//! ustar, octal numbers (GNU base-256 for sizes of 8 GiB and more), names split into
//! prefix/name.

use std::ops::Range;

const BLOCK: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarKind {
    File,
    Dir,
    Symlink { target: String },
}

/// One archive member's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    pub path: String,
    pub kind: TarKind,
    pub mode: u32,
    pub size: u64,
    pub mtime: i64,
}

/// What a piece of the stream contained, in order. `Data` ranges index the piece given
/// to [`TarParser::push`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarEvent {
    Entry(TarEntry),
    Data(Range<usize>),
    EntryEnd,
    End,
}

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Data { left: u64, pad: usize },
    End,
}

/// An incremental parser over one tar archive.
#[derive(Debug, Clone)]
pub struct TarParser {
    state: State,
    header: Vec<u8>,
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

fn field(h: &[u8], r: Range<usize>) -> &[u8] {
    let f = &h[r];
    let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
    &f[..end]
}

/// An octal field, or GNU base-256 when the high bit of the first byte is set.
fn number(h: &[u8], r: Range<usize>, offset: u64, name: &'static str) -> Result<u64, TarError> {
    let f = &h[r];
    if f[0] & 0x80 != 0 {
        let mut v: u64 = u64::from(f[0] & 0x7f);
        for &b in &f[1..] {
            v = v.checked_mul(256).ok_or(TarError::Number {
                offset,
                field: name,
            })? | u64::from(b);
        }
        return Ok(v);
    }
    let s = std::str::from_utf8(f)
        .map(|s| s.trim_matches(|c: char| c == ' ' || c == '\0'))
        .map_err(|_| TarError::Number {
            offset,
            field: name,
        })?;
    if s.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(s, 8).map_err(|_| TarError::Number {
        offset,
        field: name,
    })
}

fn parse_header(h: &[u8], offset: u64) -> Result<TarEntry, TarError> {
    let found = number(h, 148..156, offset, "checksum")?;
    let computed: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    if found != computed {
        return Err(TarError::Checksum {
            offset,
            found,
            computed,
        });
    }
    let text = |r: Range<usize>| {
        String::from_utf8(field(h, r).to_vec()).map_err(|_| TarError::Name { offset })
    };
    let name = text(0..100)?;
    let prefix = if &h[257..262] == b"ustar" {
        text(345..500)?
    } else {
        String::new()
    };
    let path = if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    };
    let kind = match h[156] {
        b'0' | 0 => TarKind::File,
        b'5' => TarKind::Dir,
        b'2' => TarKind::Symlink {
            target: text(157..257)?,
        },
        other => {
            return Err(TarError::Type {
                offset,
                typeflag: other as char,
            });
        }
    };
    Ok(TarEntry {
        path,
        size: if kind == TarKind::File {
            number(h, 124..136, offset, "size")?
        } else {
            0
        },
        kind,
        mode: number(h, 100..108, offset, "mode")? as u32,
        mtime: number(h, 136..148, offset, "mtime")? as i64,
    })
}

impl TarParser {
    pub fn new() -> TarParser {
        TarParser::default()
    }

    /// Whether the end-of-archive marker was seen.
    pub fn finished(&self) -> bool {
        self.state == State::End
    }

    /// Parse the next piece of the stream.
    pub fn push(&mut self, input: &[u8]) -> Result<Vec<TarEvent>, TarError> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::End => break,
                State::Header => {
                    let take = (BLOCK - self.header.len()).min(input.len() - i);
                    self.header.extend_from_slice(&input[i..i + take]);
                    i += take;
                    if self.header.len() < BLOCK {
                        break;
                    }
                    let header = std::mem::take(&mut self.header);
                    let at = self.offset;
                    self.offset += BLOCK as u64;
                    if header.iter().all(|&b| b == 0) {
                        self.state = State::End;
                        out.push(TarEvent::End);
                        break;
                    }
                    let entry = parse_header(&header, at)?;
                    let size = entry.size;
                    out.push(TarEvent::Entry(entry));
                    self.state = State::Data {
                        left: size,
                        pad: (BLOCK - (size as usize % BLOCK)) % BLOCK,
                    };
                    if size == 0 {
                        out.push(TarEvent::EntryEnd);
                        self.state = State::Header;
                    }
                }
                State::Data { left, pad } => {
                    if left > 0 {
                        let take = (left.min((input.len() - i) as u64)) as usize;
                        out.push(TarEvent::Data(i..i + take));
                        i += take;
                        self.offset += take as u64;
                        self.state = State::Data {
                            left: left - take as u64,
                            pad,
                        };
                        if left - take as u64 == 0 {
                            out.push(TarEvent::EntryEnd);
                        }
                    } else {
                        let take = pad.min(input.len() - i);
                        i += take;
                        self.offset += take as u64;
                        self.state = if pad - take == 0 {
                            State::Header
                        } else {
                            State::Data {
                                left: 0,
                                pad: pad - take,
                            }
                        };
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A ustar header for `entry` (for tests, and for writing tar streams).
pub fn encode_header(entry: &TarEntry) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let (prefix, name) = match entry.path.len() {
        0..=99 => ("", entry.path.as_str()),
        _ => entry
            .path
            .rsplit_once('/')
            .unwrap_or(("", entry.path.as_str())),
    };
    h[..name.len().min(100)].copy_from_slice(&name.as_bytes()[..name.len().min(100)]);
    let octal = |h: &mut [u8; BLOCK], r: Range<usize>, v: u64| {
        let s = format!("{:0width$o}\0", v, width = r.len() - 1);
        h[r.clone()].copy_from_slice(&s.as_bytes()[s.len() - r.len()..]);
    };
    octal(&mut h, 100..108, u64::from(entry.mode));
    octal(&mut h, 108..116, 0);
    octal(&mut h, 116..124, 0);
    if entry.size >= 1 << 33 {
        let mut v = entry.size;
        for i in (124..136).rev() {
            h[i] = v as u8;
            v >>= 8;
        }
        h[124] |= 0x80;
    } else {
        octal(&mut h, 124..136, entry.size);
    }
    octal(&mut h, 136..148, entry.mtime.max(0) as u64);
    h[156] = match &entry.kind {
        TarKind::File => b'0',
        TarKind::Dir => b'5',
        TarKind::Symlink { target } => {
            h[157..157 + target.len().min(100)]
                .copy_from_slice(&target.as_bytes()[..target.len().min(100)]);
            b'2'
        }
    };
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len().min(155)]
        .copy_from_slice(&prefix.as_bytes()[..prefix.len().min(155)]);
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn archive(entries: &[(TarEntry, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (e, data) in entries {
            out.extend_from_slice(&encode_header(e));
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        }
        out.extend_from_slice(&[0u8; 2 * BLOCK]);
        out
    }

    fn parse_in_pieces(bytes: &[u8], piece: usize) -> Vec<(TarEntry, Vec<u8>)> {
        let mut p = TarParser::new();
        let mut out: Vec<(TarEntry, Vec<u8>)> = Vec::new();
        for chunk in bytes.chunks(piece.max(1)) {
            for ev in p.push(chunk).unwrap() {
                match ev {
                    TarEvent::Entry(e) => out.push((e, Vec::new())),
                    TarEvent::Data(r) => out.last_mut().unwrap().1.extend_from_slice(&chunk[r]),
                    TarEvent::EntryEnd | TarEvent::End => {}
                }
            }
        }
        assert!(p.finished());
        out
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
    }

    #[test]
    fn a_damaged_header_is_refused() {
        let e = TarEntry {
            path: "PG_VERSION".into(),
            kind: TarKind::File,
            mode: 0o600,
            size: 3,
            mtime: 1,
        };
        let mut bytes = archive(&[(e, b"15\n".to_vec())]);
        bytes[10] ^= 1;
        assert!(matches!(
            TarParser::new().push(&bytes),
            Err(TarError::Checksum { .. })
        ));
    }

    #[test]
    fn large_sizes_use_base_256() {
        let e = TarEntry {
            path: "big".into(),
            kind: TarKind::File,
            mode: 0o600,
            size: 10 << 30,
            mtime: 1,
        };
        let h = encode_header(&e);
        assert_eq!(parse_header(&h, 0).unwrap().size, 10 << 30);
    }
}
