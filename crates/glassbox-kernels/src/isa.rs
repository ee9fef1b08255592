//! The one place that knows which CPU we run on: instruction-set detection and overrides.

use std::cell::Cell;
use std::fmt;
use std::sync::OnceLock;

/// An instruction-set path. Every kernel has one implementation per path, all bit-identical.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Plain Rust with `f32::mul_add`: the reference every other path is tested against.
    Portable,
    /// x86-64 AVX2 + FMA (256-bit vectors).
    Avx2,
    /// x86-64 AVX-512F (512-bit vectors).
    Avx512,
    /// aarch64 NEON (128-bit vectors). Reserved: not implemented yet, never available.
    Neon,
}

/// `GLASSBOX_ISA` names a path this CPU cannot run, or no path at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsaError(pub String);

impl fmt::Display for IsaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IsaError {}

impl Isa {
    pub const ALL: [Isa; 4] = [Isa::Portable, Isa::Avx2, Isa::Avx512, Isa::Neon];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|i| i.name() == name)
    }

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && Isa::Avx2.available()
            }
            // No NEON kernels yet: aarch64 runs the portable path (same bits, slower).
            Isa::Neon => false,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The paths this CPU can run, fastest last.
    pub fn available_paths() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.available()).collect()
    }

    /// The fastest path this CPU runs.
    pub fn detected() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            [Isa::Avx512, Isa::Avx2, Isa::Neon]
                .into_iter()
                .find(|i| i.available())
                .unwrap_or(Isa::Portable)
        })
    }

    /// The path kernels called on this thread use: [`with_isa`]'s, else `GLASSBOX_ISA`'s
    /// (when valid), else [`Isa::detected`]. Kernels read it once per call, on the calling
    /// thread, and hand it to their worker threads.
    pub fn active() -> Isa {
        if let Some(isa) = FORCED.with(Cell::get) {
            return isa;
        }
        static FROM_ENV: OnceLock<Option<Isa>> = OnceLock::new();
        FROM_ENV
            .get_or_init(|| isa_from_env().ok().flatten())
            .unwrap_or_else(Isa::detected)
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The path `GLASSBOX_ISA` forces, `None` when it is unset or empty. Programs call this at
/// start-up to report a bad value; kernels ignore a bad value and use the detected path.
pub fn isa_from_env() -> Result<Option<Isa>, IsaError> {
    let Ok(value) = std::env::var("GLASSBOX_ISA") else {
        return Ok(None);
    };
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let Some(isa) = Isa::from_name(value) else {
        return Err(IsaError(format!(
            "GLASSBOX_ISA={value:?} is not an instruction-set path (portable, avx2, avx512, neon)"
        )));
    };
    if !isa.available() {
        return Err(IsaError(format!(
            "GLASSBOX_ISA={value}: this CPU cannot run that path (it can run: {})",
            Isa::available_paths()
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(Some(isa))
}

thread_local! {
    static FORCED: Cell<Option<Isa>> = const { Cell::new(None) };
}

/// Runs `f` with every kernel called on this thread using `isa`. Panics if the CPU cannot run
/// it (a test asking for a path must check [`Isa::available`] first).
pub fn with_isa<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    assert!(isa.available(), "this CPU cannot run the {isa} path");
    let previous = FORCED.with(|c| c.replace(Some(isa)));
    struct Restore(Option<Isa>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(previous);
    f()
}
