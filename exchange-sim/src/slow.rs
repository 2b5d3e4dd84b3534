//! Slow calendars, as Exchange has them: exporting a calendar item costs the server far more than
//! a message (`calendar_export_ms` each), and a request that would run past the server's time
//! limit (`request_limit_ms`; Exchange's is about a minute) fails with `ErrorTimeoutExpired` once
//! the limit has passed — as a SOAP fault, or (`TimeoutStyle::Messages`) with the items that fit
//! exported and an `ErrorTimeoutExpired` message for each of the rest. `add_calendar_items` gives
//! the first mailbox a big calendar.

use crate::model::{Item, State};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// How a request over the time limit is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TimeoutStyle {
    /// A SOAP fault `ErrorTimeoutExpired` for the whole request.
    #[default]
    Fault,
    /// The items that fit are exported; each of the rest gets an `ErrorTimeoutExpired` message.
    Messages,
}

#[derive(Debug, Clone, Copy)]
pub struct SlowSettings {
    /// Server time per exported calendar item.
    pub calendar_export_ms: u64,
    /// The longest an ExportItems request may run; none: no limit.
    pub request_limit_ms: Option<u64>,
    pub timeout_style: TimeoutStyle,
}

impl Default for SlowSettings {
    fn default() -> Self {
        SlowSettings { calendar_export_ms: 2, request_limit_ms: None, timeout_style: TimeoutStyle::Fault }
    }
}

/// What the time limit leaves of an export request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Budgeted {
    /// Everything fits; the server works this long.
    All(Duration),
    /// Only the first `fits` items fit; the request ends when the limit has passed.
    Partial { fits: usize, limit: Duration },
}

impl SlowSettings {
    fn cost(&self, it: &Item) -> u64 {
        if it.class == "IPM.Appointment" {
            self.calendar_export_ms
        } else {
            0
        }
    }

    /// How an export of `items` goes under the time limit.
    pub(crate) fn budget(&self, items: &[&Item]) -> Budgeted {
        let total: u64 = items.iter().map(|i| self.cost(i)).sum();
        match self.request_limit_ms {
            Some(limit) if total > limit => {
                let mut spent = 0;
                let fits = items
                    .iter()
                    .take_while(|i| {
                        spent += self.cost(i);
                        spent <= limit
                    })
                    .count();
                Budgeted::Partial { fits, limit: Duration::from_millis(limit) }
            }
            _ => Budgeted::All(Duration::from_millis(total)),
        }
    }
}

impl State {
    /// Adds `n` appointments to the first mailbox's Calendar.
    pub fn add_calendar_items(&mut self, n: usize) {
        let Some(m) = self.mailboxes.iter().position(|m| !m.public && m.part == crate::stores::Part::Primary) else {
            return;
        };
        let Some(cal) = self.mailboxes[m].folders.iter().find(|f| f.class == "IPF.Appointment").cloned() else {
            return;
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0xca1e_da55);
        for _ in 0..n {
            let item = self.new_item(&mut rng, &cal, m, 0.0);
            self.mailboxes[m].items.push(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_cuts_a_request_where_the_time_runs_out() {
        let mut s = State::generate(1, "example.com", 1, 0, 0.0);
        s.add_calendar_items(10);
        let items: Vec<&Item> = s.mailboxes[0].items.iter().collect();
        assert_eq!(items.len(), 10);
        let slow = SlowSettings { calendar_export_ms: 20, request_limit_ms: Some(100), ..Default::default() };
        assert_eq!(slow.budget(&items[..5]), Budgeted::All(Duration::from_millis(100)));
        assert_eq!(slow.budget(&items), Budgeted::Partial { fits: 5, limit: Duration::from_millis(100) });
        assert_eq!(SlowSettings::default().budget(&items), Budgeted::All(Duration::from_millis(20)));
    }
}
