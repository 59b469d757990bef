//! Sizes and rates as people type them on a command line: `512K`, `16M`, `1.5M`, `2MiB/s`.
//! Binary units throughout (1K = 1024). Pure functions; every command and the swarm lab share
//! them.

/// Parses a size in bytes: a whole number with an optional binary unit, `1000`, `512K`,
/// `16M`, `1G` (also `KiB`/`MiB`/`GiB`, `KB`/`MB`/`GB` and a `B` suffix, all meaning powers
/// of 1024, any case, a space allowed before the unit). Zero, fractions, negative numbers,
/// unknown units and sizes past `u64` are errors.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "'{s}' is not a size (examples: 1000, 512K, 16M, 1G)"
        ));
    }
    if unit.starts_with('.') {
        return Err(format!("'{s}': whole numbers only (write 1536K, not 1.5M)"));
    }
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("'{s}': unknown unit (use K, M or G)")),
    };
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is too large"))?;
    match n.checked_mul(mult) {
        Some(0) => Err(format!("'{s}': a size must be more than 0")),
        Some(v) => Ok(v),
        None => Err(format!("'{s}' is too large")),
    }
}

/// A rate: bytes per second, more than zero. A decimal number with an optional
/// binary unit and `/s`: `2000000`, `500K`, `100k`, `1.5M`, `2MiB/s`, `0.5G`. Fractions of
/// a byte are rounded to the nearest byte.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let bad = || {
        format!("'{s}' is not a rate: give bytes per second, optionally with K, M or G (1K = 1024), e.g. 500K or 1.5M")
    };
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t).trim_end();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    if whole.is_empty() && frac.is_empty()
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 18
    {
        return Err(bad());
    }
    let mult: u128 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    let too_large = || format!("'{s}' is too large");
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse::<u64>().map_err(|_| too_large())?.into()
    };
    let scale = 10u128.pow(frac.len() as u32);
    let frac: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| bad())?
    };
    // (whole + frac / scale) * mult, rounded to the nearest byte.
    let n = whole * mult + (frac * mult + scale / 2) / scale;
    match u64::try_from(n) {
        Ok(0) => Err(format!("'{s}': a rate must be more than 0")),
        Ok(n) => Ok(n),
        Err(_) => Err(too_large()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_take_decimals_and_units() {
        assert_eq!(parse_rate("2000000"), Ok(2_000_000));
        assert_eq!(parse_rate("500K"), Ok(500 * 1024));
        assert_eq!(parse_rate("100k"), Ok(100 * 1024));
        assert_eq!(parse_rate("100KiB/s"), Ok(100 * 1024));
        assert_eq!(parse_rate("2M/s"), Ok(2 << 20));
        assert_eq!(parse_rate("1.5M"), Ok(1_572_864));
        assert_eq!(parse_rate("1.5 MB/s"), Ok(1_572_864));
        assert_eq!(parse_rate("0.5G"), Ok(1 << 29));
        assert_eq!(parse_rate(".5k"), Ok(512));
        assert_eq!(parse_rate("2."), Ok(2));
        assert_eq!(parse_rate("1.0005K"), Ok(1025)); // 1024.512 rounds up
        assert_eq!(parse_rate("1.2B"), Ok(1));
        assert_eq!(parse_rate(" 7 "), Ok(7));
        for bad in [
            "", "fast", "M", ".", "1..5M", "1.5.2M", "-1M", "1e6", "10T", "5 M s",
        ] {
            let e = parse_rate(bad).unwrap_err();
            assert!(e.contains("is not a rate"), "{bad:?}: {e}");
        }
        assert!(parse_rate("0").unwrap_err().contains("more than 0"));
        assert!(parse_rate("0.0001K").unwrap_err().contains("more than 0"));
        assert!(parse_rate("99999999999999999999")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_rate("99999999999G")
            .unwrap_err()
            .contains("too large"));
    }
}
