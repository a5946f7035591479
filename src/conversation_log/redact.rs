//! What the log's writer replaces before a question or comment is stored.

use regex::Regex;
use std::sync::LazyLock;

/// E-mail addresses, Unicode ones too, and local names without a dot (`jane@localhost`).
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"[\p{L}\p{N}._%+-]+@[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?(?:\.[\p{L}\p{N}-]+)*",
    )
    .expect("a valid pattern")
});
/// Addresses written to dodge filters: `maria(at)uni.edu`, `maria [at] uni [dot] edu`,
/// `maria dot gonzalez at uni dot edu`.
static SPELLED_EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    let dot = r"(?:\s*[\(\[\{]\s*dot\s*[\)\]\}]\s*|\s+dot\s+|\.)";
    let at = r"(?:\s*[\(\[\{]\s*at\s*[\)\]\}]\s*|\s+at\s+)";
    let word = r"[\p{L}\p{N}_%+-]+";
    Regex::new(&format!(
        r"(?i)\b{word}(?:{dot}{word})*{at}{word}(?:{dot}{word})*{dot}\p{{L}}{{2,24}}\b"
    ))
    .expect("a valid pattern")
});
/// International bank account numbers: a country code, two check digits, then groups.
static IBAN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b")
        .expect("a valid pattern")
});
/// Student numbers: a letter or three and six or more digits (`S1234567`), or digits named as
/// one ("student number 204517", "matriculation no. 88123").
static STUDENT_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?:student|matric(?:ulation)?|enrol(?:l)?ment|learner)\s*(?:number|no\.?|id|#)\s*[:#]?\s*[A-Z]{0,3}\d{4,}\b|\b[A-Z]{1,3}\d{6,10}\b",
    )
    .expect("a valid pattern")
});
/// Runs of digits with phone-like separators; replaced when they hold seven or more digits.
static PHONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\+?\(?\d[\d\s().-]{5,}\d").expect("a valid pattern"));
/// Dates and times, which look like digit runs and are not phone numbers.
static DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\d{4}-\d{2}-\d{2}$|^\d{1,2}[./-]\d{1,2}[./-]\d{2,4}$").expect("a valid pattern")
});

/// What the log replaces before a question or comment is stored: e-mail addresses (plain,
/// Unicode, or spelled out with "at" and "dot"), IBANs, student numbers, phone numbers (seven
/// or more digits), and whatever the operator's own patterns match (`log_redact`).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    extra: Vec<Regex>,
}

impl Redactor {
    /// The built-in patterns plus `patterns` (regular expressions; each match becomes
    /// `[redacted]`). A pattern that does not compile is an error naming it.
    pub fn new(patterns: &[String]) -> Result<Redactor, String> {
        let extra = patterns
            .iter()
            .map(|p| Regex::new(p).map_err(|e| format!("`log_redact` pattern `{p}`: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Redactor { extra })
    }

    pub fn redact(&self, text: &str) -> String {
        let mut text = redact(text);
        for pattern in &self.extra {
            text = pattern.replace_all(&text, "[redacted]").into_owned();
        }
        text
    }
}

/// Replaces what [`Redactor`] replaces with the built-in patterns only.
pub fn redact(text: &str) -> String {
    let text = EMAIL.replace_all(text, "[email]");
    let text = SPELLED_EMAIL.replace_all(&text, "[email]");
    let text = IBAN.replace_all(&text, "[iban]");
    let text = STUDENT_ID.replace_all(&text, "[student id]");
    PHONE
        .replace_all(&text, |caps: &regex::Captures<'_>| {
            let found = caps[0].trim();
            let digits = found.chars().filter(char::is_ascii_digit).count();
            if digits >= 7 && !DATE.is_match(found) {
                "[phone]".to_string()
            } else {
                caps[0].to_string()
            }
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_is_redacted_and_ordinary_questions_are_left_alone() {
        let redacted: &[(&str, &str)] = &[
            ("write to ana.b+x@school.example.org", "write to [email]"),
            ("josé@universität.de asked", "[email] asked"),
            ("mail jane@localhost please", "mail [email] please"),
            ("ÖZGÜR.ŞAHİN@üni.edu.tr", "[email]"),
            ("maria dot gonzalez at uni dot edu", "[email]"),
            ("maria(at)uni.edu", "[email]"),
            ("maria [at] uni [dot] edu", "[email]"),
            ("maria {at} uni {dot} edu is me", "[email] is me"),
            ("contact maria at uni.edu", "contact [email]"),
            ("Ana AT School DOT Org", "[email]"),
            ("my id is S1234567", "my id is [student id]"),
            ("student number 204517", "[student id]"),
            ("Student ID: 88123", "[student id]"),
            ("matriculation no. 77231", "[student id]"),
            ("enrolment number #A12345", "[student id]"),
            (
                "AB12345678 is my learner code",
                "[student id] is my learner code",
            ),
            ("call 5551234", "call [phone]"),
            ("call 555 1234", "call [phone]"),
            ("call +44 (0)20 7946 0958", "call [phone]"),
            ("my number is 555-123-4567.", "my number is [phone]."),
            ("ring 0171.234.5678 today", "ring [phone] today"),
            ("IBAN DE89 3704 0044 0532 0130 00", "IBAN [iban]"),
            ("pay GB29NWBK60161331926819", "pay [iban]"),
            ("FR7630006000011234567890189 is mine", "[iban] is mine"),
        ];
        for (text, expected) in redacted {
            assert_eq!(redact(text), *expected, "{text}");
        }
        let kept: &[&str] = &[
            "What happened in 2019?",
            "Is 10^25 FLOP above 1,000,000?",
            "Does a vocabulary of 32,000 tokens beat 200,000?",
            "Is GPT-4o open weights?",
            "What does Llama 3 70B need?",
            "Is ISO 27001 enough?",
            "Why 3.14159?",
            "Which version, 1.2.3 or 2.0?",
            "What does HTTP 404 mean?",
            "Meet at 12:30 on 2024-05-01",
            "Released on 01.05.2024, right?",
            "What is at stake here?",
            "Look at the lesson. Then answer.",
            "Who is @openai on social media?",
            "Is 5 + 5 = 10?",
            "What does the EU AI Act say about 10^26 operations?",
            "Can I train at home on 2 GPUs?",
            "Where do students at universities start?",
        ];
        for text in kept {
            assert_eq!(redact(text), *text, "{text}");
        }
        assert!(redacted.len() + kept.len() >= 40);
    }

    #[test]
    fn operators_add_their_own_patterns() {
        let redactor = Redactor::new(&["(?i)badge\\s*\\d+".to_string()]).expect("compiles");
        assert_eq!(
            redactor.redact("my badge 4411 and jane@localhost"),
            "my [redacted] and [email]"
        );
        let broken = Redactor::new(&["(unclosed".to_string()]).expect_err("does not compile");
        assert!(broken.contains("(unclosed"), "{broken}");
    }

    #[test]
    fn emails_and_phone_numbers_are_redacted_but_years_and_counts_stay() {
        assert_eq!(
            redact("mail me at ana.b+x@school.example.org or call +44 (0)20 7946 0958 about 2023"),
            "mail me at [email] or call [phone] about 2023"
        );
        assert_eq!(
            redact("Is 10^25 FLOP above 1,000,000?"),
            "Is 10^25 FLOP above 1,000,000?"
        );
        assert_eq!(
            redact("my number is 555-123-4567."),
            "my number is [phone]."
        );
    }
}
