//! Error text for people: std's `Display` of an OS error ends in " (os error N)", which a user
//! reading a log line or an exit message does not need. Every crate of the relay uses these.

use std::io;

/// `text` without a trailing " (os error N)".
pub fn without_os_code(text: &str) -> &str {
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => &text[..at],
        _ => text,
    }
}

/// An I/O error's words, without the OS's code.
pub fn error_words(e: &io::Error) -> String {
    without_os_code(&e.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_os_code_goes_and_the_words_stay() {
        let e = io::Error::from_raw_os_error(2);
        assert!(!error_words(&e).contains("os error"), "{}", error_words(&e));
        assert!(!error_words(&e).is_empty());
        assert_eq!(without_os_code("refused (os error 111)"), "refused");
        assert_eq!(without_os_code("no code here"), "no code here");
        assert_eq!(
            without_os_code("a (os error 1) in the middle"),
            "a (os error 1) in the middle"
        );
    }
}
