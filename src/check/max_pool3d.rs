//! placeholder: to be written.
use crate::error::Result;
use crate::gpu::Gpu;
use super::KernelReport;

pub fn run(_gpu: &Gpu) -> Result<Vec<KernelReport>> {
    Ok(vec![])
}
