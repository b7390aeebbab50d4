//! The economy page's charts: line charts rendered on the server as SVG by `plotters` (its SVG
//! backend: no font files, no browser script), from series the page's handler takes out of an
//! [`mesh::audit::economy::EconomyReport`].
//!
//! Owns only drawing: it never reads a log, never computes a figure of the economy (the report
//! does), and never draws geometry by hand (every line, axis and legend is plotters').

use plotters::prelude::*;

/// A chart's size in pixels (the SVG's width and height; the page scales it down on a
/// narrow screen).
pub const CHART_WIDTH_PX: u32 = 900;
pub const CHART_HEIGHT_PX: u32 = 280;
/// The most series one chart draws (the rest are summed into "other", so that a legend
/// stays readable and an SVG small).
pub const MAX_SERIES_PER_CHART: usize = 12;
/// The most points one series draws; longer series keep every n-th point and their last.
pub const MAX_POINTS_PER_SERIES: usize = 2_000;

/// One line of a chart: its name (in the legend) and its points (x: a tick, y: a figure).
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(u64, f64)>,
}

/// A chart plotters could not draw (a bug of ours or of a figure out of range).
#[derive(Debug, thiserror::Error)]
#[error("drawing chart {title:?}: {reason}")]
pub struct ChartError {
    pub title: String,
    pub reason: String,
}

/// `series` as at most [`MAX_SERIES_PER_CHART`] lines: the largest (by their sum) kept by
/// name, the others summed point by point into one named "other".
pub fn at_most_series(mut series: Vec<Series>) -> Vec<Series> {
    if series.len() <= MAX_SERIES_PER_CHART {
        return series;
    }
    let weight = |s: &Series| s.points.iter().map(|p| p.1.abs()).sum::<f64>();
    series.sort_by(|a, b| weight(b).total_cmp(&weight(a)));
    let rest = series.split_off(MAX_SERIES_PER_CHART - 1);
    let mut other = std::collections::BTreeMap::<u64, f64>::new();
    for s in &rest {
        for &(x, y) in &s.points {
            *other.entry(x).or_default() += y;
        }
    }
    series.push(Series {
        name: format!("other ({})", rest.len()),
        points: other.into_iter().collect(),
    });
    assert!(series.len() <= MAX_SERIES_PER_CHART);
    series
}

/// Every n-th point of `points` and the last, at most [`MAX_POINTS_PER_SERIES`].
fn thinned(points: &[(u64, f64)]) -> Vec<(u64, f64)> {
    if points.len() <= MAX_POINTS_PER_SERIES {
        return points.to_vec();
    }
    let step = points.len().div_ceil(MAX_POINTS_PER_SERIES - 1);
    let mut out: Vec<(u64, f64)> = points.iter().step_by(step).copied().collect();
    if out.last() != points.last() {
        out.push(*points.last().expect("a long series has a last point"));
    }
    assert!(out.len() <= MAX_POINTS_PER_SERIES);
    out
}

/// A line chart of `series` over ticks, as an SVG document (`<svg ...>...</svg>`). With no
/// point at all it draws empty axes and says so in its caption.
pub fn line_chart(title: &str, y_label: &str, series: &[Series]) -> Result<String, ChartError> {
    assert!(
        series.len() <= MAX_SERIES_PER_CHART,
        "{title}: too many series"
    );
    let fail = |e: &dyn std::fmt::Display| ChartError {
        title: title.to_string(),
        reason: e.to_string(),
    };
    let lines: Vec<(String, Vec<(u64, f64)>)> = series
        .iter()
        .map(|s| (s.name.clone(), thinned(&s.points)))
        .collect();
    let xs = lines.iter().flat_map(|l| l.1.iter().map(|p| p.0));
    let ys = lines.iter().flat_map(|l| l.1.iter().map(|p| p.1));
    let (x0, x1) = (xs.clone().min().unwrap_or(0), xs.max().unwrap_or(1));
    let x1 = x1.max(x0 + 1);
    let (y0, y1) = ys.fold((0.0f64, 0.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let pad = ((y1 - y0) * 0.05).max(1.0);
    let (y0, y1) = (if y0 < 0.0 { y0 - pad } else { 0.0 }, y1 + pad);
    let caption = if lines.iter().all(|l| l.1.is_empty()) {
        format!("{title} (nothing in this window)")
    } else {
        title.to_string()
    };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (CHART_WIDTH_PX, CHART_HEIGHT_PX))
            .into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc("tick")
            .y_desc(y_label)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| fail(&e))?;
        for (i, (name, points)) in lines.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    colour.stroke_width(2),
                ))
                .map_err(|e| fail(&e))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                });
        }
        if !lines.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(|e| fail(&e))?;
        }
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, points: &[(u64, f64)]) -> Series {
        Series {
            name: name.into(),
            points: points.to_vec(),
        }
    }

    #[test]
    fn a_chart_is_one_svg_naming_each_series() {
        let svg = line_chart(
            "credits",
            "cr",
            &[s("fuel", &[(0, 1.0), (600, 5.0)]), s("tax", &[(0, 2.0)])],
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.trim_end().ends_with("</svg>"));
        let labels: Vec<&str> = svg
            .split("<text")
            .skip(1)
            .filter_map(|t| {
                t.split_once('>')
                    .and_then(|(_, rest)| rest.split_once("</text>"))
            })
            .map(|(text, _)| text.trim())
            .collect();
        assert!(
            labels.contains(&"fuel") && labels.contains(&"tax"),
            "{labels:?}"
        );
    }

    #[test]
    fn an_empty_chart_says_so() {
        let svg = line_chart("prices", "cr", &[]).unwrap();
        assert!(svg.contains("nothing in this window"));
    }

    #[test]
    fn many_series_fold_into_other_keeping_the_largest_and_the_sum() {
        let many: Vec<Series> = (0..20)
            .map(|i| s(&format!("s{i}"), &[(0, i as f64), (1, 1.0)]))
            .collect();
        let total: f64 = many.iter().flat_map(|s| &s.points).map(|p| p.1).sum();
        let kept = at_most_series(many);
        assert_eq!(kept.len(), MAX_SERIES_PER_CHART);
        assert!(kept.iter().any(|s| s.name == "s19"));
        assert!(kept.last().unwrap().name.starts_with("other"));
        let after: f64 = kept.iter().flat_map(|s| &s.points).map(|p| p.1).sum();
        assert_eq!(total, after);
    }

    #[test]
    fn long_series_are_thinned_keeping_their_last_point() {
        let points: Vec<(u64, f64)> = (0..10_000).map(|i| (i, i as f64)).collect();
        let thin = thinned(&points);
        assert!(thin.len() <= MAX_POINTS_PER_SERIES);
        assert_eq!(thin.last(), points.last());
    }
}
