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

/// The error and its causes on one line, each cause once, the operating system's texts in
/// words (see [`glassbox_formats::error::describe`]).
pub fn describe(err: &anyhow::Error) -> String {
    glassbox_formats::error::describe(err.as_ref())
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
