//! Line charts as server-rendered SVG (no script, no chart library): one chart is a few series of
//! (time, value) points over a time window, drawn as polylines on a shared scale with the
//! window's start and end and the scale's top written on the axes. Counters become per-second
//! rates first ([`rate`]).

use super::status::escape;
use std::fmt::Write as _;

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub label: String,
    /// (unix ms, value), oldest first.
    pub points: Vec<(u64, f64)>,
}

/// How values are written on the axis and in the legend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Percent,
    Bytes,
    BytesPerSecond,
    Plain,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 64.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 8.0;
const COLOURS: [&str; 8] = [
    "#1f5fbf", "#c0392b", "#1e7b34", "#8e44ad", "#d35400", "#16a085", "#7f8c8d", "#2c3e50",
];

/// Per-second rates of a counter's points (a reset, where the counter went down, starts over).
pub fn rate(points: &[(u64, f64)]) -> Vec<(u64, f64)> {
    points
        .windows(2)
        .filter_map(|w| {
            let ((t0, v0), (t1, v1)) = (w[0], w[1]);
            (t1 > t0 && v1 >= v0).then(|| (t1, (v1 - v0) * 1000.0 / (t1 - t0) as f64))
        })
        .collect()
}

/// `v` written in `unit`, short.
pub fn human(v: f64, unit: Unit) -> String {
    let scaled = |v: f64, suffix: &str| {
        const STEPS: [&str; 6] = ["", "Ki", "Mi", "Gi", "Ti", "Pi"];
        let mut v = v;
        let mut i = 0;
        while v.abs() >= 1024.0 && i + 1 < STEPS.len() {
            v /= 1024.0;
            i += 1;
        }
        format!("{v:.1} {}{suffix}", STEPS[i])
    };
    match unit {
        Unit::Percent => format!("{v:.0}%"),
        Unit::Bytes => scaled(v, "B"),
        Unit::BytesPerSecond => scaled(v, "B/s"),
        Unit::Plain => format!("{v:.2}"),
    }
}

/// The chart of `lines` over [from, to] (unix ms) as an `<svg>` element, titled `title`
/// (escaped, like every label). Points outside the window are left out; with no point at all
/// the chart says so.
pub fn svg(title: &str, unit: Unit, from: u64, to: u64, lines: &[Line]) -> String {
    let to = to.max(from + 1);
    let in_window = |l: &Line| {
        l.points
            .iter()
            .copied()
            .filter(|(t, v)| (from..=to).contains(t) && v.is_finite())
            .collect::<Vec<_>>()
    };
    let lines: Vec<(String, Vec<(u64, f64)>)> = lines
        .iter()
        .map(|l| (l.label.clone(), in_window(l)))
        .filter(|(_, p)| !p.is_empty())
        .collect();
    let max = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, v)| *v))
        .fold(0.0_f64, f64::max);
    let top = match unit {
        Unit::Percent => 100.0_f64.max(max),
        _ if max <= 0.0 => 1.0,
        _ => max * 1.1,
    };
    let x = |t: u64| LEFT + (t - from) as f64 / (to - from) as f64 * (WIDTH - LEFT - 4.0);
    let y = |v: f64| TOP + (1.0 - v / top) * (HEIGHT - TOP - BOTTOM);
    let mut out = String::new();
    let _ = write!(
        out,
        "<figure class=\"chart\"><figcaption>{}</figcaption>\
         <svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\" \
         xmlns=\"http://www.w3.org/2000/svg\">",
        escape(title),
        escape(title)
    );
    let base = HEIGHT - BOTTOM;
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{base}\" stroke=\"#999\"/>\
         <line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{WIDTH}\" y2=\"{base}\" stroke=\"#999\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{base}\" font-size=\"11\" text-anchor=\"end\">0</text>\
         <text x=\"{LEFT}\" y=\"{}\" font-size=\"11\">{}</text>\
         <text x=\"{WIDTH}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
        LEFT - 4.0,
        TOP + 10.0,
        escape(&human(top, unit)),
        LEFT - 4.0,
        HEIGHT - 6.0,
        escape(&clustermgr_shared::util::fmt_ms(from)),
        HEIGHT - 6.0,
        escape(&clustermgr_shared::util::fmt_ms(to)),
    );
    if lines.is_empty() {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" font-size=\"13\" text-anchor=\"middle\">no data in this \
             range</text>",
            (LEFT + WIDTH) / 2.0,
            HEIGHT / 2.0
        );
    }
    for (i, (_, points)) in lines.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let coords: Vec<String> = points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\" \
             data-points=\"{}\"/>",
            coords.join(" "),
            points.len()
        );
    }
    out.push_str("</svg><ul class=\"legend\">");
    for (i, (label, points)) in lines.iter().enumerate() {
        let last = points
            .last()
            .map(|(_, v)| human(*v, unit))
            .unwrap_or_default();
        let _ = write!(
            out,
            "<li><svg width=\"12\" height=\"12\" aria-hidden=\"true\"><rect width=\"12\" \
             height=\"12\" fill=\"{}\"/></svg> {} <span class=\"meta\">{}</span></li>",
            COLOURS[i % COLOURS.len()],
            escape(label),
            escape(&last)
        );
    }
    out.push_str("</ul></figure>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_become_rates_and_resets_start_over() {
        let p = [
            (0, 100.0),
            (1000, 300.0),
            (3000, 700.0),
            (4000, 50.0),
            (5000, 150.0),
        ];
        assert_eq!(rate(&p), vec![(1000, 200.0), (3000, 200.0), (5000, 100.0)]);
        assert!(rate(&p[..1]).is_empty());
    }

    #[test]
    fn values_are_written_in_their_unit() {
        assert_eq!(human(42.4, Unit::Percent), "42%");
        assert_eq!(human(3.0 * 1024.0 * 1024.0, Unit::Bytes), "3.0 MiB");
        assert_eq!(human(512.0, Unit::BytesPerSecond), "512.0 B/s");
        assert_eq!(human(0.5, Unit::Plain), "0.50");
    }

    #[test]
    fn a_chart_draws_each_line_within_the_window_and_escapes_labels() {
        let lines = [
            Line {
                label: "<b>a</b>".into(),
                points: vec![(500, 1.0), (1000, 50.0), (2000, 100.0), (9000, 7.0)],
            },
            Line {
                label: "b".into(),
                points: vec![(1500, 25.0)],
            },
            Line {
                label: "empty".into(),
                points: vec![(5000, 1.0)],
            },
        ];
        let s = svg("CPU \"all\"", Unit::Percent, 1000, 2000, &lines);
        assert_eq!(s.matches("<polyline").count(), 2, "{s}");
        assert!(
            s.contains("data-points=\"2\"") && s.contains("data-points=\"1\""),
            "{s}"
        );
        // 1000 is the left edge, 100% the top.
        assert!(s.contains(&format!("points=\"{LEFT:.1},")), "{s}");
        assert!(s.contains(&format!(",{TOP:.1}\" data-points=\"2\"")), "{s}");
        assert!(
            s.contains("&lt;b&gt;a&lt;/b&gt;") && !s.contains("<b>a"),
            "{s}"
        );
        assert!(s.contains("CPU &quot;all&quot;"), "{s}");
        assert!(
            !s.contains("empty"),
            "a line without points in the window: {s}"
        );
        let none = svg("x", Unit::Bytes, 0, 10, &[]);
        assert!(none.contains("no data in this range"));
    }
}
