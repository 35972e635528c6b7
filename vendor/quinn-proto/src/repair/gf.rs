//! Arithmetic in GF(2⁸) (polynomial 0x11d, generator 2), for the second parity row (`Q`, as in
//! RAID 6): `Q = Σ 2^i · Dᵢ` over a class's chunks, so two missing chunks can be solved from `P`
//! and `Q` together.

const POLY: u16 = 0x11d;

/// `EXP[i] = 2^i`, doubled in length so a sum of two logs needs no reduction.
static EXP: [u8; 512] = exp_table();
/// `LOG[x]` for x ≠ 0.
static LOG: [u8; 256] = log_table();

const fn exp_table() -> [u8; 512] {
    let mut table = [0u8; 512];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 512 {
        table[i] = x as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= POLY;
        }
        i += 1;
    }
    table
}

const fn log_table() -> [u8; 256] {
    let exp = exp_table();
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 255 {
        table[exp[i] as usize] = i as u8;
        i += 1;
    }
    table
}

/// `2^i`.
pub(crate) fn pow2(i: usize) -> u8 {
    EXP[i % 255]
}

/// `a / b`, for b ≠ 0.
pub(crate) fn div(a: u8, b: u8) -> u8 {
    debug_assert_ne!(b, 0);
    match a {
        0 => 0,
        _ => EXP[LOG[a as usize] as usize + 255 - LOG[b as usize] as usize],
    }
}

/// `acc ^= factor · data`, bytewise.
pub(crate) fn mul_xor_into(acc: &mut [u8], data: &[u8], factor: u8) {
    if factor == 0 {
        return;
    }
    let log = LOG[factor as usize] as usize;
    for (a, d) in acc.iter_mut().zip(data) {
        if *d != 0 {
            *a ^= EXP[LOG[*d as usize] as usize + log];
        }
    }
}

/// `data = data / divisor`, bytewise.
pub(crate) fn div_in_place(data: &mut [u8], divisor: u8) {
    for byte in data {
        *byte = div(*byte, divisor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a · b`, through the same tables as [`mul_xor_into`].
    fn mul(a: u8, b: u8) -> u8 {
        let mut acc = [0];
        mul_xor_into(&mut acc, &[a], b);
        acc[0]
    }

    #[test]
    fn division_undoes_multiplication_for_every_pair() {
        for a in 0..=255u8 {
            for b in 1..=255u8 {
                assert_eq!(div(mul(a, b), b), a, "{a} · {b}");
            }
        }
        assert_eq!(mul(2, 0x80), 0x1d, "2 · x⁷ wraps through the polynomial");
    }

    #[test]
    fn the_first_powers_of_two_are_distinct() {
        let powers: std::collections::HashSet<u8> = (0..255).map(pow2).collect();
        assert_eq!(powers.len(), 255);
    }
}
