//! Line charts as plain SVG: a few hundred bytes of markup per series, no
//! plotting or font dependency in the build. The x axis is logarithmic
//! (Service counts span 100 to 30k); the y axis linear from zero, or
//! logarithmic for quantities spanning decades (programming times).

use std::fmt::Write as _;

/// One line of a chart.
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Stroke colour.
    pub color: &'static str,
    /// Points (x, y); x > 0.
    pub points: Vec<(f64, f64)>,
}

/// A chart's texts and scale.
pub struct Chart<'a> {
    /// Title above the plot.
    pub title: &'a str,
    /// X axis label.
    pub x_label: &'a str,
    /// Y axis label.
    pub y_label: &'a str,
    /// Logarithmic y axis.
    pub log_y: bool,
}

/// Colours of the datapaths, the same in every chart.
#[must_use]
pub fn color(datapath: &str) -> &'static str {
    match datapath {
        "weir" => "#1b7837",
        "iptables" => "#b2182b",
        "nftables" => "#2166ac",
        "direct" => "#555555",
        _ => "#984ea3",
    }
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 160.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// Renders `series` as an SVG document.
#[must_use]
#[expect(clippy::too_many_lines, reason = "one SVG document, written top to bottom")]
pub fn render(chart: &Chart<'_>, series: &[Series]) -> String {
    let points = series.iter().flat_map(|s| s.points.iter().copied());
    let (mut x_min, mut x_max, mut y_min, mut y_max) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if x_min > x_max {
        (x_min, x_max, y_min, y_max) = (1.0, 10.0, 0.0, 1.0);
    }
    let (lx_min, lx_max) = (
        x_min.max(1e-9).log10(),
        x_max.max(1e-9).log10().max(x_min.max(1e-9).log10() + 1.0),
    );
    let (y_lo, y_hi) = if chart.log_y {
        let lo = y_min.max(1e-6).log10().floor();
        (lo, y_max.max(1e-6).log10().ceil().max(lo + 1.0))
    } else {
        (0.0, nice_ceiling(y_max.max(1e-9) * 1.1))
    };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |x: f64| LEFT + (x.max(1e-9).log10() - lx_min) / (lx_max - lx_min) * plot_w;
    let py = |y: f64| {
        let v = if chart.log_y { y.max(1e-6).log10() } else { y };
        TOP + plot_h - (v - y_lo) / (y_hi - y_lo) * plot_h
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        LEFT + plot_w / 2.0,
        escape(chart.title)
    );
    // Y grid and ticks.
    let y_ticks: Vec<f64> = if chart.log_y {
        let mut ticks = vec![10f64.powf(y_lo)];
        while ticks.last().is_some_and(|t| t.log10() < y_hi - 0.5) {
            ticks.push(ticks.last().copied().unwrap_or(1.0) * 10.0);
        }
        ticks
    } else {
        (0..=5).map(|k| y_hi * f64::from(k) / 5.0).collect()
    };
    for tick in y_ticks {
        let y = py(tick);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#dddddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            short(tick)
        );
    }
    // X ticks at the measured sizes.
    let mut xs: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    for x in xs {
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{TOP}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#eeeeee\"/>\
             <text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
            px(x),
            TOP + plot_h,
            TOP + plot_h + 18.0,
            short(x)
        );
    }
    let _ = writeln!(
        svg,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#333333\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n\
         <text x=\"18\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {:.1})\">{}</text>",
        LEFT + plot_w / 2.0,
        HEIGHT - 18.0,
        escape(chart.x_label),
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(chart.y_label)
    );
    for (k, s) in series.iter().enumerate() {
        let path: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2.5\"/>",
            path.join(" "),
            s.color
        );
        for &(x, y) in &s.points {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{}\"/>",
                px(x),
                py(y),
                s.color
            );
        }
        let ly = TOP + 12.0 + 22.0 * f64::from(u16::try_from(k).unwrap_or(0));
        let lx = LEFT + plot_w + 14.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{}\" stroke-width=\"3\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            lx + 22.0,
            s.color,
            lx + 28.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// 1, 2 or 5 times a power of ten, at least `value`.
fn nice_ceiling(value: f64) -> f64 {
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|candidate| *candidate >= value)
        .unwrap_or(10.0 * magnitude)
}

/// 30000 → "30k", 0.5 → "0.5".
fn short(value: f64) -> String {
    if value >= 1000.0 && (value / 1000.0).fract() == 0.0 {
        format!("{}k", value / 1000.0)
    } else if value >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_a_line_per_series() {
        let series = vec![
            Series {
                name: "weir".into(),
                color: color("weir"),
                points: vec![(100.0, 50.0), (30_000.0, 52.0)],
            },
            Series {
                name: "iptables".into(),
                color: color("iptables"),
                points: vec![(100.0, 60.0), (30_000.0, 900.0)],
            },
        ];
        let chart = Chart {
            title: "p99 <latency>",
            x_label: "Services",
            y_label: "µs",
            log_y: false,
        };
        let svg = render(&chart, &series);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("p99 &lt;latency&gt;"));
        assert!(svg.contains(">30k<"));
        assert!(render(&Chart { log_y: true, ..chart }, &series).contains("<polyline"));
        assert!((nice_ceiling(930.0) - 1000.0).abs() < 1e-9);
    }
}
