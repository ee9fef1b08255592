use std::path::PathBuf;

/// Errors from opening or reading a checkpoint. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is malformed: truncated, inconsistent, or out of bounds.
    #[error("{path}: invalid file: {msg}")]
    Invalid { path: PathBuf, msg: String },
    /// The file is well-formed but uses something glassbox does not read.
    #[error("{path}: unsupported: {msg}")]
    Unsupported { path: PathBuf, msg: String },
    #[error("{path}: no tensor named `{name}`")]
    NoSuchTensor { path: PathBuf, name: String },
    /// A GGUF writer was given inconsistent data (a shape that does not match the values).
    #[error("GGUF writer: {0}")]
    Write(String),
    #[error("{path}: {source}")]
    Tensor {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
}

impl FormatError {
    pub fn invalid(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        FormatError::Invalid {
            path: path.into(),
            msg: msg.into(),
        }
    }
    pub fn unsupported(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        FormatError::Unsupported {
            path: path.into(),
            msg: msg.into(),
        }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FormatError::Io {
            path: path.into(),
            source,
        }
    }
    /// True when the error is the user's input being wrong (CLI exit code 2).
    /// A path that does not exist, or is not readable or writable as asked, is the user's
    /// input too.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            FormatError::Io { source, .. } => {
                matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::PermissionDenied
                        | std::io::ErrorKind::ReadOnlyFilesystem
                        | std::io::ErrorKind::IsADirectory
                        | std::io::ErrorKind::NotADirectory
                        | std::io::ErrorKind::UnexpectedEof
                        // a file the kernel will not read as asked (/proc/self/pagemap)
                        | std::io::ErrorKind::InvalidInput
                ) || source.raw_os_error() == Some(libc::ELOOP)
            }
            FormatError::Tensor { .. } | FormatError::Write(_) => false,
            _ => true,
        }
    }
}

pub type Result<T> = std::result::Result<T, FormatError>;

/// An error and its causes (its `source` chain) on one line, as anyhow's `{:#}` prints them,
/// but without a cause whose message its parent already quoted: many errors end their own
/// message with their source's (`weights do not match the config: <candle's message>`), and a
/// chain printer would repeat it.
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(err);
    while let Some(cause) = next {
        next = cause.source();
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
    const WORDS: [(&str, &str); 10] = [
        ("No such file or directory", "does not exist"),
        ("Permission denied", "permission denied"),
        ("Is a directory", "is a directory"),
        ("Not a directory", "a part of the path is not a folder"),
        ("No space left on device", "no space left on the device"),
        ("No such device", "not a file glassbox can read"),
        ("Read-only file system", "the file system is read-only"),
        ("File exists", "already exists"),
        ("Too many open files", "too many open files"),
        (
            "Too many levels of symbolic links",
            "a symbolic link that loops (or too long a chain of links)",
        ),
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

#[cfg(test)]
mod describe_tests {
    use super::*;
    use std::error::Error as _;

    #[derive(Debug, thiserror::Error)]
    #[error("weights do not match the config: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Context(String, #[source] Box<dyn std::error::Error + Send + Sync>);

    #[test]
    fn a_cause_its_parent_quotes_is_printed_once() {
        let io = std::io::Error::other("shape [0, 64]");
        let err = Context("loading m".into(), Box::new(Quoting(io)));
        assert!(err.source().is_some());
        assert_eq!(
            describe(&err),
            "loading m: weights do not match the config: shape [0, 64]"
        );
        // The operating system's texts in words, error numbers gone.
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let err = Context("x/config.json".into(), Box::new(io));
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
        let err = Context("reading x".into(), "no such thing".into());
        assert_eq!(describe(&err), "reading x: no such thing");
    }
}
