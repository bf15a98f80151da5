//! Reference inverted dropout: y = x · keep / (1 − p), keep = (u ≥ p), u = (h >> 8) · 2⁻²⁴ with
//! h = hash(seed, step, i) — the same MurmurHash3 as `shaders/dropout.wgsl`, in wrapping u32
//! arithmetic, so the masks agree bit for bit.

use crate::layers::dropout::Dropout;

/// One MurmurHash3 body round: scramble the word k and fold it into h.
fn murmur_round(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(0xcc9e_2d51).rotate_left(15).wrapping_mul(0x1b87_3593);
    (h ^ k).rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64)
}

/// MurmurHash3 (x86, 32-bit) of the words [step, index] with `seed` as its seed.
pub fn hash(seed: u32, step: u32, index: u32) -> u32 {
    let mut h = murmur_round(murmur_round(seed, step), index);
    h ^= 8; // the key length in bytes
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Whether element `index` is kept: u ≥ p with u uniform in [0, 1) on a 2⁻²⁴ grid.
pub fn keep(d: &Dropout, step: u32, index: usize) -> bool {
    let u = (hash(d.seed, step, index as u32) >> 8) as f64 / (1u64 << 24) as f64;
    u >= d.p as f64
}

fn apply(d: &Dropout, step: u32, v: &[f64]) -> Vec<f64> {
    let p = d.p as f64;
    (0..v.len()).map(|i| if keep(d, step, i) { v[i] / (1.0 - p) } else { 0.0 }).collect()
}

pub fn forward(d: &Dropout, step: u32, x: &[f64]) -> Vec<f64> {
    apply(d, step, x)
}

/// The mask of the same (seed, step) as the forward, applied to dy.
pub fn backward(d: &Dropout, step: u32, dy: &[f64]) -> Vec<f64> {
    apply(d, step, dy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{assert_grad_close, numeric_grad, random};

    /// Known answers of MurmurHash3_x86_32 on the 8 little-endian bytes of [step, index]
    /// (from the `mmh3` Python package), so the hash is the published one.
    #[test]
    fn hash_is_murmur3() {
        assert_eq!(hash(0, 0, 0), 1_669_671_676);
        assert_eq!(hash(1, 2, 3), 2_920_678_231);
        assert_eq!(hash(0x5EED, 7, 123_456), 2_880_754_470);
    }

    #[test]
    fn gradcheck_dropout() {
        let x = random(1, 53, -3.0, 3.0);
        let g = random(2, 53, -1.0, 1.0);
        for p in [0.0, 0.15, 0.5] {
            let d = Dropout::new(p, 17).unwrap();
            let dx = backward(&d, 3, &g);
            let num = numeric_grad(&|x| forward(&d, 3, x), &x, &g, 1e-6);
            assert_grad_close("dropout dx", &dx, &num, 1e-8, 1e-6).unwrap();
        }
    }

    #[test]
    fn extreme_probabilities() {
        let x = random(3, 101, -3.0, 3.0);
        assert_eq!(forward(&Dropout::new(0.0, 5).unwrap(), 0, &x), x);
        assert!(forward(&Dropout::new(1.0, 5).unwrap(), 0, &x).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn rejects_bad_probabilities() {
        for p in [-0.1, 1.5, f32::NAN, f32::INFINITY] {
            assert!(Dropout::new(p, 0).is_err(), "p = {p}");
        }
    }

    /// The kept fraction of a million elements is within 5 standard deviations of 1 − p.
    #[test]
    fn kept_fraction_matches_p() {
        let n = 1_000_000;
        for p in [0.15f32, 0.5, 0.9] {
            let d = Dropout::new(p, 0x5EED).unwrap();
            let kept = (0..n).filter(|&i| keep(&d, 7, i)).count() as f64;
            let q = 1.0 - p as f64;
            let sd = (n as f64 * q * (1.0 - q)).sqrt();
            assert!((kept - n as f64 * q).abs() < 5.0 * sd, "p = {p}: kept {kept} of {n}");
        }
    }

    /// Masks of different steps or seeds share only the agreement of independent draws.
    #[test]
    fn steps_and_seeds_give_different_masks() {
        let n = 100_000;
        let d = Dropout::new(0.5, 1).unwrap();
        let other_seed = Dropout::new(0.5, 2).unwrap();
        let agree = |a: &dyn Fn(usize) -> bool, b: &dyn Fn(usize) -> bool| (0..n).filter(|&i| a(i) == b(i)).count() as f64;
        let sd = (n as f64 * 0.25).sqrt();
        for (what, same) in [
            ("steps 0 and 1", agree(&|i| keep(&d, 0, i), &|i| keep(&d, 1, i))),
            ("seeds 1 and 2", agree(&|i| keep(&d, 0, i), &|i| keep(&other_seed, 0, i))),
            ("neighbouring elements", agree(&|i| keep(&d, 0, i), &|i| keep(&d, 0, i + 1))),
        ] {
            assert!((same - n as f64 / 2.0).abs() < 5.0 * sd, "{what}: masks agree on {same} of {n}");
        }
    }
}
