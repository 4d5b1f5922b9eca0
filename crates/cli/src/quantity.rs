//! How numbers read in text output: counts with the right plural, byte sizes in the unit
//! that suits them. JSON output keeps raw numbers.

/// `1 segment`, `2 segments`.
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `512 bytes`, `12.0 KiB`, `3.4 MiB`, `1.2 GiB`: one decimal, binary units.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return count(bytes, "byte", "bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_agree_with_their_noun() {
        assert_eq!(count(0u32, "segment", "segments"), "0 segments");
        assert_eq!(count(1u32, "segment", "segments"), "1 segment");
        assert_eq!(count(2u64, "directory", "directories"), "2 directories");
    }

    #[test]
    fn sizes_pick_their_unit() {
        assert_eq!(size(0), "0 bytes");
        assert_eq!(size(1), "1 byte");
        assert_eq!(size(1023), "1023 bytes");
        assert_eq!(size(1024), "1.0 KiB");
        assert_eq!(size(1536 * 1024), "1.5 MiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
        assert_eq!(size(5 << 40), "5.0 TiB");
    }
}
