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

/// A buffer for weights that a decoding step streams once per token, in memory that starts at
/// a 2 MiB boundary and is advised into transparent huge pages: all of it but a tail under
/// 2 MiB is then read through one TLB entry per 2 MiB. On a 2-vCPU Zen 5 VM (where a TLB miss
/// walks the guest's and the host's page tables) GPT-2 small decoded 25–40 % faster from such
/// copies than from copies in 4 KiB pages. On Linux a buffer of 2 MiB or more is a mapping of
/// its own rather than a heap block: aligning heap blocks to 2 MiB left gaps that later
/// allocations filled, 9 % more peak memory in a GPT-2 decode. Whatever pages the kernel
/// grants, the contents are what the filling wrote.
pub struct HugePageBuffer {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    /// A mapping of its own, else a heap block.
    mapped: bool,
}

// Safety: the buffer is owned alone and never written after `filled` returns.
unsafe impl Send for HugePageBuffer {}
unsafe impl Sync for HugePageBuffer {}

const HUGE_PAGE: usize = 2 << 20;

impl HugePageBuffer {
    /// `len` bytes, zero until `fill` writes them. `None` when the allocation fails.
    pub fn filled(len: usize, fill: impl FnOnce(&mut [u8])) -> Option<Self> {
        let size = len.max(1);
        let mapped = cfg!(target_os = "linux") && size >= HUGE_PAGE;
        let ptr = match mapped {
            true => Self::map(size)?,
            // Safety: the layout's size is non-zero.
            false => {
                std::ptr::NonNull::new(unsafe { std::alloc::alloc_zeroed(Self::layout(size)?) })?
            }
        };
        let buffer = HugePageBuffer { ptr, len, mapped };
        // Safety: len bytes, zeroed (a fresh anonymous mapping is), owned by `buffer` alone.
        fill(unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), len) });
        Some(buffer)
    }

    /// `n` f32 values, zero until `fill` writes them.
    pub fn filled_f32(n: usize, fill: impl FnOnce(&mut [f32])) -> Option<Self> {
        Self::filled(n.checked_mul(4)?, |bytes| {
            // Safety: the bytes are 64-byte aligned (see `layout`, `map`) and hold n values;
            // zero bytes are the value 0.0.
            fill(unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr() as *mut f32, n) })
        })
    }

    /// The bytes as f32 values (a whole number of them: see `filled_f32`).
    pub fn as_f32(&self) -> &[f32] {
        // Safety: 64-byte aligned; any bit pattern is an f32; the borrow cannot outlive self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr() as *const f32, self.len / 4) }
    }

    /// A heap block's layout: cache-line aligned, for any element type and vector load.
    fn layout(size: usize) -> Option<std::alloc::Layout> {
        std::alloc::Layout::from_size_align(size, 64).ok()
    }

    /// `size` (> 0) bytes at a 2 MiB boundary, advised into huge pages; nothing touched yet.
    #[cfg(target_os = "linux")]
    fn map(size: usize) -> Option<std::ptr::NonNull<u8>> {
        let total = size.checked_add(HUGE_PAGE)?;
        // Safety: an anonymous private mapping; the parts outside [start, start + size) are
        // unmapped again at once, and only this value's Drop unmaps the rest.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return None;
            }
            let base = base as usize;
            let start = base.next_multiple_of(HUGE_PAGE);
            let end = start + Self::mapped_len(size);
            if start > base {
                libc::munmap(base as *mut libc::c_void, start - base);
            }
            if base + total > end {
                libc::munmap(end as *mut libc::c_void, base + total - end);
            }
            libc::madvise(start as *mut libc::c_void, size, libc::MADV_HUGEPAGE);
            std::ptr::NonNull::new(start as *mut u8)
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn map(_size: usize) -> Option<std::ptr::NonNull<u8>> {
        None
    }

    /// The mapping's length for `size` bytes: whole 4 KiB pages.
    fn mapped_len(size: usize) -> usize {
        size.next_multiple_of(4096)
    }
}

impl std::ops::Deref for HugePageBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // Safety: len initialised bytes (see `filled`).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for HugePageBuffer {
    fn drop(&mut self) {
        let (ptr, size) = (self.ptr.as_ptr(), self.len.max(1));
        // Safety: made by `map` or the heap with this size and layout.
        if self.mapped {
            #[cfg(target_os = "linux")]
            unsafe {
                libc::munmap(ptr as *mut libc::c_void, Self::mapped_len(size));
            }
        } else if let Some(layout) = Self::layout(size) {
            unsafe { std::alloc::dealloc(ptr, layout) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the filling writes is what the buffer holds, at every size (none, a heap block, a
    /// mapping of its own with a tail past its last 2 MiB), aligned for any vector load; a
    /// mapping starts at a 2 MiB boundary, where huge pages can back it.
    #[test]
    fn huge_page_buffers_hold_what_was_written() {
        for len in [0, 1, 4096 + 3, HUGE_PAGE, 3 * HUGE_PAGE + 12_345] {
            let source: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let buffer = HugePageBuffer::filled(len, |to| {
                assert!(
                    to.iter().all(|&b| b == 0),
                    "{len} bytes: not zero before filling"
                );
                to.copy_from_slice(&source);
            })
            .unwrap();
            assert_eq!(&buffer[..], &source[..], "{len} bytes");
            assert_eq!(buffer.as_ptr() as usize % 64, 0, "{len} bytes: alignment");
            if cfg!(target_os = "linux") && len >= HUGE_PAGE {
                assert_eq!(
                    buffer.as_ptr() as usize % HUGE_PAGE,
                    0,
                    "{len} bytes: not at 2 MiB"
                );
            }
        }
        let values =
            HugePageBuffer::filled_f32(5, |v| v.copy_from_slice(&[1.0, -2.0, 0.5, 3.0, 7.0]))
                .unwrap();
        assert_eq!(values.as_f32(), &[1.0, -2.0, 0.5, 3.0, 7.0]);
    }

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
