//! `curves.png` and `curves.svg`: the article's two figures side by side — loss per epoch and
//! accuracy per epoch, each with a train and a test curve.
//!
//! Text is drawn with DejaVu Sans bundled in `assets/` (plotters' ab_glyph backend), so the
//! plot needs no system font or fontconfig and looks the same everywhere. Values that are not
//! finite (a diverged loss, a missing test set) are skipped; the curve breaks there.

use std::ops::Range;
use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::atomic::{write_atomic, write_atomic_with};
use crate::metrics::EpochMetrics;
use crate::{Error, Result};

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
/// The family name the font is registered under; also what the SVG's `font-family` says, so a
/// browser without DejaVu falls back to its own sans-serif.
const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (1400, 560);
// matplotlib's first two colours, as in the article's figures.
const TRAIN: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const TEST: RGBColor = RGBColor(0xff, 0x7f, 0x0e);

/// Draws the curves of `rows` into `png` and `svg` (each replaced atomically).
pub fn write_curves(rows: &[EpochMetrics], title: &str, png: &Path, svg: &Path) -> Result<()> {
    register_font();
    write_atomic_with(png, |tmp| {
        let root = BitMapBackend::new(tmp, SIZE).into_drawing_area();
        draw(&root, rows, title).map_err(|message| Error::Plot { path: png.to_path_buf(), message })?;
        root.present().map_err(|e| Error::Plot { path: png.to_path_buf(), message: e.to_string() })
    })?;

    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        draw(&root, rows, title).map_err(|message| Error::Plot { path: svg.to_path_buf(), message })?;
        root.present().map_err(|e| Error::Plot { path: svg.to_path_buf(), message: e.to_string() })?;
    }
    write_atomic(svg, text.as_bytes())
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the bundled assets/DejaVuSans.ttf is not a valid font"));
    });
}

/// One panel's data: a name for the y axis, the (epoch, value) pairs of each curve, and
/// where the legend goes (the corner the curves usually leave empty).
struct Panel {
    y_title: &'static str,
    train: Vec<(i32, f64)>,
    test: Vec<(i32, f64)>,
    legend: SeriesLabelPosition,
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, rows: &[EpochMetrics], title: &str) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let root = root.margin(12, 0, 0, 0).titled(title, (FAMILY, 26)).map_err(err)?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    let series = |f: fn(&EpochMetrics) -> f64| rows.iter().map(|r| (r.epoch as i32, f(r))).collect::<Vec<_>>();
    let loss = Panel {
        y_title: "loss",
        train: series(|r| r.train_loss),
        test: series(|r| r.test_loss),
        legend: SeriesLabelPosition::UpperRight,
    };
    let acc = Panel {
        y_title: "accuracy",
        train: series(|r| r.train_acc),
        test: series(|r| r.test_acc),
        legend: SeriesLabelPosition::LowerRight,
    };
    draw_panel(&left, &loss).map_err(err)?;
    draw_panel(&right, &acc).map_err(err)?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let epochs = panel.train.iter().map(|p| p.0);
    let values = panel.train.iter().chain(&panel.test).map(|p| p.1).filter(|v| v.is_finite());
    let (x_range, y_range) = ranges(epochs, values);
    let ticks = epoch_ticks(&x_range);

    let mut chart = ChartBuilder::on(area)
        .caption(format!("{} per epoch", panel.y_title), (FAMILY, 20))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range.with_key_points(ticks), y_range)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(panel.y_title)
        .axis_desc_style((FAMILY, 18))
        .label_style((FAMILY, 14))
        .x_labels(10)
        .y_labels(8)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;

    for (name, color, points) in [("train", TRAIN, &panel.train), ("test", TEST, &panel.test)] {
        // The legend entry is drawn once, from an empty series, so that it is there even when
        // every value is NaN and is not repeated for each broken-off segment.
        chart
            .draw_series(LineSeries::new(std::iter::empty::<(i32, f64)>(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], color.stroke_width(2)));
        for segment in points.split(|p| !p.1.is_finite()).filter(|s| !s.is_empty()) {
            chart.draw_series(LineSeries::new(segment.iter().copied(), color.stroke_width(2)))?;
        }
        // Markers make a single epoch (or an isolated point between NaNs) visible; smaller
        // when there are many, so that they do not thicken the line into a rope.
        let radius = if points.len() <= 20 { 4 } else { 2 };
        chart.draw_series(
            points.iter().filter(|p| p.1.is_finite()).map(|&p| Circle::new(p, radius, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(panel.legend.clone())
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FAMILY, 16))
        .draw()?;
    Ok(())
}

/// Axis ranges that hold every point with a little room (one epoch either side, so the end
/// markers are not cut by the frame), and never collapse to zero width (one epoch, a constant
/// curve) or go non-finite (no finite value at all).
fn ranges(epochs: impl Iterator<Item = i32>, values: impl Iterator<Item = f64>) -> (Range<i32>, Range<f64>) {
    let (lo, hi) = epochs.fold((i32::MAX, i32::MIN), |(lo, hi), e| (lo.min(e), hi.max(e)));
    let x = if lo > hi { 0..2 } else { lo - 1..hi + 1 };
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let y = if lo > hi {
        0.0..1.0
    } else {
        let pad = if hi > lo { (hi - lo) * 0.05 } else { lo.abs().max(1.0) * 0.05 };
        lo - pad..hi + pad
    };
    (x, y)
}

/// The x-axis labels: epochs every 1, 2, 5, 10, 20, 50, ... so that there are at most 10,
/// and none on the padding epochs outside the data.
fn epoch_ticks(x: &Range<i32>) -> Vec<i32> {
    let (first, last) = (x.start + 1, x.end - 1);
    let mut step = 1;
    for k in 0.. {
        step = [1, 2, 5][k % 3] * 10i32.pow(k as u32 / 3);
        if last.div_euclid(step) - (first + step - 1).div_euclid(step) < 10 {
            break;
        }
    }
    (first..=last).filter(|e| e.rem_euclid(step) == 0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Vec<EpochMetrics> {
        (1..=n)
            .map(|e| {
                let t = e as f64;
                EpochMetrics {
                    epoch: e,
                    train_loss: 2.3 * (-t / 8.0).exp() + 0.05,
                    train_acc: 1.0 - 0.9 * (-t / 6.0).exp(),
                    test_loss: 2.3 * (-t / 9.0).exp() + 0.25,
                    test_acc: 0.95 - 0.85 * (-t / 7.0).exp(),
                    seconds: 4.0,
                    samples_per_s: 2500.0,
                }
            })
            .collect()
    }

    fn plot(rows: &[EpochMetrics], dir: &Path, stem: &str) -> (Vec<u8>, String) {
        let (png, svg) = (dir.join(format!("{stem}.png")), dir.join(format!("{stem}.svg")));
        write_curves(rows, "cnn3d: seed model", &png, &svg).unwrap();
        (std::fs::read(png).unwrap(), std::fs::read_to_string(svg).unwrap())
    }

    #[test]
    fn writes_png_and_svg_with_labels() {
        let dir = tempfile::tempdir().unwrap();
        let (png, svg) = plot(&rows(45), dir.path(), "curves");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        for text in ["epoch", "loss", "accuracy", "train", "test", "cnn3d: seed model"] {
            assert!(svg.contains(&format!(">{text}<")) || svg.contains(text), "svg lacks {text:?}");
        }
        // Only the two artifacts, no temporary files.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        if let Ok(keep) = std::env::var("CNN3D_KEEP_PLOTS") {
            // For looking at the result by eye: CNN3D_KEEP_PLOTS=/tmp cargo test --lib plot
            let keep = Path::new(&keep);
            plot(&rows(45), keep, "curves-45");
            plot(&rows(1), keep, "curves-1");
            let mut bad = rows(12);
            bad[3].test_loss = f64::NAN;
            bad[4].train_loss = f64::INFINITY;
            bad[7].test_acc = f64::NAN;
            plot(&bad, keep, "curves-nan");
        }
    }

    #[test]
    fn single_epoch_nan_inf_and_empty_do_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        plot(&rows(1), dir.path(), "one");
        plot(&[], dir.path(), "none");
        let mut bad = rows(6);
        bad[2].test_loss = f64::NAN;
        bad[3].train_loss = f64::INFINITY;
        bad[0].train_acc = f64::NEG_INFINITY;
        plot(&bad, dir.path(), "bad");
        let all_nan: Vec<_> = rows(3)
            .into_iter()
            .map(|r| EpochMetrics { train_loss: f64::NAN, test_loss: f64::NAN, train_acc: f64::NAN, test_acc: f64::NAN, ..r })
            .collect();
        plot(&all_nan, dir.path(), "nan");
        let flat: Vec<_> = rows(4).into_iter().map(|r| EpochMetrics { test_acc: 0.0, train_acc: 0.0, ..r }).collect();
        plot(&flat, dir.path(), "flat");
    }

    #[test]
    fn ranges_never_collapse() {
        assert_eq!(ranges([3].into_iter(), [0.5].into_iter()), (2..4, 0.45..0.55));
        assert_eq!(ranges(std::iter::empty(), std::iter::empty()), (0..2, 0.0..1.0));
        let (x, y) = ranges([1, 5].into_iter(), [0.0, 0.0].into_iter());
        assert_eq!(x, 0..6);
        assert!(y.start < y.end);
    }

    #[test]
    fn epoch_ticks_are_whole_and_few() {
        assert_eq!(epoch_ticks(&(0..2)), [1]);
        assert_eq!(epoch_ticks(&(0..6)), [1, 2, 3, 4, 5]);
        assert_eq!(epoch_ticks(&(0..46)), [5, 10, 15, 20, 25, 30, 35, 40, 45]);
        assert_eq!(epoch_ticks(&(0..13)), [2, 4, 6, 8, 10, 12]);
        assert_eq!(epoch_ticks(&(9..12)), [10, 11]);
        let many = epoch_ticks(&(-20..100_000));
        assert!(!many.is_empty() && many.len() <= 10, "{many:?}");
    }

    #[test]
    fn unwritable_path_is_an_error() {
        let err = write_curves(&rows(2), "t", Path::new("/no/such/dir/c.png"), Path::new("/no/such/dir/c.svg"));
        assert!(err.unwrap_err().to_string().contains("/no/such/dir"));
    }
}
