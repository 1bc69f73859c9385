//! Text kept within a size: errors, reasons and excerpts go into records
//! stored in DynamoDB items.

/// `text` cut to at most `limit` bytes on a character boundary, marked `…` when cut.
pub fn cut(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}
