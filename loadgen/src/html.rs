//! Self-contained HTML pages: one run, or several runs side by side.
//!
//! Why inline SVG drawn here: the page must open anywhere without a network (no CDN, no
//! script), be readable as a file in ten years, and render the same in every browser. The
//! latency curve is drawn as HdrHistogram users know it: percentile on a log scale of
//! `1 / (1 − p)` (so 90 %, 99 %, 99.9 % … are equally spaced), latency on a linear axis.

use crate::report::Report;
use crate::target::format_minor;
use std::fmt::Write as _;

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const W: f64 = 760.0;
const H: f64 = 300.0;
const ML: f64 = 70.0;
const MR: f64 = 20.0;
const MT: f64 = 30.0;
const MB: f64 = 45.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A named line of points.
struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

/// Round step for about `n` ticks up to `max`.
fn nice_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v.abs() >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// An SVG line chart; `x_ticks` fixes the x axis (value, label); `shade` greys an x range.
fn chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    x_ticks: &[(f64, String)],
    shade: Option<(f64, f64)>,
) -> String {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    for x in xs.chain(x_ticks.iter().map(|t| t.0)) {
        x0 = x0.min(x);
        x1 = x1.max(x);
    }
    if !x0.is_finite() || !x1.is_finite() || x1 <= x0 {
        (x0, x1) = (0.0, 1.0);
    }
    let ymax = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let step = nice_step(if ymax > 0.0 { ymax } else { 1.0 }, 5.0);
    let ytop = ((ymax / step).ceil().max(1.0)) * step;
    let px = |x: f64| ML + (x - x0) / (x1 - x0) * (W - ML - MR);
    let py = |y: f64| H - MB - y / ytop * (H - MT - MB);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="{t}"><title>{t}</title><rect x="0" y="0" width="{W}" height="{H}" fill="#fff"/>"##,
        t = esc(title)
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="18" font-size="14" font-weight="bold" text-anchor="middle">{}</text>"#,
        W / 2.0,
        esc(title)
    );
    if let Some((a, b)) = shade {
        let (a, b) = (px(a.max(x0)), px(b.min(x1)));
        if b > a {
            let _ = write!(
                s,
                r##"<rect x="{a:.1}" y="{MT}" width="{:.1}" height="{:.1}" fill="#eee"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#888">warm-up</text>"##,
                b - a,
                H - MT - MB,
                a + 3.0,
                MT + 12.0
            );
        }
    }
    let mut y = 0.0;
    while y <= ytop + step / 2.0 {
        let yy = py(y);
        let _ = write!(
            s,
            r##"<line x1="{ML}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            W - MR,
            ML - 5.0,
            yy + 4.0,
            fmt_num(y)
        );
        y += step;
    }
    for (x, label) in x_ticks {
        let xx = px(*x);
        let _ = write!(
            s,
            r##"<line x1="{xx:.1}" y1="{MT}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/><text x="{xx:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
            H - MB,
            H - MB + 15.0,
            esc(label)
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{ML}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#000"/><line x1="{ML}" y1="{MT}" x2="{ML}" y2="{:.1}" stroke="#000"/>"##,
        H - MB,
        W - MR,
        H - MB,
        H - MB
    );
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
        (ML + W - MR) / 2.0,
        H - 8.0,
        esc(x_label)
    );
    let _ = write!(
        s,
        r#"<text x="14" y="{:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 14 {:.1})">{}</text>"#,
        (MT + H - MB) / 2.0,
        (MT + H - MB) / 2.0,
        esc(y_label)
    );
    for (i, se) in series.iter().enumerate() {
        if se.points.is_empty() {
            continue;
        }
        let pts: Vec<String> = se
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline class="series" fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            se.color,
            pts.join(" ")
        );
        if series.len() > 1 {
            let ly = MT + 14.0 * i as f64 + 6.0;
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="12" height="3" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
                ML + 10.0,
                ly,
                se.color,
                ML + 26.0,
                ly + 4.0,
                esc(se.name)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// x of percentile `p` (0–100) on the HdrHistogram axis: log10(1 / (1 − p/100)).
fn pct_x(p: f64) -> f64 {
    let tail = (1.0 - p / 100.0).max(1e-7);
    (1.0 / tail).log10()
}

fn pct_ticks(max_p: f64) -> Vec<(f64, String)> {
    let mut v = vec![
        (0.0, "0%".to_string()),
        (1.0, "90%".into()),
        (2.0, "99%".into()),
        (3.0, "99.9%".into()),
    ];
    let mut nines = 4;
    while (nines as f64) <= pct_x(max_p) + 0.5 && nines <= 7 {
        v.push((nines as f64, format!("99.{}%", "9".repeat(nines - 2))));
        nines += 1;
    }
    v
}

fn latency_chart(reports: &[&Report]) -> String {
    let series: Vec<Series> = reports
        .iter()
        .enumerate()
        .map(|(i, r)| Series {
            name: &r.label,
            color: COLORS[i % COLORS.len()],
            points: r
                .latency_curve
                .iter()
                .map(|&(p, us)| (pct_x(p), us as f64 / 1000.0))
                .collect(),
        })
        .collect();
    let maxp = reports
        .iter()
        .flat_map(|r| r.latency_curve.iter().map(|p| p.0).filter(|&p| p < 100.0))
        .fold(99.9, f64::max);
    chart(
        "Latency by percentile",
        "percentile (log scale of 1/(1−p))",
        "latency, ms",
        &series,
        &pct_ticks(maxp),
        None,
    )
}

fn time_ticks(secs: u64) -> Vec<(f64, String)> {
    let step = nice_step(secs.max(1) as f64, 8.0).max(1.0);
    let mut v = Vec::new();
    let mut t = 0.0;
    while t <= secs as f64 {
        v.push((t, format!("{t:.0} s")));
        t += step;
    }
    v
}

fn over_time(
    reports: &[&Report],
    title: &str,
    y_label: &str,
    f: fn(&crate::report::SecondReport) -> f64,
) -> String {
    let secs = reports
        .iter()
        .map(|r| r.timeline.len() as u64)
        .max()
        .unwrap_or(1);
    let series: Vec<Series> = reports
        .iter()
        .enumerate()
        .map(|(i, r)| Series {
            name: &r.label,
            color: COLORS[i % COLORS.len()],
            points: r
                .timeline
                .iter()
                .map(|s| (s.t as f64 + 0.5, f(s)))
                .collect(),
        })
        .collect();
    let warm = reports.first().map_or(0.0, |r| r.config.warmup_s);
    chart(
        title,
        "time since start",
        y_label,
        &series,
        &time_ticks(secs),
        (warm > 0.0).then_some((0.0, warm)),
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;max-width:1100px;color:#222}\
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-variant-numeric:tabular-nums}\
th{background:#f4f4f4}td.l,th.l{text-align:left}.ok{background:#e6f4e6;border:1px solid #6a6;padding:8px}\
.bad{background:#fde8e8;border:2px solid #c33;padding:8px;font-weight:bold}.chart{display:block;margin:12px 0}\
code{background:#f4f4f4;padding:1px 4px}";

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\"><title>{}</title><style>{STYLE}</style></head><body>",
        esc(title)
    )
}

fn check_box(r: &Report) -> String {
    let c = &r.check;
    format!(
        "<div class=\"{}\" id=\"check\">Money check: {}<br>loaded {} · after setup {} · approved effects {} · expected {} · target holds {} · at stake in failed requests {}</div>",
        if c.ok { "ok" } else { "bad" },
        esc(&c.message),
        format_minor(c.loaded_minor),
        format_minor(c.before_minor),
        format_minor(c.approved_delta_minor),
        format_minor(c.expected_minor),
        format_minor(c.actual_minor),
        format_minor(c.at_stake_minor)
    )
}

/// The page of one run.
pub fn run_page(r: &Report) -> String {
    let mut s = head(&format!("svault-loadgen: {} {}", r.label, r.started_at));
    let c = &r.config;
    let _ = write!(
        s,
        "<h1>{} — {}</h1><p>{} · {} · <code>{}</code> · started {} · {} ({} CPUs, {})</p>",
        esc(&r.label),
        esc(&r.target.kind),
        esc(&r.target.version.clone().unwrap_or_default()),
        esc(&r.target.durability),
        esc(&r.target.url),
        esc(&r.started_at),
        esc(&r.machine.hostname),
        r.machine.cpus,
        esc(&r.machine.os)
    );
    s.push_str(&check_box(r));
    let _ = write!(
        s,
        "<h2>Summary</h2><p><b>{:.0} requests/s</b> over {:.0} s measured ({} requests; warm-up {:.0} s, {} requests, not counted); approved {}, declined {}, errors {}{}{}.</p>",
        r.throughput_per_s,
        r.measured_seconds,
        r.requests,
        c.warmup_s,
        r.warmup_requests,
        r.approved,
        r.declined,
        r.errors,
        if r.not_sent > 0 { format!(", <b>not sent (fell behind the rate): {}</b>", r.not_sent) } else { String::new() },
        if r.refused > 0 { format!("; <b>refused (overloaded, 503 + Retry-After): {} = {:.0}/s</b>", r.refused, r.refused_per_s) } else { String::new() }
    );
    s.push_str("<table><tr><th class=l>operation</th><th>requests</th><th>approved</th><th>declined</th><th>errors</th><th>unsupported</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>p99.99 ms</th><th>max ms</th></tr>");
    let mut row = |name: &str,
                   req: u64,
                   a: u64,
                   d: u64,
                   e: u64,
                   u: u64,
                   l: &crate::report::Latency| {
        let _ = write!(
            s,
            "<tr><td class=l>{}</td><td>{req}</td><td>{a}</td><td>{d}</td><td>{e}</td><td>{u}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name), ms(l.p50), ms(l.p90), ms(l.p99), ms(l.p999), ms(l.p9999), ms(l.max)
        );
    };
    for (k, o) in &r.ops {
        row(
            k,
            o.requests,
            o.approved,
            o.declined.values().sum(),
            o.errors.values().sum(),
            o.unsupported,
            &o.latency_us,
        );
    }
    let unsupported = r.ops.values().map(|o| o.unsupported).sum();
    row(
        "all",
        r.requests,
        r.approved,
        r.declined,
        r.errors,
        unsupported,
        &r.latency_us,
    );
    s.push_str("</table>");
    let mut detail = String::new();
    for (k, o) in &r.ops {
        for (code, n) in &o.declined {
            let _ = write!(
                detail,
                "<tr><td class=l>{}</td><td class=l>declined {}</td><td>{n}</td></tr>",
                esc(k),
                esc(code)
            );
        }
        for (kind, n) in &o.errors {
            let _ = write!(
                detail,
                "<tr><td class=l>{}</td><td class=l>error {}</td><td>{n}</td></tr>",
                esc(k),
                esc(kind)
            );
        }
    }
    if !detail.is_empty() {
        let _ = write!(s, "<table><tr><th class=l>operation</th><th class=l>outcome</th><th>count</th></tr>{detail}</table>");
    }
    if !r.target.unsupported.is_empty() {
        s.push_str("<h3>Not expressed on this target</h3><ul>");
        for u in &r.target.unsupported {
            let _ = write!(s, "<li><b>{}</b>: {}</li>", esc(&u.what), esc(&u.instead));
        }
        s.push_str("</ul>");
    }
    s.push_str("<h2>Latency</h2>");
    s.push_str(&latency_chart(&[r]));
    s.push_str(&over_time(
        &[r],
        "Throughput per second",
        "requests/s",
        |x| x.requests as f64,
    ));
    s.push_str(&over_time(&[r], "p99 latency per second", "p99, ms", |x| {
        x.p99_us as f64 / 1000.0
    }));
    let _ = write!(
        s,
        "<h2>Config</h2><table><tr><th class=l>setting</th><th class=l>value</th></tr>{}</table>",
        [
            ("target", r.target.url.clone()),
            ("profile", c.profile.clone()),
            ("mix", c.mix.clone()),
            ("cards", c.cards.to_string()),
            ("card choice", c.dist.clone()),
            (
                "rate",
                if c.rate == 0 {
                    "closed loop".into()
                } else {
                    format!("{}/s open loop", c.rate)
                }
            ),
            (
                "duration",
                format!("{} s + {} s warm-up", c.duration_s, c.warmup_s)
            ),
            (
                "connections × pipeline",
                format!("{} × {}", c.connections, c.pipeline)
            ),
            ("batch", c.batch.to_string()),
            ("seed", c.seed.to_string()),
            ("run id", c.run_id.to_string()),
            (
                "setup",
                format!("{:.1} s for {} cards", r.setup_seconds, r.cards_loaded)
            ),
        ]
        .iter()
        .map(|(k, v)| format!(
            "<tr><td class=l>{}</td><td class=l>{}</td></tr>",
            esc(k),
            esc(v)
        ))
        .collect::<String>()
    );
    s.push_str("<p>Latency counts from each request's intended send time in open loop (no coordinated omission); from its send in closed loop. The load generator shares the machine with the target.</p></body></html>\n");
    s
}

/// The side-by-side table of several runs (Markdown).
pub fn compare_markdown(rs: &[Report]) -> String {
    let mut s = String::from(
        "| run | target | durability | rate | throughput/s | p50 ms | p99 ms | p99.9 ms | max ms | declined | errors | not sent | money check |\n\
         | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for r in rs {
        let l = &r.latency_us;
        let _ = writeln!(
            s,
            "| {} | {} {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            r.target.kind,
            r.target.version.clone().unwrap_or_default(),
            r.target.durability.split(':').next().unwrap_or_default(),
            if r.config.rate == 0 {
                "max (closed loop)".to_string()
            } else {
                format!("{}/s", r.config.rate)
            },
            r.throughput_per_s,
            ms(l.p50),
            ms(l.p99),
            ms(l.p999),
            ms(l.max),
            r.declined,
            r.errors,
            r.not_sent,
            if r.check.ok { "ok" } else { "MISMATCH" }
        );
    }
    s
}

/// One page comparing several runs.
pub fn compare_page(rs: &[Report]) -> String {
    let mut s = head("svault-loadgen: comparison");
    s.push_str("<h1>Side by side</h1>");
    if let Some(r) = rs.first() {
        let _ = write!(
            s,
            "<p>{} ({} CPUs, {}); load generator and targets share the machine.</p>",
            esc(&r.machine.hostname),
            r.machine.cpus,
            esc(&r.machine.os)
        );
    }
    s.push_str("<table><tr><th class=l>run</th><th class=l>target</th><th class=l>durability</th><th>rate</th><th>connections × pipeline, batch</th><th>throughput/s</th><th>p50 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>declined</th><th>errors</th><th>not sent</th><th class=l>money check</th></tr>");
    for r in rs {
        let l = &r.latency_us;
        let c = &r.config;
        let _ = write!(
            s,
            "<tr><td class=l>{}</td><td class=l>{} {}</td><td class=l>{}</td><td>{}</td><td>{} × {}, {}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=l>{}</td></tr>",
            esc(&r.label),
            esc(&r.target.kind),
            esc(&r.target.version.clone().unwrap_or_default()),
            esc(&r.target.durability),
            if c.rate == 0 { "max".to_string() } else { format!("{}/s", c.rate) },
            c.connections,
            c.pipeline,
            c.batch,
            r.throughput_per_s,
            ms(l.p50),
            ms(l.p99),
            ms(l.p999),
            ms(l.max),
            r.declined,
            r.errors,
            r.not_sent,
            if r.check.ok { "ok".to_string() } else { format!("<b>MISMATCH</b>: {}", esc(&r.check.message)) }
        );
    }
    s.push_str("</table>");
    let all: Vec<&Report> = rs.iter().collect();
    s.push_str(&latency_chart(&all));
    s.push_str(&over_time(
        &all,
        "Throughput per second",
        "requests/s",
        |x| x.requests as f64,
    ));
    s.push_str(&over_time(&all, "p99 latency per second", "p99, ms", |x| {
        x.p99_us as f64 / 1000.0
    }));
    s.push_str("<h2>Not expressed</h2><ul>");
    for r in rs {
        for u in &r.target.unsupported {
            let _ = write!(
                s,
                "<li>{}: <b>{}</b> — {}</li>",
                esc(&r.label),
                esc(&u.what),
                esc(&u.instead)
            );
        }
    }
    s.push_str("</ul><h2>Configs</h2><ul>");
    for r in rs {
        let c = &r.config;
        let _ = write!(
            s,
            "<li>{}: <code>{}</code> profile {} ({}), {} cards {}, seed {}, {} s + {} s warm-up, started {}</li>",
            esc(&r.label), esc(&r.target.url), esc(&c.profile), esc(&c.mix), c.cards, esc(&c.dist), c.seed, c.duration_s, c.warmup_s, esc(&r.started_at)
        );
    }
    s.push_str("</ul></body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_axis_spaces_nines_evenly() {
        assert!((pct_x(90.0) - 1.0).abs() < 1e-9);
        assert!((pct_x(99.0) - 2.0).abs() < 1e-9);
        assert!((pct_x(99.9) - 3.0).abs() < 1e-6);
        assert_eq!(pct_x(0.0), 0.0);
    }

    #[test]
    fn chart_escapes_and_draws_each_series() {
        let svg = chart(
            "a<b",
            "x",
            "y",
            &[Series {
                name: "one",
                color: "#000",
                points: vec![(0.0, 1.0), (1.0, 2.0)],
            }],
            &[(0.0, "0".into()), (1.0, "1".into())],
            None,
        );
        assert!(svg.contains("a&lt;b"));
        assert_eq!(svg.matches("<polyline").count(), 1);
    }
}
