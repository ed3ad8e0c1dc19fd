//! The report: runs a case's contenders round by round, and prints the
//! table, the goals' verdicts and the JSON rows.

use std::fmt::Write as _;
use std::process::Command;

use crate::cases::{Case, OWN_GOALS};
use crate::process::Run;

pub struct Row {
    pub case: &'static str,
    pub contender: &'static str,
    pub unit: &'static str,
    /// Median, min, max; or why the row failed.
    pub values: Result<[f64; 3], String>,
    pub ratio: Option<f64>,
}

pub fn spread(mut v: Vec<f64>) -> [f64; 3] {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    let median = if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    };
    [median, v[0], v[v.len() - 1]]
}

pub fn num(x: f64) -> String {
    match x.abs() {
        a if a >= 100.0 || a == 0.0 => format!("{x:.0}"),
        a if a >= 10.0 => format!("{x:.1}"),
        a if a >= 1.0 => format!("{x:.2}"),
        a if a >= 0.001 => format!("{x:.3}"),
        _ => format!("{x:.1e}"),
    }
}

pub fn print_row(r: &Row) {
    let (median, range) = match &r.values {
        Ok([median, min, max]) if min == max => (num(*median), String::new()),
        Ok([median, min, max]) => (num(*median), format!("{}–{}", num(*min), num(*max))),
        Err(e) => (String::from("FAILED"), e.clone()),
    };
    let ratio = r.ratio.map_or(String::from("—"), |x| format!("{x:.2}"));
    println!(
        "{:<18} {:<18} {:>9} {:>17} {:<17} {:>5}",
        r.case, r.contender, median, range, r.unit, ratio
    );
}

/// Runs a case's contenders round by round; returns its rows.
pub fn run_case(case: &Case, rounds: usize) -> Vec<Row> {
    let mut runs: Vec<Result<Vec<Run>, String>> = vec![Ok(Vec::new()); case.contenders.len()];
    for _ in 0..rounds {
        for ((_, contender), runs) in case.contenders.iter().zip(&mut runs) {
            if let Ok(list) = runs {
                match contender(&case.cfg) {
                    Ok(run) => list.push(run),
                    Err(e) => *runs = Err(e.to_string()),
                }
            }
        }
    }
    let mut rows = Vec::new();
    for (unit, metric) in case.metrics {
        let values = |runs: &Result<Vec<Run>, String>| match runs {
            Ok(list) => Ok(spread(list.iter().map(|r| metric(&case.cfg, r)).collect())),
            Err(e) => Err(e.clone()),
        };
        let fdring = case
            .contenders
            .iter()
            .position(|(name, _)| *name == "fdring");
        let reference = fdring.and_then(|i| values(&runs[i]).ok()).map(|v| v[0]);
        for ((name, _), runs) in case.contenders.iter().zip(&runs) {
            let values = values(runs);
            let ratio = match (&values, reference) {
                (Ok(v), Some(f)) if case.contenders.len() > 1 => Some(f / v[0]),
                _ => None,
            };
            rows.push(Row {
                case: case.name,
                contender: name,
                unit,
                values,
                ratio,
            });
        }
    }
    rows.iter().for_each(print_row);
    // fdring's own counters, per message: the most of any round.
    for ((name, _), runs) in case.contenders.iter().zip(&runs) {
        let Ok(list) = runs else { continue };
        if !name.starts_with("fdring") {
            continue;
        }
        let per = |f: fn(&Run) -> u64| {
            list.iter()
                .map(|r| f(r) as f64 / case.cfg.n as f64)
                .fold(0.0, f64::max)
        };
        for (unit, value) in [
            ("allocs/msg", per(|r| r.allocs)),
            ("wake-ups/msg", per(|r| r.writes)),
        ] {
            rows.push(Row {
                case: case.name,
                contender: name,
                unit,
                values: Ok([value; 3]),
                ratio: None,
            });
        }
    }
    rows
}

pub fn goals(case: &Case, rows: &[Row]) -> Vec<String> {
    let unit = case.metrics[0].0;
    let find = |name: &str| {
        rows.iter()
            .find(|r| r.case == case.name && r.contender == name && r.unit == unit)
    };
    let mut out = Vec::new();
    for &(name, op, limit) in case.goals {
        let (what, value) = if name == "fdring" {
            (
                format!("fdring {unit} {op} {limit}"),
                find(name).and_then(|r| r.values.as_ref().ok().map(|v| v[0])),
            )
        } else {
            (
                format!("fdring ÷ {name} {op} {limit}"),
                find(name).and_then(|r| r.ratio),
            )
        };
        let verdict = match value {
            Some(v) if (op == "≥" && v >= limit) || (op == "≤" && v <= limit) => {
                format!("{} met", num(v))
            }
            Some(v) => format!("{} MISSED", num(v)),
            None => String::from("not measured"),
        };
        let own = if OWN_GOALS.contains(&case.name) {
            " (issue 7's goal)"
        } else {
            ""
        };
        out.push(format!("  {:<18} {what}: {verdict}{own}", case.name));
    }
    out
}

pub fn json_row(r: &Row) -> String {
    let n = |x: Option<f64>| {
        x.filter(|x| x.is_finite())
            .map_or(String::from("null"), |x| format!("{x}"))
    };
    let v = r.values.as_ref().ok();
    let mut s = format!(
        "{{\"case\": \"{}\", \"contender\": \"{}\", \"unit\": \"{}\", \"median\": {}, \"min\": {}, \"max\": {}, \"ratio_vs_fdring\": {}",
        r.case,
        r.contender,
        r.unit,
        n(v.map(|v| v[0])),
        n(v.map(|v| v[1])),
        n(v.map(|v| v[2])),
        n(r.ratio)
    );
    if let Err(e) = &r.values {
        let _ = write!(s, ", \"failed\": {:?}", e);
    }
    s + "}"
}

pub fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("?", |m| m.trim_start_matches([' ', '\t', ':']));
    let uname = Command::new("uname")
        .arg("-srm")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    format!("nproc {nproc}, {model}, {}", uname.unwrap_or_default())
}
