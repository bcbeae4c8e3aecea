//! Memory size strings: `JupyterHub`'s `ByteSpecification` and docker-py's
//! `parse_bytes`.
//!
//! The two syntaxes differ on purpose and must not be merged: `mem_limit`
//! and `mem_guarantee` follow `JupyterHub` (`'1.5G'`, uppercase `K`/`M`/`G`/`T`
//! only, a plain `'1024'` is an error), whereas byte sizes inside
//! `extra_host_config` (`shm_size="1g"`, ...) follow docker-py (lowercase
//! allowed, `'1gb'`, plain byte counts, no `t`). Configurations written for
//! `DockerSpawner` must be accepted or rejected exactly as before.

use std::fmt;

/// 2^63 as an `f64`: every truncated value below it fits in an `i64`.
const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;

/// Which syntax a rejected string was checked against; it decides what the
/// error message suggests instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteSyntax {
    /// `JupyterHub`'s `ByteSpecification` ([`parse_byte_specification`]).
    JupyterHub,
    /// docker-py's `parse_bytes` ([`parse_docker_bytes`]).
    Docker,
}

/// Why a memory size string was rejected.
///
/// The messages describe the value and what is allowed but not which
/// setting it came from: the caller knows that and prefixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryError {
    /// The string does not follow the syntax.
    Invalid {
        /// The rejected string.
        value: String,
        /// The syntax it was checked against.
        syntax: ByteSyntax,
    },
    /// The size is below zero. `JupyterHub` would accept `'-1G'` and hand
    /// Docker a negative limit; we refuse it.
    Negative {
        /// The rejected string.
        value: String,
    },
    /// The number is `nan` or `inf`. `JupyterHub` fails on these with an
    /// unhandled Python `ValueError`/`OverflowError`.
    NotFinite {
        /// The rejected string.
        value: String,
    },
    /// The size does not fit in a signed 64-bit byte count, the type Docker
    /// uses for memory limits.
    TooLarge {
        /// The rejected string.
        value: String,
    },
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid {
                value,
                syntax: ByteSyntax::JupyterHub,
            } => write!(
                f,
                "'{value}' is not a valid memory specification: use an integer number of bytes \
                 or a number with suffix K, M, G or T (e.g. '512M', '1.5G')"
            ),
            Self::Invalid {
                value,
                syntax: ByteSyntax::Docker,
            } => write!(
                f,
                "'{value}' is not a valid Docker byte size: use a whole number of bytes or a \
                 number with unit b, k, m or g, optionally followed by b (e.g. '512m', '1.5g', \
                 '1gb')"
            ),
            Self::Negative { value } => write!(
                f,
                "'{value}' is a negative memory size: use zero or a positive size (e.g. '512M')"
            ),
            Self::NotFinite { value } => write!(
                f,
                "'{value}' is not a finite memory size: use a number such as '512M' or '1.5G'"
            ),
            Self::TooLarge { value } => write!(
                f,
                "'{value}' is too large for a memory size: at most {} bytes (8 EiB) are allowed",
                i64::MAX
            ),
        }
    }
}

impl std::error::Error for MemoryError {}

/// A memory setting's value as configured (or returned by a callable), before checking.
#[derive(Debug)]
pub enum MemoryValue {
    /// An integer number of bytes (Python `int`; `bool` counts as 0 or 1, as in `JupyterHub`).
    Int(i128),
    /// A float number of bytes, truncated toward zero.
    Float(f64),
    /// A `ByteSpecification` string such as `"512M"`.
    Text(String),
    /// Anything else, as Python's `repr` shows it.
    Other(String),
}

/// The one check of `mem_limit`/`mem_guarantee` values, at configuration and at every start:
/// `JupyterHub`'s `ByteSpecification` rules, with the values it would turn into a crash or a
/// negative limit (NaN, infinity, overflow, negatives) refused. `setting` (e.g.
/// `DockerSpawner.mem_limit`) is named in the error.
///
/// # Errors
///
/// `CoreError::InvalidSpec` naming the setting, the value and what is allowed.
pub fn limit_bytes(setting: &str, value: &MemoryValue) -> crate::errors::CoreResult<u64> {
    use crate::errors::CoreError;
    let fits = |n: i128| u64::try_from(n).ok().filter(|b| i64::try_from(*b).is_ok());
    match value {
        MemoryValue::Int(n) if *n < 0 => Err(CoreError::InvalidSpec(format!(
            "{setting} = {n} is negative: use a number of bytes >= 0, or a string such as '512M' or '1.5G'"
        ))),
        MemoryValue::Int(n) => fits(*n).ok_or_else(|| {
            CoreError::InvalidSpec(format!(
                "{setting} = {n} is too large: at most {} bytes (8 EiB) are allowed",
                i64::MAX
            ))
        }),
        MemoryValue::Float(x) if !x.is_finite() || *x < 0.0 || *x >= I64_LIMIT => {
            Err(CoreError::InvalidSpec(format!(
                "{setting} = {} is not allowed: use a finite number of bytes >= 0, or a string such as '512M' or '1.5G'",
                python_float(*x)
            )))
        }
        // Truncation toward zero, as `int(value)`; the range was checked above.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        MemoryValue::Float(x) => Ok(*x as u64),
        // `parse_byte_specification` refuses negatives, so the count is never below zero.
        MemoryValue::Text(text) => parse_byte_specification(text)
            .map(i64::unsigned_abs)
            .map_err(|e| CoreError::InvalidSpec(format!("{setting}: {e}"))),
        MemoryValue::Other(repr) => Err(CoreError::InvalidSpec(format!(
            "{setting} = {repr} is not a valid memory specification: use an integer number of bytes or a string with suffix K, M, G or T (e.g. '512M')"
        ))),
    }
}

/// The one check of `cpu_limit`/`cpu_guarantee` values: a finite number of cores >= 0.
///
/// # Errors
///
/// `CoreError::InvalidSpec` naming the setting and the value.
pub fn cpu_cores(setting: &str, cores: f64) -> crate::errors::CoreResult<f64> {
    if cores.is_finite() && cores >= 0.0 {
        Ok(cores)
    } else {
        Err(crate::errors::CoreError::InvalidSpec(format!(
            "{setting} = {} is not allowed: use a finite number of cores >= 0",
            python_float(cores)
        )))
    }
}

/// A float as Python's `repr` writes the special values (`nan`, `inf`, `-inf`).
fn python_float(x: f64) -> String {
    if x.is_nan() {
        "nan".to_owned()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{x:?}")
    }
}

/// Parses a memory string the way `JupyterHub`'s `ByteSpecification` does.
///
/// Everything but the last character is read as a Python `float()` literal
/// (so `'1.5G'`, `'.5G'`, `'1e3M'`, `'1_000M'`, `' 1 G'` are fine) and the
/// last character must be `K`, `M`, `G` or `T` (uppercase; powers of 1024).
/// The product is computed in `f64`, as in Python, and truncated toward
/// zero: `'1.9K'` is 1945.
///
/// Unlike `JupyterHub`, negative sizes, `nan`/`inf` and sizes beyond `i64` are
/// errors. Plain integers are not accepted here because `JupyterHub` would
/// read `'1024'` as the number `102` with the invalid suffix `4`; integer
/// settings are handled before strings reach this function.
///
/// # Errors
///
/// [`MemoryError::Invalid`] for bad syntax, [`MemoryError::Negative`],
/// [`MemoryError::NotFinite`] for `nan`/`inf`, and [`MemoryError::TooLarge`]
/// above `i64::MAX` bytes.
pub fn parse_byte_specification(value: &str) -> Result<i64, MemoryError> {
    let invalid = || MemoryError::Invalid {
        value: value.to_owned(),
        syntax: ByteSyntax::JupyterHub,
    };
    // Python's `value[:-1]` and `value[-1]`, by character so that a
    // multi-byte last character cannot split a UTF-8 sequence.
    let mut chars = value.chars();
    let suffix = chars.next_back().ok_or_else(invalid)?;
    let number = parse_python_float(chars.as_str()).ok_or_else(invalid)?;
    let multiplier = match suffix {
        'K' => 1024.0,
        'M' => 1024.0_f64.powi(2),
        'G' => 1024.0_f64.powi(3),
        'T' => 1024.0_f64.powi(4),
        _ => return Err(invalid()),
    };
    match number {
        PyFloat::NotFinite => Err(MemoryError::NotFinite {
            value: value.to_owned(),
        }),
        PyFloat::Finite(number) => to_byte_count(number * multiplier, value),
    }
}

/// Parses a byte size string the way docker-py's `parse_bytes` does, for
/// sizes given in `extra_host_config` (`shm_size`, `memswap_limit`, ...).
///
/// `''` is 0; a string of ASCII digits is a number of bytes; otherwise a
/// number followed by a unit `b`, `k`, `m` or `g` (any case, powers of 1024)
/// and optionally one more `b`/`B` (`'1gb'`, and also `'1bb'`, as the
/// extra `b` may follow any unit letter). The number may have a fraction
/// (`'1.5g'`); the product is truncated toward zero. There is no `t`.
///
/// Where docker-py is looser than what its documentation promises, this is
/// strict on purpose: the number must be plain ASCII digits with at most one
/// `.` (no sign, exponent, underscore, whitespace, `nan`/`inf`), and a
/// string without a unit must be whole digits (`'1.5'` is rejected). A plain
/// digit string is read exactly instead of through a float, which only
/// matters above 2^53 bytes.
///
/// # Errors
///
/// [`MemoryError::Invalid`] for bad syntax and [`MemoryError::TooLarge`]
/// above `i64::MAX` bytes (signs are not part of the syntax, so nothing is
/// ever [`MemoryError::Negative`] here).
pub fn parse_docker_bytes(value: &str) -> Result<i64, MemoryError> {
    let invalid = || MemoryError::Invalid {
        value: value.to_owned(),
        syntax: ByteSyntax::Docker,
    };
    if value.is_empty() {
        return Ok(0);
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<i64>().map_err(|_| MemoryError::TooLarge {
            value: value.to_owned(),
        });
    }
    // An optional `b`/`B` after the unit letter (`1gb`, `1kB`).
    let mut rest = value;
    if let Some(stripped) = rest.strip_suffix(['b', 'B']) {
        if stripped.ends_with(|c: char| c.is_ascii_alphabetic()) {
            rest = stripped;
        }
    }
    let mut chars = rest.chars();
    let unit = chars.next_back().ok_or_else(invalid)?;
    let multiplier = match unit.to_ascii_lowercase() {
        'b' => 1.0,
        'k' => 1024.0,
        'm' => 1024.0_f64.powi(2),
        'g' => 1024.0_f64.powi(3),
        _ => return Err(invalid()),
    };
    let number = chars.as_str();
    if !is_plain_decimal(number) {
        return Err(invalid());
    }
    let number: f64 = number.parse().map_err(|_| invalid())?;
    to_byte_count(number * multiplier, value)
}

/// `digits`, `digits.`, `digits.digits` or `.digits`, ASCII only.
fn is_plain_decimal(text: &str) -> bool {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    (!whole.is_empty() || !fraction.is_empty()) && all_digits(whole) && all_digits(fraction)
}

/// Python's `int(bytes)` for a finite float, minus the cases we refuse.
fn to_byte_count(bytes: f64, value: &str) -> Result<i64, MemoryError> {
    let truncated = bytes.trunc();
    if truncated < 0.0 {
        // `-0.0` (from e.g. `'-0.1K'`) is not below zero: Python gives 0.
        return Err(MemoryError::Negative {
            value: value.to_owned(),
        });
    }
    // Also catches +inf, which a finite literal such as `'1e308T'` can
    // overflow to.
    if truncated.is_nan() || truncated >= I64_LIMIT {
        return Err(MemoryError::TooLarge {
            value: value.to_owned(),
        });
    }
    // In range and integral after the checks above, so the cast is exact.
    #[allow(clippy::cast_possible_truncation)]
    Ok(truncated as i64)
}

/// A value read by [`parse_python_float`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum PyFloat {
    /// A numeric literal. It can still be infinite if it overflows
    /// (`1e400`), which callers treat as "too large" rather than as a
    /// deliberate `inf`.
    Finite(f64),
    /// The words `nan`, `inf` or `infinity`, with or without sign.
    NotFinite,
}

/// Parses `text` like Python's `float(text)`; `None` where Python raises
/// `ValueError`.
///
/// Accepted: surrounding whitespace (Python's notion of it), an optional
/// sign, then `nan`, `inf` or `infinity` in any case, or digits with an
/// optional fraction and exponent (`1`, `1.`, `.5`, `1e3`, `1.5E-2`), where
/// single underscores may separate digits (`1_000`, not `1__0`, `_1`, `1_`
/// or `1_.5`). Python also accepts non-ASCII decimal digits (e.g.
/// Arabic-Indic); those are rejected here, a deliberate strictness since no
/// one writes memory sizes that way.
fn parse_python_float(text: &str) -> Option<PyFloat> {
    // Python strips ASCII whitespace and any non-ASCII character for which
    // `str.isspace()` holds, which is exactly Rust's `char::is_whitespace`
    // (the ASCII separators U+001C..U+001F, spaces to `isspace()`, are
    // not stripped by `float()`).
    let text = text.trim_matches(char::is_whitespace);
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    if ["nan", "inf", "infinity"]
        .iter()
        .any(|word| unsigned.eq_ignore_ascii_case(word))
    {
        return Some(PyFloat::NotFinite);
    }
    let cleaned = remove_digit_underscores(unsigned)?;
    if !is_decimal_literal(&cleaned) {
        return None;
    }
    // The grammar has been checked, so Rust's parser (correctly rounded,
    // like Python's) only sees forms it accepts.
    let magnitude: f64 = cleaned.parse().ok()?;
    Some(PyFloat::Finite(if text.starts_with('-') {
        -magnitude
    } else {
        magnitude
    }))
}

/// Removes underscores that sit between two ASCII digits; `None` if any
/// underscore does not.
fn remove_digit_underscores(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        if c == '_' {
            let before = i.checked_sub(1).and_then(|j| bytes.get(j));
            let after = bytes.get(i + 1);
            if !(before.is_some_and(u8::is_ascii_digit) && after.is_some_and(u8::is_ascii_digit)) {
                return None;
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// `digits[.digits*][exponent]` or `.digits[exponent]`, exponent being
/// `e`/`E`, an optional sign and digits. ASCII only, no sign in front.
fn is_decimal_literal(text: &str) -> bool {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    });
    exponent_ok && is_plain_decimal(mantissa)
}

#[cfg(test)]
mod tests {
    // Tests report failures by panicking, and table tests are long by nature.
    #![allow(clippy::unwrap_used, clippy::panic, clippy::too_many_lines)]

    use super::*;

    /// Shorthand for the expected error kinds.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum E {
        Invalid,
        Negative,
        NotFinite,
        TooLarge,
    }

    fn kind(err: &MemoryError) -> E {
        match err {
            MemoryError::Invalid { .. } => E::Invalid,
            MemoryError::Negative { .. } => E::Negative,
            MemoryError::NotFinite { .. } => E::NotFinite,
            MemoryError::TooLarge { .. } => E::TooLarge,
        }
    }

    /// Every string row of the `ByteSpecification` edge-case table in the
    /// reference (§3), verified against `JupyterHub` 6.1.1, plus more.
    ///
    /// The table's non-string rows belong to the Python layer, which must
    /// handle them before calling this: ints `1024`, `0`, `-5` are returned
    /// as is (we should refuse `-5`), float `1.7` → 1 (truncated), `True` /
    /// `False` → 1 / 0, `None` → None (no limit), `b'1G'` (bytes) → error.
    #[test]
    fn byte_specification_table() {
        let ok: &[(&str, i64)] = &[
            ("1.5G", 1_610_612_736),
            ("512M", 536_870_912),
            ("1G", 1_073_741_824),
            ("1K", 1024),
            ("1T", 1_099_511_627_776),
            ("0.5K", 512),
            ("1.9K", 1945),
            (".5G", 536_870_912),
            ("1.M", 1_048_576),
            ("+2G", 2_147_483_648),
            ("1e3M", 1_048_576_000),
            ("1E3M", 1_048_576_000),
            ("1_000M", 1_048_576_000),
            (" 1G", 1_073_741_824),
            ("1 G", 1_073_741_824),
            // Beyond the table, checked against Python's float().
            ("\t1\n G", 1_073_741_824),
            ("\u{a0}1\u{3000}G", 1_073_741_824),
            ("\u{85}1\u{b}\u{c}G", 1_073_741_824),
            ("0G", 0),
            ("0K", 0),
            ("-0G", 0),
            ("-0.0001K", 0),
            ("0.0001K", 0),
            ("1.e3K", 1_024_000),
            ("1e+3K", 1_024_000),
            ("1000e-3K", 1024),
            ("1e1_0K", 10_240_000_000_000),
            ("1_0.2_5K", 10_496),
            ("00012K", 12_288),
            ("1e-400K", 0),
            ("8388607T", 9_223_370_937_343_148_032),
        ];
        for &(input, expected) in ok {
            assert_eq!(
                parse_byte_specification(input),
                Ok(expected),
                "input {input:?}"
            );
        }
        let err: &[(&str, E)] = &[
            ("1G ", E::Invalid),
            ("-1G", E::Negative),
            ("-0.5K", E::Negative),
            ("2g", E::Invalid),
            ("1k", E::Invalid),
            ("1Ki", E::Invalid),
            ("1GB", E::Invalid),
            ("1B", E::Invalid),
            ("1P", E::Invalid),
            ("GG", E::Invalid),
            ("M", E::Invalid),
            ("", E::Invalid),
            ("1024", E::Invalid),
            ("0", E::Invalid),
            ("-5", E::Invalid),
            ("0x10M", E::Invalid),
            ("nanG", E::NotFinite),
            ("infG", E::NotFinite),
            // Beyond the table.
            ("NaNG", E::NotFinite),
            ("-nanK", E::NotFinite),
            ("+InfinityT", E::NotFinite),
            ("-infG", E::NotFinite),
            ("infinitG", E::Invalid),
            ("in_fG", E::Invalid),
            ("1__0M", E::Invalid),
            ("_1M", E::Invalid),
            ("1_M", E::Invalid),
            ("1_.5M", E::Invalid),
            ("1._5M", E::Invalid),
            ("1_e3M", E::Invalid),
            ("1e_3M", E::Invalid),
            ("+_1M", E::Invalid),
            ("1e3_M", E::Invalid),
            (".M", E::Invalid),
            ("eM", E::Invalid),
            ("1eM", E::Invalid),
            ("1e+M", E::Invalid),
            ("1.5.5M", E::Invalid),
            ("++1M", E::Invalid),
            ("+-1M", E::Invalid),
            ("1 2M", E::Invalid),
            ("1\0M", E::Invalid),
            ("\u{1c}1G", E::Invalid),
            ("\u{1f}1G", E::Invalid),
            ("١G", E::Invalid),
            ("1Gé", E::Invalid),
            ("é", E::Invalid),
            ("1€", E::Invalid),
            ("1\u{1F600}", E::Invalid),
            ("8388608T", E::TooLarge),
            ("1e308T", E::TooLarge),
            ("1e400K", E::TooLarge),
            ("-1e400K", E::Negative),
        ];
        for &(input, expected) in err {
            let result = parse_byte_specification(input);
            assert_eq!(
                result.as_ref().map_err(kind),
                Err(expected),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn docker_bytes() {
        let ok: &[(&str, i64)] = &[
            ("", 0),
            ("0", 0),
            ("1024", 1024),
            ("9223372036854775807", i64::MAX),
            ("1b", 1),
            ("1B", 1),
            ("1k", 1024),
            ("1K", 1024),
            ("512m", 536_870_912),
            ("512M", 536_870_912),
            ("1g", 1_073_741_824),
            ("1G", 1_073_741_824),
            ("1gb", 1_073_741_824),
            ("1GB", 1_073_741_824),
            ("1gB", 1_073_741_824),
            ("1kb", 1024),
            ("1mb", 1_048_576),
            ("1bb", 1),
            ("1.5g", 1_610_612_736),
            ("1.5gb", 1_610_612_736),
            (".5k", 512),
            ("1.k", 1024),
            ("1.9k", 1945),
            ("0.5b", 0),
        ];
        for &(input, expected) in ok {
            assert_eq!(parse_docker_bytes(input), Ok(expected), "input {input:?}");
        }
        let err: &[(&str, E)] = &[
            ("1t", E::Invalid),
            ("1T", E::Invalid),
            ("1tb", E::Invalid),
            ("1kib", E::Invalid),
            ("1x", E::Invalid),
            ("g", E::Invalid),
            ("gb", E::Invalid),
            ("b", E::Invalid),
            (".g", E::Invalid),
            ("-1g", E::Invalid),
            ("+1g", E::Invalid),
            (" 1g", E::Invalid),
            ("1g ", E::Invalid),
            ("1 g", E::Invalid),
            ("1e3k", E::Invalid),
            ("1_000k", E::Invalid),
            ("infg", E::Invalid),
            ("1.5", E::Invalid),
            ("-5", E::Invalid),
            ("1gbb", E::Invalid),
            ("1é", E::Invalid),
            ("é", E::Invalid),
            ("9223372036854775808", E::TooLarge),
            ("8589934592g", E::TooLarge),
        ];
        for &(input, expected) in err {
            let result = parse_docker_bytes(input);
            assert_eq!(
                result.as_ref().map_err(kind),
                Err(expected),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            parse_byte_specification("2g").unwrap_err().to_string(),
            "'2g' is not a valid memory specification: use an integer number of bytes or a \
             number with suffix K, M, G or T (e.g. '512M', '1.5G')"
        );
        assert_eq!(
            parse_docker_bytes("1t").unwrap_err().to_string(),
            "'1t' is not a valid Docker byte size: use a whole number of bytes or a number with \
             unit b, k, m or g, optionally followed by b (e.g. '512m', '1.5g', '1gb')"
        );
        assert_eq!(
            parse_byte_specification("-1G").unwrap_err().to_string(),
            "'-1G' is a negative memory size: use zero or a positive size (e.g. '512M')"
        );
        assert_eq!(
            parse_byte_specification("nanG").unwrap_err().to_string(),
            "'nanG' is not a finite memory size: use a number such as '512M' or '1.5G'"
        );
        assert_eq!(
            parse_byte_specification("1e308T").unwrap_err().to_string(),
            "'1e308T' is too large for a memory size: at most 9223372036854775807 bytes (8 EiB) \
             are allowed"
        );
    }
}
