//! Wall-clock times for `--since`/`--until` and for the report's text:
//! RFC 3339 (any offset), Unix seconds or a time ago (`1h`, `-30m`, as
//! journalctl and coredumpctl take them) in, RFC 3339 UTC out. Civil-date
//! arithmetic after Howard Hinnant's `days_from_civil`.

/// Parses RFC 3339 (`2026-05-20T19:59:01Z`, `2026-05-20T21:59:01.5+02:00`),
/// a bare date (`2026-05-20`, midnight UTC) or Unix seconds (`1779307141`,
/// `1779307141.25`) into nanoseconds since the Unix epoch.
pub fn parse_time(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let err = || format!("{s:?} is not a time; give RFC 3339 (2026-05-20T19:59:01Z) or Unix seconds (1779307141)");
    if t.is_empty() {
        return Err(err());
    }
    if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
        if secs.is_empty() || frac.contains('.') {
            return Err(err());
        }
        let secs: u64 = secs.parse().map_err(|_| err())?;
        return secs.checked_mul(1_000_000_000).and_then(|n| n.checked_add(frac_ns(frac).ok()?)).ok_or_else(err);
    }
    let b = t.as_bytes();
    let num = |from: usize, len: usize| -> Result<i64, String> {
        let part = t.get(from..from + len).ok_or_else(err)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err());
        }
        part.parse().map_err(|_| err())
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(err());
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(err());
    }
    let mut secs_of_day = 0i64;
    let mut nanos = 0u64;
    let mut offset = 0i64;
    if b.len() > 10 {
        if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
            return Err(err());
        }
        let (h, m, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
        // 60 is a leap second; it is counted as the next second's start.
        if h > 23 || m > 59 || sec > 60 {
            return Err(err());
        }
        secs_of_day = h * 3600 + m * 60 + sec;
        let mut rest = &t[19..];
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            if end == 0 {
                return Err(err());
            }
            nanos = frac_ns(&r[..end]).map_err(|_| err())?;
            rest = &r[end..];
        }
        offset = match rest {
            "Z" | "z" => 0,
            _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) && rest.as_bytes()[3] == b':' => {
                let oh = num(t.len() - 5, 2)?;
                let om = num(t.len() - 2, 2)?;
                if oh > 23 || om > 59 {
                    return Err(err());
                }
                let o = oh * 3600 + om * 60;
                if rest.starts_with('-') { -o } else { o }
            }
            _ => return Err(err()),
        };
    }
    let secs = days_from_civil(year, month, day) * 86_400 + secs_of_day - offset;
    if secs < 0 {
        return Err(format!("{s:?} is before 1970"));
    }
    (secs as u64).checked_mul(1_000_000_000).and_then(|n| n.checked_add(nanos)).ok_or_else(err)
}

/// Parses what `--since`/`--until` take, relative times against `now_ns`:
/// `1h`, `30m`, `2d`, `1h30m` and `-1h` all mean that long ago, `+1h` that
/// long from now, `now` now (units: s, m or min, h, d, w); anything else as
/// [`parse_time`].
pub fn parse_when(s: &str, now_ns: u64) -> Result<u64, String> {
    let t = s.trim();
    if t == "now" {
        return Ok(now_ns);
    }
    let (sign, body) = match t.as_bytes().first() {
        Some(b'+') => (1i8, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => (-1, t),
    };
    match parse_span(body) {
        Some(span) => {
            let when = if sign > 0 { now_ns.checked_add(span) } else { now_ns.checked_sub(span) };
            when.ok_or_else(|| format!("{s:?} is out of range; give a shorter span"))
        }
        None if sign > 0 || t.starts_with('-') => Err(format!(
            "{s:?} is not a span of time; give a number and a unit: s, m, h, d or w (like -1h or 30m)"
        )),
        None => parse_time(t).map_err(|e| {
            format!("{e}, or a time ago (1h, 30m, 2d, -1h)")
        }),
    }
}

/// `1h30m` -> ns; None if it is not numbers each with a unit.
fn parse_span(s: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "s" | "sec" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(secs)?.checked_mul(1_000_000_000)?)?;
        rest = rest[unit_len..].trim_start();
    }
    Some(total)
}

/// ".123" -> 123_000_000 ns; digits past nanoseconds are dropped.
fn frac_ns(frac: &str) -> Result<u64, ()> {
    if frac.is_empty() {
        return Ok(0);
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    let mut ns = 0u64;
    for (i, b) in frac.bytes().take(9).enumerate() {
        ns += (b - b'0') as u64 * 10u64.pow(8 - i as u32);
    }
    Ok(ns)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// RFC 3339 UTC with milliseconds: `2026-05-20T19:59:01.692Z`.
pub fn format_utc(wall_ns: u64) -> String {
    let secs = (wall_ns / 1_000_000_000) as i64;
    let ms = (wall_ns / 1_000_000) % 1000;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z", sod / 3600, (sod / 60) % 60, sod % 60)
}

/// RFC 3339 UTC with nanoseconds: `2026-05-20T19:59:01.692000001Z`, the
/// `time` field of records (full precision, so records of one run sort).
pub fn format_utc_ns(wall_ns: u64) -> String {
    let ms = format_utc(wall_ns);
    format!("{}{:09}Z", &ms[..ms.len() - 4], wall_ns % 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn unix_seconds() {
        assert_eq!(parse_time("0"), Ok(0));
        assert_eq!(parse_time("1779307141"), Ok(1_779_307_141 * S));
        assert_eq!(parse_time("1779307141.25"), Ok(1_779_307_141 * S + 250_000_000));
        assert!(parse_time("1.2.3").is_err());
        assert!(parse_time(".5").is_err());
        assert!(parse_time("99999999999999999999").is_err());
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("2000-03-01T00:00:00Z"), Ok(951_868_800 * S));
        assert_eq!(parse_time("2026-05-20T19:59:01Z"), Ok(1_779_307_141 * S));
        assert_eq!(parse_time("2026-05-20t19:59:01.5z"), Ok(1_779_307_141 * S + 500_000_000));
        assert_eq!(parse_time("2026-05-20T21:59:01+02:00"), Ok(1_779_307_141 * S));
        assert_eq!(parse_time("2026-05-20T17:59:01.000000001-02:00"), Ok(1_779_307_141 * S + 1));
        assert_eq!(parse_time("2026-05-20"), Ok(1_779_235_200 * S));
        assert_eq!(parse_time("2024-02-29T00:00:00Z"), Ok(1_709_164_800 * S));
    }

    #[test]
    fn rejects_bad_times() {
        for bad in [
            "", "yesterday", "2026-13-01", "2026-02-30", "2023-02-29", "2026-05-20T24:00:00Z", "2026-05-20T19:59:01",
            "2026-05-20T19:59Z", "2026-05-20T19:59:01+0200", "1969-12-31T23:59:59Z", "2026-05-20T19:59:01.Z", "２０２６-05-20",
            "2026-05-20T19:59:01+02:60",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?} accepted as {:?}", parse_time(bad));
        }
    }

    #[test]
    fn relative_times_are_ago_unless_plus() {
        let now = 1_779_307_141 * S;
        assert_eq!(parse_when("1h", now), Ok(now - 3600 * S));
        assert_eq!(parse_when("-1h", now), Ok(now - 3600 * S));
        assert_eq!(parse_when("+1h", now), Ok(now + 3600 * S));
        assert_eq!(parse_when("30m", now), Ok(now - 1800 * S));
        assert_eq!(parse_when("30min", now), Ok(now - 1800 * S));
        assert_eq!(parse_when("2d", now), Ok(now - 2 * 86_400 * S));
        assert_eq!(parse_when("1w", now), Ok(now - 7 * 86_400 * S));
        assert_eq!(parse_when("90s", now), Ok(now - 90 * S));
        assert_eq!(parse_when("1h30m", now), Ok(now - 5400 * S));
        assert_eq!(parse_when(" -1h 30m ", now), Ok(now - 5400 * S));
        assert_eq!(parse_when("now", now), Ok(now));
    }

    #[test]
    fn absolute_times_still_parse_beside_relative_ones() {
        let now = 4_000_000_000 * S;
        assert_eq!(parse_when("1779307141", now), Ok(1_779_307_141 * S));
        assert_eq!(parse_when("2026-05-20T19:59:01Z", now), Ok(1_779_307_141 * S));
        assert_eq!(parse_when("2026-05-20", now), Ok(1_779_235_200 * S));
    }

    #[test]
    fn rejects_bad_relative_times() {
        let now = 1_779_307_141 * S;
        for bad in ["1y", "h", "-h", "+", "-", "1h-30m", "1.5h", "-yesterday", "1 hour", "10"] {
            let parsed = parse_when(bad, now);
            // "10" is Unix second 10: a time, not a span.
            if bad == "10" {
                assert_eq!(parsed, Ok(10 * S));
                continue;
            }
            assert!(parsed.is_err(), "{bad:?} accepted as {parsed:?}");
        }
        // More ago than the epoch: an error, not a wrap-around.
        assert!(parse_when("100000w", 1000 * S).is_err());
        let msg = parse_when("yesterday", now).unwrap_err();
        assert!(msg.contains("1h"), "the error says relative times are taken: {msg}");
    }

    #[test]
    fn formats_utc() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_utc(1_779_307_141 * S + 692_000_000), "2026-05-20T19:59:01.692Z");
        assert_eq!(format_utc(1_709_164_800 * S), "2024-02-29T00:00:00.000Z");
        assert_eq!(format_utc_ns(1_779_307_141 * S + 692_000_001), "2026-05-20T19:59:01.692000001Z");
        assert_eq!(parse_time(&format_utc_ns(1_779_307_141 * S + 7)), Ok(1_779_307_141 * S + 7));
        // Round trip through the parser.
        for t in [0u64, 951_868_800 * S, 1_779_307_141 * S + 123_000_000, 4_102_444_799 * S] {
            assert_eq!(parse_time(&format_utc(t)), Ok(t));
        }
    }
}
