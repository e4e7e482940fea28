//! One check's result: its report figures (for the JSON file and the terminal), its pass
//! criteria, and its performance targets, each measured against its threshold.
//!
//! A criterion is behaviour (no request lost or broken, every stream ended properly, the
//! process exits cleanly): a miss fails the check and the run. A target is a speed or memory
//! figure (percentiles, knees, RSS trends): a miss is reported, as the benchmark reports its
//! targets, because on a shared 2-core CI machine such figures move with everything else
//! running there and would turn the build red or green by chance.

use serde_json::{Map, Value, json};

pub struct Criterion {
    pub what: String,
    pub measured: String,
    pub target: String,
    pub pass: bool,
    /// Reported only: a miss does not fail the check.
    pub performance: bool,
}

pub struct Outcome {
    pub id: &'static str,
    pub title: &'static str,
    /// Report figures, for the JSON file.
    figures: Map<String, Value>,
    /// What the terminal shows of them, in order.
    lines: Vec<String>,
    criteria: Vec<Criterion>,
    /// The check could not run to its end (a child died, set-up failed): it fails.
    pub error: Option<String>,
}

impl Outcome {
    pub fn new(id: &'static str, title: &'static str) -> Self {
        Self {
            id,
            title,
            figures: Map::new(),
            lines: Vec::new(),
            criteria: Vec::new(),
            error: None,
        }
    }

    /// A figure for the JSON file.
    pub fn figure(&mut self, key: &str, value: impl Into<Value>) {
        self.figures.insert(key.to_owned(), value.into());
    }

    /// A line of the report on the terminal (and in the JSON file's `report`).
    pub fn line(&mut self, text: impl Into<String>) {
        self.lines.push(text.into());
    }

    /// Behaviour the check requires: a miss fails it.
    pub fn criterion(&mut self, what: &str, measured: impl Into<String>, target: &str, pass: bool) {
        self.push(what, measured.into(), target, pass, false);
    }

    /// A speed or memory figure against its target: reported, a miss does not fail the check.
    pub fn target(&mut self, what: &str, measured: impl Into<String>, target: &str, met: bool) {
        self.push(what, measured.into(), target, met, true);
    }

    fn push(&mut self, what: &str, measured: String, target: &str, pass: bool, performance: bool) {
        self.criteria.push(Criterion {
            what: what.to_owned(),
            measured,
            target: target.to_owned(),
            pass,
            performance,
        });
    }

    /// Every behaviour criterion met (and there is at least one), and the check ran to its end.
    pub fn passed(&self) -> bool {
        let behaviour: Vec<_> = self.criteria.iter().filter(|c| !c.performance).collect();
        self.error.is_none() && !behaviour.is_empty() && behaviour.iter().all(|c| c.pass)
    }

    /// Performance targets not met (reported, not failing).
    pub fn targets_missed(&self) -> usize {
        self.criteria
            .iter()
            .filter(|c| c.performance && !c.pass)
            .count()
    }

    pub fn render(&self) -> String {
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        let mut out = format!(
            "\n== {} · {}: {verdict}\n",
            self.id.to_uppercase(),
            self.title
        );
        for line in &self.lines {
            out += &format!("   {line}\n");
        }
        for c in &self.criteria {
            let mark = match (c.pass, c.performance) {
                (true, _) => "met    ",
                (false, false) => "FAILED ",
                (false, true) => "NOT MET",
            };
            out += &format!(
                "   [{mark}] {}: {} (target {})\n",
                c.what, c.measured, c.target
            );
        }
        if let Some(e) = &self.error {
            out += &format!("   error: {e}\n");
        }
        out
    }

    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "title": self.title,
            "passed": self.passed(),
            "report": self.lines,
            "figures": self.figures,
            "criteria": self.criteria.iter().map(|c| json!({
                "what": c.what, "measured": c.measured, "target": c.target, "pass": c.pass,
                "kind": if c.performance { "target" } else { "criterion" },
            })).collect::<Vec<_>>(),
            "error": self.error,
        })
    }
}

/// Milliseconds with two decimals, from microseconds.
pub fn ms(us: f64) -> f64 {
    (us / 10.0).round() / 100.0
}

/// MiB with one decimal, from KiB.
pub fn mib(kib: u64) -> f64 {
    (kib as f64 / 102.4).round() / 10.0
}
