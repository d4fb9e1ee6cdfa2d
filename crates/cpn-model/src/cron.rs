//! Five-field cron schedules (`minute hour day-of-month month day-of-week`), for ops rules
//! triggered by time (DO-OPS). Fields take `*`, numbers, ranges `a-b`, lists `a,b` and
//! steps `*/n` or `a-b/n`; day of week 0–7 with 0 and 7 both Sunday. As in Vixie cron, when
//! both day fields are restricted a time matches if either does.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("cron field {field} ({text:?}): {reason}")]
pub struct CronError {
    pub field: &'static str,
    pub text: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_any: bool,
    weekdays_any: bool,
}

const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

fn field(text: &str, (name, lo, hi): (&'static str, u32, u32)) -> Result<u64, CronError> {
    let err = |reason: String| CronError {
        field: name,
        text: text.to_string(),
        reason,
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| err(format!("step {s:?} is not a number above 0")))?,
            ),
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let n = |x: &str| {
                x.parse::<u32>()
                    .map_err(|_| err(format!("{x:?} is not a number")))
            };
            (n(a)?, n(b)?)
        } else {
            let v = range
                .parse::<u32>()
                .map_err(|_| err(format!("{range:?} is not a number")))?;
            (v, if part.contains('/') { hi } else { v })
        };
        if a < lo || b > hi || a > b {
            return Err(err(format!("must be within {lo}-{hi}")));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl Cron {
    pub fn parse(text: &str) -> Result<Cron, CronError> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(CronError {
                field: "schedule",
                text: text.to_string(),
                reason: format!(
                    "needs 5 fields (minute hour day-of-month month day-of-week), got {}",
                    parts.len()
                ),
            });
        }
        let mut weekdays = field(parts[4], FIELDS[4])?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Cron {
            minutes: field(parts[0], FIELDS[0])?,
            hours: field(parts[1], FIELDS[1])?,
            days: field(parts[2], FIELDS[2])?,
            months: field(parts[3], FIELDS[3])?,
            weekdays,
            days_any: parts[2] == "*",
            weekdays_any: parts[4] == "*",
        })
    }

    /// Does the minute starting at this time (UTC fields) match?
    pub fn matches(&self, minute: u32, hour: u32, day: u32, month: u32, weekday: u32) -> bool {
        let has = |bits: u64, v: u32| bits & (1 << v) != 0;
        let day_ok = match (self.days_any, self.weekdays_any) {
            (false, false) => has(self.days, day) || has(self.weekdays, weekday),
            _ => has(self.days, day) && has(self.weekdays, weekday),
        };
        has(self.minutes, minute) && has(self.hours, hour) && has(self.months, month) && day_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_steps_ranges_and_lists() {
        let c = Cron::parse("*/15 9-17 * * 1-5").unwrap();
        assert!(c.matches(30, 9, 3, 6, 1));
        assert!(!c.matches(31, 9, 3, 6, 1));
        assert!(!c.matches(30, 8, 3, 6, 1));
        assert!(!c.matches(30, 9, 3, 6, 0));
        let every = Cron::parse("* * * * *").unwrap();
        assert!(every.matches(59, 23, 31, 12, 6));
        let sunday = Cron::parse("0 0 * * 7").unwrap();
        assert!(sunday.matches(0, 0, 1, 1, 0));
        let either = Cron::parse("0 0 1 * 1").unwrap();
        assert!(either.matches(0, 0, 1, 5, 4) && either.matches(0, 0, 2, 5, 1));
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(Cron::parse("61 * * * *").unwrap_err().field, "minute");
        assert_eq!(Cron::parse("* * * *").unwrap_err().field, "schedule");
        assert_eq!(Cron::parse("* * * * */0").unwrap_err().field, "day of week");
    }
}
