//! Date-times and durations exactly as the Batch service writes them.
//!
//! * Date-times are ISO 8601 UTC with seven fractional digits
//!   (`2016-11-21T22:43:31.4733476Z`). Because the format is fixed-width, the
//!   text sorts in time order, which the store relies on for `$filter`.
//! * Durations are ISO 8601 (`PT1H`, `P1D`, `PT01H00M00S` from the 15.x SDK).
//!   Internally they are .NET ticks (100 ns), the unit of the service's
//!   `TimeSpan`; "infinite" is `TimeSpan.MaxValue`,
//!   written `P10675199DT2H48M5.4775807S`.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Formats a UTC instant the way the service does: 7 fractional digits and `Z`.
pub fn format_datetime(t: &DateTime<Utc>) -> String {
    with_datetime(t, str::to_string)
}

/// Hands `f` the instant in the service's format, from a stack buffer for
/// the usual years.
fn with_datetime<R>(t: &DateTime<Utc>, f: impl FnOnce(&str) -> R) -> R {
    let mut buf = [0u8; 28];
    match write_datetime(t, &mut buf) {
        Some(s) => f(s),
        None => f(&format_datetime_slow(t)),
    }
}

/// The service's format into `buf` without allocating (every stored task
/// carries several timestamps); None for years outside 0..=9999.
fn write_datetime<'a>(t: &DateTime<Utc>, buf: &'a mut [u8; 28]) -> Option<&'a str> {
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, t.month());
    put(8, 2, t.day());
    put(11, 2, t.hour());
    put(14, 2, t.minute());
    put(17, 2, t.second());
    put(20, 7, t.nanosecond().min(999_999_999) / 100);
    for (i, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (27, b'Z')] {
        buf[i] = c;
    }
    std::str::from_utf8(buf).ok()
}

fn format_datetime_slow(t: &DateTime<Utc>) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond().min(999_999_999) / 100
    )
}

/// Parses an ISO 8601 / RFC 3339 date-time with any number of fractional digits
/// and an offset or `Z`. A value without an offset is taken as UTC.
/// A leap second (`:60`) is refused: the service's format cannot print it back.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    let t = if let Some(t) = parse_service_datetime(s) {
        Some(t)
    } else if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        Some(t.with_timezone(&Utc))
    } else {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|n| Utc.from_utc_datetime(&n))
    };
    t.filter(|t| t.nanosecond() < 1_000_000_000)
}

/// Exactly the service's own format (what the store holds), without the
/// general parser: `YYYY-MM-DDTHH:MM:SS.fffffffZ`.
fn parse_service_datetime(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() != 28 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'.' || b[27] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?;
    let time = chrono::NaiveTime::from_hms_nano_opt(num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 27)? * 100)?;
    Some(Utc.from_utc_datetime(&date.and_time(time)))
}

/// A UTC instant that (de)serializes in the service's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(Utc::now())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        with_datetime(&self.0, |s| f.write_str(s))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        with_datetime(&self.0, |v| s.serialize_str(v))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_datetime(&s)
            .map(Timestamp)
            .ok_or_else(|| de::Error::custom(format!("The value must be a date-time such as 2025-01-31T08:00:00Z; it is '{s}'.")))
    }
}

/// Ticks (100 ns) per unit.
const TICKS_PER_SECOND: i64 = 10_000_000;
const TICKS_PER_MINUTE: i64 = 60 * TICKS_PER_SECOND;
const TICKS_PER_HOUR: i64 = 60 * TICKS_PER_MINUTE;
const TICKS_PER_DAY: i64 = 24 * TICKS_PER_HOUR;

/// An ISO 8601 duration held as .NET ticks, like the service's `TimeSpan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub i64);

impl Duration {
    /// `TimeSpan.MaxValue`: what the service reports for "no limit".
    pub const INFINITE: Duration = Duration(i64::MAX);
    pub const ZERO: Duration = Duration(0);

    pub fn from_days(d: i64) -> Self {
        Duration(d.saturating_mul(TICKS_PER_DAY))
    }
    pub fn from_secs(s: i64) -> Self {
        Duration(s.saturating_mul(TICKS_PER_SECOND))
    }
    pub fn from_std(d: std::time::Duration) -> Self {
        Duration(i64::try_from(d.as_nanos() / 100).unwrap_or(i64::MAX))
    }
    pub fn is_infinite(&self) -> bool {
        self.0 == i64::MAX
    }
    pub fn ticks(&self) -> i64 {
        self.0
    }
    /// As a std duration; negative values become zero.
    pub fn to_std(&self) -> std::time::Duration {
        let t = self.0.max(0) as u64;
        std::time::Duration::new(t / TICKS_PER_SECOND as u64, ((t % TICKS_PER_SECOND as u64) * 100) as u32)
    }

    /// Parses `[-]P[nY][nM][nW][nD][T[nH][nM][n[.f]S]]`. Years count 365 days
    /// and months 30, as .NET's `XmlConvert` does. Components may be
    /// zero-padded (`PT01H00M00S`) and seconds fractional.
    pub fn parse(s: &str) -> Option<Duration> {
        let s = s.trim();
        let (neg, s) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s),
        };
        let mut rest = s.strip_prefix('P').or_else(|| s.strip_prefix('p'))?;
        if rest.is_empty() {
            return None;
        }
        let mut total: i128 = 0;
        let mut in_time = false;
        let mut any = false;
        while !rest.is_empty() {
            if rest.starts_with(['T', 't']) {
                if in_time {
                    return None;
                }
                in_time = true;
                rest = &rest[1..];
                if rest.is_empty() {
                    return None;
                }
                continue;
            }
            let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))?;
            if end == 0 {
                return None;
            }
            let num = rest[..end].replace(',', ".");
            let unit = rest[end..].chars().next()?.to_ascii_uppercase();
            rest = rest.get(end + 1..)?; // a unit outside ASCII is not one
            let (int_part, frac_part) = match num.split_once('.') {
                Some((i, f)) => (i, f),
                None => (num.as_str(), ""),
            };
            if int_part.is_empty() && frac_part.is_empty() {
                return None;
            }
            let ip: i128 = if int_part.is_empty() { 0 } else { int_part.parse().ok()? };
            let unit_ticks: i128 = match (in_time, unit) {
                (false, 'Y') => 365 * TICKS_PER_DAY as i128,
                (false, 'M') => 30 * TICKS_PER_DAY as i128,
                (false, 'W') => 7 * TICKS_PER_DAY as i128,
                (false, 'D') => TICKS_PER_DAY as i128,
                (true, 'H') => TICKS_PER_HOUR as i128,
                (true, 'M') => TICKS_PER_MINUTE as i128,
                (true, 'S') => TICKS_PER_SECOND as i128,
                _ => return None,
            };
            if !frac_part.is_empty() && (!in_time || unit != 'S') {
                // Only seconds may be fractional in the service's format.
                return None;
            }
            total = total.checked_add(ip.checked_mul(unit_ticks)?)?;
            if !frac_part.is_empty() {
                let digits: String = frac_part.chars().take(7).collect();
                let scale = 10i128.pow(7 - digits.len() as u32);
                total += digits.parse::<i128>().ok()? * scale;
            }
            any = true;
        }
        if !any || total > i64::MAX as i128 {
            return None;
        }
        let t = total as i64;
        Some(Duration(if neg { -t } else { t }))
    }
}

impl fmt::Display for Duration {
    /// The canonical form .NET's `XmlConvert.ToString(TimeSpan)` produces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut t = self.0 as i128;
        if t < 0 {
            f.write_str("-")?;
            t = -t;
        }
        let days = t / TICKS_PER_DAY as i128;
        t %= TICKS_PER_DAY as i128;
        let hours = t / TICKS_PER_HOUR as i128;
        t %= TICKS_PER_HOUR as i128;
        let minutes = t / TICKS_PER_MINUTE as i128;
        t %= TICKS_PER_MINUTE as i128;
        let seconds = t / TICKS_PER_SECOND as i128;
        let frac = t % TICKS_PER_SECOND as i128;
        f.write_str("P")?;
        if days > 0 {
            write!(f, "{days}D")?;
        }
        if hours == 0 && minutes == 0 && seconds == 0 && frac == 0 {
            if days == 0 {
                f.write_str("T0S")?;
            }
            return Ok(());
        }
        f.write_str("T")?;
        if hours > 0 {
            write!(f, "{hours}H")?;
        }
        if minutes > 0 {
            write!(f, "{minutes}M")?;
        }
        if seconds > 0 || frac > 0 {
            if frac > 0 {
                let digits = format!("{frac:07}");
                write!(f, "{seconds}.{}S", digits.trim_end_matches('0'))?;
            } else {
                write!(f, "{seconds}S")?;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Duration::parse(&s)
            .ok_or_else(|| de::Error::custom(format!("The value must be an ISO 8601 duration such as PT1H30M; it is '{s}'.")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leap_seconds_are_refused_in_every_form() {
        // chrono reads `:60` as a leap second, which the service's format
        // cannot print back (found by the `body` fuzz target).
        for s in ["6-1-1T0:0:60", "2024-06-30T23:59:60Z", "2024-06-30T23:59:60.5000000Z", "2024-06-30T23:59:60+00:00"] {
            assert_eq!(parse_datetime(s), None, "{s}");
        }
        assert!(parse_datetime("2024-06-30T23:59:59.9999999Z").is_some());
    }

    #[test]
    fn the_fast_format_matches_the_general_one() {
        // A spread of instants (a simple LCG), the edges of the fast range,
        // and years outside it.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut instants: Vec<DateTime<Utc>> = (0..20_000)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let secs = (x >> 20) as i64 % 253_402_300_799; // up to 9999-12-31T23:59:59
                let nanos = (x % 1_000_000_000) as u32;
                DateTime::from_timestamp(secs, nanos).unwrap()
            })
            .collect();
        instants.push(DateTime::from_timestamp(0, 0).unwrap());
        instants.push(DateTime::from_timestamp(253_402_300_799, 999_999_999).unwrap());
        instants.push(DateTime::from_timestamp(-62_167_219_200, 0).unwrap()); // year 0
        for t in &instants {
            assert_eq!(format_datetime(t), format_datetime_slow(t));
            assert_eq!(Timestamp(*t).to_string(), format_datetime_slow(t));
            assert_eq!(serde_json::to_string(&Timestamp(*t)).unwrap(), format!("\"{}\"", format_datetime_slow(t)));
            // And back, by the fast parser and the general one alike.
            let text = format_datetime(t);
            let general = DateTime::parse_from_rfc3339(&text).unwrap().with_timezone(&Utc);
            assert_eq!(parse_service_datetime(&text), Some(general));
            assert_eq!(parse_datetime(&text), Some(general));
        }
        // Not the service's format, or not a valid date: the general rules.
        assert_eq!(parse_service_datetime("2016-02-30T00:00:00.0000000Z"), None);
        assert_eq!(parse_datetime("2016-02-30T00:00:00.0000000Z"), None);
        assert_eq!(parse_service_datetime("2016-01-01T00:00:00.000000+Z"), None);
        assert_eq!(parse_service_datetime("2016-01-01T24:00:00.0000000Z"), None);
        assert!(parse_datetime("2016-01-01T10:00:00.5+01:00").is_some());
        for t in [DateTime::from_timestamp(253_402_300_800, 0).unwrap(), DateTime::from_timestamp(-62_167_219_201, 0).unwrap()] {
            assert_eq!(format_datetime(&t), format_datetime_slow(&t));
            assert!(!format_datetime(&t).is_empty());
        }
    }

    #[test]
    fn datetime_has_seven_digits() {
        let t = parse_datetime("2016-11-21T22:43:31.4733476Z").unwrap();
        assert_eq!(format_datetime(&t), "2016-11-21T22:43:31.4733476Z");
        let t = parse_datetime("2024-01-01T00:00:00Z").unwrap();
        assert_eq!(format_datetime(&t), "2024-01-01T00:00:00.0000000Z");
        let t = parse_datetime("2024-01-01T01:00:00+01:00").unwrap();
        assert_eq!(format_datetime(&t), "2024-01-01T00:00:00.0000000Z");
        assert!(parse_datetime("yesterday").is_none());
    }

    #[test]
    fn durations_parse_and_print_canonically() {
        let cases = [
            ("PT01H00M00S", "PT1H"),
            ("PT1H", "PT1H"),
            ("P1D", "P1D"),
            ("P7D", "P7D"),
            ("PT0S", "PT0S"),
            ("PT90M", "PT1H30M"),
            ("PT1.5S", "PT1.5S"),
            ("P1DT2H3M4.0500000S", "P1DT2H3M4.05S"),
            ("P10675199DT2H48M5.4775807S", "P10675199DT2H48M5.4775807S"),
            ("P1W", "P7D"),
        ];
        for (input, out) in cases {
            let d = Duration::parse(input).unwrap_or_else(|| panic!("{input}"));
            assert_eq!(d.to_string(), out, "{input}");
        }
        assert!(Duration::parse("P10675199DT2H48M5.4775807S").unwrap().is_infinite());
        for bad in ["", "P", "PT", "1H", "PTH", "P1H", "PT1D", "P1.5D", "P99999999999999999999D", "PT1H2", "P1İ", "PT1é"] {
            assert!(Duration::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(Duration::parse("-PT1S").unwrap(), Duration(-10_000_000));
    }

    #[test]
    fn duration_to_std() {
        assert_eq!(Duration::parse("PT1.5S").unwrap().to_std(), std::time::Duration::from_millis(1500));
    }
}
