//! Mapping errors to exit codes: 2 when the user's input is at fault, 1 otherwise.

/// An error in what the user asked for (arguments, files), reported with exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// Returns an `InvalidInput` error from a format string.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => { anyhow::Error::new($crate::exit::InvalidInput(format!($($arg)*))) };
}

/// The error and its causes on one line, as `{:#}` prints them, but without a cause whose
/// message its parent already quoted: many errors end their own message with their source's
/// (`weights do not match the config: <candle's message>`), and a chain printer would repeat it.
pub fn describe(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let msg = cause.to_string();
        if out.contains(&msg) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
    }
    in_words(&out)
}

/// The operating system's error texts as words: `No such file or directory (os error 2)`
/// becomes `does not exist`; other texts keep their words and lose the error number.
fn in_words(msg: &str) -> String {
    const WORDS: [(&str, &str); 9] = [
        ("No such file or directory", "does not exist"),
        ("Permission denied", "permission denied"),
        ("Is a directory", "is a directory"),
        ("Not a directory", "a part of the path is not a folder"),
        ("No space left on device", "no space left on the device"),
        ("No such device", "not a file glassbox can read"),
        ("Read-only file system", "the file system is read-only"),
        ("File exists", "already exists"),
        ("Too many open files", "too many open files"),
    ];
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(at) = rest.find(" (os error ") {
        let end = rest[at..].find(')').map_or(rest.len(), |e| at + e + 1);
        let mut before = &rest[..at];
        let mut words = None;
        for (os, ours) in WORDS {
            if let Some(stripped) = before.strip_suffix(os) {
                before = stripped;
                words = Some(ours);
                break;
            }
        }
        out.push_str(before);
        out.push_str(words.unwrap_or(""));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// 2 if any error in the chain is the user's input being wrong, else 1.
pub fn code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if cause.is::<InvalidInput>() {
            return 2;
        }
        if let Some(e) = cause.downcast_ref::<glassbox_formats::FormatError>() {
            if e.is_invalid_input() {
                return 2;
            }
        }
        if let Some(e) = cause.downcast_ref::<glassbox_audit::AuditError>() {
            if e.is_invalid_input() {
                return 2;
            }
        }
        if let Some(e) = cause.downcast_ref::<glassbox_train::TrainError>() {
            if e.is_invalid_input() {
                return 2;
            }
        }
        if let Some(e) = cause.downcast_ref::<glassbox_analysis::AnalysisError>() {
            if e.is_invalid_input() {
                return 2;
            }
        }
        if let Some(e) = cause.downcast_ref::<glassbox_models::ModelError>() {
            if e.is_invalid_input() {
                return 2;
            }
        }
        if let Some(e) = cause.downcast_ref::<glassbox_features::FeatureError>() {
            if e.is_invalid_input() {
                return 2;
            }
        }
        if let Some(e) = cause.downcast_ref::<glassbox_serve::ServeError>() {
            if e.is_invalid_input() {
                return 2;
            }
        }
        // Library crates add their input-error checks here.
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("weights do not match the config: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[test]
    fn a_cause_its_parent_quotes_is_printed_once() {
        let io = std::io::Error::other("shape [0, 64]");
        let err = anyhow::Error::new(Quoting(io)).context("loading m");
        assert_eq!(
            describe(&err),
            "loading m: weights do not match the config: shape [0, 64]"
        );
        // The operating system's texts in words, error numbers gone.
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let err = anyhow::Error::new(io).context("x/config.json");
        assert_eq!(describe(&err), "x/config.json: entity not found");
        assert_eq!(
            in_words("a.json: No such file or directory (os error 2)"),
            "a.json: does not exist"
        );
        assert_eq!(
            in_words("b: Operation not permitted (os error 1): c"),
            "b: Operation not permitted: c"
        );
        // A cause the parent does not quote is kept.
        let err = anyhow::anyhow!("no such thing").context("reading x");
        assert_eq!(describe(&err), "reading x: no such thing");
    }
}
