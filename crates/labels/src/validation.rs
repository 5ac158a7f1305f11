//! Name and label checks with Kubernetes' rules
//! (`k8s.io/apimachinery/pkg/util/validation`): what a DNS label, a DNS
//! subdomain, a label key and a label value may look like.
//!
//! Each check returns `Err` with a message in Kubernetes' words but without
//! the field path or the value, which the caller adds. When a value breaks
//! several rules their messages are joined with `"; "`, as Kubernetes joins
//! them. Lengths are in bytes; only ASCII characters are ever allowed.

/// Longest RFC 1123 label, such as a namespace name.
pub const DNS1123_LABEL_MAX_LEN: usize = 63;
/// Longest RFC 1123 subdomain, such as most object names.
pub const DNS1123_SUBDOMAIN_MAX_LEN: usize = 253;
/// Longest name part (after any `prefix/`) of a qualified name.
pub const QUALIFIED_NAME_MAX_LEN: usize = 63;
/// Longest label value.
pub const LABEL_VALUE_MAX_LEN: usize = 63;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case \
    alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower \
    case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
    character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', \
    and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of \
    alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric \
    character";

/// Checks an RFC 1123 label: at most 63 lower case alphanumeric characters
/// or '-', starting and ending with an alphanumeric one (namespace names,
/// Service names).
pub fn dns1123_label(value: &str) -> Result<(), String> {
    joined(dns1123_label_errors(value))
}

/// Checks an RFC 1123 subdomain: at most 253 characters, RFC 1123 labels
/// joined by dots (most object names, label key prefixes).
pub fn dns1123_subdomain(value: &str) -> Result<(), String> {
    joined(dns1123_subdomain_errors(value))
}

/// Checks a qualified name, the form of label and annotation keys: an
/// optional DNS subdomain prefix and '/', then a name of at most 63
/// alphanumeric characters, '-', '_' or '.', starting and ending with an
/// alphanumeric one (`app`, `example.com/my_Name`).
pub fn qualified_name(value: &str) -> Result<(), String> {
    joined(qualified_name_errors(value))
}

/// Checks a label value: empty, or at most 63 characters of the same set as
/// a qualified name's name part, starting and ending with an alphanumeric one.
pub fn label_value(value: &str) -> Result<(), String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LEN {
        errors.push(max_len_error(LABEL_VALUE_MAX_LEN));
    }
    if !value.is_empty() && !is_name_part(value) {
        errors.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    joined(errors)
}

fn dns1123_label_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LEN {
        errors.push(max_len_error(DNS1123_LABEL_MAX_LEN));
    }
    if !is_dns1123_label(value) {
        if is_dns1123_subdomain(value) {
            // Length is checked above, so dots are all that is wrong.
            errors.push("must not contain dots".to_owned());
        } else {
            errors.push(regex_error(
                DNS1123_LABEL_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errors
}

fn dns1123_subdomain_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LEN {
        errors.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LEN));
    }
    if !is_dns1123_subdomain(value) {
        errors.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errors
}

fn qualified_name_errors(value: &str) -> Vec<String> {
    let name_format = || regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &NAME_EXAMPLES);
    let mut errors = Vec::new();
    let name = match value.split_once('/') {
        None => value,
        Some((_, name)) if name.contains('/') => {
            return vec![format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' \
                 (e.g. 'example.com/MyName')",
                name_format()
            )];
        }
        Some((prefix, name)) => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_owned());
            } else {
                let prefix_errors = dns1123_subdomain_errors(prefix);
                errors.extend(prefix_errors.iter().map(|e| format!("prefix part {e}")));
            }
            name
        }
    };
    // Like Kubernetes, an empty name reports both that it is empty and that
    // it does not match the pattern.
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else if name.len() > QUALIFIED_NAME_MAX_LEN {
        errors.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LEN)
        ));
    }
    if !is_name_part(name) {
        errors.push(format!("name part {}", name_format()));
    }
    errors
}

const NAME_EXAMPLES: [&str; 3] = ["MyName", "my.name", "123-abc"];

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_dns1123_label(value: &str) -> bool {
    let inner = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    has_shape(value, inner, edge)
}

/// Labels joined by single dots; each label has no length limit of its own.
fn is_dns1123_subdomain(value: &str) -> bool {
    value.split('.').all(is_dns1123_label)
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_name_part(value: &str) -> bool {
    let inner = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    has_shape(value, inner, |b| b.is_ascii_alphanumeric())
}

/// Non-empty, every byte `inner`, first and last bytes `edge`.
fn has_shape(value: &str, inner: impl Fn(u8) -> bool, edge: impl Fn(u8) -> bool) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => edge(first) && edge(last) && bytes.iter().all(|&b| inner(b)),
        _ => false,
    }
}

fn max_len_error(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// Kubernetes' `RegexError`, without its stray double space.
fn regex_error(message: &str, format: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}'")).collect();
    format!(
        "{message} (e.g. {}, regex used for validation is '{format}')",
        examples.join(" or ")
    )
}

fn joined(errors: Vec<String>) -> Result<(), String> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_all(check: fn(&str) -> Result<(), String>, values: &[&str]) {
        for value in values {
            assert_eq!(check(value), Ok(()), "{value:?} should be valid");
        }
    }

    fn err_all(check: fn(&str) -> Result<(), String>, values: &[&str]) {
        for value in values {
            assert!(check(value).is_err(), "{value:?} should be invalid");
        }
    }

    #[test]
    fn dns1123_label_accepts_valid_labels() {
        let max = "a".repeat(63);
        ok_all(
            dns1123_label,
            &["a", "0", "ab", "a-b", "a--b", "1-2", "abc-123", &max],
        );
    }

    #[test]
    fn dns1123_label_rejects_bad_characters_and_edges() {
        err_all(
            dns1123_label,
            &[
                "", "-", "-a", "a-", "A", "aB", "a_b", "a b", "a/b", "é", "a.", ".a",
            ],
        );
    }

    #[test]
    fn dns1123_label_message_is_kubernetes_style() {
        let err = dns1123_label("My_Name").unwrap_err();
        assert_eq!(
            err,
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters \
             or '-', and must start and end with an alphanumeric character (e.g. 'my-name' \
             or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        );
    }

    #[test]
    fn dns1123_label_with_dots_says_so() {
        assert_eq!(
            dns1123_label("a.b"),
            Err("must not contain dots".to_owned())
        );
    }

    #[test]
    fn dns1123_label_length_limit_is_63() {
        assert_eq!(
            dns1123_label(&"a".repeat(64)),
            Err("must be no more than 63 characters".to_owned())
        );
    }

    #[test]
    fn dns1123_label_reports_every_broken_rule() {
        let err = dns1123_label(&format!("{}.b", "a".repeat(63))).unwrap_err();
        assert_eq!(
            err,
            "must be no more than 63 characters; must not contain dots"
        );
    }

    #[test]
    fn dns1123_subdomain_accepts_valid_subdomains() {
        let max = format!("{}.{}", "a".repeat(63), "b".repeat(189));
        assert_eq!(max.len(), 253);
        // A single part may exceed 63 characters: only the total is limited.
        let long_part = "a".repeat(100);
        ok_all(
            dns1123_subdomain,
            &[
                "a",
                "example.com",
                "a.b.c",
                "a-1.b-2",
                "0.0",
                &max,
                &long_part,
            ],
        );
    }

    #[test]
    fn dns1123_subdomain_rejects_bad_dots_and_characters() {
        err_all(
            dns1123_subdomain,
            &[
                "", ".", "a.", ".a", "a..b", "a.-b", "a-.b", "A.com", "a_b.com", "a/b", "a b",
            ],
        );
    }

    #[test]
    fn dns1123_subdomain_length_limit_is_253() {
        let long = format!("{}.{}", "a".repeat(63), "b".repeat(190));
        assert_eq!(long.len(), 254);
        assert_eq!(
            dns1123_subdomain(&long),
            Err("must be no more than 253 characters".to_owned())
        );
    }

    #[test]
    fn dns1123_subdomain_message_is_kubernetes_style() {
        let err = dns1123_subdomain("Example.com").unwrap_err();
        assert!(
            err.starts_with("a lowercase RFC 1123 subdomain must consist of"),
            "{err}"
        );
        let tail =
            format!("(e.g. 'example.com', regex used for validation is '{DNS1123_SUBDOMAIN_FMT}')");
        assert!(err.ends_with(&tail), "{err}");
        assert_eq!(
            DNS1123_SUBDOMAIN_FMT,
            r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
        );
    }

    #[test]
    fn qualified_name_accepts_names_with_and_without_prefix() {
        let max_name = "a".repeat(63);
        let max_prefixed = format!("{}/{}", "p".repeat(253), "n".repeat(63));
        ok_all(
            qualified_name,
            &[
                "a",
                "A",
                "app",
                "MyName",
                "my.name",
                "my_name",
                "123-abc",
                "a-_.b",
                "example.com/MyName",
                "kubernetes.io/hostname",
                "a/b",
                &max_name,
                &max_prefixed,
            ],
        );
    }

    #[test]
    fn qualified_name_rejects_bad_names() {
        err_all(
            qualified_name,
            &[
                "", "-a", "a-", "_a", "a_", ".a", "a.", "a b", "a%b", "é", "a=b",
            ],
        );
    }

    #[test]
    fn qualified_name_rejects_bad_prefixes() {
        err_all(
            qualified_name,
            &["/a", "Example.com/a", "a_b/c", "a..b/c", "-a/b"],
        );
        let long_prefix = format!("{}/a", "p".repeat(254));
        assert_eq!(
            qualified_name(&long_prefix),
            Err("prefix part must be no more than 253 characters".to_owned())
        );
    }

    #[test]
    fn qualified_name_empty_prefix_message() {
        assert_eq!(
            qualified_name("/a"),
            Err("prefix part must be non-empty".to_owned())
        );
    }

    #[test]
    fn qualified_name_bad_prefix_message_names_the_part() {
        let err = qualified_name("A.com/a").unwrap_err();
        assert!(
            err.starts_with("prefix part a lowercase RFC 1123 subdomain"),
            "{err}"
        );
    }

    #[test]
    fn qualified_name_empty_name_reports_empty_and_pattern() {
        let err = qualified_name("example.com/").unwrap_err();
        assert!(err.starts_with("name part must be non-empty; name part must consist of"));
        assert!(
            qualified_name("")
                .unwrap_err()
                .starts_with("name part must be non-empty")
        );
    }

    #[test]
    fn qualified_name_name_part_length_limit_is_63() {
        assert_eq!(
            qualified_name(&"a".repeat(64)),
            Err("name part must be no more than 63 characters".to_owned())
        );
        assert_eq!(
            qualified_name(&format!("example.com/{}", "a".repeat(64))),
            Err("name part must be no more than 63 characters".to_owned())
        );
    }

    #[test]
    fn qualified_name_with_two_slashes_is_one_error() {
        let err = qualified_name("a/b/c").unwrap_err();
        assert_eq!(
            err,
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and \
             must start and end with an alphanumeric character (e.g. 'MyName' or 'my.name' or \
             '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') \
             with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        );
    }

    #[test]
    fn label_value_accepts_empty_and_valid_values() {
        let max = "v".repeat(63);
        ok_all(
            label_value,
            &["", "a", "MyValue", "my_value", "12345", "a.b-c_d", &max],
        );
    }

    #[test]
    fn label_value_rejects_bad_values() {
        err_all(
            label_value,
            &[
                "-", "-a", "a-", "_a", "a.", "a b", "a/b", "a=b", "a,b", "é", "-5", "+5",
            ],
        );
    }

    #[test]
    fn label_value_length_limit_is_63() {
        assert_eq!(
            label_value(&"v".repeat(64)),
            Err("must be no more than 63 characters".to_owned())
        );
    }

    #[test]
    fn label_value_message_is_kubernetes_style() {
        assert_eq!(
            label_value("a b"),
            Err(
                "a valid label must be an empty string or consist of alphanumeric \
                 characters, '-', '_' or '.', and must start and end with an alphanumeric \
                 character (e.g. 'MyValue' or 'my_value' or '12345', regex used for \
                 validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
                    .to_owned()
            )
        );
    }

    #[test]
    fn lengths_count_bytes() {
        // 'é' is two bytes: 32 of them exceed 63 even though they are 32 chars.
        let err = label_value(&"é".repeat(32)).unwrap_err();
        assert!(
            err.starts_with("must be no more than 63 characters; "),
            "{err}"
        );
    }
}
