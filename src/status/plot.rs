//! The percentile-distribution plot of a latency histogram, as a self-contained SVG
//! (no plotting dependency): latency against percentile on the usual "1/(1-p)" axis.

use std::fmt::Write as _;

use super::latency::Merged;

/// A percentile-distribution plot: x is 1/(1-p) on a log scale (0 %, 90 %, 99 %, ...), y is
/// latency in milliseconds on a linear scale.
pub fn svg(m: &Merged, title: &str) -> String {
    const W: f64 = 800.0;
    const H: f64 = 480.0;
    const L: f64 = 80.0;
    const R: f64 = 30.0;
    const T: f64 = 50.0;
    const B: f64 = 60.0;
    let h = m.to_hdr();
    // Points (x = log10(1/(1-p)), y = ms), p up to 99.999 %.
    let max_x = 5.0;
    let mut points: Vec<(f64, f64)> = Vec::new();
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            let q = v.quantile_iterated_to();
            let x = if q >= 1.0 { max_x } else { (1.0 / (1.0 - q)).log10().min(max_x) };
            points.push((x, v.value_iterated_to() as f64 / 1000.0));
        }
    }
    let max_y = points.iter().map(|p| p.1).fold(0.0, f64::max).max(0.001) * 1.1;
    let px = |x: f64| L + x / max_x * (W - L - R);
    let py = |y: f64| H - B - y / max_y * (H - T - B);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" font-size="16" text-anchor="middle">{}</text>"#,
        W / 2.0,
        crate::util::markup::escape(title)
    );
    // Axes, grid and labels.
    let _ = writeln!(s, r#"<line x1="{L}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#, H - B, W - R, H - B);
    let _ = writeln!(s, r#"<line x1="{L}" y1="{T}" x2="{L}" y2="{}" stroke="black"/>"#, H - B);
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"].iter().enumerate() {
        let x = px(i as f64);
        let _ = writeln!(s, r##"<line x1="{x}" y1="{T}" x2="{x}" y2="{}" stroke="#ddd"/>"##, H - B);
        let _ = writeln!(s, r#"<text x="{x}" y="{}" text-anchor="middle">{label}</text>"#, H - B + 18.0);
    }
    for i in 0..=5 {
        let y = max_y * i as f64 / 5.0;
        let yy = py(y);
        let _ = writeln!(s, r##"<line x1="{L}" y1="{yy}" x2="{}" y2="{yy}" stroke="#eee"/>"##, W - R);
        let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">{y:.3}</text>"#, L - 6.0, yy + 4.0);
    }
    let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#, (L + W - R) / 2.0, H - 18.0);
    let _ = writeln!(
        s,
        r#"<text x="20" y="{}" text-anchor="middle" transform="rotate(-90 20 {})">latency (ms)</text>"#,
        (T + H - B) / 2.0,
        (T + H - B) / 2.0
    );
    if points.is_empty() {
        let _ =
            writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">no statements recorded</text>"#, W / 2.0, H / 2.0);
    } else {
        let path: Vec<String> = points.iter().map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
        let _ =
            writeln!(s, r##"<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{}"/>"##, path.join(" "));
    }
    let summary = format!(
        "count {}  p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
        m.count(),
        m.quantile(0.5) as f64 / 1000.0,
        m.quantile(0.99) as f64 / 1000.0,
        m.quantile(0.999) as f64 / 1000.0,
        m.max_us as f64 / 1000.0
    );
    let _ = writeln!(s, r##"<text x="{}" y="44" text-anchor="middle" fill="#555">{summary}</text>"##, W / 2.0);
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plot_has_a_curve_a_title_and_a_summary() {
        let mut m = Merged::default();
        for us in 100..1100 {
            m.add_value(us, 2);
        }
        let s = svg(&m, "t <1>");
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("<polyline") && s.contains("t &lt;1&gt;") && s.contains("count 2000"));
    }
}
