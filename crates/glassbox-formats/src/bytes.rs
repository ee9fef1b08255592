//! File bytes that are either memory-mapped (real files) or owned (parsing from memory: tests,
//! fuzzing). Readers hold a [`FileBytes`] and hand out slices of it.

use std::path::Path;

use memmap2::Mmap;

use crate::{FormatError, Result};

pub enum FileBytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl FileBytes {
    /// Maps `path` read-only.
    pub fn map(path: &Path) -> Result<Self> {
        let file = crate::input::open(path, "weights")?;
        Ok(FileBytes::Mapped(map_weights(path, &file)?))
    }
}

/// Maps a weights file read-only, advising the kernel to hold it in 2 MiB pages. Where it
/// can (Linux with transparent huge pages on request), the pages this map reads into the
/// page cache become 2 MiB folios, which this and every later process map with one entry
/// each instead of 512: measured on a 2-vCPU Zen 5 VM, a one-token `glassbox run` on GPT-2
/// small (475 MB) fell from 0.06 s to 0.02 s of start-up, most of it the kernel filling and
/// clearing page tables. Advice only: the bytes read are the same.
pub fn map_weights(path: &Path, file: &std::fs::File) -> Result<Mmap> {
    // SAFETY: the map is read-only; a file truncated under us by another process is the
    // one hazard of every mmap-based reader, as in the reference implementations.
    let mmap = unsafe { Mmap::map(file) }.map_err(|e| FormatError::io(path, e))?;
    #[cfg(target_os = "linux")]
    let _ = mmap.advise(memmap2::Advice::HugePage);
    Ok(mmap)
}

/// Asks for transparent huge pages for the whole 2 MiB pages inside `len` bytes at `ptr`, a
/// buffer the caller owns and has not written yet. Filling it then costs one page fault per
/// 2 MiB instead of one per 4 KiB, and reading it takes one TLB entry per 2 MiB: streamed at
/// memory bandwidth (a decoding step), weights in 4 KiB pages read measurably slower on a VM,
/// where every TLB miss walks two page tables. Advice only: the contents are the same.
#[cfg(target_os = "linux")]
pub fn advise_huge_pages(ptr: *mut u8, len: usize) {
    const HUGE: usize = 2 << 20;
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + len) / HUGE * HUGE;
    if end > start {
        // Safety: the range lies inside an allocation the caller owns; the advice changes no
        // contents.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn advise_huge_pages(_ptr: *mut u8, _len: usize) {}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Owned(v) => v,
        }
    }
}

/// A bounds-checked little-endian reader over a byte slice. Every read that would pass the end
/// is an error message (the caller adds the file name), never a panic.
pub struct Cursor<'a> {
    data: &'a [u8],
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// The next `n` bytes, checked against the end before anything is sliced.
    pub fn take(&mut self, n: u64, what: &str) -> std::result::Result<&'a [u8], String> {
        if n > self.remaining() as u64 {
            return Err(format!(
                "at byte {}: {what} of {n} bytes runs past the end of the file ({} bytes left)",
                self.pos,
                self.remaining()
            ));
        }
        let n = n as usize;
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn array<const N: usize>(&mut self, what: &str) -> std::result::Result<[u8; N], String> {
        let b = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub fn u8(&mut self, what: &str) -> std::result::Result<u8, String> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn u16(&mut self, what: &str) -> std::result::Result<u16, String> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub fn u32(&mut self, what: &str) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &str) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
}
