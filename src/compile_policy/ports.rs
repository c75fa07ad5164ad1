//! Port ranges as prefixes of the 16-bit destination port, for the LPM trie
//! `ep_pol_v1` (an `endPort` range becomes at most 30 entries, and a lookup
//! stays one probe whatever the range).

/// The minimal set of (value, prefix bits) blocks covering `lo..=hi` exactly.
/// Each value has the bits past its prefix cleared.
pub fn range_prefixes(lo: u16, hi: u16) -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    if lo > hi {
        return out;
    }
    let (mut lo, hi) = (u32::from(lo), u32::from(hi));
    while lo <= hi {
        // Largest aligned block starting at lo that stays within hi.
        let mut size_bits = if lo == 0 { 16 } else { lo.trailing_zeros().min(16) };
        while lo + (1u32 << size_bits) - 1 > hi {
            size_bits -= 1;
        }
        // size_bits <= 16, so 16 - size_bits fits a u8; lo < 65536.
        out.push((lo as u16, (16 - size_bits) as u8));
        lo += 1u32 << size_bits;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers(blocks: &[(u16, u8)], p: u16) -> bool {
        blocks.iter().any(|&(v, bits)| {
            let mask: u16 = if bits == 0 { 0 } else { u16::MAX << (16 - bits) };
            p & mask == v
        })
    }

    #[test]
    fn single_port_is_one_full_prefix() {
        assert_eq!(range_prefixes(80, 80), vec![(80, 16)]);
    }

    #[test]
    fn whole_range_is_one_empty_prefix() {
        assert_eq!(range_prefixes(0, 65535), vec![(0, 0)]);
    }

    #[test]
    fn ranges_are_covered_exactly() {
        for (lo, hi) in [(1u16, 65535u16), (80, 81), (1000, 2000), (32000, 32768), (65535, 65535), (3, 4)] {
            let b = range_prefixes(lo, hi);
            assert!(b.len() <= 30, "{lo}-{hi}: {} blocks", b.len());
            for p in 0..=u16::MAX {
                assert_eq!(covers(&b, p), (lo..=hi).contains(&p), "{lo}-{hi} port {p}");
            }
        }
    }
}
