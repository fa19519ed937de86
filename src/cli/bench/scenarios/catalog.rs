//! The fault shapes: what each scenario does to which simulated provider, and when.
//!
//! Every scenario runs the same three providers (`openai` priority 1, `anthropic` 2, `gemini`
//! 3) answering in ~50 ms; the fault hits the priority-1 provider (all three for `all_down`)
//! from a quarter of the run for half of it, unless said otherwise.

use std::time::Duration;

use crate::simulator::{ErrorRates, Faults, Latency, Outage};

/// The simulated providers, in priority order: (id, wire API, model).
pub const PROVIDERS: [(&str, crate::config::Api, &str); 3] = [
    ("openai", crate::config::Api::Openai, "gpt-4.1"),
    (
        "anthropic",
        crate::config::Api::Anthropic,
        "claude-sonnet-4-5",
    ),
    ("gemini", crate::config::Api::Gemini, "gemini-2.5-flash"),
];

/// The priority-1 provider, the one most scenarios break.
pub const P1: &str = "openai";

/// A fault shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// P1 answers every call with 503.
    Outage503,
    /// P1 accepts connections and never answers.
    Hang,
    /// P1 answers 429 with `Retry-After: 5`.
    RateLimit,
    /// P1's port is closed (the process is gone).
    Refused,
    /// All three providers answer 503 for a quarter of the run.
    AllDown,
    /// P1 alternates 3 s of 503s and 3 s healthy.
    Flapping,
    /// P1 fails 30 % of its calls with 500.
    Brownout,
    /// P1's latency ramps up to 3 s.
    Slow,
    /// Requests carry 200–500 ms deadlines while P1 is slow.
    DeadlineSqueeze,
}

impl Scenario {
    /// Every scenario, in the order they run.
    pub const ALL: [Scenario; 9] = [
        Scenario::Outage503,
        Scenario::Hang,
        Scenario::RateLimit,
        Scenario::Refused,
        Scenario::AllDown,
        Scenario::Flapping,
        Scenario::Brownout,
        Scenario::Slow,
        Scenario::DeadlineSqueeze,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Outage503 => "outage_503",
            Scenario::Hang => "hang",
            Scenario::RateLimit => "rate_limit",
            Scenario::Refused => "refused",
            Scenario::AllDown => "all_down",
            Scenario::Flapping => "flapping",
            Scenario::Brownout => "brownout",
            Scenario::Slow => "slow",
            Scenario::DeadlineSqueeze => "deadline_squeeze",
        }
    }

    /// Parses a comma-separated list; an unknown name is an error listing the known ones.
    pub fn parse_list(list: &str) -> Result<Vec<Scenario>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|name| {
                Scenario::ALL
                    .into_iter()
                    .find(|s| s.name() == name)
                    .ok_or_else(|| {
                        let known: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                        format!("unknown scenario `{name}`; known: {}", known.join(", "))
                    })
            })
            .collect()
    }

    /// The scenario's timeline for a run of nominal length `run` (40 s by default).
    pub fn plan(self, run: Duration) -> Plan {
        let start = run / 4;
        let half = run / 2;
        let p1_during = |faults: Faults| Plan::fault_p1(run, start, start + half, faults);
        match self {
            Scenario::Outage503 => p1_during(with_baseline(Faults {
                outage: Some(Outage::default()),
                ..Faults::default()
            })),
            Scenario::Hang => p1_during(Faults {
                hang: true,
                ..Faults::default()
            }),
            Scenario::RateLimit => p1_during(with_baseline(Faults {
                error_rate: ErrorRates {
                    rate_limited: 1.0,
                    ..ErrorRates::default()
                },
                retry_after_s: Some(5),
                ..Faults::default()
            })),
            Scenario::Refused => p1_during(Faults {
                refuse_connections: true,
                ..Faults::default()
            }),
            Scenario::AllDown => {
                let end = start + run / 4;
                let down = with_baseline(Faults {
                    outage: Some(Outage::default()),
                    ..Faults::default()
                });
                let mut changes = Vec::new();
                for (id, _, _) in PROVIDERS {
                    changes.push(Change::new(start, id, down.clone()));
                }
                for (id, _, _) in PROVIDERS {
                    changes.push(Change::new(end, id, baseline()));
                }
                Plan {
                    run,
                    window: (start, end),
                    faulty: PROVIDERS.iter().map(|p| p.0).collect(),
                    changes,
                    deadlines_ms: None,
                }
            }
            Scenario::Flapping => {
                // 30 s of flapping in a 40 s run: the run grows so "after" stays a quarter.
                let window = run * 3 / 4;
                let end = start + window;
                let step = Duration::from_secs(3);
                let failing = with_baseline(Faults {
                    outage: Some(Outage::default()),
                    ..Faults::default()
                });
                let mut changes = Vec::new();
                let (mut at, mut down) = (start, true);
                while at < end {
                    let faults = if down { failing.clone() } else { baseline() };
                    changes.push(Change::new(at, P1, faults));
                    at += step;
                    down = !down;
                }
                changes.push(Change::new(end, P1, baseline()));
                Plan {
                    run: end + run / 4,
                    window: (start, end),
                    faulty: vec![P1],
                    changes,
                    deadlines_ms: None,
                }
            }
            Scenario::Brownout => p1_during(with_baseline(Faults {
                error_rate: ErrorRates {
                    server_error: 0.3,
                    ..ErrorRates::default()
                },
                ..Faults::default()
            })),
            Scenario::Slow => {
                // A linear ramp from the usual ~50 ms to 3 s over the fault window, a step a
                // second.
                let end = start + half;
                let steps = half.as_secs().max(1);
                let mut changes = Vec::new();
                for k in 0..steps {
                    let p50 = 50 + (3_000 - 50) * (k + 1) / steps;
                    let faults = Faults {
                        latency_ms: Some(Latency::LogNormal {
                            p50,
                            p99: p50 + p50 / 2,
                        }),
                        ..Faults::default()
                    };
                    changes.push(Change::new(start + Duration::from_secs(k), P1, faults));
                }
                changes.push(Change::new(end, P1, baseline()));
                Plan {
                    run,
                    window: (start, end),
                    faulty: vec![P1],
                    changes,
                    deadlines_ms: None,
                }
            }
            Scenario::DeadlineSqueeze => {
                let mut plan = p1_during(Faults {
                    latency_ms: Some(Latency::LogNormal {
                        p50: 1_000,
                        p99: 2_500,
                    }),
                    ..Faults::default()
                });
                plan.deadlines_ms = Some((200, 500));
                plan
            }
        }
    }
}

/// How every provider answers when it is healthy: ~50 ms with a modest tail.
pub fn baseline() -> Faults {
    Faults {
        latency_ms: Some(Latency::LogNormal { p50: 50, p99: 120 }),
        ..Faults::default()
    }
}

/// `faults` on top of the usual latency (vendors are slow on errors too).
fn with_baseline(faults: Faults) -> Faults {
    Faults {
        latency_ms: baseline().latency_ms,
        ..faults
    }
}

/// One change of one provider's faults, `at` after the run starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub at: Duration,
    pub provider: &'static str,
    pub faults: Faults,
}

impl Change {
    fn new(at: Duration, provider: &'static str, faults: Faults) -> Self {
        Change {
            at,
            provider,
            faults,
        }
    }
}

/// A scenario's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// How long requests are sent.
    pub run: Duration,
    /// When the fault starts and ends (the "during" phase).
    pub window: (Duration, Duration),
    /// The providers the fault hits.
    pub faulty: Vec<&'static str>,
    /// Fault changes, in time order.
    pub changes: Vec<Change>,
    /// Request deadlines drawn uniformly from this range (ms); `None` = the worker default.
    pub deadlines_ms: Option<(u64, u64)>,
}

impl Plan {
    fn fault_p1(run: Duration, start: Duration, end: Duration, faults: Faults) -> Plan {
        Plan {
            run,
            window: (start, end),
            faulty: vec![P1],
            changes: vec![
                Change::new(start, P1, faults),
                Change::new(end, P1, baseline()),
            ],
            deadlines_ms: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_list_the_known_ones() {
        assert_eq!(
            Scenario::parse_list("hang, all_down").unwrap(),
            [Scenario::Hang, Scenario::AllDown]
        );
        let e = Scenario::parse_list("hang,nope").unwrap_err();
        assert!(
            e.contains("`nope`") && e.contains("deadline_squeeze"),
            "{e}"
        );
    }

    #[test]
    fn timelines_fit_their_runs() {
        let run = Duration::from_secs(40);
        for s in Scenario::ALL {
            let p = s.plan(run);
            assert!(
                p.window.0 < p.window.1 && p.window.1 < p.run,
                "{}",
                s.name()
            );
            assert!(
                p.changes.windows(2).all(|w| w[0].at <= w[1].at),
                "{}",
                s.name()
            );
            assert!(p.changes.iter().all(|c| c.at <= p.window.1), "{}", s.name());
            // Every fault is lifted when the window ends.
            for id in &p.faulty {
                let last = p.changes.iter().rev().find(|c| c.provider == *id).unwrap();
                assert_eq!(
                    (last.at, &last.faults),
                    (p.window.1, &baseline()),
                    "{}",
                    s.name()
                );
            }
        }
        let flapping = Scenario::Flapping.plan(run);
        assert_eq!(
            flapping.window,
            (Duration::from_secs(10), Duration::from_secs(40))
        );
        assert_eq!(
            Scenario::AllDown.plan(run).window.1,
            Duration::from_secs(20)
        );
    }
}
