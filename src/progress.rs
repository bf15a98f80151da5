//! The per-epoch progress display of `cnn3d train`.
//!
//! On a terminal: a bar per epoch with the running loss, accuracy, samples/s and ETA, replaced
//! by one summary line when the epoch ends. Elsewhere (CI logs, pipes): plain lines, at most
//! one every [`LINE_INTERVAL`] within an epoch plus the summary line, so a log stays short and
//! has no control characters. `--quiet`: nothing. Everything goes to stderr, so that stdout
//! holds only results (`--json` puts the summary there as its last line).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::metrics::EpochMetrics;

/// How often a plain-lines display reports within an epoch.
pub const LINE_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// An animated bar (stderr is a terminal).
    Bar,
    /// Plain lines (stderr is a file or pipe).
    Lines,
    /// Nothing at all (`--quiet`).
    Quiet,
}

impl Mode {
    /// `Quiet` if asked, else a bar when stderr is a terminal and plain lines when it is not.
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

/// The display for a whole run; hands out one [`EpochProgress`] per epoch.
pub struct Progress {
    mode: Mode,
    epochs: usize,
    sink: Arc<Mutex<dyn Write + Send>>,
}

impl Progress {
    /// For a run of `epochs` epochs; the mode follows `quiet` and whether stderr is a terminal.
    pub fn new(quiet: bool, epochs: usize) -> Progress {
        Progress::with_mode(Mode::detect(quiet), epochs)
    }

    pub fn with_mode(mode: Mode, epochs: usize) -> Progress {
        Progress { mode, epochs, sink: Arc::new(Mutex::new(std::io::stderr())) }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Starts the display of epoch `epoch` (1-based) of `total_steps` optimizer steps, each of
    /// `samples_per_step` samples (the batch size). The epoch's clock starts now.
    pub fn epoch(&self, epoch: usize, total_steps: usize, samples_per_step: usize) -> EpochProgress {
        let prefix = epoch_label(epoch, self.epochs);
        let bar = (self.mode == Mode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total_steps as u64), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {pos}/{len} {msg} ETA {eta}")
                .expect("the template is a constant")
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(prefix.clone());
            bar
        });
        let now = Instant::now();
        EpochProgress {
            mode: self.mode,
            prefix,
            total_steps,
            samples_per_step,
            start: now,
            last_line: now,
            bar,
            sink: Arc::clone(&self.sink),
        }
    }

    /// Prints a line of the run's own (checkpoint written, resumed from ...), unless quiet.
    pub fn println(&self, line: &str) {
        if self.mode != Mode::Quiet {
            write_line(&self.sink, line);
        }
    }
}

/// The display of one epoch in progress.
pub struct EpochProgress {
    mode: Mode,
    prefix: String,
    total_steps: usize,
    samples_per_step: usize,
    start: Instant,
    last_line: Instant,
    bar: Option<ProgressBar>,
    sink: Arc<Mutex<dyn Write + Send>>,
}

impl EpochProgress {
    /// `step` steps of the epoch are done; `loss` and `acc` (a fraction) are the running means
    /// over those steps. Cheap enough to call at every metrics read-back.
    pub fn update(&mut self, step: usize, loss: f64, acc: f64) {
        let elapsed = self.start.elapsed();
        let rate = samples_per_s(step * self.samples_per_step, elapsed);
        match self.mode {
            Mode::Quiet => {}
            Mode::Bar => {
                if let Some(bar) = &self.bar {
                    // Message first: set_position may redraw, and should show the new numbers.
                    bar.set_message(format!("loss {loss:.4} acc {:.2}% {rate:.0} samples/s", acc * 100.0));
                    bar.set_position(step as u64);
                }
            }
            Mode::Lines => {
                // The last step is reported by `finish`'s summary line instead.
                if step < self.total_steps && self.last_line.elapsed() >= LINE_INTERVAL {
                    self.last_line = Instant::now();
                    let line = step_line(&self.prefix, step, self.total_steps, loss, acc, rate, eta(step, self.total_steps, elapsed));
                    write_line(&self.sink, &line);
                }
            }
        }
    }

    /// Ends the epoch's display with its summary line (train and test metrics, samples/s, time).
    pub fn finish(self, metrics: &EpochMetrics) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.mode != Mode::Quiet {
            write_line(&self.sink, &epoch_line(&self.prefix, metrics));
        }
    }
}

impl Drop for EpochProgress {
    // An epoch abandoned by an error must not leave a half-drawn bar over the error message.
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            if !bar.is_finished() {
                bar.finish_and_clear();
            }
        }
    }
}

fn write_line(sink: &Mutex<dyn Write + Send>, line: &str) {
    // A closed stderr must not stop training: the display is best effort.
    let mut out = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// "epoch  3/45", padded so that the columns of successive lines line up.
fn epoch_label(epoch: usize, epochs: usize) -> String {
    let width = epochs.max(epoch).to_string().len();
    format!("epoch {epoch:>width$}/{epochs}")
}

fn samples_per_s(samples: usize, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 {
        samples as f64 / s
    } else {
        0.0
    }
}

/// Time left if the remaining steps go as fast as the ones so far.
fn eta(step: usize, total: usize, elapsed: Duration) -> Duration {
    if step == 0 || step >= total {
        return Duration::ZERO;
    }
    elapsed.mul_f64((total - step) as f64 / step as f64)
}

/// A duration for people: `42 s`, `3 min 20 s`, `1 h 05 min`.
pub fn duration_text(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => {
            let minutes = (s + 30) / 60;
            format!("{} h {:02} min", minutes / 60, minutes % 60)
        }
    }
}

fn step_line(prefix: &str, step: usize, total: usize, loss: f64, acc: f64, rate: f64, eta: Duration) -> String {
    format!(
        "{prefix}  step {step}/{total}  loss {loss:.4}  acc {:.2}%  {rate:.0} samples/s  ETA {}s",
        acc * 100.0,
        eta.as_secs()
    )
}

fn epoch_line(prefix: &str, m: &EpochMetrics) -> String {
    format!(
        "{prefix}  train loss {:.4} acc {:.2}%  test loss {:.4} acc {:.2}%  {:.0} samples/s  {:.1}s",
        m.train_loss,
        m.train_acc * 100.0,
        m.test_loss,
        m.test_acc * 100.0,
        m.samples_per_s,
        m.seconds
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn captured(mode: Mode, epochs: usize) -> (Progress, Shared) {
        let buf = Shared::default();
        (Progress { mode, epochs, sink: Arc::new(Mutex::new(buf.clone())) }, buf)
    }

    fn metrics() -> EpochMetrics {
        EpochMetrics {
            epoch: 3,
            train_loss: 0.41234,
            train_acc: 0.873,
            test_loss: 0.39,
            test_acc: 0.881,
            seconds: 4.21,
            samples_per_s: 2345.4,
        }
    }

    #[test]
    fn lines_mode_prints_the_epoch_summary() {
        let (p, buf) = captured(Mode::Lines, 45);
        let mut e = p.epoch(3, 100, 100);
        e.update(1, 2.3, 0.1); // within LINE_INTERVAL of the start: no line
        e.update(100, 0.4, 0.87);
        e.finish(&metrics());
        p.println("wrote runs/x/model.safetensors");
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "epoch  3/45  train loss 0.4123 acc 87.30%  test loss 0.3900 acc 88.10%  2345 samples/s  4.2s\n\
             wrote runs/x/model.safetensors\n"
        );
    }

    #[test]
    fn quiet_prints_nothing() {
        let (p, buf) = captured(Mode::Quiet, 2);
        let mut e = p.epoch(1, 10, 5);
        for s in 1..=10 {
            e.update(s, f64::NAN, 0.5);
        }
        e.finish(&metrics());
        p.println("x");
        assert!(buf.0.lock().unwrap().is_empty());
    }

    #[test]
    fn bar_mode_and_odd_values_do_not_panic() {
        // The bar draws to stderr only when it is a terminal; the calls must work either way.
        let (p, _) = captured(Mode::Bar, 1);
        let mut e = p.epoch(1, 0, 0);
        e.update(0, f64::INFINITY, f64::NAN);
        e.update(5, 1.0, 1.0); // beyond total_steps
        drop(e); // abandoned without finish
        let e = p.epoch(1, 3, 100);
        e.finish(&EpochMetrics { test_loss: f64::NAN, ..metrics() });
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(epoch_label(3, 45), "epoch  3/45");
        assert_eq!(epoch_label(12, 9), "epoch 12/9");
        assert_eq!(eta(25, 100, Duration::from_secs(10)), Duration::from_secs(30));
        assert_eq!(eta(0, 100, Duration::from_secs(10)), Duration::ZERO);
        assert_eq!(duration_text(41.6), "42 s");
        assert_eq!(duration_text(200.0), "3 min 20 s");
        assert_eq!(duration_text(3600.0 + 5.0 * 60.0 + 10.0), "1 h 05 min");
        assert_eq!(duration_text(-1.0), "0 s");
        assert_eq!(duration_text(7199.0), "2 h 00 min");
        assert_eq!(samples_per_s(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(samples_per_s(500, Duration::ZERO), 0.0);
        assert_eq!(
            step_line("epoch 1/2", 25, 100, 1.5, 0.5, 999.6, Duration::from_secs(30)),
            "epoch 1/2  step 25/100  loss 1.5000  acc 50.00%  1000 samples/s  ETA 30s"
        );
    }
}
