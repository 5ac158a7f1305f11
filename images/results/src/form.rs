//! `application/x-www-form-urlencoded` decoding, for the UI's form and both servers' query
//! strings, as the WHATWG URL standard does it: `+` is a space, `%XX` a byte, a `%` not
//! followed by two hex digits stays as it is, and bytes that are not UTF-8 become U+FFFD.

/// The name-value pairs of `input`, in order; empty pieces (`a=1&&b=2`) are skipped.
pub fn decode(input: &[u8]) -> Vec<(String, String)> {
    input
        .split(|&b| b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let at = piece.iter().position(|&b| b == b'=');
            let (name, value) = match at {
                Some(at) => (&piece[..at], &piece[at + 1..]),
                None => (piece, &[][..]),
            };
            (unescape(name), unescape(value))
        })
        .collect()
}

/// The first value of `name` in `pairs`.
pub fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn unescape(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = match (b, bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) => hex(hi).zip(hex(lo)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match (b, escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (other, None) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(input: &str) -> Vec<(String, String)> {
        decode(input.as_bytes())
    }

    #[test]
    fn decodes_plus_percent_and_utf8() {
        assert_eq!(
            pairs("suite=unit+tests&passed=3&note=a%2Bb%3D%26c%20d&name=%C3%A9t%C3%A9"),
            [
                ("suite".into(), "unit tests".into()),
                ("passed".into(), "3".into()),
                ("note".into(), "a+b=&c d".into()),
                ("name".into(), "été".into()),
            ]
        );
    }

    #[test]
    fn keeps_what_is_not_an_escape() {
        assert_eq!(
            pairs("a=100%&b=%zz%4&c=%e9&&flag&d=x=y"),
            [
                ("a".into(), "100%".into()),
                ("b".into(), "%zz%4".into()),
                ("c".into(), "\u{FFFD}".into()),
                ("flag".into(), String::new()),
                ("d".into(), "x=y".into()),
            ]
        );
        let decoded = pairs("suite=%3Cscript%3E&suite=second");
        assert_eq!(get(&decoded, "suite"), Some("<script>"));
        assert_eq!(get(&decoded, "passed"), None);
    }
}
