//! `analytics --chart FILE.svg`: deliveries per day (scheduled and completed bars) over
//! the on-time rate per day (a line), drawn with plotters' SVG backend (no fonts or
//! bitmaps compiled in; the text is SVG text).

use crate::Report;
use plotters::prelude::*;
use std::path::Path;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 640;

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart: {0}")]
pub struct ChartError(String);

fn failed(e: impl std::fmt::Display) -> ChartError {
    ChartError(e.to_string())
}

/// Draws the report's days into an SVG file at `path`.
pub fn draw(report: &Report, path: &Path) -> Result<(), ChartError> {
    let days = &report.per_day;
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(failed)?;
    let (top, bottom) = root.split_vertically(HEIGHT * 3 / 5);
    let label = |i: &u32| {
        days.get(*i as usize)
            .map_or_else(String::new, |d| d.day.format("%m-%d").to_string())
    };
    let n = days.len().max(1) as u32;
    let most = days.iter().map(|d| d.scheduled).max().unwrap_or(0).max(1);

    let mut counts = ChartBuilder::on(&top)
        .caption("Deliveries per day", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d((0..n - 1).into_segmented(), 0..most + most / 10 + 1)
        .map_err(failed)?;
    counts
        .configure_mesh()
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => label(i),
            _ => String::new(),
        })
        .y_desc("deliveries")
        .draw()
        .map_err(failed)?;
    let scheduled = RGBColor(0x17, 0x69, 0xaa);
    let completed = RGBColor(0x2e, 0x8b, 0x57);
    counts
        .draw_series(
            Histogram::vertical(&counts)
                .style(scheduled.mix(0.45).filled())
                .margin(6)
                .data(
                    days.iter()
                        .enumerate()
                        .map(|(i, d)| (i as u32, d.scheduled)),
                ),
        )
        .map_err(failed)?
        .label("scheduled")
        .legend(move |(x, y)| {
            Rectangle::new([(x, y - 5), (x + 12, y + 5)], scheduled.mix(0.45).filled())
        });
    counts
        .draw_series(
            Histogram::vertical(&counts)
                .style(completed.filled())
                .margin(16)
                .data(
                    days.iter()
                        .enumerate()
                        .map(|(i, d)| (i as u32, d.completed)),
                ),
        )
        .map_err(failed)?
        .label("completed")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], completed.filled()));
    counts
        .configure_series_labels()
        .border_style(BLACK.mix(0.3))
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(failed)?;

    let mut rate = ChartBuilder::on(&bottom)
        .caption(
            "On-time rate (completed by the deadline)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0..n, 0f64..100f64)
        .map_err(failed)?;
    rate.configure_mesh()
        .x_labels(days.len().clamp(1, 12))
        .x_label_formatter(&|i| label(i))
        .y_desc("%")
        .draw()
        .map_err(failed)?;
    let points: Vec<(u32, f64)> = days
        .iter()
        .enumerate()
        .filter_map(|(i, d)| Some((i as u32, d.on_time_rate? * 100.0)))
        .collect();
    rate.draw_series(LineSeries::new(
        points.iter().copied(),
        scheduled.stroke_width(2),
    ))
    .map_err(failed)?;
    rate.draw_series(
        points
            .iter()
            .map(|p| Circle::new(*p, 4, scheduled.filled())),
    )
    .map_err(failed)?;
    root.present().map_err(failed)?;
    Ok(())
}
