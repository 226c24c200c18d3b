//! Floating-point casts for `--dtype`: bf16, fp16, fp32 (round to nearest even; NaN stays NaN,
//! overflow becomes infinity, as torch's `.to(dtype)` does).

use ckpt_torch::DType;

/// The dtype a tensor is written as under `--dtype`.
pub fn target_dtype(src: DType, cast: Option<DType>) -> DType {
    match (src, cast) {
        (DType::F64 | DType::F32 | DType::F16 | DType::BF16, Some(to)) => to,
        _ => src,
    }
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // subnormal: normalize
            let mut e: i32 = -14;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (((e + 127) as u32) << 23) | ((f & 0x3ff) << 13)
        }
        (31, 0) => sign | 0x7f80_0000,
        (31, _) => sign | 0x7fc0_0000 | (frac << 13),
        _ => sign | ((exp + 112) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

fn f32_to_f16(f: f32) -> u16 {
    let bits = f.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let frac = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if frac != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 31 {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        // subnormal half: shift the implicit bit in, round to nearest even
        let m = frac | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1 << shift) - 1);
        let mut v = m >> shift;
        if rest > half || (rest == half && v & 1 == 1) {
            v += 1;
        }
        return sign | v as u16;
    }
    let mut v = ((e as u32) << 10) | (frac >> 13);
    let rest = frac & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && v & 1 == 1) {
        v += 1; // may carry into the exponent, which is the right answer (up to infinity)
    }
    sign | v as u16
}

fn f32_to_bf16(f: f32) -> u16 {
    let bits = f.to_bits();
    if f.is_nan() {
        return ((bits >> 16) as u16) | 0x40;
    }
    let lsb = (bits >> 16) & 1;
    ((bits + 0x7fff + lsb) >> 16) as u16
}

/// Map each `I`-byte element to an `O`-byte one, into a preallocated buffer.
fn each<const I: usize, const O: usize>(src: &[u8], f: impl Fn([u8; I]) -> [u8; O]) -> Vec<u8> {
    let mut out = vec![0u8; src.len() / I * O];
    for (i, o) in src.chunks_exact(I).zip(out.chunks_exact_mut(O)) {
        let mut a = [0u8; I];
        a.copy_from_slice(i);
        o.copy_from_slice(&f(a));
    }
    out
}

fn f16(a: [u8; 2]) -> f32 {
    f16_to_f32(u16::from_le_bytes(a))
}

fn bf16(a: [u8; 2]) -> f32 {
    f32::from_bits(u32::from(u16::from_le_bytes(a)) << 16)
}

/// Convert little-endian elements of `from` into `to` (floating types only; anything else is
/// returned as is), rounding to nearest even exactly as torch's `.to()` does — including its
/// double rounding of float64 to float16/bfloat16 through float32 (a value a hair above a tie
/// lands on the tie in float32 and then rounds to even). NaN stays NaN (torch's own NaN bits
/// depend on which of its vectorized or scalar loops handled the element; ours are 0x7fc0 for
/// bfloat16, 0x7e00 for float16).
pub fn convert(bytes: &[u8], from: DType, to: DType) -> Vec<u8> {
    use DType::{BF16, F16, F32, F64};
    let half = |x: f32| f32_to_f16(x).to_le_bytes();
    let brain = |x: f32| f32_to_bf16(x).to_le_bytes();
    match (from, to) {
        (F32, BF16) => each(bytes, |a| brain(f32::from_le_bytes(a))),
        (F32, F16) => each(bytes, |a| half(f32::from_le_bytes(a))),
        (F16, F32) => each(bytes, |a| f16(a).to_le_bytes()),
        (BF16, F32) => each(bytes, |a| bf16(a).to_le_bytes()),
        // Widening to f32 is exact, so one rounding.
        (F16, BF16) => each(bytes, |a| brain(f16(a))),
        (BF16, F16) => each(bytes, |a| half(bf16(a))),
        (F64, F32) => each(bytes, |a| (f64::from_le_bytes(a) as f32).to_le_bytes()),
        (F64, F16) => each(bytes, |a| half(f64::from_le_bytes(a) as f32)),
        (F64, BF16) => each(bytes, |a| brain(f64::from_le_bytes(a) as f32)),
        (F32, F64) => each(bytes, |a| f64::from(f32::from_le_bytes(a)).to_le_bytes()),
        (F16, F64) => each(bytes, |a| f64::from(f16(a)).to_le_bytes()),
        (BF16, F64) => each(bytes, |a| f64::from(bf16(a)).to_le_bytes()),
        _ => bytes.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_round_trips_and_rounds() {
        for x in [0.0f32, 1.0, -2.5, 65504.0, 6.1035156e-5, 5.9604645e-8, 0.1] {
            let h = f32_to_f16(x);
            let back = f16_to_f32(h);
            assert!((back - x).abs() <= x.abs() * 1e-3 + 6e-8, "{x} -> {back}");
        }
        assert_eq!(f32_to_f16(1e6), 0x7c00);
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
        assert_eq!(f32_to_f16(1.0), 0x3c00);
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80); // tie -> even
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert!(f32::from_bits(u32::from(f32_to_bf16(f32::NAN)) << 16).is_nan());
    }

    #[test]
    fn convert_between_types() {
        let src: Vec<u8> = [1.5f32, -0.25]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let h = convert(&src, DType::F32, DType::F16);
        assert_eq!(h.len(), 4);
        let back = convert(&h, DType::F16, DType::F32);
        assert_eq!(back, src);
        assert_eq!(target_dtype(DType::I64, Some(DType::F16)), DType::I64);
    }

    #[test]
    fn from_f64_rounds_through_f32_as_torch_does() {
        // 1 + 2^-8 is a bf16 tie (rounds to even: 1.0). A hair above it is lost in float32,
        // so torch gives 1.0 too (checked against torch in fixtures/convert/casts.*).
        let x = 1.0 + 2f64.powi(-8) + 2f64.powi(-40);
        let b = convert(&x.to_le_bytes(), DType::F64, DType::BF16);
        assert_eq!(u16::from_le_bytes([b[0], b[1]]), 0x3f80);
        // A clear step above the tie rounds up.
        let x = 1.0 + 2f64.powi(-8) + 2f64.powi(-20);
        let b = convert(&x.to_le_bytes(), DType::F64, DType::BF16);
        assert_eq!(u16::from_le_bytes([b[0], b[1]]), 0x3f81);
        for (x, want) in [
            (-(1.0 + 2f64.powi(-7)), 0xbf81u16),
            (0.5, 0x3f00),
            (1e300, 0x7f80),
            (1e-300, 0x0000),
        ] {
            let b = convert(&f64::to_le_bytes(x), DType::F64, DType::BF16);
            assert_eq!(u16::from_le_bytes([b[0], b[1]]), want, "{x}");
        }
        let n = convert(&f64::NAN.to_le_bytes(), DType::F64, DType::BF16);
        assert!(f32::from_bits(u32::from(u16::from_le_bytes([n[0], n[1]])) << 16).is_nan());
    }

    #[test]
    fn between_halves_and_back() {
        // bf16 -> f16 -> bf16 of values exact in both is the identity.
        let src: Vec<u8> = [1.0f32, -0.5, 3.0, 0.0]
            .iter()
            .flat_map(|x| f32_to_bf16(*x).to_le_bytes())
            .collect();
        let h = convert(&src, DType::BF16, DType::F16);
        assert_eq!(convert(&h, DType::F16, DType::BF16), src);
        assert_eq!(convert(&src, DType::BF16, DType::BF16), src);
        let wide = convert(&src, DType::BF16, DType::F64);
        assert_eq!(convert(&wide, DType::F64, DType::BF16), src);
    }
}
