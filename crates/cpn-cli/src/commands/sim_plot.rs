//! The PNG of `cpn sim gpu`: unallocated GPU % against arrived workload per policy, our
//! median over seeds (solid) beside the published median (dashed), as in Fig. 9(a) of the
//! FGD paper. Drawn with plotters' bitmap backend; the text uses an embedded ASCII subset
//! of DejaVu Sans (assets/, Bitstream Vera licence), so no system font library is needed.

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use std::path::Path;
use std::sync::OnceLock;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-ascii.ttf");

/// One policy's curves, indexed by arrived %.
pub struct Series {
    pub policy: String,
    pub ours: Vec<Option<f64>>,
    pub published: Option<Vec<Option<f64>>>,
}

/// The arrived % range drawn.
pub const X_FROM: usize = 75;
pub const X_TO: usize = 130;

fn font() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| register_font("sans-serif", FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(anyhow!("the embedded plot font does not load"))
    }
}

/// A fixed colour per policy, so every plot reads the same.
fn color(policy: &str, i: usize) -> RGBAColor {
    match policy {
        "random" => RGBColor(214, 39, 40),
        "dotprod" => RGBColor(44, 160, 44),
        "clustering" => RGBColor(184, 134, 11),
        "packing" => RGBColor(31, 119, 180),
        "bestfit" => RGBColor(255, 127, 14),
        "fgd" => RGBColor(148, 103, 189),
        _ => return Palette99::pick(i).to_rgba(),
    }
    .to_rgba()
}

fn points(curve: &[Option<f64>]) -> Vec<(f64, f64)> {
    (X_FROM..=X_TO.min(curve.len().saturating_sub(1)))
        .filter_map(|x| curve[x].map(|v| (x as f64, v)))
        .collect()
}

/// Draws `series` into a PNG at `path`.
pub fn plot(path: &Path, title: &str, series: &[Series]) -> Result<()> {
    font()?;
    let e = |e: &dyn std::fmt::Display| anyhow!("plot {}: {e}", path.display());
    let top = series
        .iter()
        .flat_map(|s| {
            points(&s.ours)
                .into_iter()
                .chain(s.published.as_deref().map(points).unwrap_or_default())
        })
        .map(|(_, y)| y)
        .fold(100.0 - X_FROM as f64, f64::max)
        * 1.05;
    let root = BitMapBackend::new(path, (1100, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(X_FROM as f64..X_TO as f64, 0f64..top)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("arrived workload (% of cluster GPU capacity)")
        .y_desc("unallocated GPU (%)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(|x| e(&x))?;
    let grey = BLACK.mix(0.45);
    chart
        .draw_series(LineSeries::new(
            (X_FROM..=100).map(|x| (x as f64, 100.0 - x as f64)),
            grey.stroke_width(1),
        ))
        .map_err(|x| e(&x))?
        .label("ideal: 100 - arrived")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], grey.stroke_width(1)));
    for (i, s) in series.iter().enumerate() {
        let color = color(&s.policy, i);
        chart
            .draw_series(LineSeries::new(points(&s.ours), color.stroke_width(3)))
            .map_err(|x| e(&x))?
            .label(format!("{} (cpn)", s.policy))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        if let Some(p) = &s.published {
            chart
                .draw_series(DashedLineSeries::new(
                    points(p),
                    8,
                    5,
                    color.stroke_width(2),
                ))
                .map_err(|x| e(&x))?
                .label(format!("{} (published)", s.policy))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 8, y)], color.stroke_width(2))
                });
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.5))
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
