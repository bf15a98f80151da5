//! Everything that names a wgpu type lives here: adapter and backend choice, limits, the
//! shader registry and pipeline cache, buffers, and compiled plans of dispatches.

mod buffer;
mod context;
mod needs;
mod plan;
mod profiler;
mod shaders;

pub use buffer::{Buffer, DType, MemoryUse};
pub use needs::{Needs, LLVMPIPE_LOOP_ITERATIONS};
#[cfg(not(target_arch = "wasm32"))]
pub use context::list_adapters;
pub use context::{list_adapters_async, AdapterReport, BackendChoice, Gpu, GpuInfo, GpuOptions, Precision, Tuning};
pub use plan::{grid_2d, Op, Plan, WG};
pub use profiler::{DispatchTime, StepProfile, TimingMethod};
pub use shaders::{compose, ACT_F32, shader_by_name, split_stubs, Constants, PipelineUse, Shader, IDLE_PIPELINES, STUBS_BEGIN, STUBS_END};
