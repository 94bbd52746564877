//! Ids in URL paths.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Characters to escape in a path segment: everything but unreserved
/// characters, `,` and `:` (the jobs of a job schedule are
/// `{schedule}:job-{n}`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b',').remove(b':');

/// Percent-encodes an id for use as one path segment.
pub fn encode_segment(v: &str) -> String {
    utf8_percent_encode(v, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn segments_keep_colons_and_escape_slashes() {
        assert_eq!(super::encode_segment("sched:job-1"), "sched:job-1");
        assert_eq!(super::encode_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(super::encode_segment("x-y_z.w~,"), "x-y_z.w~,");
    }
}
