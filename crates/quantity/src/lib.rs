//! Kubernetes resource quantities: `500m`, `2`, `1.5`, `128Mi`, `1G`, `1e3`.
//!
//! A quantity parses to thousandths of a unit (`milli`), exactly, so that CPU
//! in millicores and memory in bytes can be added and compared without
//! floating point: `parse("500m") == Some(500)`, `parse("1Ki") == Some(1_024_000)`.

/// Parses a quantity to thousandths of its unit; `None` when it is not one.
pub fn parse(text: &str) -> Option<i128> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if (whole.is_empty() && fraction.is_empty())
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !fraction.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    // value = mantissa / 10^scale
    let mantissa: i128 = format!("{whole}{fraction}").parse().ok()?;
    let scale = u32::try_from(fraction.len()).ok()?;
    let (multiplier, exp10): (i128, i32) = match suffix {
        "" => (1, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        s if s.starts_with(['e', 'E']) => (1, s[1..].parse().ok()?),
        _ => return None,
    };
    // milli = mantissa * multiplier * 10^(exp10 + 3 - scale), rounded up as
    // Kubernetes rounds sub-milli values up.
    let exp = exp10 + 3 - i32::try_from(scale).ok()?;
    let base = mantissa.checked_mul(multiplier)?;
    let value = if exp >= 0 {
        base.checked_mul(10_i128.checked_pow(u32::try_from(exp).ok()?)?)?
    } else {
        let div = 10_i128.checked_pow(u32::try_from(-exp).ok()?)?;
        base.checked_add(div - 1)? / div
    };
    Some(if negative { -value } else { value })
}

/// Formats thousandths of a unit as a CPU quantity: `500m`, `2`.
pub fn format_milli(milli: i128) -> String {
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_forms() {
        assert_eq!(parse("500m"), Some(500));
        assert_eq!(parse("1"), Some(1000));
        assert_eq!(parse("1.5"), Some(1500));
        assert_eq!(parse("0.1"), Some(100));
        assert_eq!(parse("128Mi"), Some(128 * 1024 * 1024 * 1000));
        assert_eq!(parse("1G"), Some(1_000_000_000_000));
        assert_eq!(parse("1e3"), Some(1_000_000));
        assert_eq!(parse("1n"), Some(1));
        assert_eq!(parse("-2"), Some(-2000));
    }

    #[test]
    fn values_past_the_range_are_not_quantities() {
        // A mantissa near i128::MAX once overflowed rounding up (a panic in
        // debug builds); now, as any value out of range, it is no quantity.
        let near = format!("{}n", i128::MAX);
        assert_eq!(parse(&near), None);
        assert_eq!(parse(&format!("{}", i128::MAX)), None);
        assert_eq!(parse("1e40"), None);
        assert_eq!(parse("9Ei"), Some(9 * (1 << 60) * 1000));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "m", "1x", "1.2.3", "abc", "1 Gi", "Mi1"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_cpu() {
        assert_eq!(format_milli(2000), "2");
        assert_eq!(format_milli(250), "250m");
    }
}
