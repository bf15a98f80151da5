//! Per-dispatch GPU times of a plan. Profiled and plain replays share one encoder
//! ([`Gpu::encode`]); profiling only adds timestamp writes (or, without timestamp queries,
//! a submit and a queue wait per dispatch).
//!
//! - `TIMESTAMP_QUERY_INSIDE_PASSES`: one pass, a timestamp before and after every dispatch.
//! - `TIMESTAMP_QUERY` only: one pass per dispatch, with the pass's own timestamp writes.
//! - neither: host wall-clock per dispatch around a submit and a wait (reports say so).
//!
//! The query set and its resolve/readback buffers are sized to the plan and created on its
//! first profiled replay, then reused: a long run never grows them. They are resolved once
//! per step; a duration is `end.wrapping_sub(start)` ticks × the queue's timestamp period.

use std::ops::Range;

use serde::Serialize;

use crate::error::{Error, Result};

use super::plan::Plan;
use super::Gpu;

/// How the times of a profile were measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimingMethod {
    /// GPU timestamps around each dispatch inside one compute pass.
    TimestampsInsidePasses,
    /// GPU timestamps of one compute pass per dispatch.
    TimestampsPerPass,
    /// Host wall-clock around a submit and a queue wait per dispatch: includes submit and
    /// driver overhead, so it overstates short dispatches.
    WallClock,
}

impl TimingMethod {
    pub fn describe(self) -> &'static str {
        match self {
            TimingMethod::TimestampsInsidePasses => "GPU timestamps around each dispatch (one pass)",
            TimingMethod::TimestampsPerPass => "GPU timestamps of one pass per dispatch",
            TimingMethod::WallClock => "WALL-CLOCK per dispatch (no timestamp queries: includes submit and wait overhead)",
        }
    }
}

/// One dispatch of a profiled step.
#[derive(Clone, Debug, Serialize)]
pub struct DispatchTime {
    /// `layer/kernel.entry`, e.g. `conv_layer1.0/conv3d.forward`.
    pub label: String,
    /// Start relative to the step's first dispatch, in ns.
    pub start_ns: u64,
    pub ns: u64,
    /// The op's analytic cost (0: not known).
    pub flops: u64,
    pub bytes: u64,
}

/// Every dispatch of one replay of a plan, in order, and the replay's host wall time.
#[derive(Clone, Debug, Serialize)]
pub struct StepProfile {
    pub method: TimingMethod,
    pub dispatches: Vec<DispatchTime>,
    /// From just before encoding until the results were read back.
    pub wall_ns: u64,
}

impl StepProfile {
    /// The sum of the dispatch times.
    pub fn gpu_ns(&self) -> u64 {
        self.dispatches.iter().map(|d| d.ns).sum()
    }
}

/// A plan's query set (two queries per dispatch) and the buffers it resolves into.
pub(crate) struct Timestamps {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    count: u32,
}

impl Gpu {
    /// How [`Gpu::submit_profiled`] measures on this adapter.
    pub fn timing_method(&self) -> TimingMethod {
        if self.info.timestamp_query_inside_passes && self.info.timestamp_query {
            TimingMethod::TimestampsInsidePasses
        } else if self.info.timestamp_query {
            TimingMethod::TimestampsPerPass
        } else {
            TimingMethod::WallClock
        }
    }

    /// Encodes the active steps `range` of `plan`; with `ts`, timestamps around each dispatch
    /// and their resolve into the readback buffer.
    pub(crate) fn encode(&self, plan: &Plan, range: Range<usize>, ts: Option<(&Timestamps, TimingMethod)>) -> wgpu::CommandBuffer {
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("plan") });
        let steps: Vec<_> = plan.active().skip(range.start).take(range.len()).collect();
        let dispatch = |pass: &mut wgpu::ComputePass<'_>, s: &super::plan::Step| {
            pass.set_pipeline(&s.pipeline);
            pass.set_bind_group(0, &s.bind_group, &[]);
            pass.dispatch_workgroups(s.grid.0, s.grid.1, 1);
        };
        match ts {
            Some((t, TimingMethod::TimestampsPerPass)) => {
                for (i, s) in steps.iter().enumerate() {
                    let writes = wgpu::ComputePassTimestampWrites {
                        query_set: &t.set,
                        beginning_of_pass_write_index: Some(2 * i as u32),
                        end_of_pass_write_index: Some(2 * i as u32 + 1),
                    };
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(&s.label),
                        timestamp_writes: Some(writes),
                    });
                    dispatch(&mut pass, s);
                }
            }
            _ => {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("plan"), timestamp_writes: None });
                for (i, s) in steps.iter().enumerate() {
                    if let Some((t, _)) = ts {
                        pass.write_timestamp(&t.set, 2 * i as u32);
                    }
                    dispatch(&mut pass, s);
                    if let Some((t, _)) = ts {
                        pass.write_timestamp(&t.set, 2 * i as u32 + 1);
                    }
                }
            }
        }
        if let Some((t, _)) = ts {
            enc.resolve_query_set(&t.set, 0..t.count, &t.resolve, 0);
            enc.copy_buffer_to_buffer(&t.resolve, 0, &t.readback, 0, t.count as u64 * 8);
        }
        enc.finish()
    }

    /// Encodes the active steps `range` of `plan` and submits them, inside error scopes. An
    /// error names the dispatch that caused it where one did (see [`Gpu::culprit`]).
    pub(crate) fn submit_encoded(&self, plan: &Plan, range: Range<usize>, ts: Option<(&Timestamps, TimingMethod)>) -> Result<()> {
        self.check_lost("submitting a plan")?;
        let n = range.len();
        let submitted = self.scoped(String::new, || {
            let commands = self.encode(plan, range.clone(), ts);
            self.queue.submit([commands])
        });
        match submitted {
            Ok(_) => Ok(()),
            Err(Error::Gpu { message, .. }) => {
                let context = match self.culprit(plan, range) {
                    Some((i, s)) => format!("dispatch {} of {n}, {} ({})", i + 1, s.label, s.kernel),
                    None => format!("submitting a plan of {n} dispatches"),
                };
                Err(Error::Gpu { context, message })
            }
            Err(e) => Err(e),
        }
    }

    /// The first active step of `range` that is invalid when encoded alone, with its index in
    /// the range: what a failed submit reports. Only run on that error path.
    fn culprit<'p>(&self, plan: &'p Plan, range: Range<usize>) -> Option<(usize, &'p super::plan::Step)> {
        let at = range.clone().find(|&at| self.scoped(String::new, || self.encode(plan, at..at + 1, None)).is_err())?;
        plan.active().nth(at).map(|s| (at - range.start, s))
    }

    fn timestamps(&self, dispatches: usize) -> Result<Timestamps> {
        let count = 2 * dispatches;
        if count > wgpu::QUERY_SET_MAX_QUERIES as usize {
            return Err(Error::Gpu {
                context: format!("profiling a plan of {dispatches} dispatches"),
                message: format!("it needs {count} timestamp queries, above wgpu's limit of {} per query set", wgpu::QUERY_SET_MAX_QUERIES),
            });
        }
        let count = count as u32;
        self.scoped(
            || format!("creating a query set of {count} timestamps"),
            || {
                let size = count as u64 * 8;
                Timestamps {
                    set: self.device.create_query_set(&wgpu::QuerySetDescriptor {
                        label: Some("profiler"),
                        ty: wgpu::QueryType::Timestamp,
                        count,
                    }),
                    resolve: self.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("profiler resolve"),
                        size,
                        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                        mapped_at_creation: false,
                    }),
                    readback: self.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("profiler readback"),
                        size,
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    }),
                    count,
                }
            },
        )
    }

    /// Replays `plan` once like [`Gpu::run`] and returns the time of every dispatch, in order.
    /// Work submitted earlier is waited for first, so it does not count.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn submit_profiled(&self, plan: &Plan) -> Result<StepProfile> {
        self.submit_profiled_as(plan, self.timing_method())
    }

    /// [`Gpu::submit_profiled`] with a chosen method (e.g. to compare them, or to test the
    /// fallbacks on an adapter that has every feature); an error if the adapter lacks it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn submit_profiled_as(&self, plan: &Plan, method: TimingMethod) -> Result<StepProfile> {
        let supported = match method {
            TimingMethod::TimestampsInsidePasses => self.info.timestamp_query && self.info.timestamp_query_inside_passes,
            TimingMethod::TimestampsPerPass => self.info.timestamp_query,
            TimingMethod::WallClock => true,
        };
        if !supported {
            return Err(Error::Gpu {
                context: "profiling a plan".into(),
                message: format!("this adapter cannot time dispatches with {method:?} (it lacks the timestamp-query feature)"),
            });
        }
        self.wait()?;
        let n = plan.active().count();
        let started = std::time::Instant::now();
        let mut spans: Vec<(u64, u64)> = Vec::with_capacity(n);
        if method == TimingMethod::WallClock {
            for i in 0..n {
                let t = std::time::Instant::now();
                self.submit_encoded(plan, i..i + 1, None)?;
                self.wait()?;
                spans.push(((t - started).as_nanos() as u64, t.elapsed().as_nanos() as u64));
            }
        } else if n > 0 {
            let ts = self.submit_timestamped(plan, method)?;
            spans = self.spans(&pollster::block_on(self.read_timestamps_async(ts))?, n);
        }
        Ok(profile_of(plan, method, spans, started.elapsed().as_nanos() as u64))
    }

    /// [`Gpu::submit_profiled`] as a future, how a browser profiles a step: GPU timestamps
    /// only (a page cannot wait for the queue between dispatches), so an adapter without
    /// timestamp queries is an error. The wall time includes the wait for earlier work.
    pub async fn submit_profiled_async(&self, plan: &Plan) -> Result<StepProfile> {
        let method = self.timing_method();
        if method == TimingMethod::WallClock {
            return Err(Error::Gpu {
                context: "profiling a plan".into(),
                message: "this adapter offers no timestamp queries (the timestamp-query feature), so dispatches cannot be timed here".into(),
            });
        }
        let n = plan.active().count();
        let started = crate::Instant::now();
        let mut spans = vec![];
        if n > 0 {
            let ts = self.submit_timestamped(plan, method)?;
            spans = self.spans(&self.read_timestamps_async(ts).await?, n);
        }
        Ok(profile_of(plan, method, spans, started.elapsed().as_nanos() as u64))
    }

    /// Submits every active step of `plan` with timestamps around each (the plan's query set,
    /// made on its first profiled replay) and their resolve into the readback buffer.
    fn submit_timestamped<'p>(&self, plan: &'p Plan, method: TimingMethod) -> Result<&'p Timestamps> {
        let n = plan.active().count();
        if plan.timestamps.get().is_none() {
            let _ = plan.timestamps.set(self.timestamps(n)?);
        }
        let ts = plan.timestamps.get().expect("set just above");
        self.submit_encoded(plan, 0..n, Some((ts, method)))?;
        Ok(ts)
    }

    /// (start relative to the first dispatch, duration) in ns of each of `n` dispatches.
    fn spans(&self, ticks: &[u64], n: usize) -> Vec<(u64, u64)> {
        let period = self.queue.get_timestamp_period() as f64;
        let ns = |t: u64| (t as f64 * period).round() as u64;
        let base = ticks[0];
        (0..n)
            .map(|i| {
                let (a, b) = (ticks[2 * i], ticks[2 * i + 1]);
                (ns(a.wrapping_sub(base)), ns(b.wrapping_sub(a)))
            })
            .collect()
    }

    async fn read_timestamps_async(&self, ts: &Timestamps) -> Result<Vec<u64>> {
        Ok(bytemuck::pod_collect_to_vec(&self.map_read(&ts.readback, "profiler readback").await?))
    }
}

/// The profile of one replay of `plan` from its dispatches' spans.
fn profile_of(plan: &Plan, method: TimingMethod, spans: Vec<(u64, u64)>, wall_ns: u64) -> StepProfile {
    let dispatches = plan
        .active()
        .zip(spans)
        .map(|(s, (start_ns, ns))| DispatchTime { label: s.label.clone(), start_ns, ns, flops: s.flops, bytes: s.bytes })
        .collect();
    StepProfile { method, dispatches, wall_ns }
}
