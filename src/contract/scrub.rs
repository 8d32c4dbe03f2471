//! The one rule for personal data that the contract does not name: anything that looks like
//! a phone number or an e-mail address is masked wherever the pipeline keeps or answers
//! text it did not validate as a code: every dead letter's payload and detail, from either
//! topic; every rejection detail (DLQ, gateway answers, import reports); and the free-text
//! fields stored in ClickHouse (hotline `reason`). The contract's own reporter fields are
//! pseudonymised (HMAC) by validation and, in dead letters, by [`scrub_payload`].
//!
//! Recognition works on characters as a reader would see them: fullwidth and Arabic-Indic
//! digits count as digits, and JSON escapes (`\u0040`), percent-encoding (`%40`) and HTML
//! character references (`&#64;`) are read as the character they stand for, so a masked
//! copy cannot be decoded back into an address. Masking replaces every byte of a masked
//! character (or of its escape) with `*`: the length, the separators and the `+` of a phone
//! number stay, which is what diagnosing a refused message needs, and a masked string stays
//! valid UTF-8 (and an Avro string keeps its length prefix right).
//!
//! A phone number is a run of at least 9 digits (a Vietnamese mobile without its leading 0
//! has 9), optionally after `+`, with spaces, dots, dashes, slashes, underscores or
//! parentheses between the digits. Ordinary data is kept by shape: dates and date-times,
//! Unix timestamps (10 or 13 digits starting with 1), national procedure codes
//! (`1.001234.000.00.00.H12`), and digits glued to letters (ids such as
//! `T-42-00000123-1`, `HCM-2026-000123`, UUIDs) unless those digits have a Vietnamese phone
//! number's shape. Shorter numbers (answers, agency numbers, counts) have fewer than 9 digits.
use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::contract::pii::PiiHasher;

/// A run with fewer digits is no phone number (Vietnamese numbers have 9 without the 0).
const PHONE_MIN_DIGITS: usize = 9;

/// One character as a reader sees it, and the bytes it was read from: an escape such as
/// `\u0040` or `%40` is one unit, an invalid UTF-8 byte is a unit of its own.
#[derive(Debug, Clone, Copy)]
struct Unit {
    ch: char,
    start: usize,
    end: usize,
}

/// Stands for a byte that is not UTF-8: it is neither a digit nor part of an address.
const NOT_TEXT: char = '\u{FFFD}';

/// Masks every phone number and e-mail address in `bytes` (any bytes: text, JSON that did
/// not parse, an Avro datum). `None` when there was nothing to mask.
pub fn mask_bytes(bytes: &[u8]) -> Option<Vec<u8>> {
    let units = units(bytes);
    let mut masked = vec![false; units.len()];
    let found_email = mark_emails(&units, &mut masked);
    let found_phone = mark_phones(&units, &mut masked);
    if !found_email && !found_phone {
        return None;
    }
    let mut out = bytes.to_vec();
    for (unit, _) in units.iter().zip(&masked).filter(|(_, m)| **m) {
        out[unit.start..unit.end].fill(b'*');
    }
    Some(out)
}

/// Free text with its phone numbers and e-mail addresses masked.
pub fn scrub_text(text: &str) -> Cow<'_, str> {
    match mask_bytes(text.as_bytes()) {
        // Whole characters were replaced by ASCII, so the bytes are still UTF-8.
        Some(masked) => Cow::Owned(String::from_utf8(masked).expect("masking keeps UTF-8")),
        None => Cow::Borrowed(text),
    }
}

/// Like [`scrub_text`], without a copy when there is nothing to mask.
pub fn scrub_string(text: String) -> String {
    match mask_bytes(text.as_bytes()) {
        Some(masked) => String::from_utf8(masked).expect("masking keeps UTF-8"),
        None => text,
    }
}

/// The contract's personal fields: in a dead letter they become the same pseudonyms that
/// validation stores (`hmac:<hash>`), so a letter can still be matched to its reporter.
const PSEUDONYMISED: [&str; 2] = ["reporter_phone", "reporter_email"];

/// A dead letter's payload, from either topic. A JSON document has the contract's personal
/// fields replaced by their pseudonyms and every other string, key and number that looks
/// like a phone number or e-mail address masked, anywhere in the document (re-serialised,
/// compact); anything else (not UTF-8, not JSON, Avro) is masked in place. `None` when the
/// payload holds nothing to mask and is kept byte for byte.
pub fn scrub_payload(bytes: &[u8], hasher: &PiiHasher) -> Option<Vec<u8>> {
    let parsed = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(text).ok());
    let Some(mut value) = parsed else {
        return mask_bytes(bytes);
    };
    let mut changed = false;
    let mut pseudonyms = Vec::new();
    if let Value::Object(map) = &mut value {
        for field in PSEUDONYMISED {
            if let Some(clear) = map.remove(field) {
                let pseudonym = match &clear {
                    Value::String(s) if field == "reporter_email" => {
                        Value::String(format!("hmac:{}", hasher.email(s)))
                    }
                    Value::String(s) => Value::String(format!("hmac:{}", hasher.phone(s))),
                    Value::Number(n) => {
                        Value::String(format!("hmac:{}", hasher.phone(&n.to_string())))
                    }
                    // Not a value the contract knows (null, list, object): masked like the rest.
                    _ => {
                        let mut other = clear.clone();
                        scrub_value(&mut other);
                        other
                    }
                };
                changed |= pseudonym != clear;
                pseudonyms.push((field, pseudonym));
            }
        }
    }
    changed |= scrub_value(&mut value);
    if !changed {
        return None;
    }
    if let Value::Object(map) = &mut value {
        for (field, pseudonym) in pseudonyms {
            map.insert(field.to_owned(), pseudonym);
        }
    }
    Some(serde_json::to_vec(&value).expect("a JSON value serialises"))
}

/// Masks, in place, every string, object key and number of a JSON value that holds a phone
/// number or an e-mail address. A masked number becomes a string of its masked digits.
/// Returns whether anything changed.
pub fn scrub_value(value: &mut Value) -> bool {
    match value {
        Value::String(s) => match mask_bytes(s.as_bytes()) {
            Some(masked) => {
                *s = String::from_utf8(masked).expect("masking keeps UTF-8");
                true
            }
            None => false,
        },
        Value::Number(n) => match mask_bytes(n.to_string().as_bytes()) {
            Some(masked) => {
                *value = Value::String(String::from_utf8(masked).expect("masking keeps UTF-8"));
                true
            }
            None => false,
        },
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |c, item| scrub_value(item) | c),
        Value::Object(map) => {
            let mut changed = map
                .values_mut()
                .fold(false, |c, item| scrub_value(item) | c);
            if map.keys().any(|k| mask_bytes(k.as_bytes()).is_some()) {
                let old = std::mem::take(map);
                *map = old
                    .into_iter()
                    .map(|(k, v)| (scrub_string(k), v))
                    .collect::<Map<String, Value>>();
                changed = true;
            }
            changed
        }
        Value::Null | Value::Bool(_) => false,
    }
}

/// A decoder's error message without the input values it quotes: serde_json and
/// apache-avro quote the offending value in backticks or double quotes (``invalid type:
/// integer `84913444555`, expected a string``); the kind of value and the position stay.
pub fn unquote(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        let close = match c {
            '`' => '`',
            '"' => '"',
            _ => {
                out.push(c);
                continue;
            }
        };
        if out.ends_with(' ') {
            out.pop();
        }
        // Skip to the closing quote; an unterminated quote drops the rest.
        let mut escaped = false;
        for inner in chars.by_ref() {
            match inner {
                '\\' if !escaped => escaped = true,
                _ if inner == close && !escaped => break,
                _ => escaped = false,
            }
        }
    }
    out
}

fn units(bytes: &[u8]) -> Vec<Unit> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let (ch, len) = escape_at(bytes, i).unwrap_or_else(|| char_at(bytes, i));
        out.push(Unit {
            ch,
            start: i,
            end: i + len,
        });
        i += len;
    }
    out
}

fn char_at(bytes: &[u8], i: usize) -> (char, usize) {
    let width = match bytes[i] {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    };
    bytes
        .get(i..i + width)
        .filter(|_| width > 0)
        .and_then(|slice| std::str::from_utf8(slice).ok())
        .and_then(|s| s.chars().next())
        .map_or((NOT_TEXT, 1), |c| (c, width))
}

/// An escape that stands for one character: JSON (`\u0040`, `\/`, a surrogate pair),
/// percent-encoding (`%40`) or an HTML character reference (`&#64;`, `&#x40;`).
fn escape_at(bytes: &[u8], i: usize) -> Option<(char, usize)> {
    let rest = &bytes[i..];
    match rest.first()? {
        b'\\' => match rest.get(1)? {
            b'u' => {
                let high = hex(rest.get(2..6)?)?;
                if (0xD800..0xDC00).contains(&high) && rest.get(6..8) == Some(b"\\u") {
                    let low = hex(rest.get(8..12)?)?;
                    let code = 0x10000 + ((high - 0xD800) << 10) + low.checked_sub(0xDC00)?;
                    return char::from_u32(code).map(|c| (c, 12));
                }
                char::from_u32(high).map(|c| (c, 6))
            }
            b'/' => Some(('/', 2)),
            b'"' => Some(('"', 2)),
            b'\\' => Some(('\\', 2)),
            b'n' | b'r' | b't' | b'b' | b'f' => Some(('\n', 2)),
            _ => None,
        },
        b'%' => {
            let byte = hex(rest.get(1..3)?)?;
            // A percent-encoded byte of a non-ASCII character is read as a letter: it is
            // part of a word (an address's local part or domain), never a separator.
            Some((
                char::from_u32(byte).filter(char::is_ascii).unwrap_or('a'),
                3,
            ))
        }
        b'&' if rest.get(1) == Some(&b'#') => {
            let end = rest.iter().take(10).position(|b| *b == b';')?;
            let body = std::str::from_utf8(&rest[2..end]).ok()?;
            let code = match body.strip_prefix(['x', 'X']) {
                Some(h) => u32::from_str_radix(h, 16).ok()?,
                None => body.parse().ok()?,
            };
            char::from_u32(code).map(|c| (c, end + 1))
        }
        _ => None,
    }
}

fn hex(digits: &[u8]) -> Option<u32> {
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

fn digit_value(ch: char) -> Option<u8> {
    let base = match ch {
        '0'..='9' => '0',
        '０'..='９' => '０',
        '\u{660}'..='\u{669}' => '\u{660}',
        '\u{6F0}'..='\u{6F9}' => '\u{6F0}',
        _ => return None,
    };
    Some((ch as u32 - base as u32) as u8)
}

fn is_phone_separator(ch: char) -> bool {
    matches!(
        ch,
        ' ' | '\u{A0}'
            | '\u{2009}'
            | '\u{202F}'
            | '\u{3000}'
            | '.'
            | '-'
            | '/'
            | '_'
            | '('
            | ')'
            | '\u{2010}'..='\u{2015}' | '．' | '－' | '／' | '＿' | '（' | '）'
    )
}

fn is_plus(ch: char) -> bool {
    ch == '+' || ch == '＋'
}

fn is_at(ch: char) -> bool {
    matches!(ch, '@' | '＠' | '﹫')
}

/// What can stand in an address's local part (RFC 6531 allows any letter); what ends it
/// in running text, JSON, query strings and markup is excluded.
fn is_local(ch: char) -> bool {
    !(ch.is_whitespace()
        || ch.is_control()
        || ch == NOT_TEXT
        || is_at(ch)
        || "\"'<>()[]{},;:\\/=?&|`".contains(ch))
}

fn is_domain(ch: char) -> bool {
    ch.is_alphanumeric() || matches!(ch, '-' | '.' | '．' | '。')
}

fn mark_emails(units: &[Unit], masked: &mut [bool]) -> bool {
    let mut found = false;
    for at in (0..units.len()).filter(|&k| is_at(units[k].ch)) {
        let mut start = at;
        while start > 0 && is_local(units[start - 1].ch) {
            start -= 1;
        }
        let mut end = at + 1;
        while end < units.len() && is_domain(units[end].ch) {
            end += 1;
        }
        // A sentence's full stop after the address is not part of it.
        while end > at + 1 && matches!(units[end - 1].ch, '.' | '-' | '．' | '。') {
            end -= 1;
        }
        let has_domain = units[at + 1..end].iter().any(|u| u.ch.is_alphanumeric());
        if start < at && has_domain {
            masked[start..end].fill(true);
            found = true;
        }
    }
    found
}

/// A candidate run: digits with up to three separators between them (`) `, ` - `).
struct Run {
    start: usize,
    /// One past the last digit.
    end: usize,
    plus: bool,
    /// Digit values, and the length of each group between separators.
    digits: Vec<u8>,
    groups: Vec<usize>,
    /// The separator after each group but the last (the first one if there were two).
    separators: Vec<char>,
}

fn mark_phones(units: &[Unit], masked: &mut [bool]) -> bool {
    let mut found = false;
    // Characters of an address already masked are not read again as digits.
    let in_email = masked.to_vec();
    let digit_at = |k: usize| -> Option<u8> {
        units
            .get(k)
            .filter(|_| !in_email[k])
            .and_then(|u| digit_value(u.ch))
    };
    let mut i = 0;
    while i < units.len() {
        let plus = is_plus(units[i].ch) && digit_at(i + 1).is_some();
        if !plus && digit_at(i).is_none() {
            i += 1;
            continue;
        }
        let mut run = Run {
            start: i,
            end: i,
            plus,
            digits: Vec::new(),
            groups: vec![0],
            separators: Vec::new(),
        };
        let mut k = i + usize::from(plus);
        let mut pending: Vec<char> = Vec::new();
        while k < units.len() {
            if let Some(d) = digit_at(k) {
                if !pending.is_empty() {
                    run.separators.push(pending[0]);
                    run.groups.push(0);
                    pending.clear();
                }
                run.digits.push(d);
                *run.groups.last_mut().expect("one group") += 1;
                run.end = k + 1;
            } else if is_phone_separator(units[k].ch) && pending.len() < 3 && !in_email[k] {
                pending.push(units[k].ch);
            } else {
                break;
            }
            k += 1;
        }
        if looks_like_phone(&run, units) {
            // Only digits are masked: the separators and the plus sign show the format.
            for (k, unit) in units.iter().enumerate().take(run.end).skip(run.start) {
                masked[k] |= digit_value(unit.ch).is_some();
            }
            found = true;
        }
        i = run.end.max(i + 1);
    }
    found
}

fn looks_like_phone(run: &Run, units: &[Unit]) -> bool {
    if run.digits.len() < PHONE_MIN_DIGITS {
        return false;
    }
    if !run.plus && glued_to_letters(run, units) {
        return vietnamese_phone_shape(&run.digits);
    }
    !(is_date_time(run, units) || is_unix_time(run) || is_procedure_code(run))
}

/// Part of an identifier: a letter right before or after the run, or one separator away
/// (`T-42-00000123-1`, `HCM-2026-000123`, `…-a716-446655440000`, `1.001234…H12`).
fn glued_to_letters(run: &Run, units: &[Unit]) -> bool {
    let letter = |k: Option<usize>| {
        k.and_then(|k| units.get(k))
            .is_some_and(|u| u.ch.is_alphabetic())
    };
    let joiner = |k: Option<usize>| {
        k.and_then(|k| units.get(k))
            .is_some_and(|u| matches!(u.ch, '-' | '_' | '.'))
    };
    let before = run.start.checked_sub(1);
    let after = Some(run.end);
    letter(before)
        || (joiner(before) && letter(run.start.checked_sub(2)))
        || letter(after)
        || (joiner(after) && letter(Some(run.end + 1)))
}

/// 0 + 9 or 10 digits, or the same after 84 or 0084 (the 0 dropped).
fn vietnamese_phone_shape(digits: &[u8]) -> bool {
    let national = match digits {
        [0, 0, 8, 4, rest @ ..] | [8, 4, rest @ ..] => rest,
        [0, rest @ ..] => rest,
        _ => return false,
    };
    matches!(national.len(), 9 | 10) && national[0] >= 2
}

/// A date (`2026-11-21`, `21/11/2026`, `21.11.2026`) followed by an hour and a colon
/// (`2026-11-21 09:30`). A date alone has fewer than 9 digits anyway.
fn is_date_time(run: &Run, units: &[Unit]) -> bool {
    let [g0, g1, g2, rest @ ..] = run.groups.as_slice() else {
        return false;
    };
    let sep = run.separators[0];
    if !matches!(sep, '-' | '/' | '.') || run.separators[1] != sep {
        return false;
    }
    let number = |from: usize, len: usize| {
        run.digits[from..from + len]
            .iter()
            .fold(0u32, |n, d| n * 10 + u32::from(*d))
    };
    let (year, month, day) = match (*g0, *g1, *g2) {
        (4, 1..=2, 1..=2) => (number(0, 4), number(4, *g1), number(4 + g1, *g2)),
        (1..=2, 1..=2, 4) => (number(g0 + g1, 4), number(*g0, *g1), number(0, *g0)),
        _ => return false,
    };
    let date = (1900..2100).contains(&year) && (1..=12).contains(&month) && (1..=31).contains(&day);
    let hour_then_colon = matches!(rest, [1..=2])
        && run.separators[2] == ' '
        && units.get(run.end).is_some_and(|u| u.ch == ':');
    date && hour_then_colon
}

/// Unix seconds or milliseconds of 2001..2033, written as one run of digits.
fn is_unix_time(run: &Run) -> bool {
    run.groups.len() == 1 && matches!(run.digits.len(), 10 | 13) && run.digits[0] == 1
}

/// A national procedure code with its service suffix: `1.001234.000.00.00` (`.H12`).
fn is_procedure_code(run: &Run) -> bool {
    run.groups == [1, 6, 3, 2, 2]
        && run.separators.iter().all(|s| *s == '.')
        && matches!(run.digits[0], 1 | 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CORPUS: &str = include_str!("../../tests/fixtures/pii_corpus.toml");

    #[derive(serde::Deserialize)]
    struct Corpus {
        mask: Vec<Masked>,
        keep: Vec<Kept>,
        payload: Vec<Payload>,
    }
    #[derive(serde::Deserialize)]
    struct Masked {
        input: String,
        output: String,
    }
    #[derive(serde::Deserialize)]
    struct Kept {
        input: String,
    }
    #[derive(serde::Deserialize)]
    struct Payload {
        name: String,
        input: String,
        absent: Vec<String>,
        present: Vec<String>,
    }

    fn corpus() -> Corpus {
        toml::from_str(CORPUS).expect("the corpus parses")
    }

    fn hasher() -> PiiHasher {
        PiiHasher::new(b"scrub-test-secret-12")
    }

    /// Digits as ASCII, with phone separators dropped: what a reader could dial.
    fn dialable(text: &str) -> String {
        let text = text.replace("\\u0040", "@").replace("%40", "@");
        text.chars()
            .filter_map(|c| match c {
                '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32),
                c if " .-/_()\u{a0}\u{3000}－．／＿（）".contains(c) => None,
                c => Some(c),
            })
            .collect()
    }

    #[test]
    fn every_format_of_the_corpus_is_masked_exactly() {
        let mut wrong = Vec::new();
        for case in corpus().mask {
            let got = scrub_text(&case.input);
            if got != case.output {
                wrong.push(format!(
                    "{:?} -> {:?}, expected {:?}",
                    case.input, got, case.output
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn ordinary_values_of_the_corpus_are_kept() {
        let kept: Vec<String> = corpus()
            .keep
            .into_iter()
            .filter(|case| scrub_text(&case.input) != case.input)
            .map(|case| format!("{:?} -> {:?}", case.input, scrub_text(&case.input)))
            .collect();
        assert!(kept.is_empty(), "changed:\n{}", kept.join("\n"));
    }

    #[test]
    fn payloads_of_the_corpus_keep_what_diagnosis_needs_and_nothing_personal() {
        for case in corpus().payload {
            let out = scrub_payload(case.input.as_bytes(), &hasher())
                .unwrap_or_else(|| panic!("{}: nothing masked", case.name));
            let text = String::from_utf8_lossy(&out);
            for absent in &case.absent {
                assert!(
                    !dialable(&text).contains(&dialable(absent)),
                    "{}: {absent:?} remains in {text}",
                    case.name
                );
            }
            for present in &case.present {
                assert!(
                    text.contains(present.as_str()),
                    "{}: {present:?} is gone from {text}",
                    case.name
                );
            }
        }
    }

    #[test]
    fn the_contract_fields_become_the_stored_pseudonyms() {
        let h = hasher();
        let out = scrub_payload(
            br#"{"reporter_phone":"+84 912 345 678","reporter_email":"Lan@Example.VN","n":[1,2,3]}"#,
            &h,
        )
        .unwrap();
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            value["reporter_phone"],
            format!("hmac:{}", h.phone("0912345678"))
        );
        assert_eq!(
            value["reporter_email"],
            format!("hmac:{}", h.email("lan@example.vn"))
        );
        assert_eq!(value["n"], serde_json::json!([1, 2, 3]));
    }

    #[test]
    fn a_payload_without_personal_data_is_kept_byte_for_byte() {
        let h = hasher();
        for payload in [
            &br#"{ "submission_id": "S-42-0000000000001234", "answers": {"access.1": 5} }"#[..],
            b"not json at all, 2026-11-21",
            b"\x00\x00\x00\x00\x01\x14T-42-00000123\xff",
            b"",
        ] {
            assert_eq!(scrub_payload(payload, &h), None, "{payload:?}");
        }
    }

    #[test]
    fn binary_payloads_keep_their_length_and_their_other_bytes() {
        let datum = b"\x00\x00\x00\x00\x02\x14\xef0912345678\x1clan@example.vn\xff\x02";
        let out = mask_bytes(datum).unwrap();
        assert_eq!(out.len(), datum.len());
        assert_eq!(&out[..7], &datum[..7]);
        assert_eq!(&out[7..17], b"**********");
        assert_eq!(out[17], 0x1c);
        assert_eq!(&out[out.len() - 2..], b"\xff\x02");
        assert!(!String::from_utf8_lossy(&out).contains("example"));
    }

    #[test]
    fn decoder_messages_lose_their_quoted_values() {
        assert_eq!(
            unquote("invalid type: integer `84913444555`, expected a string at line 1 column 30"),
            "invalid type: integer, expected a string at line 1 column 30"
        );
        assert_eq!(
            unquote(r#"invalid type: string "lan@x.vn \"q\"", expected u8"#),
            "invalid type: string, expected u8"
        );
        assert_eq!(unquote("unterminated `0912345678"), "unterminated");
        assert_eq!(
            unquote("EOF while parsing a value"),
            "EOF while parsing a value"
        );
    }

    // --- property tests: random phones and addresses in random JSON ----------------------

    #[derive(Debug, Clone)]
    struct Phone {
        text: String,
        /// Its digits, as ASCII.
        digits: String,
    }

    fn phone() -> impl Strategy<Value = Phone> {
        let prefix = prop_oneof![
            Just(("0", "0")),
            Just(("+84 ", "84")),
            Just(("+84", "84")),
            Just(("84", "84")),
            Just(("0084 ", "0084")),
            Just(("+84 (0)", "840")),
            Just(("(+84) ", "84")),
        ];
        let subscriber = (
            prop::sample::select(vec![3u8, 5, 7, 8, 9]),
            prop::collection::vec(0u8..10, 8),
        );
        let separators = prop::sample::select(vec![
            "", " ", ".", "-", "/", "_", "\u{a0}", "－", "．", " - ", ") ",
        ]);
        let grouping = prop::collection::vec(1usize..=4, 1..=9);
        (prefix, subscriber, separators, grouping, any::<bool>()).prop_map(
            |((prefix, prefix_digits), (first, rest), sep, grouping, fullwidth)| {
                let digits: Vec<u8> = std::iter::once(first).chain(rest).collect();
                let show = |d: u8| {
                    if fullwidth {
                        char::from_u32('０' as u32 + u32::from(d)).unwrap()
                    } else {
                        char::from(b'0' + d)
                    }
                };
                let mut text = prefix.to_owned();
                let mut groups = grouping.into_iter().cycle();
                let mut left = groups.next().unwrap();
                for (i, d) in digits.iter().enumerate() {
                    if left == 0 {
                        text.push_str(sep);
                        left = groups.next().unwrap();
                    }
                    if i == 0 && prefix.ends_with(|c: char| c.is_ascii_digit()) && fullwidth {
                        // A fullwidth number is fullwidth throughout.
                        text = text
                            .chars()
                            .map(|c| c.to_digit(10).map_or(c, |v| show(v as u8)))
                            .collect();
                    }
                    text.push(show(*d));
                    left -= 1;
                }
                let digits: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
                Phone {
                    text,
                    digits: format!("{prefix_digits}{digits}"),
                }
            },
        )
    }

    #[derive(Debug, Clone)]
    struct Email {
        local: String,
        domain: String,
    }

    fn email() -> impl Strategy<Value = Email> {
        let word = prop::collection::vec(
            prop::sample::select(
                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ăâđêôơưễộĐ"
                    .chars()
                    .collect::<Vec<_>>(),
            ),
            3..8,
        )
        .prop_map(|c| c.into_iter().collect::<String>());
        let local = (
            word.clone(),
            prop::option::of((prop::sample::select(vec![".", "_", "+", "-"]), word.clone())),
        )
            .prop_map(|(a, b)| match b {
                Some((sep, b)) => format!("{a}{sep}{b}"),
                None => format!("{a}x1"),
            });
        let tld = prop::sample::select(vec!["vn", "com", "com.vn", "gov.vn", "VN"]);
        (local, word, tld).prop_map(|(local, label, tld)| Email {
            local,
            domain: format!("{label}.{tld}"),
        })
    }

    fn filler() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            (1i64..=5).prop_map(Value::from),
            prop::sample::select(vec![
                "T-42-00000123-1",
                "S-7-00000000000000ab",
                "79-commune-001",
                "1.001234.000.00.00.H12",
                "2026-11-21T09:30:00+07:00",
                "đã tiếp nhận",
                "giao thông",
            ])
            .prop_map(Value::from),
            Just(Value::Null),
        ];
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::vec(inner, 0..3).prop_map(|items| {
                    Value::Object(
                        items
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (format!("f{i}"), v))
                            .collect(),
                    )
                }),
            ]
        })
    }

    /// Where the personal value goes: alone, in a sentence, as a number, or as a key.
    #[derive(Debug, Clone, Copy)]
    enum Place {
        Alone,
        InText,
        Number,
        Key,
    }

    fn place() -> impl Strategy<Value = Place> {
        prop_oneof![
            Just(Place::Alone),
            Just(Place::InText),
            Just(Place::Number),
            Just(Place::Key)
        ]
    }

    /// Wraps `leaf` in `depth` arrays or objects, with filler beside it.
    fn embed(leaf: Value, path: &[bool], filler: &Value) -> Value {
        path.iter().fold(leaf, |node, in_array| {
            if *in_array {
                Value::Array(vec![filler.clone(), node, filler.clone()])
            } else {
                serde_json::json!({"id": "T-42-00000123-1", "x": node, "answers": {"a.1": 3}, "more": filler})
            }
        })
    }

    /// How the document reaches the scrubber.
    #[derive(Debug, Clone, Copy)]
    enum Wire {
        Json,
        /// `@` written as a JSON escape (still JSON).
        EscapedAt,
        /// Cut short: not JSON any more.
        Broken,
        /// Broken, with `@` percent-encoded.
        BrokenPercent,
    }

    fn wire() -> impl Strategy<Value = Wire> {
        prop_oneof![
            Just(Wire::Json),
            Just(Wire::EscapedAt),
            Just(Wire::Broken),
            Just(Wire::BrokenPercent)
        ]
    }

    fn send(document: &Value, wire: Wire) -> Vec<u8> {
        let text = serde_json::to_string(document).unwrap();
        match wire {
            Wire::Json => text,
            Wire::EscapedAt => text.replace('@', "\\u0040"),
            Wire::Broken => format!("{text},{{"),
            Wire::BrokenPercent => format!("{text},{{").replace('@', "%40"),
        }
        .into_bytes()
    }

    fn scrubbed(bytes: &[u8]) -> String {
        let out = scrub_payload(bytes, &hasher()).unwrap_or_else(|| bytes.to_vec());
        dialable(&String::from_utf8_lossy(&out))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn no_nine_digits_of_a_phone_survive(
            phone in phone(),
            place in place(),
            path in prop::collection::vec(any::<bool>(), 0..4),
            filler in filler(),
            wire in wire(),
        ) {
            let leaf = match place {
                Place::Alone => Value::from(phone.text.clone()),
                Place::InText => Value::from(format!("xin gọi lại {} trước 17h", phone.text)),
                Place::Number => Value::from(phone.digits.parse::<u64>().unwrap()),
                Place::Key => serde_json::json!({ phone.text.clone(): 1 }),
            };
            let out = scrubbed(&send(&embed(leaf, &path, &filler), wire));
            for window in phone.digits.as_bytes().windows(9) {
                let window = std::str::from_utf8(window).unwrap();
                prop_assert!(!out.contains(window), "{window} of {:?} in {out}", phone.text);
            }
        }

        #[test]
        fn no_address_survives(
            email in email(),
            at in prop::sample::select(vec!["@", "＠"]),
            place in place(),
            path in prop::collection::vec(any::<bool>(), 0..4),
            filler in filler(),
            wire in wire(),
        ) {
            let address = format!("{}{at}{}", email.local, email.domain);
            let leaf = match place {
                Place::Alone | Place::Number => Value::from(address.clone()),
                Place::InText => Value::from(format!("gửi về {address}, cảm ơn.")),
                Place::Key => serde_json::json!({ address.clone(): 1 }),
            };
            let out = scrubbed(&send(&embed(leaf, &path, &filler), wire));
            prop_assert!(!out.contains(&email.local), "{address} in {out}");
            prop_assert!(!out.contains(&email.domain), "{address} in {out}");
            prop_assert!(!out.contains('@') && !out.contains('＠'), "an address in {out}");
        }

        #[test]
        fn filler_alone_is_never_touched(filler in filler(), wire in wire()) {
            let bytes = send(&filler, wire);
            prop_assert_eq!(scrub_payload(&bytes, &hasher()), None);
        }
    }
}
