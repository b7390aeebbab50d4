//! Names of star systems: checking them, their file-safe slugs, and the closeness of what a
//! player typed to a real name (for "did you mean"). Pure text work; never does I/O.

use super::{GalaxyError, MAX_NAME_BYTES};

/// `trimmed` without one pair of surrounding quotes, trimmed again.
pub(super) fn unquote(trimmed: &str) -> &str {
    for quote in ['"', '\''] {
        if trimmed.len() >= 2 && trimmed.starts_with(quote) && trimmed.ends_with(quote) {
            // Quotes are one byte, so these are char boundaries.
            return trimmed[1..trimmed.len() - 1].trim();
        }
    }
    trimmed
}

/// Checks a system name: non-empty, at most MAX_NAME_BYTES, no control
/// characters, no surrounding whitespace.
pub(super) fn check_name(name: &str, line: usize) -> Result<(), GalaxyError> {
    if name.is_empty() {
        return Err(GalaxyError::EmptyName { line });
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(GalaxyError::NameTooLong {
            line,
            name: name.to_string(),
            bytes: name.len(),
        });
    }
    let problem = if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else if name.trim() != name {
        Some("starts or ends with whitespace")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(GalaxyError::BadName {
            line,
            name: name.to_string(),
            problem,
        }),
        None => Ok(()),
    }
}

/// The file-safe form of a name: lowercase ASCII letters and digits, words
/// joined by '-'. Accented Latin letters lose their accents; any other
/// non-ASCII character (other than whitespace) becomes a word `u<hex code
/// point>`, so names in any script still get distinct slugs. ASCII
/// punctuation and whitespace separate words.
pub(super) fn slugify(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    let mut gap = false;
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            push_slug_piece(&mut slug, &mut gap, c.encode_utf8(&mut [0; 4]));
        } else if c.is_ascii() || c.is_whitespace() {
            gap = true;
        } else if let Some(plain) = unaccented(c) {
            push_slug_piece(&mut slug, &mut gap, plain);
        } else {
            gap = true;
            push_slug_piece(&mut slug, &mut gap, &format!("u{:x}", u32::from(c)));
            gap = true;
        }
    }
    slug
}

pub(super) fn push_slug_piece(slug: &mut String, gap: &mut bool, piece: &str) {
    if *gap && !slug.is_empty() {
        slug.push('-');
    }
    *gap = false;
    slug.push_str(piece);
}

/// ASCII spelling of common accented lowercase Latin letters.
pub(super) fn unaccented(c: char) -> Option<&'static str> {
    Some(match c {
        'à'..='å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è'..='ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'ì'..='ï' | 'ī' | 'į' | 'ı' => "i",
        'ł' => "l",
        'ñ' | 'ń' | 'ň' => "n",
        'ò'..='ö' | 'ø' | 'ō' | 'ő' => "o",
        'œ' => "oe",
        'ř' => "r",
        'ś' | 'š' | 'ş' => "s",
        'ß' => "ss",
        'ť' | 'ţ' => "t",
        'þ' => "th",
        'ù'..='ü' | 'ū' | 'ů' | 'ű' => "u",
        'ý' | 'ÿ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

/// Levenshtein distance (in chars) between `a` and `b`, if it is at most
/// `bound`.
pub(super) fn edit_distance_within(
    a: &[char],
    b: &str,
    bound: usize,
    row: &mut Vec<usize>,
) -> Option<usize> {
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > bound {
        return None;
    }
    row.clear();
    row.extend(0..=b.len());
    for (i, &ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        let mut row_min = row[0];
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
            row_min = row_min.min(row[j + 1]);
        }
        if row_min > bound {
            return None;
        }
    }
    let distance = row[b.len()];
    (distance <= bound).then_some(distance)
}
