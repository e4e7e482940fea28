//! One check's result: its report figures (for the JSON file and the terminal) and its pass
//! criteria, each measured against its target.

use serde_json::{Map, Value, json};

pub struct Criterion {
    pub what: String,
    pub measured: String,
    pub target: String,
    pub pass: bool,
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

    pub fn criterion(&mut self, what: &str, measured: impl Into<String>, target: &str, pass: bool) {
        self.criteria.push(Criterion {
            what: what.to_owned(),
            measured: measured.into(),
            target: target.to_owned(),
            pass,
        });
    }

    pub fn passed(&self) -> bool {
        self.error.is_none() && !self.criteria.is_empty() && self.criteria.iter().all(|c| c.pass)
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
            let mark = if c.pass { "met    " } else { "NOT MET" };
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
