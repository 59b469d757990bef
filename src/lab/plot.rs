//! The lab's figure: distribution time against the number of leechers, as SVG.
//!
//! The classic textbook picture: x is N, y is the time until every leecher has the file.
//! For each mode that has runs, the measured times are drawn as filled dots (one per run)
//! joined by a solid line through the mean time at each N; both modes' bounds
//! ([`super::bound`]) are drawn as thinner dashed lines through every N from 1 to the largest
//! N measured (a short dash at N = 1 when that is the only N), so the eye compares a measured
//! curve with its own bound and the two modes with each other. A legend names the four
//! series; the title line carries F, u_s, u, d and the piece length.
//!
//! Drawn with plotters' SVG backend into a `String`; nothing is written anywhere. Text is
//! emitted as `<text>` elements (plotters measures it with a built-in estimate, no fonts are
//! loaded), so the output depends only on the [`Lab`]: the same lab gives byte-for-byte the
//! same SVG.

use super::report::caption;
use super::{bound, Lab, Mode};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::BTreeMap;

/// Width of the figure, in pixels.
pub const WIDTH: u32 = 800;
/// Height of the figure, in pixels.
pub const HEIGHT: u32 = 500;

/// The colour of client-server's series (measured and bound).
pub const CS_COLOR: RGBColor = RGBColor(0xC8, 0x3C, 0x28);
/// The colour of P2P's series (measured and bound).
pub const P2P_COLOR: RGBColor = RGBColor(0x1E, 0x64, 0xC8);

/// A series of (N, seconds) points.
type Curve = Vec<(i32, f64)>;

/// Radius of a measured point's dot, in pixels.
const DOT: i32 = 4;

/// The colour a mode is drawn in.
pub fn color(mode: Mode) -> RGBColor {
    match mode {
        Mode::ClientServer => CS_COLOR,
        Mode::P2p => P2P_COLOR,
    }
}

/// How the legend names a mode.
pub fn label(mode: Mode) -> &'static str {
    match mode {
        Mode::ClientServer => "client-server",
        Mode::P2p => "P2P",
    }
}

/// The figure as a complete SVG document of [`WIDTH`] × [`HEIGHT`] pixels.
///
/// Legend entries are `"<label> measured"` for each mode with runs and `"<label> bound"` for
/// both modes, with [`label`] giving `client-server` and `P2P`. Each run is one filled circle
/// of its mode's [`color`], and each measured legend entry has one more. Runs whose time is not
/// finite are left out. An error if the lab has no runs, or if plotters fails (which it
/// should not, drawing into memory).
pub fn svg(lab: &Lab) -> Result<String, String> {
    if lab.results.is_empty() {
        return Err("no results to plot".into());
    }
    let max_n = lab.max_n().max(1);
    let bounds: Vec<(Mode, Curve)> = Mode::ALL
        .into_iter()
        .map(|m| {
            let curve = (1..=max_n)
                .map(|n| (n as i32, bound(m, n, &lab.rates)))
                .filter(|(_, y)| y.is_finite())
                .collect();
            (m, curve)
        })
        .collect();
    let measured: Vec<(Mode, Curve, Curve)> = lab
        .modes()
        .into_iter()
        .map(|m| {
            let dots: Curve = lab
                .results
                .iter()
                .filter(|r| r.mode == m && r.distribution_time.is_finite())
                .map(|r| (r.n as i32, r.distribution_time))
                .collect();
            let mut by_n: BTreeMap<i32, (f64, u32)> = BTreeMap::new();
            for &(n, t) in &dots {
                let e = by_n.entry(n).or_insert((0.0, 0));
                e.0 += t;
                e.1 += 1;
            }
            let means = by_n
                .into_iter()
                .map(|(n, (sum, k))| (n, sum / f64::from(k)))
                .collect();
            (m, dots, means)
        })
        .collect();

    let top = bounds
        .iter()
        .flat_map(|(_, c)| c.iter())
        .chain(measured.iter().flat_map(|(_, d, _)| d.iter()))
        .map(|&(_, y)| y)
        .fold(0.0, f64::max);
    let y_max = if top > 0.0 { top * 1.08 } else { 1.0 };

    let mut buf = String::new();
    draw(lab, max_n, y_max, &bounds, &measured, &mut buf).map_err(|e| format!("plot: {e}"))?;
    Ok(buf)
}

/// Draws the figure into `buf`; split from [`svg`] so every plotters error has one type.
fn draw(
    lab: &Lab,
    max_n: usize,
    y_max: f64,
    bounds: &[(Mode, Curve)],
    measured: &[(Mode, Curve, Curve)],
    buf: &mut String,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(buf, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Distribution time against number of leechers",
        ("sans-serif", 24).into_font().color(&BLACK),
    )?;
    let (head, body) = root.split_vertically(26);
    head.draw_text(
        &caption(lab),
        &("sans-serif", 17)
            .into_font()
            .color(&RGBColor(0x40, 0x40, 0x40))
            .pos(Pos::new(HPos::Center, VPos::Top)),
        (WIDTH as i32 / 2, 0),
    )?;

    let mut chart = ChartBuilder::on(&body)
        .margin_left(10)
        .margin_right(24)
        .margin_bottom(8)
        .margin_top(4)
        .x_label_area_size(46)
        .y_label_area_size(64)
        .build_cartesian_2d(0i32..(max_n as i32 + 1), 0f64..y_max)?;
    let decimals = if y_max >= 10.0 { 0 } else { 1 };
    let y_fmt = move |v: &f64| format!("{v:.decimals$}");
    chart
        .configure_mesh()
        .x_desc("N (number of leechers)")
        .y_desc("distribution time (s)")
        .x_labels(12)
        .y_labels(8)
        .y_label_formatter(&y_fmt)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .max_light_lines(1)
        .light_line_style(RGBColor(0xF0, 0xF0, 0xF0))
        .bold_line_style(RGBColor(0xDC, 0xDC, 0xDC))
        .draw()?;

    for (mode, curve) in bounds {
        let style = color(*mode).stroke_width(1);
        if curve.len() == 1 {
            // A line needs two points: with N = 1 alone, mark the bound with a short dash.
            chart.draw_series(curve.iter().map(|&p| {
                EmptyElement::at(p) + PathElement::new(vec![(-12, 0), (12, 0)], style)
            }))?;
        }
        chart
            .draw_series(DashedLineSeries::new(curve.iter().copied(), 7, 5, style))?
            .label(format!("{} bound", label(*mode)))
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(-2, 0), (5, 0)], style)
                    + PathElement::new(vec![(9, 0), (16, 0)], style)
            });
    }
    for (mode, dots, means) in measured {
        let c = color(*mode);
        chart
            .draw_series(LineSeries::new(means.iter().copied(), c.stroke_width(2)))?
            .label(format!("{} measured", label(*mode)))
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(-2, 0), (16, 0)], c.stroke_width(2))
                    + Circle::new((7, 0), DOT, c.filled())
            });
        chart.draw_series(dots.iter().map(|&p| Circle::new(p, DOT, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .margin(12)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(0xB0, 0xB0, 0xB0))
        .draw()?;
    root.present()?;
    Ok(())
}
