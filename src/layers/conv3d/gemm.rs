//! conv3d's implicit-GEMM kernels (shaders/conv3d/gemm.wgsl): forward, backward_input (a
//! gather) and backward_weight, each one matrix product read in place from x, w and dy, tiled
//! through workgroup memory with a register block per invocation, shaped as GPUs want them
//! rather than CPU adapters. A few tile configurations ([`GemmTile`], the shader's override
//! constants), each a tuner candidate for every pass. What they need of a device: their
//! workgroup's invocations and 8 KiB of workgroup memory, within WebGPU's defaults.

use crate::error::{Error, Result};
use crate::gpu::{Buffer, Needs, Op, Shader};
use crate::layers::Dims3;

use super::{Conv3d, ConvScratch, BASE_NEEDS, LAYER};

/// One tile configuration: a workgroup computes `tm` rows × `tn` columns of the product in
/// K-steps of `tk`, each invocation an `rm` × `rn` block of sums (`TM`, `TN`, `TK`, `RM`, `RN`
/// in shaders/conv3d/gemm.wgsl).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmTile {
    pub tm: u32,
    pub tn: u32,
    pub tk: u32,
    pub rm: u32,
    pub rn: u32,
}

/// Floats of each block the shader stages in workgroup memory (`STAGE`), the register block's
/// largest size (`MAX_ACC`) and its largest side (`MAX_R`).
const STAGE: u32 = 1024;
const MAX_ACC: u32 = 32;
const MAX_R: u32 = 8;

/// The configurations: 32×32 tiles of 64 invocations (small layers, and devices where a big
/// workgroup's registers limit occupancy), 64×64 of 256, and 128×64 of 256 with 8×4 blocks
/// (the most reuse of each staged value: 12 products per load).
pub const TILE_32X32: GemmTile = GemmTile { tm: 32, tn: 32, tk: 32, rm: 4, rn: 4 };
pub const TILE_64X64: GemmTile = GemmTile { tm: 64, tn: 64, tk: 16, rm: 4, rn: 4 };
pub const TILE_128X64: GemmTile = GemmTile { tm: 128, tn: 64, tk: 8, rm: 8, rn: 4 };

/// A GEMM kernel is a candidate for a product of M × N only where its tiles, padded to whole
/// tiles, compute at most this many times the products that count: a 1×1 output tiled 32×32
/// wastes 1,023 of every 1,024 (the 162³ one-channel weight gradient: 13 s on lavapipe against
/// the columns kernel's 0.4 s; its forward in 64-channel tiles, 64 times the work: 2.7 s
/// against tiled's 0.1 s, and tens of seconds on SwiftShader).
const MAX_TILE_WASTE: usize = 32;

/// backward_weight's reduction (over every output position of the batch) is split so that
/// there are about this many workgroups in all, then summed over the splits.
const TARGET_GROUPS: usize = 1024;
/// At most this many splits (the partial sums take splits × the weight's floats)...
const MAX_SPLITS: usize = 64;
/// ...each of at least this many positions.
const MIN_SPLIT: usize = 256;

impl GemmTile {
    /// Invocations of one workgroup (`WG`).
    pub const fn invocations(self) -> u32 {
        (self.tm / self.rm) * (self.tn / self.rn)
    }

    /// Whether the shader can run this configuration: blocks that fit its staging arrays and
    /// register block, and invocations that divide the tile evenly.
    pub const fn valid(self) -> bool {
        self.rm > 0
            && self.rn > 0
            && self.tk > 0
            && self.tm.is_multiple_of(self.rm)
            && self.tn.is_multiple_of(self.rn)
            && self.tm * self.tk <= STAGE
            && self.tn * self.tk <= STAGE
            && self.rm * self.rn <= MAX_ACC
            && self.rm <= MAX_R
            && self.rn <= MAX_R
    }

    /// What the kernels of this configuration need of a device.
    pub fn needs(self) -> Needs {
        BASE_NEEDS.and(Needs { uniform_binding: 0, invocations: self.invocations(), workgroup_storage: 2 * STAGE * 4, subgroup_lanes: None, f32_activations: false })
    }

    /// Whether an M × N product in whole tiles computes at most [`MAX_TILE_WASTE`] times
    /// its M·N sums.
    pub(super) fn suits(self, m: usize, n: usize) -> bool {
        let padded = |len: usize, tile: u32| len.next_multiple_of(tile as usize) as u128;
        padded(m, self.tm) * padded(n, self.tn) <= (MAX_TILE_WASTE as u128) * (m as u128) * (n as u128)
    }

    /// The K-step for a reduction of `reduce` terms: no longer than the reduction (rounded up
    /// to a power of two), so that a short one (a 1×1×1 kernel over few channels) stages no
    /// zeros.
    fn k_step(self, reduce: usize) -> u32 {
        self.tk.min(reduce.next_power_of_two().min(u32::MAX as usize) as u32).max(1)
    }

    /// Loop iterations an invocation runs per K-step, bounded from above: its share of both
    /// staged blocks, the step's TK products and the step itself (the register block's loops
    /// have constant bounds, which compilers unroll), doubled for what a compiler leaves rolled
    /// (llvmpipe measured: 65 a step at 32×32, 15–19 at 128×64, against this bound's 130 and 30).
    fn iterations_per_step(self, tk: u32) -> u64 {
        let wg = self.invocations() as u64;
        let staged = ((self.tm * tk) as u64).div_ceil(wg) + ((self.tn * tk) as u64).div_ceil(wg);
        2 * (staged + tk as u64 + 1)
    }

    /// Whether a reduction of `reduce` terms in one workgroup keeps within a device's loop
    /// limit (see [`crate::gpu::Gpu::loop_limit`]).
    pub(super) fn fits(self, reduce: usize, loop_limit: Option<u64>) -> bool {
        let tk = self.k_step(reduce);
        loop_limit.is_none_or(|limit| (reduce as u64).div_ceil(tk as u64) * self.iterations_per_step(tk) <= limit)
    }

    /// The tile's pipeline constants for a reduction of `reduce` terms.
    fn constants(self, op: Op, reduce: usize) -> Op {
        op.with_constant("WG", self.invocations())
            .with_constant("TM", self.tm)
            .with_constant("TN", self.tn)
            .with_constant("TK", self.k_step(reduce))
            .with_constant("RM", self.rm)
            .with_constant("RN", self.rn)
    }
}

impl Conv3d {
    /// forward as a GEMM: one workgroup per tile of output positions × output channels.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward_gemm(&self, out: Dims3, tile: GemmTile, x: &Buffer, weight: &Buffer, bias: Option<&Buffer>, y: &Buffer) -> Op {
        let positions = self.n * out.iter().product::<usize>();
        let groups = positions.div_ceil(tile.tm as usize) * self.c_out.div_ceil(tile.tn as usize);
        let p = self.params(out, groups);
        let op = match bias {
            Some(b) => Op::groups("conv3d.forward", Shader::Conv3dGemm, "forward_gemm_bias", &p, &[x, weight, y, b], groups),
            None => Op::groups("conv3d.forward", Shader::Conv3dGemm, "forward_gemm", &p, &[x, weight, y], groups),
        };
        let op = op.with_cost(self.macs_flops(out), self.cost_bytes(out));
        tile.constants(self.geometry(out, op), self.c_in * self.taps())
    }

    /// backward_input as a GEMM: one workgroup per tile of input positions × input channels,
    /// each dx element one invocation's sum (every element written, no zeroing first).
    pub(super) fn backward_input_gemm(&self, out: Dims3, tile: GemmTile, dy: &Buffer, weight: &Buffer, dx: &Buffer) -> Op {
        let positions = self.n * self.input.iter().product::<usize>();
        let groups = positions.div_ceil(tile.tm as usize) * self.c_in.div_ceil(tile.tn as usize);
        let p = self.params(out, groups);
        let op = Op::groups("conv3d.backward_input", Shader::Conv3dGemm, "backward_input_gemm", &p, &[dy, weight, dx], groups)
            .with_cost(self.macs_flops(out), self.cost_bytes(out));
        tile.constants(self.geometry(out, op), self.c_out * self.taps())
    }

    /// Whether the GEMM kernel of `tile` is worth running for forward and backward_input
    /// (both products within [`MAX_TILE_WASTE`]).
    pub(super) fn gemm_suits(&self, tile: GemmTile) -> bool {
        let Ok(out) = self.output() else { return false };
        tile.suits(self.n * out.iter().product::<usize>(), self.c_out) && tile.suits(self.n * self.input.iter().product::<usize>(), self.c_in)
    }

    /// Whether the GEMM kernel of `tile` is worth running for backward_weight.
    pub(super) fn gemm_weight_suits(&self, tile: GemmTile) -> bool {
        tile.suits(self.c_out, self.c_in * self.taps())
    }

    /// How backward_weight's GEMM splits the batch's output positions: (splits, positions per
    /// split). Enough splits for about [`TARGET_GROUPS`] workgroups, at most [`MAX_SPLITS`], of
    /// at least [`MIN_SPLIT`] positions each (a multiple of the K-step); and on a device with a
    /// loop limit, splits short enough to keep within it, however many that takes.
    pub(super) fn gemm_splits(&self, out: Dims3, tile: GemmTile, loop_limit: Option<u64>) -> (usize, usize) {
        let positions = self.n * out.iter().product::<usize>();
        let tiles = self.c_out.div_ceil(tile.tm as usize) * (self.c_in * self.taps()).div_ceil(tile.tn as usize);
        let want = TARGET_GROUPS.div_ceil(tiles).clamp(1, MAX_SPLITS);
        let tk = tile.tk as usize;
        let mut per = positions.div_ceil(want).max(MIN_SPLIT).next_multiple_of(tk);
        if let Some(limit) = loop_limit {
            let steps = (limit / tile.iterations_per_step(tile.tk)).max(1) as usize;
            per = per.min(steps * tk);
        }
        (positions.div_ceil(per), per)
    }

    /// backward_weight as a GEMM: one workgroup per (split, tile of output channels × (input
    /// channel, tap) columns), then the splits summed in split order (none with one split).
    pub(super) fn backward_weight_gemm(&self, out: Dims3, tile: GemmTile, x: &Buffer, dy: &Buffer, dweight: &Buffer, scratch: &ConvScratch) -> Result<Vec<Op>> {
        let len = self.weight_len();
        let (splits, per) = self.gemm_splits(out, tile, scratch.loop_limit);
        let part = match (&scratch.part, splits) {
            (_, 1) => dweight,
            (Some(part), _) if part.len() == splits * len => part,
            _ => return Err(Error::shape(LAYER, "backward_weight's scratch was made for another geometry")),
        };
        let tiles = self.c_out.div_ceil(tile.tm as usize) * (self.c_in * self.taps()).div_ceil(tile.tn as usize);
        let groups = splits * tiles;
        let mut p = self.params(out, groups);
        p.rows = per as u32;
        let op = Op::groups("conv3d.backward_weight", Shader::Conv3dGemm, "backward_weight_gemm", &p, &[x, dy, part], groups)
            .with_cost(self.macs_flops(out), self.cost_bytes(out));
        let mut ops = vec![tile.constants(self.geometry(out, op), per)];
        if splits > 1 {
            ops.push(self.sum_splits(out, splits, part, dweight));
        }
        Ok(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tiles_fit_the_shader_and_webgpu_defaults() {
        for t in [TILE_32X32, TILE_64X64, TILE_128X64] {
            assert!(t.valid(), "{t:?}");
            // WebGPU's defaults: 256 invocations, 16 KiB of workgroup memory.
            assert!(t.invocations() <= 256 && t.needs().workgroup_storage <= 16384, "{t:?}");
        }
        assert!(!GemmTile { tm: 64, tn: 64, tk: 32, rm: 4, rn: 4 }.valid());
        assert!(!GemmTile { tm: 64, tn: 64, tk: 16, rm: 8, rn: 8 }.valid());
    }

    #[test]
    fn tiles_mostly_padding_do_not_suit() {
        // 1 × 1 in 32 × 32 tiles: 1,024 times the work.
        assert!(!TILE_32X32.suits(1, 1));
        // One channel over whole tiles of positions: 32 times in 32-channel tiles (the bound),
        // 64 in 64-channel ones; a partial last tile of positions tips 32 over.
        assert!(TILE_32X32.suits(4_251_520, 1) && !TILE_64X64.suits(4_251_520, 1));
        assert!(!TILE_32X32.suits(4_251_528, 1));
        assert!(!TILE_128X64.suits(1, 1) && TILE_128X64.suits(32, 81));
        // The check's 162³ one-channel case runs no GEMM weight gradient; its 39 → 41 case does.
        assert!(!Conv3d::new(1, 1, 1, [162, 162, 162], [1, 1, 1]).gemm_weight_suits(TILE_32X32));
        assert!(Conv3d::new(2, 39, 41, [4, 5, 6], [3, 3, 3]).gemm_weight_suits(TILE_128X64));
    }

    #[test]
    fn a_reduction_beyond_a_loop_limit_does_not_fit() {
        let limit = Some(crate::gpu::LLVMPIPE_LOOP_ITERATIONS);
        // 32×32: 130 iterations a K-step of 32 bounded, so 504 steps (16,128 terms) fit.
        assert_eq!(TILE_32X32.iterations_per_step(32), 130);
        assert!(TILE_32X32.fits(504 * 32, limit) && !TILE_32X32.fits(505 * 32, limit));
        assert!(TILE_128X64.fits(1 << 30, None));
        // A short reduction takes a short K-step.
        assert_eq!(TILE_64X64.k_step(3), 4);
        assert_eq!(TILE_64X64.k_step(1000), 16);
    }

    #[test]
    fn the_weight_gradient_splits_cover_every_position_once() {
        for (n, input, c_in, c_out) in [(100, [7, 7, 7], 32, 64), (1, [162, 162, 162], 1, 1), (3, [2, 3, 4], 5, 6), (2, [30, 30, 30], 1, 32)] {
            let c = Conv3d::new(n, c_in, c_out, input, [1, 1, 1]);
            let out = c.output().unwrap();
            let positions = n * out.iter().product::<usize>();
            for t in [TILE_32X32, TILE_64X64, TILE_128X64] {
                let (splits, per) = c.gemm_splits(out, t, None);
                assert!((1..=MAX_SPLITS).contains(&splits) && per.is_multiple_of(t.tk as usize), "{splits} {per}");
                assert!(splits * per >= positions && (splits - 1) * per < positions, "{splits} × {per} for {positions}");
                // Under llvmpipe's loop limit: more splits where needed, each within it.
                let limit = crate::gpu::LLVMPIPE_LOOP_ITERATIONS;
                let (splits, per) = c.gemm_splits(out, t, Some(limit));
                assert!(splits * per >= positions && (splits - 1) * per < positions, "{splits} × {per} for {positions}");
                assert!(t.fits(per, Some(limit)) && per % t.tk as usize == 0, "{t:?}: {per} positions a split");
            }
        }
    }
}
