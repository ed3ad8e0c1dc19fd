//! The paired ratio (`shared/BENCHMARKS.md`, "The headline is a paired
//! ratio"): in each round, fdring ÷ contender for that round's two
//! measurements, and the median of those per-round ratios over the rounds
//! that did not fall in a slow phase of the machine.
//!
//! It knows rounds of numbers, units and contenders' names; not how a case
//! runs, nor how the table looks.

/// A round in which the judge did worse than its own median by more than
/// this factor is a slow phase.
pub const SLOW_FACTOR: f64 = 2.0;

/// The median, min and max of `v`, which must not be empty.
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

/// Whether `unit` is a time per something (a round trip, a connection), in
/// which lower is better; in the others (GB/s, Mitems/s, ...) higher is.
pub fn lower_is_better(unit: &str) -> bool {
    ["s/", "ms/", "µs/", "ns/"]
        .iter()
        .any(|prefix| unit.starts_with(prefix))
}

/// The contender whose rounds tell a slow phase: the case's floor (the
/// first contender named "floor ..."), since it is the least code and so
/// moves only with the machine. A case with no floor is judged on fdring's
/// own measurement instead, which leaves fdring's own bad rounds out of
/// its ratios: read those cases' ratios as slightly in fdring's favour.
pub fn judge<'a>(names: impl IntoIterator<Item = &'a str> + Clone) -> Option<usize> {
    let position = |f: fn(&str) -> bool| names.clone().into_iter().position(f);
    position(|name| name.starts_with("floor")).or_else(|| position(|name| name == "fdring"))
}

/// Which rounds were slow phases, from the judge's value in each round:
/// worse than its median by more than [`SLOW_FACTOR`] (below half of it in
/// throughput, above twice it in time per round trip).
pub fn slow_rounds(judge: &[f64], unit: &str) -> Vec<bool> {
    if judge.is_empty() {
        return Vec::new();
    }
    let [median, ..] = spread(judge.to_vec());
    judge
        .iter()
        .map(|&v| {
            if lower_is_better(unit) {
                v > median * SLOW_FACTOR
            } else {
                v < median / SLOW_FACTOR
            }
        })
        .collect()
}

/// fdring ÷ one contender, round by round.
#[derive(Clone, Debug)]
pub struct Paired {
    /// Every round's ratio, slow or not (NaN where one side had no value).
    pub ratios: Vec<f64>,
    /// Which rounds were slow phases, left out of `spread`.
    pub slow: Vec<bool>,
    /// Median, min, max of the ratios of the rounds that were not slow.
    pub spread: [f64; 3],
    /// How many rounds `spread` is over: 0 if every round was slow and
    /// `spread` is over all of them.
    pub counted: usize,
}

/// Pairs fdring's and a contender's values of the same rounds, leaving the
/// slow ones out; if every round was slow, over all of them (and `counted`
/// is 0). `None` if no round has both values.
pub fn pair(fdring: &[f64], contender: &[f64], slow: &[bool]) -> Option<Paired> {
    let ratios: Vec<f64> = fdring.iter().zip(contender).map(|(f, c)| f / c).collect();
    let slow: Vec<bool> = (0..ratios.len())
        .map(|i| slow.get(i).copied().unwrap_or(false))
        .collect();
    let finite = |keep: fn(bool) -> bool| -> Vec<f64> {
        ratios
            .iter()
            .zip(&slow)
            .filter(|&(r, &s)| keep(s) && r.is_finite())
            .map(|(&r, _)| r)
            .collect()
    };
    let kept = finite(|slow| !slow);
    let counted = kept.len();
    let kept = if counted > 0 { kept } else { finite(|_| true) };
    (!kept.is_empty()).then(|| Paired {
        spread: spread(kept),
        ratios,
        slow,
        counted,
    })
}
