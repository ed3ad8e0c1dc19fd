//! The JSON rows of `--json FILE`, one object per line; their fields are
//! listed in `main.rs`.

use std::fmt::Write as _;

use crate::report::Row;

pub fn json_row(r: &Row) -> String {
    let n = |x: Option<f64>| {
        x.filter(|x| x.is_finite())
            .map_or(String::from("null"), |x| format!("{x}"))
    };
    let list = |v: &[f64]| {
        let items: Vec<String> = v.iter().map(|&x| n(Some(x))).collect();
        format!("[{}]", items.join(", "))
    };
    let v = r.values.as_ref().ok();
    let p = r.paired.as_ref();
    let mut s = format!(
        "{{\"case\": \"{}\", \"contender\": \"{}\", \"unit\": \"{}\", \"median\": {}, \"min\": {}, \"max\": {}, \"ratio_vs_fdring\": {}, \"ratio_min\": {}, \"ratio_max\": {}, \"rounds\": {}, \"values\": {}",
        r.case,
        r.contender,
        r.unit,
        n(v.map(|v| v[0])),
        n(v.map(|v| v[1])),
        n(v.map(|v| v[2])),
        n(p.map(|p| p.spread[0])),
        n(p.map(|p| p.spread[1])),
        n(p.map(|p| p.spread[2])),
        r.rounds,
        list(&r.per_round),
    );
    if let Some(p) = p {
        let slow: Vec<String> = p.slow.iter().map(bool::to_string).collect();
        let _ = write!(
            s,
            ", \"ratios\": {}, \"slow\": [{}]",
            list(&p.ratios),
            slow.join(", ")
        );
    }
    if let Some(judge) = r.judge {
        let _ = write!(s, ", \"slow_judged_by\": \"{judge}\"");
    }
    if !r.gauge.is_empty() {
        let _ = write!(s, ", \"gauge_rtt_ns\": {}", list(&r.gauge));
    }
    if let Err(e) = &r.values {
        let _ = write!(s, ", \"failed\": {:?}", e);
    }
    s + "}"
}
