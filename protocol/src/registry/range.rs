//! The HTTP `Range` header of a blob request: one byte range, as an agent resuming a partial blob
//! sends it (`bytes=OFFSET-`).
//!
//! Only a single range is served; anything else the header may say (several ranges, other units, a
//! malformed value) is ignored and the whole blob sent, as RFC 9110 §14.2 lets a server do. A range
//! that starts past the end is the one refusal (416). The header is bounded before it is read.

/// Longer `Range` values are ignored unread: one range of two 20-digit numbers is far shorter.
const MAX_RANGE_HEADER: usize = 128;

/// Bytes `start..=end` of a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    /// The first byte.
    pub start: u64,
    /// The last byte, inclusive.
    pub end: u64,
}

impl ByteRange {
    /// How many bytes the range holds.
    pub fn byte_count(self) -> u64 {
        self.end - self.start + 1
    }

    /// The `Content-Range` value for a blob of `size` bytes.
    pub fn content_range(self, size: u64) -> String {
        format!("bytes {}-{}/{size}", self.start, self.end)
    }
}

/// What a request's `Range` header asks of a blob of a known size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send everything (200).
    Whole,
    /// Send this part (206).
    Part(ByteRange),
    /// The range starts at or past the end (416).
    Unsatisfiable,
}

/// Read `header` (the `Range` value, if any) against a blob of `size` bytes.
pub fn parse(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header
        .filter(|h| h.len() <= MAX_RANGE_HEADER)
        .and_then(|h| h.trim().strip_prefix("bytes="))
    else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    match (number(first), number(last)) {
        (Some(start), last) => from_start(start, last, size),
        (None, Some(suffix)) if first.is_empty() => suffix_of(suffix, size),
        _ => RangeRequest::Whole,
    }
}

/// `bytes=START-` or `bytes=START-END`.
fn from_start(start: u64, last: Option<u64>, size: u64) -> RangeRequest {
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    match last {
        Some(end) if end < start => RangeRequest::Whole,
        Some(end) => RangeRequest::Part(ByteRange {
            start,
            end: end.min(size - 1),
        }),
        None => RangeRequest::Part(ByteRange {
            start,
            end: size - 1,
        }),
    }
}

/// `bytes=-N`: the last N bytes.
fn suffix_of(suffix: u64, size: u64) -> RangeRequest {
    if suffix == 0 || size == 0 {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Part(ByteRange {
        start: size.saturating_sub(suffix),
        end: size - 1,
    })
}

/// A decimal number of ASCII digits only (no sign, no spaces); `None` when empty or too big.
fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(start: u64, end: u64) -> RangeRequest {
        RangeRequest::Part(ByteRange { start, end })
    }

    #[test]
    fn single_ranges_are_served() {
        assert_eq!(parse(Some("bytes=0-"), 10), part(0, 9));
        assert_eq!(parse(Some("bytes=4-"), 10), part(4, 9));
        assert_eq!(parse(Some("bytes=2-5"), 10), part(2, 5));
        assert_eq!(parse(Some("bytes=2-500"), 10), part(2, 9));
        assert_eq!(parse(Some("bytes=-3"), 10), part(7, 9));
        assert_eq!(parse(Some("bytes=-30"), 10), part(0, 9));
        assert_eq!(part(2, 5), part(2, 5));
        let RangeRequest::Part(range) = parse(Some("bytes=2-5"), 10) else {
            panic!("a part")
        };
        assert_eq!(
            (range.byte_count(), range.content_range(10)),
            (4, "bytes 2-5/10".into())
        );
    }

    #[test]
    fn ranges_past_the_end_are_unsatisfiable() {
        assert_eq!(parse(Some("bytes=10-"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-"), 0), RangeRequest::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 10), RangeRequest::Unsatisfiable);
    }

    #[test]
    fn hostile_or_unsupported_ranges_send_the_whole_blob() {
        let long = format!("bytes=0-{}", "9".repeat(200));
        let cases = [
            None,
            Some(""),
            Some("bytes="),
            Some("bytes=-"),
            Some("items=0-1"),
            Some("bytes=0-1,3-4"),
            Some("bytes=5-2"),
            Some("bytes=+1-2"),
            Some("bytes= 1 - 2"),
            Some("bytes=99999999999999999999999-"),
            Some("bytes=a-b"),
            Some(long.as_str()),
        ];
        for header in cases {
            assert_eq!(parse(header, 10), RangeRequest::Whole, "{header:?}");
        }
    }
}
