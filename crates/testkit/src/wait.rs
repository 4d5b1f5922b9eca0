//! Polling with a deadline: the kit's only way to wait for something.

use std::fmt::Display;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Calls `f` until it returns `Ok(Some(value))`, and returns that value.
///
/// `Ok(None)` means "not yet"; `Err(e)` also means "not yet" and is remembered, so that when
/// `timeout` passes the error names `what` and the last error seen. Polls start 5 ms apart and
/// back off to 250 ms; `f` is always called at least once, and once more at the deadline.
///
/// ```
/// use std::time::Duration;
/// let mut n = 0;
/// let got = cairn_testkit::wait_until("n to reach 3", Duration::from_secs(5), || {
///     n += 1;
///     Ok::<_, std::io::Error>((n >= 3).then_some(n))
/// })
/// .unwrap();
/// assert_eq!(got, 3);
/// ```
pub fn wait_until<T, E: Display>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>, E>,
) -> Result<T> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut delay = Duration::from_millis(5);
    let mut last_error = String::from("(none: the condition was never met)");
    loop {
        match f() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = e.to_string(),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                timeout,
                last_error,
            });
        }
        std::thread::sleep(delay.min(deadline - now));
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}
