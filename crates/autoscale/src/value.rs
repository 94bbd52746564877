//! The values a formula computes with, and how `AutoScaleRun.results`
//! renders them.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};

/// 100-nanosecond ticks in one second (the resolution of `timestamp` and
/// `timeinterval`, the smallest documented interval being `TimeInterval_100ns`).
pub const TICKS_PER_SECOND: i64 = 10_000_000;

/// A point in time: 100 ns ticks since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// A signed length of time in 100 ns ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeInterval(pub i64);

impl Timestamp {
    pub fn from_datetime(t: DateTime<Utc>) -> Timestamp {
        let ticks = t.timestamp().saturating_mul(TICKS_PER_SECOND).saturating_add(i64::from(t.timestamp_subsec_nanos() / 100));
        Timestamp(ticks)
    }
    /// The instant as a chrono time (None beyond chrono's range).
    pub fn to_datetime(self) -> Option<DateTime<Utc>> {
        let secs = self.0.div_euclid(TICKS_PER_SECOND);
        let nanos = (self.0.rem_euclid(TICKS_PER_SECOND) * 100) as u32;
        Utc.timestamp_opt(secs, nanos).single()
    }
    /// Milliseconds since the Unix epoch (the resolution of the sample store).
    pub fn millis(self) -> i64 {
        self.0.div_euclid(10_000)
    }
    pub fn from_millis(ms: i64) -> Timestamp {
        Timestamp(ms.saturating_mul(10_000))
    }
}

impl TimeInterval {
    pub const ZERO: TimeInterval = TimeInterval(0);
    pub fn from_secs(s: i64) -> TimeInterval {
        TimeInterval(s * TICKS_PER_SECOND)
    }
    pub fn from_std(d: std::time::Duration) -> TimeInterval {
        TimeInterval(i64::try_from(d.as_nanos() / 100).unwrap_or(i64::MAX))
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / TICKS_PER_SECOND as f64
    }
}

/// A value of one of the formula types. `doubleVecList` is not a value of
/// its own: a function that takes one flattens its arguments into a
/// `doubleVec` first, as the documentation describes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Double(f64),
    DoubleVec(Vec<f64>),
    String(String),
    Timestamp(Timestamp),
    TimeInterval(TimeInterval),
}

impl Value {
    /// The type's name as the documentation spells it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Double(_) => "double",
            Value::DoubleVec(_) => "doubleVec",
            Value::String(_) => "string",
            Value::Timestamp(_) => "timestamp",
            Value::TimeInterval(_) => "timeinterval",
        }
    }

    /// The value as `AutoScaleRun.results` shows it: doubles with six
    /// significant digits (`96.6667`, `0.5`, `3`), vectors as `[1,2,3]`,
    /// strings as they are, timestamps as `2016-10-13T19:18:47.805Z`, and
    /// time intervals as ISO 8601 durations (`PT5M`, openbatch's choice:
    /// the documentation shows none).
    pub fn render(&self) -> String {
        match self {
            Value::Double(d) => format_double(*d),
            Value::DoubleVec(v) => {
                let parts: Vec<String> = v.iter().map(|d| format_double(*d)).collect();
                format!("[{}]", parts.join(","))
            }
            Value::String(s) => s.clone(),
            Value::Timestamp(t) => format_timestamp(*t),
            Value::TimeInterval(i) => format_interval(*i),
        }
    }
}

/// A double as C's `%g` prints it (six significant digits, trailing zeros
/// dropped, exponent form below 1e-4 and from 1e6): the format of every
/// number in the documented and recorded `results` strings (`96.6667` for
/// 29/30 × 100). Negative zero prints as `0`.
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        return "nan".to_string();
    }
    if d.is_infinite() {
        return if d > 0.0 { "inf".to_string() } else { "-inf".to_string() };
    }
    if d == 0.0 {
        return "0".to_string();
    }
    const P: i32 = 6;
    // Round to P significant digits first: the exponent is the rounded one's.
    let sci = format!("{:.*e}", (P - 1) as usize, d);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..P).contains(&exp) {
        let decimals = (P - 1 - exp).max(0) as usize;
        trim_zeros(format!("{:.*}", decimals, d))
    } else {
        let m = trim_zeros(mantissa.to_string());
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.abs())
    }
}

fn trim_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `2016-10-13T19:18:47.805Z` (milliseconds, as in the documented results).
pub fn format_timestamp(t: Timestamp) -> String {
    match t.to_datetime() {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => format!("<timestamp out of range: {} ticks>", t.0),
    }
}

/// An ISO 8601 duration (`PT1H30M`, `P1DT2H`, `-PT0.5S`, `PT0S`).
pub fn format_interval(i: TimeInterval) -> String {
    if i.0 == 0 {
        return "PT0S".to_string();
    }
    let neg = i.0 < 0;
    let mut t = i.0.unsigned_abs();
    let tps = TICKS_PER_SECOND as u64;
    let days = t / (86_400 * tps);
    t %= 86_400 * tps;
    let hours = t / (3_600 * tps);
    t %= 3_600 * tps;
    let minutes = t / (60 * tps);
    t %= 60 * tps;
    let secs = t / tps;
    let frac = t % tps;
    let mut s = String::from(if neg { "-P" } else { "P" });
    if days > 0 {
        s.push_str(&format!("{days}D"));
    }
    if hours > 0 || minutes > 0 || secs > 0 || frac > 0 {
        s.push('T');
        if hours > 0 {
            s.push_str(&format!("{hours}H"));
        }
        if minutes > 0 {
            s.push_str(&format!("{minutes}M"));
        }
        if secs > 0 || frac > 0 {
            if frac > 0 {
                let f = format!("{frac:07}");
                s.push_str(&format!("{secs}.{}S", f.trim_end_matches('0')));
            } else {
                s.push_str(&format!("{secs}S"));
            }
        }
    }
    s
}

/// The members of a timestamp (`.year` … `.second`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampMember {
    Year,
    Month,
    Day,
    Weekday,
    Hour,
    Minute,
    Second,
}

impl TimestampMember {
    pub(crate) fn from_name(s: &str) -> Option<TimestampMember> {
        Some(match s {
            "year" => TimestampMember::Year,
            "month" => TimestampMember::Month,
            "day" => TimestampMember::Day,
            "weekday" => TimestampMember::Weekday,
            "hour" => TimestampMember::Hour,
            "minute" => TimestampMember::Minute,
            "second" => TimestampMember::Second,
            _ => return None,
        })
    }

    /// The member of `dt` (UTC). `weekday` is 0 for Sunday, 1 for Monday
    /// (the documented example) … 6 for Saturday.
    pub(crate) fn of(self, dt: DateTime<Utc>) -> f64 {
        f64::from(match self {
            TimestampMember::Year => return f64::from(dt.year()),
            TimestampMember::Month => dt.month(),
            TimestampMember::Day => dt.day(),
            TimestampMember::Weekday => dt.weekday().num_days_from_sunday(),
            TimestampMember::Hour => dt.hour(),
            TimestampMember::Minute => dt.minute(),
            TimestampMember::Second => dt.second(),
        })
    }
}

/// Parses the argument of `time(string)`: W3C-DTF (`1997`, `1997-07`,
/// `1997-07-16`, `1997-07-16T19:20+01:00`, `1997-07-16T19:20:30.45Z`, …; a
/// time without a zone is taken as UTC) or RFC 1123 (`Sun, 06 Nov 1994
/// 08:49:37 GMT`).
pub fn parse_time(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc2822(s) {
        return Some(Timestamp::from_datetime(dt.with_timezone(&Utc)));
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(Timestamp::from_datetime(dt.with_timezone(&Utc)));
    }
    for fmt in ["%Y-%m-%dT%H:%M%:z", "%Y-%m-%dT%H:%M%#z"] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Some(Timestamp::from_datetime(dt.with_timezone(&Utc)));
        }
    }
    let zulu = s.strip_suffix('Z').or_else(|| s.strip_suffix('z')).unwrap_or(s);
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(n) = chrono::NaiveDateTime::parse_from_str(zulu, fmt) {
            return Some(Timestamp::from_datetime(n.and_utc()));
        }
    }
    let date = |y: i32, m: u32, d: u32| chrono::NaiveDate::from_ymd_opt(y, m, d).and_then(|n| n.and_hms_opt(0, 0, 0));
    let parts: Vec<&str> = s.split('-').collect();
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let n = match parts.as_slice() {
        [y] if y.len() == 4 && all_digits(y) => date(y.parse().ok()?, 1, 1),
        [y, m] if y.len() == 4 && m.len() == 2 && all_digits(y) && all_digits(m) => date(y.parse().ok()?, m.parse().ok()?, 1),
        [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2 && all_digits(y) && all_digits(m) && all_digits(d) => {
            date(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
        }
        _ => None,
    }?;
    Some(Timestamp::from_datetime(n.and_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_like_percent_g() {
        let cases: &[(f64, &str)] = &[
            (29.0 / 30.0 * 100.0, "96.6667"),
            (0.5, "0.5"),
            (3.0, "3"),
            (0.0, "0"),
            (-0.0, "0"),
            (-2.25, "-2.25"),
            (1.1, "1.1"),
            (123456.0, "123456"),
            (1234567.0, "1.23457e+06"),
            (1e6, "1e+06"),
            (999999.5, "1e+06"),
            (0.0001, "0.0001"),
            (0.00001234, "1.234e-05"),
            (1.0 / 3.0, "0.333333"),
            (100.0, "100"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for (d, want) in cases {
            assert_eq!(format_double(*d), *want, "format_double({d})");
        }
    }

    #[test]
    fn intervals_print_as_iso_durations() {
        let cases: &[(i64, &str)] = &[
            (0, "PT0S"),
            (TICKS_PER_SECOND * 300, "PT5M"),
            (TICKS_PER_SECOND * 3600 * 25, "P1DT1H"),
            (-TICKS_PER_SECOND / 2, "-PT0.5S"),
            (1, "PT0.0000001S"),
            (TICKS_PER_SECOND * 86_400 * 7, "P7D"),
        ];
        for (t, want) in cases {
            assert_eq!(format_interval(TimeInterval(*t)), *want);
        }
    }

    #[test]
    fn time_strings_in_both_documented_formats() {
        let want = Timestamp::from_datetime(Utc.with_ymd_and_hms(2016, 10, 13, 19, 18, 47).unwrap());
        for s in ["Thu, 13 Oct 2016 19:18:47 GMT", "2016-10-13T19:18:47Z", "2016-10-13T21:18:47+02:00", "2016-10-13T19:18:47"] {
            assert_eq!(parse_time(s), Some(want), "{s}");
        }
        let midnight = Timestamp::from_datetime(Utc.with_ymd_and_hms(2016, 10, 13, 0, 0, 0).unwrap());
        assert_eq!(parse_time("2016-10-13"), Some(midnight));
        assert_eq!(parse_time("2016-10-13T01:30+01:30"), Some(midnight));
        assert_eq!(parse_time("2016"), Some(Timestamp::from_datetime(Utc.with_ymd_and_hms(2016, 1, 1, 0, 0, 0).unwrap())));
        assert_eq!(parse_time("2016-02"), Some(Timestamp::from_datetime(Utc.with_ymd_and_hms(2016, 2, 1, 0, 0, 0).unwrap())));
        for bad in ["", "yesterday", "2016-13-01", "2016-1-1", "13/10/2016"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        let ms = parse_time("2016-10-13T19:18:47.805Z").unwrap();
        assert_eq!(format_timestamp(ms), "2016-10-13T19:18:47.805Z");
    }
}
