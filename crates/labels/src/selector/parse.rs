//! The label selector grammar, read as `k8s.io/apimachinery/pkg/labels.Parse`
//! reads it:
//!
//! ```text
//! selector    = [ requirement { "," requirement } ]
//! requirement = "!" key
//!             | key [ ( "=" | "==" | "!=" | ">" | "<" ) [ value ] ]
//!             | key ( "in" | "notin" ) "(" [ list ] ")"
//! ```
//!
//! Whitespace (space, tab, CR, LF) separates tokens. A key or value runs
//! until whitespace or one of `=!(),<>`; `in` and `notin` are operators only
//! where an operator is expected. As in Kubernetes, values may be empty:
//! `a=` means the empty value, `a in ()` the set `{""}`, and empty items in
//! a list (`(,b)`, `(a,,b)`, `(a,)`) add `""` to the set.

use super::{Operator, Requirement, Selector};
use crate::{Error, validation};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A key, a value, or the words `in` and `notin`.
    Word,
    OpenParen,
    CloseParen,
    Comma,
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
    End,
}

#[derive(Clone, Copy, Debug)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
    /// Byte offset in the input.
    position: usize,
}

/// A value as written, with where it was written.
type Value<'a> = (&'a str, usize);

struct Parser<'a> {
    input: &'a str,
    /// Always ends with one `End` token.
    tokens: Vec<Token<'a>>,
    next: usize,
}

/// Parses `input` into a selector with its requirements sorted by key.
pub(super) fn parse(input: &str) -> Result<Selector, Error> {
    let mut parser = Parser {
        input,
        tokens: lex(input),
        next: 0,
    };
    Ok(Selector::new(parser.requirements()?))
}

fn lex(input: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let kind = match c {
            c if is_whitespace(c) => continue,
            '!' if chars.next_if(|&(_, n)| n == '=').is_some() => Kind::NotEquals,
            '=' if chars.next_if(|&(_, n)| n == '=').is_some() => Kind::DoubleEquals,
            '!' => Kind::Bang,
            '=' => Kind::Equals,
            '(' => Kind::OpenParen,
            ')' => Kind::CloseParen,
            ',' => Kind::Comma,
            '>' => Kind::Greater,
            '<' => Kind::Less,
            _ => {
                while chars
                    .next_if(|&(_, n)| !is_whitespace(n) && !is_special(n))
                    .is_some()
                {}
                Kind::Word
            }
        };
        let end = chars.peek().map_or(input.len(), |&(i, _)| i);
        tokens.push(Token {
            kind,
            text: &input[start..end],
            position: start,
        });
    }
    tokens.push(Token {
        kind: Kind::End,
        text: "",
        position: input.len(),
    });
    tokens
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

// === impl Parser ===

impl<'a> Parser<'a> {
    fn requirements(&mut self) -> Result<Vec<Requirement>, Error> {
        let mut requirements = Vec::new();
        loop {
            let token = self.peek();
            match token.kind {
                Kind::Word | Kind::Bang => {
                    requirements.push(self.requirement()?);
                    let after = self.bump();
                    match after.kind {
                        Kind::End => return Ok(requirements),
                        Kind::Comma => {
                            let next = self.peek();
                            if !matches!(next.kind, Kind::Word | Kind::Bang) {
                                return Err(self.unexpected(next, "a key or '!' after ','"));
                            }
                        }
                        _ => return Err(self.unexpected(after, "',' or end of string")),
                    }
                }
                Kind::End => return Ok(requirements),
                _ => return Err(self.unexpected(token, "a key, '!' or end of string")),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, Error> {
        let mut key = self.bump();
        let negated = key.kind == Kind::Bang;
        if negated {
            key = self.bump();
        }
        if key.kind != Kind::Word {
            return Err(self.unexpected(key, "a key"));
        }
        if let Err(reason) = validation::qualified_name(key.text) {
            let error = Error::InvalidKey {
                key: key.text.to_owned(),
                reason,
            };
            return Err(self.error(key.position, error.to_string()));
        }
        if negated {
            return self.build(key.text, Operator::DoesNotExist, Vec::new(), key.position);
        }
        let op = self.peek();
        if matches!(op.kind, Kind::End | Kind::Comma) {
            return self.build(key.text, Operator::Exists, Vec::new(), key.position);
        }
        let operator = self.operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => vec![self.exact_value()?],
        };
        // Like Kubernetes, values are checked once the requirement has
        // parsed, so a syntax error further on is reported first.
        self.check_values(key.text, &values)?;
        let values = values.into_iter().map(|(v, _)| v.to_owned()).collect();
        self.build(key.text, operator, values, op.position)
    }

    fn operator(&mut self) -> Result<Operator, Error> {
        let op = self.bump();
        match (op.kind, op.text) {
            (Kind::Word, "in") => Ok(Operator::In),
            (Kind::Word, "notin") => Ok(Operator::NotIn),
            (Kind::Equals | Kind::DoubleEquals, _) => Ok(Operator::Equals),
            (Kind::NotEquals, _) => Ok(Operator::NotEquals),
            (Kind::Greater, _) => Ok(Operator::Gt),
            (Kind::Less, _) => Ok(Operator::Lt),
            _ => {
                let expected = "an operator ('=', '==', '!=', 'in', 'notin', '>' or '<')";
                Err(self.unexpected(op, expected))
            }
        }
    }

    fn check_values(&self, key: &str, values: &[Value<'_>]) -> Result<(), Error> {
        for &(value, position) in values {
            if let Err(reason) = validation::label_value(value) {
                let error = Error::InvalidValue {
                    key: key.to_owned(),
                    value: value.to_owned(),
                    reason,
                };
                return Err(self.error(position, error.to_string()));
            }
        }
        Ok(())
    }

    /// `( list )` after `in` or `notin`; `()` is the set `{""}`.
    fn value_set(&mut self) -> Result<Vec<Value<'a>>, Error> {
        let open = self.bump();
        if open.kind != Kind::OpenParen {
            return Err(self.unexpected(open, "'('"));
        }
        let next = self.peek();
        let values = match next.kind {
            Kind::Word | Kind::Comma => self.value_list()?,
            Kind::CloseParen => vec![("", next.position)],
            _ => return Err(self.unexpected(next, "a value, ',' or ')'")),
        };
        let close = self.bump();
        if close.kind != Kind::CloseParen {
            return Err(self.unexpected(close, "')'"));
        }
        Ok(values)
    }

    /// Comma-separated values, stopping before the closing `)`. Empty items
    /// are `""`, as Kubernetes reads them.
    fn value_list(&mut self) -> Result<Vec<Value<'a>>, Error> {
        let mut values = Vec::new();
        loop {
            let token = self.bump();
            match token.kind {
                Kind::Word => {
                    values.push((token.text, token.position));
                    let next = self.peek();
                    match next.kind {
                        Kind::Comma => {}
                        Kind::CloseParen => return Ok(values),
                        _ => return Err(self.unexpected(next, "',' or ')'")),
                    }
                }
                Kind::Comma => {
                    if values.is_empty() {
                        values.push(("", token.position)); // "(,"
                    }
                    let next = self.peek();
                    match next.kind {
                        Kind::CloseParen => {
                            values.push(("", next.position)); // ",)"
                            return Ok(values);
                        }
                        Kind::Comma => {
                            self.bump();
                            values.push(("", next.position)); // ",,"
                        }
                        _ => {}
                    }
                }
                _ => return Err(self.unexpected(token, "a value or ','")),
            }
        }
    }

    /// The value after `=`, `==`, `!=`, `>` or `<`; nothing means `""`.
    fn exact_value(&mut self) -> Result<Value<'a>, Error> {
        let token = self.peek();
        match token.kind {
            Kind::End | Kind::Comma => Ok(("", token.position)),
            Kind::Word => {
                self.bump();
                Ok((token.text, token.position))
            }
            _ => Err(self.unexpected(token, "a value")),
        }
    }

    /// Builds a requirement whose syntax has parsed, reporting a problem
    /// with its values (such as `a>x`) at `position`, the operator's.
    fn build(
        &self,
        key: &str,
        operator: Operator,
        values: Vec<String>,
        position: usize,
    ) -> Result<Requirement, Error> {
        Requirement::new(key, operator, values).map_err(|e| self.error(position, e.to_string()))
    }

    fn peek(&self) -> Token<'a> {
        let end = Token {
            kind: Kind::End,
            text: "",
            position: self.input.len(),
        };
        self.tokens.get(self.next).copied().unwrap_or(end)
    }

    /// Takes the next token; the `End` token is never used up.
    fn bump(&mut self) -> Token<'a> {
        let token = self.peek();
        if token.kind != Kind::End {
            self.next += 1;
        }
        token
    }

    fn error(&self, position: usize, reason: String) -> Error {
        Error::LabelSelector {
            input: self.input.to_owned(),
            position,
            reason,
        }
    }

    fn unexpected(&self, found: Token<'_>, expected: &str) -> Error {
        let what = match found.kind {
            Kind::End => "end of string".to_owned(),
            _ => format!("'{}'", found.text),
        };
        self.error(found.position, format!("found {what}, expected {expected}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one requirement `input` parses to, as (key, operator, values).
    fn single(input: &str) -> (String, Operator, Vec<String>) {
        let selector = parse(input).unwrap();
        let [r] = selector.requirements() else {
            panic!("{input:?} gave {selector:?}");
        };
        (r.key().to_owned(), r.operator(), r.values().to_vec())
    }

    fn strings(vs: &[&str]) -> Vec<String> {
        vs.iter().map(|v| (*v).to_owned()).collect()
    }

    /// The position and reason of the error `input` gives.
    fn failure(input: &str) -> (usize, String) {
        match parse(input) {
            Err(Error::LabelSelector {
                input: echoed,
                position,
                reason,
            }) => {
                assert_eq!(echoed, input);
                (position, reason)
            }
            other => panic!("{input:?} gave {other:?}"),
        }
    }

    fn fails_with(input: &str, position: usize, reason: &str) {
        assert_eq!(failure(input), (position, reason.to_owned()), "{input:?}");
    }

    #[test]
    fn parses_each_operator() {
        let cases = [
            ("a=b", Operator::Equals, &["b"][..]),
            ("a==b", Operator::Equals, &["b"]),
            ("a!=b", Operator::NotEquals, &["b"]),
            ("a in (b,c)", Operator::In, &["b", "c"]),
            ("a notin (b)", Operator::NotIn, &["b"]),
            ("a", Operator::Exists, &[]),
            ("!a", Operator::DoesNotExist, &[]),
            ("a>1", Operator::Gt, &["1"]),
            ("a<1", Operator::Lt, &["1"]),
        ];
        for (input, operator, values) in cases {
            assert_eq!(
                single(input),
                ("a".to_owned(), operator, strings(values)),
                "{input:?}"
            );
        }
    }

    #[test]
    fn whitespace_is_optional_and_ignored() {
        assert_eq!(single(" a\t=\nb\r"), single("a=b"));
        assert_eq!(single("a in(b , c )"), single("a in (b,c)"));
        assert_eq!(single("a notin(b)"), single("a notin (b)"));
        assert_eq!(single("! a"), single("!a"));
        assert_eq!(parse("a , b").unwrap(), parse("a,b").unwrap());
    }

    #[test]
    fn in_and_notin_are_words_outside_operator_position() {
        assert_eq!(
            single("in=notin"),
            ("in".into(), Operator::Equals, strings(&["notin"]))
        );
        assert_eq!(
            single("in in (in)"),
            ("in".into(), Operator::In, strings(&["in"]))
        );
        assert_eq!(single("notin"), ("notin".into(), Operator::Exists, vec![]));
        assert_eq!(single("!in"), ("in".into(), Operator::DoesNotExist, vec![]));
    }

    #[test]
    fn empty_values_are_read_as_kubernetes_reads_them() {
        let cases = [
            ("a=", &[""][..]),
            ("a==", &[""]),
            ("a!=", &[""]),
            ("a in ()", &[""]),
            ("a in (,)", &[""]),
            ("a in (,b)", &["", "b"]),
            ("a in (b,)", &["", "b"]),
            ("a in (b,,c)", &["", "b", "c"]),
            ("a in (,,b)", &["", "b"]),
        ];
        for (input, values) in cases {
            assert_eq!(single(input).2, strings(values), "{input:?}");
        }
        let selector = parse("a=,b").unwrap();
        assert_eq!(selector.to_string(), "a=,b");
    }

    #[test]
    fn prefixed_keys_and_long_names() {
        let key = format!("{}/{}", "p".repeat(253), "n".repeat(63));
        let value = "v".repeat(63);
        assert_eq!(single(&format!("{key}={value}")).0, key);
        assert_eq!(single("example.com/app in (Web_1.x)").0, "example.com/app");
    }

    #[test]
    fn reports_missing_close_paren() {
        fails_with("a in (b", 7, "found end of string, expected ',' or ')'");
        assert_eq!(
            parse("a in (b").unwrap_err().to_string(),
            "unable to parse label selector \"a in (b\": at position 7: found end of string, \
             expected ',' or ')'"
        );
    }

    #[test]
    fn reports_syntax_errors_at_the_offending_token() {
        let expected_op =
            "found 'b', expected an operator ('=', '==', '!=', 'in', 'notin', '>' or '<')";
        fails_with("a b", 2, expected_op);
        fails_with("a in b", 5, "found 'b', expected '('");
        fails_with("a in", 4, "found end of string, expected '('");
        fails_with(
            "a,",
            2,
            "found end of string, expected a key or '!' after ','",
        );
        fails_with("a,,b", 2, "found ',', expected a key or '!' after ','");
        fails_with(",a", 0, "found ',', expected a key, '!' or end of string");
        fails_with("=a", 0, "found '=', expected a key, '!' or end of string");
        fails_with("!", 1, "found end of string, expected a key");
        fails_with("!=a", 0, "found '!=', expected a key, '!' or end of string");
        fails_with("!!a", 1, "found '!', expected a key");
        fails_with("!a=b", 2, "found '=', expected ',' or end of string");
        fails_with("a=b c", 4, "found 'c', expected ',' or end of string");
        fails_with("a=b=c", 3, "found '=', expected ',' or end of string");
        fails_with("a=(b)", 2, "found '(', expected a value");
        fails_with("a<=1", 2, "found '=', expected a value");
        fails_with("a!==b", 3, "found '=', expected a value");
        fails_with("a in (b c)", 8, "found 'c', expected ',' or ')'");
        fails_with("a in (=)", 6, "found '=', expected a value, ',' or ')'");
        fails_with("a in (b,=)", 8, "found '=', expected a value or ','");
        fails_with("a in (,", 7, "found end of string, expected a value or ','");
        fails_with("a in (b))", 8, "found ')', expected ',' or end of string");
        fails_with(
            "a in (b),,c",
            9,
            "found ',', expected a key or '!' after ','",
        );
    }

    #[test]
    fn reports_invalid_keys_at_the_key() {
        let (position, reason) = failure("x, a%=b");
        assert_eq!(position, 3);
        assert!(
            reason.starts_with("invalid label key \"a%\": name part must consist"),
            "{reason}"
        );
        let (position, reason) = failure("-a");
        assert_eq!(position, 0);
        assert!(reason.starts_with("invalid label key \"-a\""), "{reason}");
        let long = "k".repeat(64);
        let (_, reason) = failure(&format!("!{long}"));
        assert!(
            reason.ends_with("name part must be no more than 63 characters"),
            "{reason}"
        );
        let (_, reason) = failure("/a in (b)");
        assert!(
            reason.ends_with("prefix part must be non-empty"),
            "{reason}"
        );
    }

    #[test]
    fn positions_are_byte_offsets() {
        let (position, reason) = failure("a=b, é");
        assert_eq!(position, 5);
        assert!(reason.starts_with("invalid label key \"é\""), "{reason}");
        fails_with("a in (é b)", 9, "found 'b', expected ',' or ')'");
    }

    #[test]
    fn reports_invalid_values_at_the_value() {
        let (position, reason) = failure("a in (b, c_)");
        assert_eq!(position, 9);
        assert!(
            reason.starts_with("invalid label value \"c_\" for key \"a\": a valid label must"),
            "{reason}"
        );
        assert_eq!(failure("a=-b").0, 2);
        let (_, reason) = failure(&format!("a={}", "v".repeat(64)));
        assert!(
            reason.contains("must be no more than 63 characters"),
            "{reason}"
        );
    }

    #[test]
    fn syntax_errors_come_before_value_errors() {
        fails_with("a in (-b", 8, "found end of string, expected ',' or ')'");
    }

    #[test]
    fn gt_and_lt_need_an_integer() {
        let integer = "invalid values [\"x\"] for key \"a\" with operator Gt: for 'Gt', 'Lt' \
                       operators, the value must be an integer";
        fails_with("a>x", 1, integer);
        let (position, reason) = failure("b,a<");
        assert_eq!(position, 3);
        assert!(reason.ends_with("the value must be an integer"), "{reason}");
        assert!(failure("a>-1").1.starts_with("invalid label value \"-1\""));
    }

    #[test]
    fn lexer_prefers_two_character_operators() {
        let kinds = |input| lex(input).iter().map(|t| t.kind).collect::<Vec<_>>();
        assert_eq!(
            kinds("!==!"),
            [Kind::NotEquals, Kind::Equals, Kind::Bang, Kind::End]
        );
        assert_eq!(
            kinds("a<b>c"),
            [
                Kind::Word,
                Kind::Less,
                Kind::Word,
                Kind::Greater,
                Kind::Word,
                Kind::End
            ]
        );
        let texts: Vec<&str> = lex(" ab\tc(d)").iter().map(|t| t.text).collect();
        assert_eq!(texts, ["ab", "c", "(", "d", ")", ""]);
    }
}
