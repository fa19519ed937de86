//! CPU time spent by this process and by the nats-server, to say where a measurement's CPU
//! went (on two cores the worker, the load generator and the server share them).

use std::time::Duration;

fn usage() -> Option<libc::rusage> {
    // SAFETY: `usage` is a valid, writable rusage and RUSAGE_SELF a constant Linux knows.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    (unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0).then_some(usage)
}

/// CPU time (user + system) of this whole process so far.
pub fn process() -> Duration {
    let Some(usage) = usage() else {
        return Duration::ZERO;
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Times this process's threads went to sleep waiting (voluntary context switches): each is
/// a wake-up later, which on a virtual machine is where the hypervisor's delays land.
pub fn sleeps() -> u64 {
    usage().map_or(0, |u| u.ru_nvcsw as u64)
}

/// CPU time (user + system) of process `pid` so far, at the kernel's clock-tick resolution
/// (10 ms on most systems); zero when it cannot be read.
pub fn of_pid(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis
    // start at field 3, so utime and stime (fields 14 and 15) are the 12th and 13th.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf only reads a constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros((ticks(11) + ticks(12)) * 1_000_000 / per_second)
}

/// The machine's CPU time so far as (stolen, total) clock ticks, from `/proc/stat`: time a
/// virtual machine's CPUs were ready to run while the hypervisor ran someone else.
fn host_ticks() -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    (f.get(7).copied().unwrap_or(0), f.iter().sum())
}

/// The share of CPU time the hypervisor took away between [`Steal::start`] and
/// [`Steal::percent`]: a latency tail measured while it is high is the host's, not ours.
#[derive(Debug, Clone, Copy)]
pub struct Steal((u64, u64));

impl Steal {
    /// Starts measuring.
    pub fn start() -> Self {
        Steal(host_ticks())
    }

    /// Stolen time since the start, in percent of all CPU time.
    pub fn percent(&self) -> f64 {
        let (stolen, total) = host_ticks();
        let total = total.saturating_sub(self.0.1);
        if total == 0 {
            return 0.0;
        }
        stolen.saturating_sub(self.0.0) as f64 * 100.0 / total as f64
    }
}

/// CPU used by this process and by the server between [`Meter::start`] and [`Meter::stop`].
#[derive(Debug, Clone, Copy)]
pub struct Meter {
    server_pid: u32,
    process: Duration,
    server: Duration,
    sleeps: u64,
}

/// What a [`Meter`] measured, per request.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerRequest {
    /// This process: the worker (or pass-through loop) and the load generator.
    pub client_us: f64,
    /// The nats-server.
    pub server_us: f64,
    /// This process's threads going to sleep (see [`sleeps`]).
    pub client_sleeps: f64,
}

impl Meter {
    /// Starts measuring; `server_pid` is the nats-server's.
    pub fn start(server_pid: u32) -> Self {
        Meter {
            server_pid,
            process: process(),
            server: of_pid(server_pid),
            sleeps: sleeps(),
        }
    }

    /// CPU per request over `requests` requests since the start.
    pub fn stop(&self, requests: usize) -> PerRequest {
        let n = requests.max(1) as f64;
        PerRequest {
            client_us: (process() - self.process).as_secs_f64() * 1e6 / n,
            server_us: (of_pid(self.server_pid).saturating_sub(self.server)).as_secs_f64() * 1e6
                / n,
            client_sleeps: sleeps().saturating_sub(self.sleeps) as f64 / n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_is_a_share_of_the_machine() {
        let steal = Steal::start();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let p = steal.percent();
        assert!((0.0..=100.0).contains(&p), "{p}");
        let (stolen, total) = host_ticks();
        assert!(total > 0 && stolen <= total, "{stolen} of {total}");
    }

    #[test]
    fn this_process_and_its_pid_agree() {
        // Burn some CPU so both clocks move.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let mine = process();
        let by_pid = of_pid(std::process::id());
        assert!(mine > Duration::ZERO);
        // Tick resolution: within 50 ms of each other.
        let diff = mine.abs_diff(by_pid);
        assert!(diff < Duration::from_millis(50), "{mine:?} vs {by_pid:?}");
    }
}
