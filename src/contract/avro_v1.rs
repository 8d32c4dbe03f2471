//! Direct decoding of the shipped v1 records, for messages whose writer schema is this
//! build's reader schema (what the project's own producers write).
//!
//! apache-avro's generic path builds a `Value` tree (a `String` per field name, a
//! `HashMap` for the answers), resolves it against the reader schema and is then copied
//! into the raw event: most of the cost of an Avro message. This reads the datum straight
//! into `RawSurvey`/`RawHotline`. It accepts and refuses exactly what the generic path
//! does with writer = reader, including apache-avro's leniencies (a union index or a
//! string cut off by the end of the datum reads as null); only the error texts differ.
//! `tests::same_as_the_generic_path` checks the equivalence on mutated and cut datums.
use crate::contract::raw::{RawAnswer, RawHotline, RawSurvey};

/// Why a datum was refused.
#[derive(Debug)]
pub enum Invalid {
    /// The datum ended inside a value.
    End,
    Other(&'static str),
}

impl Invalid {
    pub fn message(&self) -> &'static str {
        match self {
            Invalid::End => "the datum ends inside a value",
            Invalid::Other(message) => message,
        }
    }
}

type Result<T> = std::result::Result<T, Invalid>;

struct Cursor<'a> {
    bytes: &'a [u8],
    /// apache-avro's limit on any length prefix (`util::max_allocation_bytes`).
    max_len: usize,
}

impl Cursor<'_> {
    /// A zig-zag varint long of at most 10 bytes.
    fn long(&mut self) -> Result<i64> {
        let mut value = 0u64;
        for shift in 0..10 {
            let (&byte, rest) = self.bytes.split_first().ok_or(Invalid::End)?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << (shift * 7);
            if byte & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(Invalid::Other("integer overflow"))
    }

    fn int(&mut self) -> Result<i32> {
        i32::try_from(self.long()?).map_err(|_| Invalid::Other("int out of range"))
    }

    fn checked_len(&self, len: i64) -> Result<usize> {
        let len = usize::try_from(len).map_err(|_| Invalid::Other("negative length"))?;
        if len > self.max_len {
            return Err(Invalid::Other("length above the allocation limit"));
        }
        Ok(len)
    }

    /// Item count of the next block of an array or map (0: the end).
    fn block_len(&mut self) -> Result<usize> {
        let raw = self.long()?;
        let count = if raw < 0 {
            let _block_bytes = self.long()?;
            raw.checked_neg()
                .ok_or(Invalid::Other("integer overflow"))?
        } else {
            raw
        };
        self.checked_len(count)
    }

    /// A string, or `None` if the datum ends before its last byte (apache-avro reads that
    /// as null and consumes the rest).
    fn string(&mut self) -> Result<Option<String>> {
        let len = self.long()?;
        let len = self.checked_len(len)?;
        if self.bytes.len() < len {
            self.bytes = &[];
            return Ok(None);
        }
        let (text, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        std::str::from_utf8(text)
            .map(|s| Some(s.to_owned()))
            .map_err(|_| Invalid::Other("string is not UTF-8"))
    }

    /// A `"string"` field: a string cut short is null, which a string field refuses.
    fn required(&mut self) -> Result<Option<String>> {
        match self.string()? {
            Some(s) => Ok(Some(s)),
            None => Err(Invalid::End),
        }
    }

    /// The branch of a `["null", X]` union; the datum ending here reads as null.
    fn union_branch(&mut self) -> Result<bool> {
        match self.long() {
            Err(Invalid::End) | Ok(0) => Ok(false),
            Ok(1) => Ok(true),
            Ok(_) => Err(Invalid::Other("union index out of range")),
            Err(other) => Err(other),
        }
    }

    /// `["null", "string"]`
    fn optional(&mut self) -> Result<Option<String>> {
        if self.union_branch()? {
            self.string()
        } else {
            Ok(None)
        }
    }

    /// `{"type": "map", "values": ["null", "int"]}`, as `to_raw_survey` gives it: sorted by
    /// criterion, a repeated key keeping its last value (apache-avro collects a HashMap).
    fn answers(&mut self) -> Result<Vec<(String, RawAnswer)>> {
        let mut answers: Vec<(String, RawAnswer)> = Vec::new();
        loop {
            let count = self.block_len()?;
            if count == 0 {
                break;
            }
            answers.reserve(count.min(64));
            for _ in 0..count {
                let criterion = self.string()?.ok_or(Invalid::End)?;
                let answer = if self.union_branch()? {
                    RawAnswer::Integer(i64::from(self.int()?))
                } else {
                    RawAnswer::NoAnswer
                };
                answers.push((criterion, answer));
            }
        }
        answers.sort_by(|a, b| a.0.cmp(&b.0));
        answers.dedup_by(|later, earlier| {
            later.0 == earlier.0 && {
                std::mem::swap(&mut later.1, &mut earlier.1);
                true
            }
        });
        Ok(answers)
    }

    /// `["null", {"type": "array", "items": "string"}]`
    fn optional_strings(&mut self) -> Result<Option<Vec<String>>> {
        if !self.union_branch()? {
            return Ok(None);
        }
        let mut items = Vec::new();
        loop {
            let count = self.block_len()?;
            if count == 0 {
                break;
            }
            items.reserve(count.min(64));
            for _ in 0..count {
                // A null item makes the array match no branch of the union.
                items.push(self.string()?.ok_or(Invalid::End)?);
            }
        }
        Ok(Some(items))
    }
}

fn cursor(datum: &[u8]) -> Cursor<'_> {
    Cursor {
        bytes: datum,
        max_len: apache_avro::util::max_allocation_bytes(
            apache_avro::util::DEFAULT_MAX_ALLOCATION_BYTES,
        ),
    }
}

/// A survey datum (after the 5-byte frame) and the number of bytes left after it.
pub fn survey(datum: &[u8]) -> Result<(RawSurvey, usize)> {
    let mut c = cursor(datum);
    let raw = RawSurvey {
        submission_id: c.required()?,
        framework: c.required()?,
        submitted_at: c.required()?,
        province_code: c.required()?,
        province_code_system: c.optional()?,
        agency_id: c.required()?,
        agency_level: c.required()?,
        procedure_code: c.optional()?,
        channel: c.required()?,
        respondent_type: c.required()?,
        answers: Some(c.answers()?),
        expectations: c.optional_strings()?,
    };
    Ok((raw, c.bytes.len()))
}

/// A hotline datum (after the 5-byte frame) and the number of bytes left after it.
pub fn hotline(datum: &[u8]) -> Result<(RawHotline, usize)> {
    let mut c = cursor(datum);
    let raw = RawHotline {
        event_id: c.required()?,
        ticket_id: c.required()?,
        event_type: c.required()?,
        occurred_at: c.required()?,
        province_code: c.required()?,
        province_code_system: c.optional()?,
        channel: c.optional()?,
        category: c.optional()?,
        agency_id: c.optional()?,
        due_at: c.optional()?,
        rating: c.optional()?,
        reason: c.optional()?,
        reporter_phone: c.optional()?,
        reporter_email: c.optional()?,
    };
    Ok((raw, c.bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::avro::{
        decode_datum, encode_hotline, encode_survey, to_raw_hotline, to_raw_survey, ReaderSchemas,
    };
    use proptest::prelude::*;

    fn generic_survey(datum: &[u8]) -> Option<RawSurvey> {
        let readers = ReaderSchemas::default();
        decode_datum(&readers.survey, &readers.survey, datum)
            .and_then(to_raw_survey)
            .ok()
    }

    fn generic_hotline(datum: &[u8]) -> Option<RawHotline> {
        let readers = ReaderSchemas::default();
        decode_datum(&readers.hotline, &readers.hotline, datum)
            .and_then(to_raw_hotline)
            .ok()
    }

    fn fast_survey(datum: &[u8]) -> Option<RawSurvey> {
        survey(datum)
            .ok()
            .filter(|(_, left)| *left == 0)
            .map(|(raw, _)| raw)
    }

    fn fast_hotline(datum: &[u8]) -> Option<RawHotline> {
        hotline(datum)
            .ok()
            .filter(|(_, left)| *left == 0)
            .map(|(raw, _)| raw)
    }

    fn sample_survey() -> RawSurvey {
        RawSurvey {
            submission_id: Some("s-1".into()),
            framework: Some("BNV-2640-2017".into()),
            submitted_at: Some("2026-11-21T08:00:00+07:00".into()),
            province_code: Some("79".into()),
            province_code_system: Some("2025".into()),
            agency_id: Some("79-commune-001".into()),
            agency_level: Some("commune".into()),
            procedure_code: Some("1.000123".into()),
            channel: Some("one_stop".into()),
            respondent_type: Some("citizen".into()),
            answers: Some(vec![
                ("staff.2".into(), RawAnswer::Integer(4)),
                ("access.1".into(), RawAnswer::Integer(5)),
                ("result.3".into(), RawAnswer::NoAnswer),
                ("access.1".into(), RawAnswer::Integer(-3)),
            ]),
            expectations: Some(vec!["expect.shorter_time".into(), "expect.x".into()]),
        }
    }

    fn sample_hotline() -> RawHotline {
        RawHotline {
            event_id: Some("e-1".into()),
            ticket_id: Some("t-1".into()),
            event_type: Some("received".into()),
            occurred_at: Some("2026-11-21T08:00:00+07:00".into()),
            province_code: Some("01".into()),
            channel: Some("zalo".into()),
            category: Some("traffic".into()),
            due_at: Some("2026-11-26T08:00:00+07:00".into()),
            reporter_phone: Some("0901234567".into()),
            reporter_email: Some("a@b.vn".into()),
            ..Default::default()
        }
    }

    #[test]
    fn reads_what_the_encoder_writes_like_the_generic_path() {
        let bytes = encode_survey(&sample_survey());
        let fast = fast_survey(&bytes[5..]).expect("decodes");
        assert_eq!(Some(fast.clone()), generic_survey(&bytes[5..]));
        let answers = fast.answers.unwrap();
        assert_eq!(answers.len(), 3, "the repeated key is kept once");
        assert_eq!(
            answers[0],
            ("access.1".to_string(), RawAnswer::Integer(-3)),
            "its last value wins, as in a HashMap"
        );
        let bytes = encode_hotline(&sample_hotline());
        assert_eq!(fast_hotline(&bytes[5..]), Some(sample_hotline()));
        assert_eq!(generic_hotline(&bytes[5..]), Some(sample_hotline()));
    }

    #[test]
    fn every_cut_is_treated_as_the_generic_path_treats_it() {
        for bytes in [
            encode_survey(&sample_survey()),
            encode_survey(&RawSurvey {
                expectations: None,
                ..sample_survey()
            }),
        ] {
            for cut in 5..=bytes.len() {
                let datum = &bytes[5..cut];
                assert_eq!(fast_survey(datum), generic_survey(datum), "cut at {cut}");
            }
        }
        let bytes = encode_hotline(&sample_hotline());
        for cut in 5..=bytes.len() {
            let datum = &bytes[5..cut];
            assert_eq!(fast_hotline(datum), generic_hotline(datum), "cut at {cut}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        #[test]
        fn same_as_the_generic_path(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..5),
            cut in any::<prop::sample::Index>(),
            hotline in any::<bool>(),
        ) {
            let mut bytes = if hotline {
                encode_hotline(&sample_hotline())
            } else {
                encode_survey(&sample_survey())
            };
            let mut datum = bytes.split_off(5);
            for (index, byte) in flips {
                let i = index.index(datum.len());
                datum[i] = byte;
            }
            let whole = datum.clone();
            datum.truncate(cut.index(datum.len() + 1));
            for datum in [&whole, &datum] {
                if hotline {
                    prop_assert_eq!(fast_hotline(datum), generic_hotline(datum));
                } else {
                    prop_assert_eq!(fast_survey(datum), generic_survey(datum));
                }
            }
        }
    }
}
