//! The report: runs a case's contenders round by round, and prints the
//! table and the goals' verdicts (the JSON rows are `json`'s).

use std::fmt::Write as _;
use std::process::Command;
use std::time::Instant;

use crate::cases::{Case, OWN_GOALS};
use crate::gauge::Gauge;
use crate::paired::{judge, lower_is_better, pair, slow_rounds, spread, Paired, SLOW_FACTOR};
use crate::process::{Cfg, Run};

pub struct Row {
    pub case: &'static str,
    pub contender: &'static str,
    pub unit: &'static str,
    /// Median, min, max of the contender's own values; or why the row failed.
    pub values: Result<[f64; 3], String>,
    /// The contender's value in each round (empty if it failed).
    pub per_round: Vec<f64>,
    /// The rounds the case ran.
    pub rounds: usize,
    /// The contender whose rounds judged the case's slow phases.
    pub judge: Option<&'static str>,
    /// The machine's gauge before each round: the cross-core round trip,
    /// in ns (`gauge`).
    pub gauge: Vec<f64>,
    /// fdring ÷ this contender, round by round; `None` for fdring's
    /// counters, in a case of one contender, or if either side failed.
    pub paired: Option<Paired>,
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

/// One line of the table, its header included.
fn line(cells: [&str; 7]) -> String {
    let [case, contender, median, range, unit, ratio, ratio_range] = cells;
    let line = format!("{case:<18} {contender:<18} {median:>9} {range:>17} {unit:<17} {ratio:>6} {ratio_range:>12}");
    line.trim_end().to_owned()
}

pub fn print_header() {
    println!(
        "{}",
        line([
            "case",
            "contender",
            "median",
            "min–max",
            "unit",
            "ratio",
            "min–max"
        ])
    );
}

pub fn print_row(r: &Row) {
    let (median, range) = match &r.values {
        Ok([median, min, max]) if min == max => (num(*median), String::new()),
        Ok([median, min, max]) => (num(*median), format!("{}–{}", num(*min), num(*max))),
        Err(e) => (String::from("FAILED"), e.clone()),
    };
    let (ratio, ratio_range) = match &r.paired {
        Some(Paired {
            spread: [median, min, max],
            ..
        }) => (num(*median), format!("{}–{}", num(*min), num(*max))),
        None => (String::from("—"), String::new()),
    };
    println!(
        "{}",
        line([
            r.case,
            r.contender,
            &median,
            &range,
            r.unit,
            &ratio,
            &ratio_range
        ])
    );
}

/// A case's measurements: each contender's runs, round by round (or why it
/// failed), the machine's gauge before each round, how many rounds were
/// asked for (the rest were run again for slow phases), and the time taken.
pub struct Measured {
    runs: Vec<Result<Vec<Run>, String>>,
    gauges: Vec<f64>,
    asked: usize,
    wall: f64,
}

/// A case whose gauge found fewer fast rounds than this, once the whole
/// run's median is known, runs more rounds ([`measure_again`]).
pub const MIN_FAST: usize = 8;

/// Runs `rounds` rounds of a case's contenders, each round every contender
/// back to back, the gauge probed before each round.
pub fn measure(case: &Case, rounds: usize, gauge: &mut Gauge) -> Measured {
    let mut measured = Measured {
        runs: vec![Ok(Vec::new()); case.contenders.len()],
        gauges: Vec::with_capacity(rounds),
        asked: rounds,
        wall: 0.0,
    };
    (0..rounds).for_each(|_| round(case, &mut measured, gauge));
    measured
}

/// If fewer than [`MIN_FAST`] of a case's rounds were fast by the gauge's
/// median over the whole run (a slow phase as long as the case, most often
/// in the first seconds of a run), runs more rounds until there are, or
/// until it ran twice the rounds asked for.
pub fn measure_again(case: &Case, measured: &mut Measured, gauge: &mut Gauge) {
    let fast = |m: &Measured, g: &Gauge| g.slow(&m.gauges).iter().filter(|&&s| !s).count();
    while fast(measured, gauge) < MIN_FAST.min(measured.asked)
        && measured.gauges.len() < 2 * measured.asked
    {
        round(case, measured, gauge);
    }
}

fn round(case: &Case, measured: &mut Measured, gauge: &mut Gauge) {
    let started = Instant::now();
    measured.gauges.push(gauge.probe());
    for ((_, contender), runs) in case.contenders.iter().zip(&mut measured.runs) {
        if let Ok(list) = runs {
            match contender(&case.cfg) {
                Ok(run) => list.push(run),
                Err(e) => *runs = Err(e.to_string()),
            }
        }
    }
    measured.wall += started.elapsed().as_secs_f64();
}

/// Prints a case's rows and a line on its rounds, its slow rounds judged
/// by its floor and by `gauge` as it stands at the end of the run (so a
/// slow phase before the run's first fast round is seen too); returns its
/// rows, fdring's counters last.
pub fn report_case(case: &Case, measured: &Measured, gauge: &Gauge) -> Vec<Row> {
    let Measured {
        runs,
        gauges,
        asked,
        wall,
    } = measured;
    let (rounds, wall, runs) = (gauges.len(), *wall, runs.as_slice());
    let timed = runs.iter().flatten().flatten().map(|r| r.secs).sum::<f64>();
    let names = case.contenders.iter().map(|(name, _)| *name);
    let measured = |i: &usize| runs[*i].is_ok();
    let fdring = names
        .clone()
        .position(|name| name == "fdring")
        .filter(measured);
    let per_round = |i: usize, metric: fn(&Cfg, &Run) -> f64| match &runs[i] {
        Ok(list) => list.iter().map(|r| metric(&case.cfg, r)).collect(),
        Err(_) => Vec::new(),
    };
    // Slow phases are judged once per case, in its first metric; by fdring
    // if the floor failed.
    let (first_unit, first_metric) = case.metrics[0];
    let judge = judge(names).filter(measured).or(fdring);
    // And by the machine's gauge, which sees a slow phase as long as the
    // case.
    let by_floor = judge.map_or_else(Vec::new, |i| {
        slow_rounds(&per_round(i, first_metric), first_unit)
    });
    let by_gauge = gauge.slow(gauges);
    let slow: Vec<bool> = (0..rounds)
        .map(|i| by_floor.get(i).copied().unwrap_or(false) || by_gauge[i])
        .collect();
    let judge = judge.map(|i| case.contenders[i].0);
    let mut rows = Vec::new();
    for &(unit, metric) in case.metrics {
        let reference = fdring.map(|i| per_round(i, metric));
        for (i, ((name, _), runs)) in case.contenders.iter().zip(runs).enumerate() {
            let mine = per_round(i, metric);
            let paired = match &reference {
                Some(f) if case.contenders.len() > 1 && !mine.is_empty() => pair(f, &mine, &slow),
                _ => None,
            };
            rows.push(Row {
                case: case.name,
                contender: name,
                unit,
                values: runs
                    .as_ref()
                    .map(|_| spread(mine.clone()))
                    .map_err(Clone::clone),
                per_round: mine,
                rounds,
                judge,
                gauge: gauges.clone(),
                paired,
            });
        }
    }
    rows.iter().for_each(print_row);
    print_rounds(
        case,
        [*asked, rounds],
        [wall, timed],
        judge.zip(Some(first_unit)),
        &slow,
        [&by_floor, &by_gauge].map(|marks| marks.iter().filter(|&&b| b).count()),
        gauge.median(),
    );
    // fdring's own counters, per message: the most of any round.
    for ((name, _), runs) in case.contenders.iter().zip(runs) {
        let Ok(list) = runs else { continue };
        if !name.starts_with("fdring") {
            continue;
        }
        let per = |f: fn(&Run) -> u64| -> Vec<f64> {
            list.iter()
                .map(|r| f(r) as f64 / case.cfg.n as f64)
                .collect()
        };
        for (unit, per_round) in [
            ("allocs/msg", per(|r| r.allocs)),
            ("wake-ups/msg", per(|r| r.writes)),
        ] {
            rows.push(Row {
                case: case.name,
                contender: name,
                unit,
                values: Ok([per_round.iter().copied().fold(0.0, f64::max); 3]),
                per_round,
                rounds,
                judge: None,
                gauge: Vec::new(),
                paired: None,
            });
        }
    }
    rows
}

/// The line under a case's rows: its rounds, how long they took, and which
/// were slow phases (`slow`: by the case's judge, or by the machine's
/// gauge, whose median round trip over the run is `median_rtt`; `counts`
/// says how many each found), left out of the ratios.
fn print_rounds(
    case: &Case,
    [asked, rounds]: [usize; 2],
    [wall, timed]: [f64; 2],
    judge: Option<(&str, &str)>,
    slow: &[bool],
    [by_floor, by_gauge]: [usize; 2],
    median_rtt: f64,
) {
    let mut s = match rounds - asked {
        0 => format!("  ↳ {rounds} rounds in {wall:.1} s ({timed:.1} s timed)"),
        more => format!(
            "  ↳ {asked} rounds + {more} more for slow phases, in {wall:.1} s ({timed:.1} s timed)"
        ),
    };
    match judge {
        Some((judge, unit)) if case.contenders.len() > 1 => {
            let worse = if lower_is_better(unit) {
                format!("above {SLOW_FACTOR}× its median")
            } else {
                format!("below 1/{SLOW_FACTOR} of its median")
            };
            let which: Vec<String> = (1..)
                .zip(slow)
                .filter(|&(_, &slow)| slow)
                .map(|(round, _)| round.to_string())
                .collect();
            let _ = write!(
                s,
                "; slow rounds ({judge} {worse}: {}; gauge above {SLOW_FACTOR}× the run's median {} ns: {}): {}",
                by_floor,
                num(median_rtt),
                by_gauge,
                which.len()
            );
            if which.len() == rounds {
                s.push_str(", every one: the ratios are over all of them, read them with care");
            } else if !which.is_empty() {
                let _ = write!(s, " (#{}), left out of the ratios", which.join(", #"));
            }
        }
        None if !case.contenders.iter().any(|&(name, _)| name == "fdring") => {
            s.push_str("; no row named fdring to divide: the goals below pair the rows")
        }
        None if case.contenders.len() > 1 => s.push_str("; no ratio: fdring and the floor failed"),
        _ => s.push_str("; one contender, no ratio"),
    }
    println!("{s}");
}

pub fn goals(case: &Case, rows: &[Row]) -> Vec<String> {
    let unit = case.metrics[0].0;
    let find = |name: &str| {
        rows.iter()
            .find(|r| r.case == case.name && r.contender == name && r.unit == unit)
    };
    let mut out = Vec::new();
    for &(name, op, limit) in case.goals {
        // A limit such as 1/0.95 prints as 1.053, not 1.0526315789473684.
        let shown = format!("{limit:.3}");
        let shown = shown.trim_end_matches('0').trim_end_matches('.');
        let (what, value, how) = if name == "fdring" {
            (
                format!("fdring {unit} {op} {shown}"),
                find(name).and_then(|r| r.values.as_ref().ok().map(|v| v[0])),
                String::new(),
            )
        } else {
            let paired = find(name).and_then(|r| r.paired.as_ref().map(|p| (p, r.rounds)));
            (
                format!("fdring ÷ {name} {op} {shown}"),
                paired.map(|(p, _)| p.spread[0]),
                paired.map_or(String::new(), |(p, rounds)| {
                    let [_, min, max] = p.spread;
                    let counted = match p.counted {
                        0 => format!("every one of {rounds} rounds slow, over all"),
                        n => format!("{n} of {rounds} rounds"),
                    };
                    format!(" ({counted}, {}–{})", num(min), num(max))
                }),
            )
        };
        let verdict = match value {
            Some(v) if (op == "≥" && v >= limit) || (op == "≤" && v <= limit) => {
                format!("{} met{how}", num(v))
            }
            Some(v) => format!("{} MISSED{how}", num(v)),
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
