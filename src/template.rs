//! Name escaping and Python `str.format`-compatible template rendering.
//!
//! `DockerSpawner` derives container names, volume names, labels, paths and
//! every string inside `extra_create_kwargs`/`extra_host_config` from
//! Python format strings such as `{prefix}-{username}`. Existing deployments
//! depend on the exact names those templates produce (Docker volumes cannot
//! be renamed, so a different escaping silently "loses" user data), which is
//! why this module reproduces Python's behaviour character for character
//! instead of using a Rust templating crate.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

/// The values a template can refer to, keyed by field name.
///
/// A `BTreeMap` rather than a `HashMap` so that the "available fields" list
/// in [`TemplateError::UnknownField`] comes out sorted without an extra step
/// and error messages are deterministic.
pub type Namespace = BTreeMap<String, String>;

/// The largest padding width a format spec may ask for.
///
/// Python would try to build the string and fail with `MemoryError` for
/// absurd widths; in Rust an allocation failure aborts the whole Hub, so a
/// width above this limit is reported as an error instead. No real name or
/// label needs to be anywhere near this long.
const MAX_WIDTH: usize = 1_000_000;

/// Why a template could not be rendered by [`render_strict`].
#[derive(Debug, PartialEq)]
pub enum TemplateError {
    /// The template names a field that is not in the namespace (Python's
    /// `KeyError`).
    UnknownField {
        /// The field name as written between the braces, e.g. `usrname`.
        field: String,
        /// The whole template that was being rendered.
        template: String,
        /// The namespace's field names, sorted.
        available: Vec<String>,
    },
    /// The template uses a feature of Python's format language that this
    /// renderer deliberately does not offer: positional fields (`{}`, `{0}`;
    /// Python's `IndexError`, since templates get keyword arguments only),
    /// attribute or index access (`{username.upper}`, `{username[0]}`),
    /// nested fields inside a format spec, or an oversized width.
    Unsupported {
        /// The field name as written between the braces.
        field: String,
        /// The whole template that was being rendered.
        template: String,
        /// What is not supported and what to write instead.
        message: String,
    },
    /// The template is not a valid format string, or a conversion or format
    /// spec is invalid for a string value (Python's `ValueError`).
    Syntax {
        /// The whole template that was being rendered.
        template: String,
        /// What is wrong, worded like Python's message where one exists.
        message: String,
    },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownField {
                field,
                template,
                available,
            } => write!(
                f,
                "unknown template field '{{{field}}}' in '{template}'; available fields: {}",
                available_list(available)
            ),
            Self::Unsupported {
                field,
                template,
                message,
            } => write!(
                f,
                "unsupported template field '{{{field}}}' in '{template}': {message}"
            ),
            Self::Syntax { template, message } => {
                write!(f, "invalid template '{template}': {message}")
            }
        }
    }
}

impl std::error::Error for TemplateError {}

/// Formats the list of field names for error messages.
fn available_list(available: &[String]) -> String {
    if available.is_empty() {
        "(none)".to_owned()
    } else {
        available.join(", ")
    }
}

/// Escapes `text` the way `DockerSpawner` (12+) names containers and volumes.
///
/// Only `[a-z0-9]` is kept. Every other character, including `-` (the escape
/// character itself, so that escaping stays reversible) and uppercase
/// letters, becomes `-` followed by the uppercase hex of each of its UTF-8
/// bytes without zero padding, and the result is then lowercased.
/// `Alice@x.org` → `-41lice-40x-2eorg`, `a\tb` → `a-9b`.
#[must_use]
pub fn escape(text: &str) -> String {
    // The escaped output is pure ASCII, so ASCII lowercasing is exactly what
    // Python's `.lower()` does to it.
    escape_with(text, |c| c.is_ascii_lowercase() || c.is_ascii_digit(), '-').to_ascii_lowercase()
}

/// Escapes `text` the way `DockerSpawner` did before 12.0 (`escape="legacy"`).
///
/// `[A-Za-z0-9-]` is kept; every other character, including the escape
/// character `_`, becomes `_` followed by the uppercase hex of each UTF-8
/// byte without zero padding. Nothing is lowercased.
/// `Alice@x.org-a_b` → `Alice_40x_2Eorg-a_5Fb`.
#[must_use]
pub fn escape_legacy(text: &str) -> String {
    escape_with(text, |c| c.is_ascii_alphanumeric() || c == '-', '_')
}

/// The escaping scheme shared by both escapers (that of the `escapism`
/// package, which `DockerSpawner` uses): a safe character is kept, any other
/// is replaced byte by byte with `escape_char` + `{:X}` of the byte.
fn escape_with(text: &str, is_safe: impl Fn(char) -> bool, escape_char: char) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_safe(c) {
            out.push(c);
        } else {
            let mut buf = [0_u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push(escape_char);
                // Writing to a String cannot fail.
                let _ = write!(out, "{byte:X}");
            }
        }
    }
    out
}

/// The `imagename` template field: `image` with `/` and `:` replaced by `-`
/// (`registry:5000/org/img:tag` → `registry-5000-org-img-tag`).
#[must_use]
pub fn imagename(image: &str) -> String {
    image.replace(['/', ':'], "-")
}

/// Renders `template` like Python's `template.format(**ns)`.
///
/// Supported: literal text, `{{`/`}}` for literal braces, `{name}` fields
/// looked up in `ns`, the conversions `!s`, `!r` and `!a`, and string format
/// specs `[[fill]align][0][width][.precision][s]` with align `<`, `>` or `^`
/// (left is the default, as for Python strings).
///
/// Errors are reported in the order Python would hit them while scanning
/// left to right. Python features that make no sense for string-only
/// keyword templates are refused with [`TemplateError::Unsupported`]:
/// positional fields, `.attr`/`[index]` access (Python would allow
/// `{username[0]}` on a string; refusing it keeps templates predictable) and
/// nested `{}` inside a format spec.
///
/// # Errors
///
/// [`TemplateError::UnknownField`] for a field missing from `ns`,
/// [`TemplateError::Unsupported`] for the refused features above, and
/// [`TemplateError::Syntax`] for malformed templates, unknown conversions
/// and format specs that are invalid for strings.
pub fn render_strict(template: &str, ns: &Namespace) -> Result<String, TemplateError> {
    let chars: Vec<char> = template.chars().collect();
    let syntax = |message: &str| TemplateError::Syntax {
        template: template.to_owned(),
        message: message.to_owned(),
    };
    let mut out = String::with_capacity(template.len());
    let mut pos = 0;
    while pos < chars.len() {
        // Copy literal text up to the next brace.
        let mut brace = None;
        while let Some(&c) = chars.get(pos) {
            pos += 1;
            if c == '{' || c == '}' {
                brace = Some(c);
                break;
            }
            out.push(c);
        }
        let Some(brace) = brace else { break };
        match (brace, chars.get(pos)) {
            // A doubled brace is a literal brace.
            (_, Some(&next)) if next == brace => {
                out.push(brace);
                pos += 1;
            }
            ('}', _) => return Err(syntax("Single '}' encountered in format string")),
            (_, None) => return Err(syntax("Single '{' encountered in format string")),
            _ => {
                let field = parse_field(&chars, &mut pos).map_err(&syntax)?;
                render_field(&field, template, ns, &mut out)?;
            }
        }
    }
    Ok(out)
}

/// Renders `template` like `DockerSpawner`'s `_render_templates` renders one
/// string: the result of [`render_strict`], or `template` unchanged if that
/// fails for any reason.
///
/// `DockerSpawner` only falls back on `KeyError`/`ValueError` and crashes the
/// spawn on the rarer `IndexError` (`{}`) or `AttributeError`; leaving every
/// unrenderable string as it is keeps one stray brace in a label from
/// breaking a spawn, which is the point of the lenient mode.
#[must_use]
pub fn render_lenient(template: &str, ns: &Namespace) -> String {
    render_strict(template, ns).unwrap_or_else(|_| template.to_owned())
}

/// One `{...}` replacement field, split into its parts.
struct Field {
    /// Everything before `!` or `:`, e.g. `username` or `a.b`.
    name: String,
    /// The character after `!`, if any.
    conversion: Option<char>,
    /// Everything after `:`, without the closing brace.
    spec: String,
    /// Whether the spec contains `{`, i.e. nested fields.
    spec_nested: bool,
}

/// Parses a replacement field starting just after its opening `{` and
/// leaves `pos` just after its closing `}`.
///
/// Mirrors `CPython`'s scanner, including its quirks (a `[` in the field name
/// hides braces up to the next `]`; the spec ends at the brace that balances
/// any `{` inside it), so that the same templates are accepted and the same
/// text is taken as the field.
fn parse_field(chars: &[char], pos: &mut usize) -> Result<Field, &'static str> {
    let start = *pos;
    let mut terminator = None;
    while let Some(&c) = chars.get(*pos) {
        *pos += 1;
        match c {
            '{' => return Err("unexpected '{' in field name"),
            '[' => {
                while chars.get(*pos).is_some_and(|&c| c != ']') {
                    *pos += 1;
                }
            }
            '}' | ':' | '!' => {
                terminator = Some(c);
                break;
            }
            _ => {}
        }
    }
    let Some(terminator) = terminator else {
        return Err("expected '}' before end of string");
    };
    let name: String = chars[start..*pos - 1].iter().collect();
    let mut field = Field {
        name,
        conversion: None,
        spec: String::new(),
        spec_nested: false,
    };
    if terminator == '}' {
        return Ok(field);
    }
    if terminator == '!' {
        let Some(&conversion) = chars.get(*pos) else {
            return Err("end of string while looking for conversion specifier");
        };
        *pos += 1;
        field.conversion = Some(conversion);
        if let Some(&c) = chars.get(*pos) {
            *pos += 1;
            match c {
                '}' => return Ok(field),
                ':' => {}
                _ => return Err("expected ':' after conversion specifier"),
            }
        }
    }
    let spec_start = *pos;
    let mut depth = 1_usize;
    while let Some(&c) = chars.get(*pos) {
        *pos += 1;
        match c {
            '{' => {
                field.spec_nested = true;
                depth += 1;
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    field.spec = chars[spec_start..*pos - 1].iter().collect();
                    return Ok(field);
                }
            }
            _ => {}
        }
    }
    Err("unmatched '{' in format spec")
}

/// Looks up, converts and formats one field, appending it to `out`.
fn render_field(
    field: &Field,
    template: &str,
    ns: &Namespace,
    out: &mut String,
) -> Result<(), TemplateError> {
    let unsupported = |message: String| TemplateError::Unsupported {
        field: field.name.clone(),
        template: template.to_owned(),
        message,
    };
    let syntax = |message: String| TemplateError::Syntax {
        template: template.to_owned(),
        message,
    };
    let available = || ns.keys().cloned().collect::<Vec<_>>();

    // Python splits the name at the first `.` or `[`; the first part is a
    // positional index if it is all digits (or empty), else a keyword.
    let first_len = field.name.find(['.', '[']).unwrap_or(field.name.len());
    let (first, rest) = field.name.split_at(first_len);
    if first.is_empty() || first.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unsupported(format!(
            "positional fields are not available, use a named field; available fields: {}",
            available_list(&available())
        )));
    }
    let Some(value) = ns.get(first) else {
        return Err(TemplateError::UnknownField {
            field: field.name.clone(),
            template: template.to_owned(),
            available: available(),
        });
    };
    if !rest.is_empty() {
        return Err(unsupported(format!(
            "attribute and index access are not supported, use the plain field '{{{first}}}'"
        )));
    }

    let converted = match field.conversion {
        None | Some('s') => value.clone(),
        Some('r') => python_repr(value),
        Some('a') => python_ascii(&python_repr(value)),
        Some(other) => return Err(syntax(format!("Unknown conversion specifier {other}"))),
    };
    if field.spec_nested {
        return Err(unsupported(
            "nested replacement fields inside a format spec are not supported".to_owned(),
        ));
    }
    let spec = parse_string_spec(&field.spec).map_err(syntax)?;
    if spec.width.is_some_and(|w| w > MAX_WIDTH) {
        return Err(unsupported(format!(
            "format width is too large (at most {MAX_WIDTH})"
        )));
    }
    spec.apply(&converted, out);
    Ok(())
}

/// A parsed format spec for a string value.
struct StringSpec {
    /// The padding character.
    fill: char,
    /// One of `<`, `>`, `^`.
    align: char,
    /// Minimum length in characters.
    width: Option<usize>,
    /// Maximum number of characters kept from the value.
    precision: Option<usize>,
}

impl StringSpec {
    /// Appends `value` truncated to the precision and padded to the width.
    fn apply(&self, value: &str, out: &mut String) {
        let len = value.chars().count();
        let kept = self.precision.map_or(len, |p| p.min(len));
        let total = self.width.map_or(kept, |w| w.max(kept));
        let padding = total - kept;
        // Python puts the odd padding character on the right when centring.
        let left = match self.align {
            '>' => padding,
            '^' => padding / 2,
            _ => 0,
        };
        out.extend(std::iter::repeat_n(self.fill, left));
        out.extend(value.chars().take(kept));
        out.extend(std::iter::repeat_n(self.fill, padding - left));
    }
}

/// Parses a format spec the way Python's `str.__format__` does, rejecting
/// every option that Python rejects for strings (sign, `z`, `#`, `=`,
/// grouping, type other than `s`) with Python's wording.
fn parse_string_spec(spec: &str) -> Result<StringSpec, String> {
    let chars: Vec<char> = spec.chars().collect();
    let is_align = |c: Option<&char>| matches!(c, Some('<' | '>' | '^' | '='));
    let mut parsed = StringSpec {
        fill: ' ',
        align: '<',
        width: None,
        precision: None,
    };
    let mut pos = 0;
    let mut fill_given = false;
    if is_align(chars.get(1)) {
        parsed.fill = chars[0];
        parsed.align = chars[1];
        fill_given = true;
        pos = 2;
    } else if is_align(chars.first()) {
        parsed.align = chars[0];
        pos = 1;
    }
    let sign = chars
        .get(pos)
        .copied()
        .filter(|c| matches!(c, '+' | '-' | ' '));
    if sign.is_some() {
        pos += 1;
    }
    let no_neg_zero = chars.get(pos) == Some(&'z');
    if no_neg_zero {
        pos += 1;
    }
    let alternate = chars.get(pos) == Some(&'#');
    if alternate {
        pos += 1;
    }
    // A leading `0` before the width means "pad with zeros" unless a fill
    // character was given (Python 3.10+; strings stay left-aligned).
    if !fill_given && chars.get(pos) == Some(&'0') {
        parsed.fill = '0';
        pos += 1;
    }
    parsed.width = parse_integer(&chars, &mut pos)?;
    let mut grouping = None;
    if let Some(&c @ (',' | '_')) = chars.get(pos) {
        grouping = Some(c);
        pos += 1;
        if chars
            .get(pos)
            .is_some_and(|&next| matches!(next, ',' | '_'))
        {
            return Err("Cannot specify both ',' and '_'.".to_owned());
        }
    }
    if chars.get(pos) == Some(&'.') {
        pos += 1;
        parsed.precision = parse_integer(&chars, &mut pos)?;
        if parsed.precision.is_none() {
            return Err("Format specifier missing precision".to_owned());
        }
    }
    let kind = match &chars[pos..] {
        [] => 's',
        [c] => *c,
        _ => {
            return Err(format!(
                "Invalid format specifier '{spec}' for object of type 'str'"
            ))
        }
    };
    if let Some(g) = grouping {
        return Err(format!("Cannot specify '{g}' with '{kind}'."));
    }
    if kind != 's' {
        return Err(format!(
            "Unknown format code '{kind}' for object of type 'str'"
        ));
    }
    match sign {
        Some(' ') => return Err("Space not allowed in string format specifier".to_owned()),
        Some(_) => return Err("Sign not allowed in string format specifier".to_owned()),
        None => {}
    }
    if no_neg_zero {
        return Err("Negative zero coercion (z) not allowed in string format specifier".to_owned());
    }
    if alternate {
        return Err("Alternate form (#) not allowed in string format specifier".to_owned());
    }
    if parsed.align == '=' {
        return Err("'=' alignment not allowed in string format specifier".to_owned());
    }
    Ok(parsed)
}

/// Reads a run of ASCII digits at `pos`; `None` if there is none.
///
/// Python also accepts non-ASCII decimal digits here; nobody writes a width
/// in Arabic-Indic digits, so they are left to fail as an invalid spec.
fn parse_integer(chars: &[char], pos: &mut usize) -> Result<Option<usize>, String> {
    let mut value: Option<usize> = None;
    while let Some(digit) = chars.get(*pos).and_then(|c| c.to_digit(10)) {
        *pos += 1;
        let next = value
            .unwrap_or(0)
            .checked_mul(10)
            .and_then(|v| v.checked_add(digit as usize))
            .ok_or_else(|| "Too many decimal digits in format string".to_owned())?;
        value = Some(next);
    }
    Ok(value)
}

/// Python's `repr()` of a string: quoted with `'` (or `"` if the text
/// contains `'` but no `"`), with backslash escapes for the quote, `\`,
/// control characters and non-printable characters.
fn python_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            c if !c.is_ascii() && is_printable(c) => out.push(c),
            c => push_code_point_escape(c, &mut out),
        }
    }
    out.push(quote);
    out
}

/// Python's `ascii()` given the `repr()`: every non-ASCII character is
/// replaced by its `\x`/`\u`/`\U` escape.
fn python_ascii(repr: &str) -> String {
    let mut out = String::with_capacity(repr.len());
    for c in repr.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            push_code_point_escape(c, &mut out);
        }
    }
    out
}

/// Appends Python's shortest escape for `c`: `\xhh`, `\uhhhh` or
/// `\Uhhhhhhhh` (lowercase hex).
fn push_code_point_escape(c: char, out: &mut String) {
    let code = u32::from(c);
    // Writing to a String cannot fail.
    let _ = if code <= 0xff {
        write!(out, "\\x{code:02x}")
    } else if code <= 0xffff {
        write!(out, "\\u{code:04x}")
    } else {
        write!(out, "\\U{code:08x}")
    };
}

/// Approximates Python's `str.isprintable()` for one non-ASCII character.
///
/// Python treats the Unicode categories Cc, Cf, Cs, Co, Cn, Zl, Zp and Zs
/// (except the ASCII space) as non-printable. The standard library has no
/// category tables, so this covers controls, non-ASCII whitespace, the
/// format characters people actually meet (soft hyphen, zero-width and
/// bidi marks, BOM, tag characters) and private use; unassigned code points
/// are treated as printable, which only changes how `!r` displays them.
fn is_printable(c: char) -> bool {
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(u32::from(c),
        0xad
        | 0x600..=0x605
        | 0x61c
        | 0x6dd
        | 0x70f
        | 0x180e
        | 0x200b..=0x200f
        | 0x202a..=0x202e
        | 0x2060..=0x2064
        | 0x2066..=0x206f
        | 0xfeff
        | 0xfff9..=0xfffb
        | 0x0001_10bd
        | 0x000e_0001
        | 0x000e_0020..=0x000e_007f
        | 0xe000..=0xf8ff
        | 0x000f_0000..=0x000f_fffd
        | 0x0010_0000..=0x0010_fffd
        | 0xfffe
        | 0xffff)
}

#[cfg(test)]
mod tests {
    // Tests report failures by panicking, and table tests are long by nature.
    #![allow(clippy::unwrap_used, clippy::panic, clippy::too_many_lines)]

    use super::*;

    /// The namespace `DockerSpawner` builds for user `Alice`, server
    /// `my-server`, image `registry:5000/org/img:tag`.
    fn alice_ns() -> Namespace {
        let mut ns = Namespace::new();
        ns.insert("prefix".into(), "jupyter".into());
        ns.insert("username".into(), escape("Alice"));
        ns.insert("safe_username".into(), escape("Alice"));
        ns.insert("raw_username".into(), "Alice".into());
        ns.insert("servername".into(), escape(&"my-server".to_lowercase()));
        ns.insert("raw_servername".into(), "my-server".into());
        ns.insert("imagename".into(), imagename("registry:5000/org/img:tag"));
        ns
    }

    #[test]
    fn escape_matches_dockerspawner() {
        let cases = [
            ("Alice@x.org", "-41lice-40x-2eorg"),
            ("user--foo", "user-2d-2dfoo"),
            ("a_b", "a-5fb"),
            ("a.b", "a-2eb"),
            ("é", "-c3-a9"),
            ("a\tb", "a-9b"),
            ("alice", "alice"),
            ("Bob.Smith", "-42ob-2e-53mith"),
            ("", ""),
            ("0123456789", "0123456789"),
            ("a b", "a-20b"),
            ("😀", "-f0-9f-98-80"),
            ("\0", "-0"),
            ("ABC", "-41-42-43"),
        ];
        for (input, expected) in cases {
            assert_eq!(escape(input), expected, "escape({input:?})");
        }
    }

    #[test]
    fn escape_legacy_matches_dockerspawner() {
        let cases = [
            ("Alice@x.org-a_b", "Alice_40x_2Eorg-a_5Fb"),
            ("alice", "alice"),
            ("Bob.Smith", "Bob_2ESmith"),
            ("user--foo", "user--foo"),
            ("a_b", "a_5Fb"),
            ("é", "_C3_A9"),
            ("a\tb", "a_9b"),
            ("a b", "a_20b"),
            ("", ""),
            ("😀", "_F0_9F_98_80"),
        ];
        for (input, expected) in cases {
            assert_eq!(escape_legacy(input), expected, "escape_legacy({input:?})");
        }
    }

    #[test]
    fn imagename_replaces_slashes_and_colons() {
        assert_eq!(
            imagename("registry:5000/org/img:tag"),
            "registry-5000-org-img-tag"
        );
        assert_eq!(
            imagename("quay.io/jupyter/base-notebook:latest"),
            "quay.io-jupyter-base-notebook-latest"
        );
        assert_eq!(imagename("img"), "img");
    }

    #[test]
    fn default_names() {
        let ns = alice_ns();
        assert_eq!(
            render_strict("{prefix}-{username}", &ns).unwrap(),
            "jupyter--41lice"
        );
        assert_eq!(
            render_strict("{prefix}-{username}--{servername}", &ns).unwrap(),
            "jupyter--41lice--my-2dserver"
        );
        assert_eq!(
            render_strict("jupyterhub-user-{username}{servername}", &ns).unwrap(),
            "jupyterhub-user--41licemy-2dserver"
        );
        assert_eq!(
            render_strict("{imagename}-{raw_username}", &ns).unwrap(),
            "registry-5000-org-img-tag-Alice"
        );
    }

    #[test]
    fn strict_rendering_successes() {
        let mut ns = Namespace::new();
        ns.insert("username".into(), "alice".into());
        ns.insert("prefix".into(), "jupyter".into());
        ns.insert("empty".into(), String::new());
        ns.insert("q".into(), "it's".into());
        ns.insert("both".into(), "a'\"b".into());
        ns.insert("ctl".into(), "\t\n\r\0\x7f\\".into());
        ns.insert(
            "uni".into(),
            "é\u{a0}\u{ad}\u{200b}😀\u{e0001}\u{e000}\u{2028}".into(),
        );
        ns.insert("a b".into(), "spaced".into());
        // Every expected value was produced by CPython 3.11 `str.format`.
        let cases = [
            ("", ""),
            ("plain text", "plain text"),
            ("{username}", "alice"),
            ("{prefix}-{username}", "jupyter-alice"),
            ("{{}}", "{}"),
            ("x{{y", "x{y"),
            ("}}{{", "}{"),
            ("{{{username}}}", "{alice}"),
            ("{{username}}", "{username}"),
            ("{empty}", ""),
            ("{a b}", "spaced"),
            ("{username!s}", "alice"),
            ("{username!s:}", "alice"),
            ("{username!r}", "'alice'"),
            ("{username!a}", "'alice'"),
            ("{q!r}", "\"it's\""),
            ("{both!r}", "'a\\'\"b'"),
            ("{ctl!r}", "'\\t\\n\\r\\x00\\x7f\\\\'"),
            ("{uni!r}", "'é\\xa0\\xad\\u200b😀\\U000e0001\\ue000\\u2028'"),
            (
                "{uni!a}",
                "'\\xe9\\xa0\\xad\\u200b\\U0001f600\\U000e0001\\ue000\\u2028'",
            ),
            ("{username!r:>10}", "   'alice'"),
            ("{username:}", "alice"),
            ("{username:s}", "alice"),
            ("{username:10}", "alice     "),
            ("{username:<10}", "alice     "),
            ("{username:>10}", "     alice"),
            ("{username:^8}", " alice  "),
            ("{username:^9}", "  alice  "),
            ("{username:*^9.3}", "***ali***"),
            ("{username:.2}", "al"),
            ("{username:.0}", ""),
            ("{username:.10}", "alice"),
            ("{username:>3}", "alice"),
            ("{username:05}", "alice"),
            ("{username:010}", "alice00000"),
            ("{username:<010}", "alice00000"),
            ("{username:>010}", "00000alice"),
            ("{username:x<010}", "alicexxxxx"),
            ("{username:<}", "alice"),
            ("{username:<<}", "alice"),
            ("{username:.<7s}", "alice.."),
            ("{uni:.2}", "é\u{a0}"),
            (
                "{uni:-^11}",
                "-é\u{a0}\u{ad}\u{200b}😀\u{e0001}\u{e000}\u{2028}--",
            ),
        ];
        for (template, expected) in cases {
            assert_eq!(
                render_strict(template, &ns).as_deref(),
                Ok(expected),
                "template {template:?}"
            );
            assert_eq!(
                render_lenient(template, &ns),
                expected,
                "template {template:?}"
            );
        }
    }

    /// What kind of error a template must produce.
    #[derive(Debug)]
    enum Expect {
        Unknown(&'static str),
        Unsupported(&'static str),
        Syntax(&'static str),
    }

    #[test]
    fn strict_rendering_errors() {
        let mut ns = Namespace::new();
        ns.insert("username".into(), "alice".into());
        ns.insert("prefix".into(), "jupyter".into());
        // The Python exception each case raises (CPython 3.11) is noted
        // where it is not a plain ValueError.
        let cases = [
            ("{usrname}", Expect::Unknown("usrname")),
            ("jupyter-{base_url}", Expect::Unknown("base_url")),
            ("{ username}", Expect::Unknown(" username")),
            ("{-1}", Expect::Unknown("-1")),
            ("{nokey.upper}", Expect::Unknown("nokey.upper")),
            ("{a[}]}", Expect::Unknown("a[}]")),
            ("{a!}}", Expect::Unknown("a")),
            // KeyError comes first: Python renders fields left to right.
            ("{a} }", Expect::Unknown("a")),
            ("{a:{b}}", Expect::Unknown("a")),
            // IndexError in Python.
            ("{}", Expect::Unsupported("")),
            ("{0}", Expect::Unsupported("0")),
            ("{00}", Expect::Unsupported("00")),
            ("{:>5}", Expect::Unsupported("")),
            ("{!r}", Expect::Unsupported("")),
            // Python allows these on a str; refused on purpose.
            ("{username.upper}", Expect::Unsupported("username.upper")),
            ("{username[0]}", Expect::Unsupported("username[0]")),
            ("{username.}", Expect::Unsupported("username.")),
            ("{username:{prefix}}", Expect::Unsupported("username")),
            ("{username:2000000}", Expect::Unsupported("username")),
            (
                "}",
                Expect::Syntax("Single '}' encountered in format string"),
            ),
            (
                "a}b",
                Expect::Syntax("Single '}' encountered in format string"),
            ),
            (
                "{username} }",
                Expect::Syntax("Single '}' encountered in format string"),
            ),
            (
                "{username:}x}",
                Expect::Syntax("Single '}' encountered in format string"),
            ),
            (
                "{",
                Expect::Syntax("Single '{' encountered in format string"),
            ),
            (
                "abc{",
                Expect::Syntax("Single '{' encountered in format string"),
            ),
            (
                "{username",
                Expect::Syntax("expected '}' before end of string"),
            ),
            (
                "{username[}",
                Expect::Syntax("expected '}' before end of string"),
            ),
            ("{a{b}", Expect::Syntax("unexpected '{' in field name")),
            (
                "{username!",
                Expect::Syntax("end of string while looking for conversion specifier"),
            ),
            (
                "{username!}x",
                Expect::Syntax("expected ':' after conversion specifier"),
            ),
            (
                "{username!rr}",
                Expect::Syntax("expected ':' after conversion specifier"),
            ),
            ("{a!}", Expect::Syntax("unmatched '{' in format spec")),
            ("{a!r", Expect::Syntax("unmatched '{' in format spec")),
            ("{username:", Expect::Syntax("unmatched '{' in format spec")),
            (
                "{username:{<5}",
                Expect::Syntax("unmatched '{' in format spec"),
            ),
            (
                "{username!x}",
                Expect::Syntax("Unknown conversion specifier x"),
            ),
            (
                "{username!}}",
                Expect::Syntax("Unknown conversion specifier }"),
            ),
            (
                "{username:=5}",
                Expect::Syntax("'=' alignment not allowed in string format specifier"),
            ),
            (
                "{username:=}",
                Expect::Syntax("'=' alignment not allowed in string format specifier"),
            ),
            (
                "{username:+}",
                Expect::Syntax("Sign not allowed in string format specifier"),
            ),
            (
                "{username:-}",
                Expect::Syntax("Sign not allowed in string format specifier"),
            ),
            (
                "{username: }",
                Expect::Syntax("Space not allowed in string format specifier"),
            ),
            (
                "{username:z}",
                Expect::Syntax("Negative zero coercion (z) not allowed in string format specifier"),
            ),
            (
                "{username:#}",
                Expect::Syntax("Alternate form (#) not allowed in string format specifier"),
            ),
            (
                "{username:,}",
                Expect::Syntax("Cannot specify ',' with 's'."),
            ),
            (
                "{username:_}",
                Expect::Syntax("Cannot specify '_' with 's'."),
            ),
            (
                "{username:1_0}",
                Expect::Syntax("Cannot specify '_' with '0'."),
            ),
            (
                "{username:d}",
                Expect::Syntax("Unknown format code 'd' for object of type 'str'"),
            ),
            (
                "{username:9.2f}",
                Expect::Syntax("Unknown format code 'f' for object of type 'str'"),
            ),
            (
                "{username:ss}",
                Expect::Syntax("Invalid format specifier 'ss' for object of type 'str'"),
            ),
            (
                "{username:.}",
                Expect::Syntax("Format specifier missing precision"),
            ),
            (
                "{username:99999999999999999999999}",
                Expect::Syntax("Too many decimal digits in format string"),
            ),
        ];
        for (template, expected) in cases {
            let err = render_strict(template, &ns).unwrap_err();
            match (&err, &expected) {
                (
                    TemplateError::UnknownField {
                        field,
                        template: t,
                        available,
                    },
                    Expect::Unknown(f),
                ) => {
                    assert_eq!(field, f, "template {template:?}");
                    assert_eq!(t, template);
                    assert_eq!(available, &["prefix", "username"]);
                }
                (
                    TemplateError::Unsupported {
                        field, template: t, ..
                    },
                    Expect::Unsupported(f),
                ) => {
                    assert_eq!(field, f, "template {template:?}");
                    assert_eq!(t, template);
                }
                (
                    TemplateError::Syntax {
                        template: t,
                        message,
                    },
                    Expect::Syntax(m),
                ) => {
                    assert_eq!(message, m, "template {template:?}");
                    assert_eq!(t, template);
                }
                _ => panic!("template {template:?}: expected {expected:?}, got {err:?}"),
            }
            // Lenient rendering leaves every failing template untouched.
            assert_eq!(render_lenient(template, &ns), template);
        }
    }

    #[test]
    fn error_messages() {
        let ns = alice_ns();
        let err = render_strict("jupyter-{usrname}", &ns).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown template field '{usrname}' in 'jupyter-{usrname}'; available fields: \
             imagename, prefix, raw_servername, raw_username, safe_username, servername, username"
        );
        let err = render_strict("x-{}", &Namespace::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported template field '{}' in 'x-{}': positional fields are not available, \
             use a named field; available fields: (none)"
        );
        let err = render_strict("{username.upper}", &ns).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported template field '{username.upper}' in '{username.upper}': attribute and \
             index access are not supported, use the plain field '{username}'"
        );
        let err = render_strict("{username", &ns).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid template '{username': expected '}' before end of string"
        );
    }

    #[test]
    fn lenient_rendering_mixes() {
        let ns = alice_ns();
        assert_eq!(render_lenient("{username}", &ns), "-41lice");
        // One bad field leaves the whole string unrendered, as in Python.
        assert_eq!(
            render_lenient("{username}-{nope}", &ns),
            "{username}-{nope}"
        );
        assert_eq!(
            render_lenient("function() { return 1; }", &ns),
            "function() { return 1; }"
        );
        assert_eq!(render_lenient("{}", &ns), "{}");
    }
}
