//! What a kernel needs of a device, and whether the open device has it. Kernels declare their
//! needs; a kernel whose needs the device does not meet is never a candidate there (the
//! convolution's direct kernels need no more than every WebGPU device has).

use super::{Gpu, Precision};

/// A kernel's needs beyond a bare WebGPU device. Zero (the default) needs nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Bytes of one uniform buffer binding (`max_uniform_buffer_binding_size`).
    pub uniform_binding: u64,
    /// Invocations of one workgroup, all along x (`max_compute_invocations_per_workgroup`,
    /// `max_compute_workgroup_size_x`).
    pub invocations: u32,
    /// Bytes of workgroup memory (`max_compute_workgroup_storage_size`).
    pub workgroup_storage: u32,
    /// Subgroup operations, with at least this many lanes in every subgroup (a kernel that
    /// broadcasts from lanes 0..n needs n), and subgroups laid out as runs of consecutive
    /// invocations (see [`Gpu::subgroup_size`]).
    pub subgroup_lanes: Option<u32>,
    /// Activations stored in f32 (see [`crate::gpu::Precision`]): a kernel that adds into its
    /// output over several dispatches would round it to f16 after each one.
    pub f32_activations: bool,
}

impl Needs {
    /// Both sets of needs: the larger of each.
    pub fn and(self, other: Needs) -> Needs {
        Needs {
            uniform_binding: self.uniform_binding.max(other.uniform_binding),
            invocations: self.invocations.max(other.invocations),
            workgroup_storage: self.workgroup_storage.max(other.workgroup_storage),
            subgroup_lanes: match (self.subgroup_lanes, other.subgroup_lanes) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            f32_activations: self.f32_activations || other.f32_activations,
        }
    }
}

/// Loop iterations an invocation may run in all on llvmpipe (Mesa's CPU driver, behind both
/// lavapipe and its OpenGL): gallivm counts every iteration of every loop of an invocation
/// against one budget of `LP_MAX_TGSI_LOOP_ITERATIONS` and then leaves the loops early,
/// silently (an implicit-GEMM reduction of 1,024 K-steps summed only part of its terms).
pub const LLVMPIPE_LOOP_ITERATIONS: u64 = 65_535;

impl Gpu {
    /// How many loop iterations one invocation may run in all before the driver cuts its loops
    /// short, where it does (llvmpipe: [`LLVMPIPE_LOOP_ITERATIONS`]); `None`: no such limit.
    /// Kernels whose loops grow with the geometry keep within it or are not candidates.
    pub fn loop_limit(&self) -> Option<u64> {
        self.info().name.contains("llvmpipe").then_some(LLVMPIPE_LOOP_ITERATIONS)
    }

    /// Whether this device meets `needs`, from the limits and features it was opened with.
    pub fn meets(&self, needs: &Needs) -> bool {
        self.unmet(needs).is_none()
    }

    /// The first of `needs` that this device does not meet, in words; `None` if it meets all.
    pub fn unmet(&self, needs: &Needs) -> Option<String> {
        let l = &self.limits;
        if needs.uniform_binding > l.max_uniform_buffer_binding_size {
            return Some(format!(
                "a uniform binding of {} bytes (the device's max_uniform_buffer_binding_size is {})",
                needs.uniform_binding, l.max_uniform_buffer_binding_size
            ));
        }
        let wg = l.max_compute_invocations_per_workgroup.min(l.max_compute_workgroup_size_x);
        if needs.invocations > wg {
            return Some(format!("{} invocations a workgroup (the device allows {wg})", needs.invocations));
        }
        if needs.workgroup_storage > l.max_compute_workgroup_storage_size {
            return Some(format!(
                "{} bytes of workgroup memory (the device's max_compute_workgroup_storage_size is {})",
                needs.workgroup_storage, l.max_compute_workgroup_storage_size
            ));
        }
        if needs.f32_activations && self.precision() != Precision::F32 {
            return Some(format!(
                "activations stored in f32 (they add into their output over several dispatches, which would round it to {} after each)",
                self.precision()
            ));
        }
        if let Some(lanes) = needs.subgroup_lanes {
            match self.min_subgroup_size() {
                None => return Some("subgroup operations (the device has none usable)".into()),
                Some(min) if min < lanes => {
                    return Some(format!("subgroups of at least {lanes} lanes (the device's may have {min})"))
                }
                Some(_) => {}
            }
        }
        None
    }
}
