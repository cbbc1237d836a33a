//! UTC calendar boundaries for quota-style fixed windows.
//!
//! The same arithmetic runs in the Redis script (`scripts/decide.lua`); both use only
//! integer division of non-negative numbers so that they agree to the microsecond.

use std::time::Duration;

const US_PER_SEC: i64 = 1_000_000;
const US_PER_DAY: i64 = 86_400 * US_PER_SEC;

/// A UTC calendar period that a fixed window can be aligned to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize, schemars::JsonSchema),
    serde(rename_all = "snake_case"),
    schemars(rename = "PeriodName")
)]
#[non_exhaustive]
pub enum Period {
    /// Starts at second 0 of each minute.
    Minute,
    /// Starts at minute 0 of each hour.
    Hour,
    /// Starts at 00:00 UTC.
    Day,
    /// Starts on Monday 00:00 UTC (ISO 8601 weeks).
    Week,
    /// Starts on the 1st at 00:00 UTC.
    Month,
}

impl Period {
    /// The period's length; 30 days for a month (its real length varies).
    pub fn nominal(self) -> Duration {
        Duration::from_secs(match self {
            Period::Minute => 60,
            Period::Hour => 3600,
            Period::Day => 86_400,
            Period::Week => 7 * 86_400,
            Period::Month => 30 * 86_400,
        })
    }

    /// A stable code shared with the Redis script.
    pub(crate) fn code(self) -> u8 {
        match self {
            Period::Minute => 1,
            Period::Hour => 2,
            Period::Day => 3,
            Period::Week => 4,
            Period::Month => 5,
        }
    }

    /// `(start, end)` in microseconds since the Unix epoch of the period holding `now_us`.
    pub(crate) fn bounds(self, now_us: i64) -> (i64, i64) {
        let fixed = |len: i64| {
            let start = now_us.div_euclid(len) * len;
            (start, start + len)
        };
        match self {
            Period::Minute => fixed(60 * US_PER_SEC),
            Period::Hour => fixed(3600 * US_PER_SEC),
            Period::Day => fixed(US_PER_DAY),
            Period::Week => {
                let day = now_us.div_euclid(US_PER_DAY);
                // 1970-01-01 was a Thursday: Monday-based weekday is (day + 3) mod 7.
                let start = (day - (day + 3).rem_euclid(7)) * US_PER_DAY;
                (start, start + 7 * US_PER_DAY)
            }
            Period::Month => {
                let (y, m, _) = civil_from_days(now_us.div_euclid(US_PER_DAY));
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (
                    days_from_civil(y, m, 1) * US_PER_DAY,
                    days_from_civil(ny, nm, 1) * US_PER_DAY,
                )
            }
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = US_PER_SEC;

    #[test]
    fn month_bounds_cross_years_and_leap_days() {
        // 2024-02-29T12:00:00Z = 1709208000
        let (start, end) = Period::Month.bounds(1_709_208_000 * S);
        assert_eq!(start, 1_706_745_600 * S); // 2024-02-01
        assert_eq!(end, 1_709_251_200 * S); // 2024-03-01
                                            // 2025-12-31T23:59:59Z = 1767225599
        let (start, end) = Period::Month.bounds(1_767_225_599 * S);
        assert_eq!(start, 1_764_547_200 * S); // 2025-12-01
        assert_eq!(end, 1_767_225_600 * S); // 2026-01-01
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2026-11-23 is a Monday: 1795392000. Wednesday noon of that week:
        let (start, end) = Period::Week.bounds((1_795_392_000 + 2 * 86_400 + 43_200) * S);
        assert_eq!(start, 1_795_392_000 * S);
        assert_eq!(end - start, 7 * US_PER_DAY);
        // Monday 00:00 exactly belongs to the new week.
        assert_eq!(Period::Week.bounds(1_795_392_000 * S).0, 1_795_392_000 * S);
    }

    #[test]
    fn civil_round_trip() {
        for day in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }

    #[test]
    fn minute_hour_day() {
        let now = 1_795_392_000 * S + 3_723 * S + 5; // 01:02:03.000005
        assert_eq!(Period::Minute.bounds(now).0, 1_795_392_000 * S + 3_720 * S);
        assert_eq!(Period::Hour.bounds(now).0, 1_795_392_000 * S + 3_600 * S);
        assert_eq!(
            Period::Day.bounds(now),
            (1_795_392_000 * S, 1_795_478_400 * S)
        );
    }
}
