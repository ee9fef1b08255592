//! How much memory a computation may use: what the machine has available now (Linux
//! `MemAvailable`), less where the process is held to less — its control group's memory limit
//! (a container's) or its address-space limit (`ulimit -v`) — or what `GLASSBOX_MEMORY` says
//! (bytes, or with a `K`, `M`, `G` or `T` suffix), so that a request too large for the process
//! is refused with numbers instead of aborting in the allocator.

/// glibc hands freed blocks over 128 KiB back to the kernel at once (as unmapped blocks, or by
/// trimming the heap), so every forward pass faulted in and zeroed its activation buffers
/// afresh: a third of an activation-patching sweep's time, 15 % of GPT-2 small's 8×128 forward.
/// After this call blocks up to 32 MiB (glibc's largest threshold) come from the heap, which
/// keeps up to 1 GiB of freed memory for reuse; peak memory is unchanged, it is only returned
/// later. The work runs on the kernels' pool, whose threads allocate from arenas of their own
/// that grow in 64 MiB sub-heaps; glibc unmaps an emptied sub-heap as soon as the one before it
/// has `M_TOP_PAD` (128 KiB by default) free, whatever the trim threshold, so caching every hook
/// of GPT-2 small (130 MB) faulted ~30 MB back in every pass (7 % of it at 1×128). A pad of a
/// whole sub-heap is never free, so sub-heaps stay (the pad also rounds up heap growth).
/// (One arena for all threads, `M_ARENA_MAX = 1`, fixed that too but made 8×128 caching
/// 3–14 % slower: the shared heap fragmented.) Front ends (the CLI, the Python package, the
/// benchmarks) call it at start; it changes the whole process's allocator, so the library
/// never calls it itself.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes the allocator's lock; the values are in glibc's documented ranges.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// The memory budget in bytes (8 GiB where no source can be read).
pub fn budget() -> u64 {
    if let Some(bytes) = std::env::var("GLASSBOX_MEMORY")
        .ok()
        .and_then(|v| parse_size(&v))
    {
        return bytes;
    }
    [available(), control_group_room(), address_space_room()]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(8 << 30)
}

/// What the process's cgroup v2 memory limit (`memory.max`) leaves above its use
/// (`memory.current`); `None` without a limit or where it cannot be read.
fn control_group_room() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let limit = read("memory.max")?.trim().parse::<u64>().ok()?;
    let used = read("memory.current")?.trim().parse::<u64>().ok()?;
    Some(limit.saturating_sub(used))
}

/// What the address-space limit (`RLIMIT_AS`, `ulimit -v`) leaves above the process's mapped
/// size (`VmSize`); `None` without a limit.
#[cfg(not(unix))]
fn address_space_room() -> Option<u64> {
    None
}

/// What the address-space limit (`RLIMIT_AS`, `ulimit -v`) leaves above the process's mapped
/// size (`VmSize`); `None` without a limit.
#[cfg(unix)]
fn address_space_room() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // Safety: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find(|l| l.starts_with("VmSize:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()?;
    Some((limit.rlim_cur as u64).saturating_sub(kb.saturating_mul(1024)))
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
pub fn available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb = text
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()?;
    kb.checked_mul(1024)
}

/// `4096`, `512M`, `8G`, `1.5T` (binary units) → bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (number, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&t[..i], t[i..].trim_end_matches(['B', 'b', 'i'])),
        None => (t, ""),
    };
    let scale: f64 = match unit.to_ascii_uppercase().as_str() {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let value: f64 = number.trim().parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some((value * scale) as u64)
}

/// A size for messages: `3.2 GiB`.
pub fn describe(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("8GiB"), Some(8 << 30));
        assert_eq!(parse_size("1.5k"), Some(1536));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("-1"), None);
    }
}
