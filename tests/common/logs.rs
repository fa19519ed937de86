//! Log capture for the secret canary: every log line a test's workers write (in this process,
//! or in worker processes through their log files) is checked for the fake API key.

use std::io::Write;
use std::sync::{Mutex, Once};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Every line logged in this process since [`capture`].
static LINES: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

/// Appends to [`LINES`]; echoes to the test output when `RUST_LOG` is set, so a failing
/// test can still be read.
struct Capture {
    echo: bool,
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LINES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        if self.echo {
            eprint!("{}", String::from_utf8_lossy(buf));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct MakeCapture;

impl<'a> MakeWriter<'a> for MakeCapture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Capture {
        Capture {
            echo: std::env::var_os("RUST_LOG").is_some(),
        }
    }
}

/// Installs (once per process) a subscriber that keeps every log line, at debug level for
/// this crate unless `RUST_LOG` says otherwise.
pub fn capture() {
    INSTALL.call_once(|| {
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,ai_failover=debug"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(MakeCapture)
            .try_init()
            .expect("no other subscriber: the canary must see every log line");
    });
}

/// True if a captured log line contains `needle` (to show a check looked at real lines).
pub fn logged(needle: &str) -> bool {
    let lines = LINES.lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&lines).contains(needle)
}

/// Panics with the offending line if `secret` appears in a captured log line (and if nothing
/// was captured at all: that would prove nothing).
pub fn assert_not_logged(secret: &str) {
    let lines = LINES.lock().unwrap_or_else(|p| p.into_inner());
    assert!(!lines.is_empty(), "no log line was captured");
    assert_not_in(
        &String::from_utf8_lossy(&lines),
        secret,
        "this process's log",
    );
}

/// Panics with the offending line if `secret` appears in the log file at `path` (which must
/// hold something: an empty log proves nothing).
pub fn assert_not_in_file(path: &std::path::Path, secret: &str) {
    let text = std::fs::read(path).unwrap_or_default();
    assert!(!text.is_empty(), "{} is empty", path.display());
    assert_not_in(
        &String::from_utf8_lossy(&text),
        secret,
        &path.display().to_string(),
    );
}

fn assert_not_in(text: &str, secret: &str, what: &str) {
    if let Some(line) = text.lines().find(|l| l.contains(secret)) {
        panic!("the secret appears in {what}: {line}");
    }
}
