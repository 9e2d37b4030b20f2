//! The two charts, as SVG through plotters' SVG backend. No font library is linked: without
//! plotters' `ttf` and `ab_glyph` features, text is measured by a rough estimate and written as
//! SVG `<text>` elements that the viewer renders with its own fonts.

use std::path::Path;

use anyhow::anyhow;
use mercado_lab::loading::Strategy;
use plotters::prelude::*;

use crate::{last10::Last10, loading::Loading};

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

type Series = (String, Vec<(f64, f64)>);

/// One log-log panel with a line and points per series.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x_max, mut y_min, mut y_max) = (1.0_f64, f64::MAX, 1.0_f64);
    let mut x_min = f64::MAX;
    for &(x, y) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if x_min == f64::MAX {
        x_min = 1.0;
        y_min = 1.0;
    }
    // Log axes need positive bounds with some room around the data.
    let x_range = (x_min.max(1e-3) / 1.5)..(x_max * 1.5);
    let y_range = (y_min.max(1e-3) / 2.0)..(y_max * 2.0);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range.log_scale(), y_range.log_scale())
        .map_err(|e| anyhow!("{e:?}"))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 13))
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    for (index, (name, data)) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        chart
            .draw_series(LineSeries::new(data.iter().copied(), color.stroke_width(2)))
            .map_err(|e| anyhow!("{e:?}"))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                data.iter()
                    .map(|&point| Circle::new(point, 4, color.filled())),
            )
            .map_err(|e| anyhow!("{e:?}"))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}

/// A tick label: whole numbers from 1 up, two decimals below (sub-millisecond times).
fn tick(value: f64) -> String {
    if value >= 1.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn strategy_name(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::Lazy => "lazy",
        Strategy::Joined => "joined",
        Strategy::SelectIn => "select-in",
    }
}

/// Statements and time against parent count, one line per strategy and child count.
pub(crate) fn loading(loading: &Loading, path: &Path) -> anyhow::Result<()> {
    let mut children: Vec<usize> = loading
        .cells
        .iter()
        .map(|c| c.children_per_parent)
        .collect();
    children.sort_unstable();
    children.dedup();
    let mut statements: Vec<Series> = Vec::new();
    let mut times: Vec<Series> = Vec::new();
    for &each in &children {
        for strategy in Strategy::ALL {
            let cells: Vec<_> = loading
                .cells
                .iter()
                .filter(|c| c.strategy == strategy && c.children_per_parent == each)
                .collect();
            let name = format!("{}, {each} children", strategy_name(strategy));
            statements.push((
                name.clone(),
                cells
                    .iter()
                    .map(|c| (c.parents as f64, c.statements as f64))
                    .collect(),
            ));
            times.push((
                name,
                cells
                    .iter()
                    .map(|c| (c.parents as f64, c.median_ms.max(1e-3)))
                    .collect(),
            ));
        }
    }
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    let (left, right) = root.split_horizontally(600);
    panel(
        &left,
        "Statements sent",
        "parent conversations",
        "statements",
        &statements,
    )?;
    panel(
        &right,
        "Median time",
        "parent conversations",
        "milliseconds",
        &times,
    )?;
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}

/// Last-10 throughput against concurrency: service, HTTP and pgbench.
pub(crate) fn throughput(last10: &Last10, path: &Path) -> anyhow::Result<()> {
    let series: Vec<Series> = vec![
        (
            "service".to_owned(),
            last10
                .service
                .iter()
                .map(|r| (f64::from(r.concurrency), r.throughput_per_s.max(1e-3)))
                .collect(),
        ),
        (
            "HTTP (wrk)".to_owned(),
            last10
                .http
                .iter()
                .map(|r| (f64::from(r.concurrency), r.throughput_per_s.max(1e-3)))
                .collect(),
        ),
        (
            "pgbench".to_owned(),
            last10
                .pgbench_last10
                .iter()
                .map(|r| (f64::from(r.clients), r.tps.max(1e-3)))
                .collect(),
        ),
    ];
    let root = SVGBackend::new(path, (800, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    panel(
        &root,
        "Last 10 messages: throughput",
        "concurrent tasks / clients",
        "requests per second",
        &series,
    )?;
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}
