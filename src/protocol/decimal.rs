//! Exact decimal arithmetic for server-side filters (proto/PROTOCOL.md section 8, "Numbers"): a *decimal
//! string* (`-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?`, what Python's `str(Decimal)` writes) and a JSON number
//! (integers exactly, a float as its shortest round-trip form) compare by value without rounding through
//! `f64`, so `"0.30000000000000000001" > 0.3` and `120 == "120.00"`. [`DecView`] reads a decimal without
//! allocating; [`Dec`] is an owned, normalised one (a filter's operand, the canonical text of a number).

use std::{cmp::Ordering, fmt, io::Write as _};

use serde_json::Number;

/// Largest exponent magnitude of a decimal string; beyond it the string is not a decimal.
const MAX_EXPONENT: i64 = 999_999_999;

pub(crate) fn int_of(n: &Number) -> Option<i128> {
    n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
}

/// Numeric order of two JSON numbers (exact: integers as integers, two floats as floats, a mix
/// through decimals).
pub(crate) fn num_cmp(a: &Number, b: &Number) -> Ordering {
    if let (Some(x), Some(y)) = (int_of(a), int_of(b)) {
        return x.cmp(&y);
    }
    if a.is_f64() && b.is_f64() {
        if let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) {
            return x.partial_cmp(&y).unwrap_or(Ordering::Equal);
        }
    }
    num_dec(a, |x| num_dec(b, |y| x.cmp(&y)))
}

/// Calls `f` with the decimal of a JSON number (integers exactly; a float as its shortest
/// round-trip form).
pub(crate) fn num_dec<R>(n: &Number, f: impl FnOnce(DecView<'_>) -> R) -> R {
    let mut buf = [0u8; 48];
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let _ = match int_of(n) {
        Some(i) => write!(cur, "{i}"),
        None => write!(cur, "{:e}", n.as_f64().unwrap_or(0.0)),
    };
    let len = cur.position() as usize;
    let view = std::str::from_utf8(&buf[..len]).ok().and_then(DecView::parse);
    f(view.unwrap_or(DecView::ZERO))
}

/// A decimal number `±0.d1d2d3... × 10^adj` whose significant digits are `head` then `tail`
/// (`head` starts with a non-zero digit; trailing zeros may remain). Zero has no digits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecView<'a> {
    neg: bool,
    adj: i64,
    head: &'a [u8],
    tail: &'a [u8],
}

impl<'a> DecView<'a> {
    pub(crate) const ZERO: DecView<'static> = DecView { neg: false, adj: 0, head: &[], tail: &[] };

    /// A decimal string: `-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?`, exponent at most
    /// [`MAX_EXPONENT`] in magnitude.
    pub(crate) fn parse(s: &'a str) -> Option<DecView<'a>> {
        let s = s.as_bytes();
        let digits = |from: usize| from + s[from..].iter().take_while(|b| b.is_ascii_digit()).count();
        let neg = s.first() == Some(&b'-');
        let start = usize::from(neg);
        let mut i = digits(start);
        let int = &s[start..i];
        if int.is_empty() {
            return None;
        }
        let mut frac: &[u8] = &[];
        if s.get(i) == Some(&b'.') {
            let end = digits(i + 1);
            frac = &s[i + 1..end];
            if frac.is_empty() {
                return None;
            }
            i = end;
        }
        let mut exp: i64 = 0;
        if matches!(s.get(i), Some(b'e' | b'E')) {
            i += 1;
            let eneg = s.get(i) == Some(&b'-');
            if matches!(s.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let end = digits(i);
            if end == i {
                return None;
            }
            for &d in &s[i..end] {
                exp = exp * 10 + i64::from(d - b'0');
                if exp > MAX_EXPONENT {
                    return None;
                }
            }
            if eneg {
                exp = -exp;
            }
            i = end;
        }
        if i != s.len() {
            return None;
        }
        let lead = int.iter().take_while(|&&d| d == b'0').count();
        if lead < int.len() {
            return Some(DecView { neg, adj: (int.len() - lead) as i64 + exp, head: &int[lead..], tail: frac });
        }
        let lead = frac.iter().take_while(|&&d| d == b'0').count();
        if lead == frac.len() {
            return Some(DecView::ZERO);
        }
        Some(DecView { neg, adj: exp - lead as i64, head: &frac[lead..], tail: &[] })
    }

    fn is_zero(&self) -> bool {
        self.head.is_empty()
    }

    fn digits(&self) -> impl Iterator<Item = u8> + 'a {
        self.head.iter().chain(self.tail).copied()
    }

    pub(crate) fn cmp(&self, other: &DecView<'_>) -> Ordering {
        let sign = |d: &DecView<'_>| {
            if d.is_zero() {
                0
            } else if d.neg {
                -1
            } else {
                1
            }
        };
        let (sa, sb) = (sign(self), sign(other));
        if sa != sb || sa == 0 {
            return sa.cmp(&sb);
        }
        let magnitude = self.adj.cmp(&other.adj).then_with(|| {
            let (mut a, mut b) = (self.digits(), other.digits());
            loop {
                match (a.next(), b.next()) {
                    (None, None) => return Ordering::Equal,
                    (x, y) => match x.unwrap_or(b'0').cmp(&y.unwrap_or(b'0')) {
                        Ordering::Equal => continue,
                        o => return o,
                    },
                }
            }
        });
        if sa < 0 {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

/// An owned, normalised decimal (no trailing zeros; zero has no digits and no sign).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dec {
    neg: bool,
    adj: i64,
    digits: Box<[u8]>,
}

impl Dec {
    pub(crate) fn from_view(v: DecView<'_>) -> Dec {
        let mut digits: Vec<u8> = v.digits().collect();
        while digits.last() == Some(&b'0') {
            digits.pop();
        }
        if digits.is_empty() {
            return Dec { neg: false, adj: 0, digits: Box::new([]) };
        }
        Dec { neg: v.neg, adj: v.adj, digits: digits.into() }
    }

    pub(crate) fn view(&self) -> DecView<'_> {
        DecView { neg: self.neg, adj: self.adj, head: &self.digits, tail: &[] }
    }
}

/// A JSON number text for a decimal: plain when the point is near, else `d.ddde±x`.
impl fmt::Display for Dec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = std::str::from_utf8(&self.digits).map_err(|_| fmt::Error)?;
        if d.is_empty() {
            return f.write_str("0");
        }
        if self.neg {
            f.write_str("-")?;
        }
        let (n, adj) = (d.len() as i64, self.adj);
        if (1..=21).contains(&adj) {
            if n <= adj {
                write!(f, "{d}{}", "0".repeat((adj - n) as usize))
            } else {
                write!(f, "{}.{}", &d[..adj as usize], &d[adj as usize..])
            }
        } else if (-5..=0).contains(&adj) {
            write!(f, "0.{}{d}", "0".repeat((-adj) as usize))
        } else {
            let (first, rest) = d.split_at(1);
            let dot = if rest.is_empty() { "" } else { "." };
            write!(f, "{first}{dot}{rest}e{}", adj - 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn dec(s: &str) -> Dec {
        Dec::from_view(DecView::parse(s).unwrap_or_else(|| panic!("{s:?} is a decimal")))
    }

    #[test]
    fn decimal_strings_parse_by_the_grammar() {
        for s in ["0", "-0", "7", "007", "120.00", "-5.5", "1E+2", "1e-8", "0E-8", "12.5e3", "1e999999999"] {
            assert!(DecView::parse(s).is_some(), "{s:?}");
        }
        let not_decimal = ["", "-", "+5", " 5", "5 ", ".5", "5.", "1e", "1e+", "NaN", "Infinity", "0x10", "1_000"];
        for s in not_decimal.into_iter().chain(["1e1000000000", "--1", "1.2.3", "\u{661}"]) {
            assert!(DecView::parse(s).is_none(), "{s:?}");
        }
    }

    #[test]
    fn decimals_compare_exactly() {
        let cmp = |a: &str, b: &str| DecView::parse(a).unwrap().cmp(&DecView::parse(b).unwrap());
        assert_eq!(cmp("9.50", "10"), Ordering::Less);
        assert_eq!(cmp("120.00", "120"), Ordering::Equal);
        assert_eq!(cmp("0.00", "-0"), Ordering::Equal);
        assert_eq!(cmp("-2", "-10"), Ordering::Greater);
        assert_eq!(cmp("1E+2", "100.0"), Ordering::Equal);
        assert_eq!(cmp("0.001", "1e-3"), Ordering::Equal);
        assert_eq!(cmp("0.30000000000000000001", "0.3"), Ordering::Greater);
        assert_eq!(cmp("-0.5", "0"), Ordering::Less);
        assert_eq!(cmp("00012.3400", "12.34"), Ordering::Equal);
    }

    #[test]
    fn numbers_become_their_shortest_decimal() {
        let text = |v: Value| num_dec(v.as_number().unwrap(), Dec::from_view).to_string();
        assert_eq!(text(json!(0.1)), "0.1");
        assert_eq!(text(json!(1.0)), "1");
        assert_eq!(text(json!(-0.0)), "0");
        assert_eq!(text(json!(120)), "120");
        assert_eq!(text(json!(u64::MAX)), "18446744073709551615");
        assert_eq!(text(json!(i64::MIN)), "-9223372036854775808");
        assert_eq!(text(json!(1.5e300)), "1.5e300");
        assert_eq!(text(json!(2.5e-7)), "2.5e-7");
        assert_eq!(text(json!(0.000123)), "0.000123");
        assert_eq!(dec("1E+2").to_string(), "100");
        assert_eq!(dec("-0.0").to_string(), "0");
    }

    #[test]
    fn mixed_integer_and_float_compare_exactly() {
        let n = |v: Value| v.as_number().unwrap().clone();
        // 2^53 + 1 is not a double; a float of 2^53 is below it.
        assert_eq!(num_cmp(&n(json!(9007199254740993u64)), &n(json!(9007199254740992.0))), Ordering::Greater);
        assert_eq!(num_cmp(&n(json!(3)), &n(json!(3.0))), Ordering::Equal);
        assert_eq!(num_cmp(&n(json!(-1)), &n(json!(u64::MAX))), Ordering::Less);
    }
}
