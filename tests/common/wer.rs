//! Word error rate with a small English normaliser, applied the same way to every engine's
//! output and the reference (a subset of Whisper's EnglishTextNormalizer: case, punctuation,
//! hyphens, number words, a few abbreviations and contractions).

/// Normalised words of `text`.
pub fn normalize(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    // Drop bracketed asides ("[music]", "(laughs)").
    let mut plain = String::new();
    let mut depth = 0i32;
    for c in lower.chars() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth = (depth - 1).max(0),
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let plain = plain
        .replace("'s ", " is ")
        .replace("n't", " not")
        .replace("'re", " are")
        .replace("'ll", " will");
    let cleaned: String = plain
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect();
    cleaned
        .split_whitespace()
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mapped = match w {
                "mr" => "mister",
                "mrs" => "missus",
                "dr" => "doctor",
                "st" => "saint",
                "zero" => "0",
                "one" => "1",
                "two" => "2",
                "three" => "3",
                "four" => "4",
                "five" => "5",
                "six" => "6",
                "seven" => "7",
                "eight" => "8",
                "nine" => "9",
                "ten" => "10",
                "first" => "1st",
                "second" => "2nd",
                "third" => "3rd",
                other => other,
            };
            mapped.to_string()
        })
        .collect()
}

/// Word-level edit distance between two word lists.
pub fn edit_distance(a: &[String], b: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, wa) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, wb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(wa != wb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// (errors, reference words) summed over (reference, hypothesis) pairs.
pub fn corpus_errors<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> (usize, usize) {
    let mut errors = 0;
    let mut words = 0;
    for (r, h) in pairs {
        let (r, h) = (normalize(r), normalize(h));
        errors += edit_distance(&r, &h);
        words += r.len();
    }
    (errors, words)
}
