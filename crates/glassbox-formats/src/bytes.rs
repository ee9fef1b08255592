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

/// A file mapping of this process and how much of it is mapped through 2 MiB page-table
/// entries (pages the page cache holds as 2 MiB folios), as `/proc/self/smaps` says.
#[derive(Debug, Clone, PartialEq)]
pub struct MapBacking {
    pub range: std::ops::Range<usize>,
    /// `FilePmdMapped` over `Rss`: 0 when nothing is resident.
    pub huge_share: f64,
}

/// This process's file mappings and their huge-page shares (none elsewhere than Linux, or
/// when `/proc/self/smaps` cannot be read).
pub fn file_map_backing() -> Vec<MapBacking> {
    #[cfg(target_os = "linux")]
    {
        parse_smaps(&std::fs::read_to_string("/proc/self/smaps").unwrap_or_default())
    }
    #[cfg(not(target_os = "linux"))]
    Vec::new()
}

/// The file mappings in `/proc/self/smaps` text: a header line `start-end perms offset dev
/// inode path` (a path starting with `/`), then `Key: value kB` lines.
fn parse_smaps(text: &str) -> Vec<MapBacking> {
    let mut maps = Vec::new();
    // The current mapping (if a file's), its Rss and FilePmdMapped in kB.
    let mut current: Option<(std::ops::Range<usize>, u64, u64)> = None;
    let mut finish = |current: Option<(std::ops::Range<usize>, u64, u64)>| {
        if let Some((range, rss, pmd)) = current {
            let huge_share = if rss == 0 {
                0.0
            } else {
                pmd as f64 / rss as f64
            };
            maps.push(MapBacking { range, huge_share });
        }
    };
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) {
                finish(current.take());
                let is_file = fields.nth(4).is_some_and(|path| path.starts_with('/'));
                current = is_file.then_some((start..end, 0, 0));
                continue;
            }
        }
        if let Some((_, rss, pmd)) = current.as_mut() {
            let kb = fields
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            match first {
                "Rss:" => *rss = kb,
                "FilePmdMapped:" => *pmd = kb,
                _ => {}
            }
        }
    }
    finish(current);
    maps
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The smaps reader keeps file mappings only, each with its own Rss and FilePmdMapped.
    #[test]
    fn smaps_give_each_file_mapping_its_huge_page_share() {
        let text = "\
55d0c0000000-55d0c0021000 rw-p 00000000 00:00 0                          [heap]
Rss:                 132 kB
FilePmdMapped:         0 kB
7f0000000000-7f0076000000 r--s 00000000 fd:01 131090                     /models/qwen/model.safetensors
Size:            1933312 kB
Rss:             1933312 kB
FilePmdMapped:   1742848 kB
7f0080000000-7f0080400000 rw-p 00000000 00:00 0 
Rss:                4096 kB
7f0090000000-7f0090100000 r--s 00000000 fd:01 131091                     /models/gpt2/model.safetensors
Rss:                   0 kB
FilePmdMapped:         0 kB
";
        let maps = parse_smaps(text);
        assert_eq!(maps.len(), 2, "{maps:?}");
        assert_eq!(maps[0].range, 0x7f0000000000..0x7f0076000000);
        assert!((maps[0].huge_share - 1742848.0 / 1933312.0).abs() < 1e-12);
        assert_eq!(maps[1].range, 0x7f0090000000..0x7f0090100000);
        assert_eq!(maps[1].huge_share, 0.0);
    }

    /// This process's own smaps list a weights map it made, with a share between 0 and 1.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_weights_map_is_among_the_file_mappings() {
        let dir = std::env::temp_dir().join(format!("glassbox-smaps-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("weights.bin");
        std::fs::write(&path, vec![7u8; 4 << 20]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let map = map_weights(&path, &file).unwrap();
        let touched: u64 = map.iter().step_by(4096).map(|&b| b as u64).sum();
        assert_eq!(touched, 7 * 1024);
        let at = map.as_ptr() as usize;
        let backing = file_map_backing();
        let mine = backing.iter().find(|m| m.range.contains(&at));
        let mine = mine.unwrap_or_else(|| panic!("no mapping holds {at:#x}: {backing:?}"));
        assert!((0.0..=1.0).contains(&mine.huge_share), "{mine:?}");
        drop(map);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
