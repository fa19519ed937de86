//! Collecting what is wrong with a configuration: each problem names its key and its fix.

use std::fmt;

/// One thing wrong with the configuration: the key, what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}; fix: {}", self.key, self.problem, self.fix)
    }
}

/// The problems found so far.
pub(super) struct Checker(pub(super) Vec<Problem>);

impl Checker {
    pub(super) fn check(
        &mut self,
        ok: bool,
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: &str,
    ) {
        if !ok {
            self.0.push(Problem {
                key: key.into(),
                problem: problem.into(),
                fix: fix.to_string(),
            });
        }
    }

    pub(super) fn unit(&mut self, v: f64, key: String) {
        self.check(
            (0.0..=1.0).contains(&v),
            key,
            format!("{v} is outside 0.0..=1.0"),
            "use a fraction between 0 and 1",
        );
    }
}
