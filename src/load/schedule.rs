//! Open-loop send times. A total rate R over C connections gives each connection one request
//! every C/R seconds, connection `i` offset by i/R so the connections interleave evenly and
//! the target sees one request every 1/R seconds. A request's latency is measured from the
//! time it was due here, whether or not it could be sent then.

use std::time::{Duration, Instant};

/// The intended send times of one connection.
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    /// Seconds before this connection's first request.
    offset: f64,
    /// Seconds between two of its requests.
    interval: f64,
    /// Requests scheduled so far.
    sent: u64,
}

impl Schedule {
    /// The schedule of connection `index` of `connections` sharing `rate` requests per
    /// second, counted from `start`. `rate` must be positive.
    pub fn new(start: Instant, rate: f64, connections: usize, index: usize) -> Schedule {
        Schedule {
            start,
            offset: index as f64 / rate,
            interval: connections as f64 / rate,
            sent: 0,
        }
    }

    /// The intended time of the next request, advancing the schedule.
    pub fn next_due(&mut self) -> Instant {
        let at = self.offset + self.sent as f64 * self.interval;
        self.sent += 1;
        self.start + Duration::from_secs_f64(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_interleave_at_the_total_rate() {
        let start = Instant::now();
        let mut a = Schedule::new(start, 100.0, 2, 0);
        let mut b = Schedule::new(start, 100.0, 2, 1);
        let ms = |t: Instant| (t - start).as_micros();
        assert_eq!(ms(a.next_due()), 0);
        assert_eq!(ms(b.next_due()), 10_000);
        assert_eq!(ms(a.next_due()), 20_000);
        assert_eq!(ms(b.next_due()), 30_000);
        assert_eq!(ms(a.next_due()), 40_000);
    }

    #[test]
    fn times_do_not_drift_over_many_requests() {
        let start = Instant::now();
        let mut one = Schedule::new(start, 3.0, 1, 0);
        let last = (0..3001).map(|_| one.next_due()).last().unwrap();
        assert_eq!((last - start).as_millis(), 1_000_000);
    }
}
