//! A minimal, bounded reader for the zip archives PyTorch writes (`torch.save`).
//!
//! torch stores every entry uncompressed (method 0, "stored"), so an entry is just a byte range
//! of the file: this reader finds the central directory (zip64 included, for checkpoints over
//! 4 GiB), and for each entry checks its local header and returns the range of its data.
//! Compressed or encrypted entries are refused; every offset and count is checked against the
//! file size before use.

pub const LOCAL_HEADER_MAGIC: &[u8; 4] = b"PK\x03\x04";
const CENTRAL_MAGIC: u32 = 0x0201_4b50;
const LOCAL_MAGIC: u32 = 0x0403_4b50;
const EOCD_MAGIC: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_MAGIC: u32 = 0x0706_4b50;
const ZIP64_EOCD_MAGIC: u32 = 0x0606_4b50;
const EOCD_LEN: usize = 22;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: usize = 30;

/// One stored entry: its name and the absolute byte range of its data.
#[derive(Debug, Clone)]
pub struct ZipEntry {
    pub name: String,
    pub start: usize,
    pub end: usize,
}

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        d.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        d.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        d.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Lists the entries of a stored-only zip held in `data`.
pub fn read_entries(data: &[u8]) -> Result<Vec<ZipEntry>, String> {
    let eocd = find_eocd(data).ok_or("zip: no end-of-central-directory record found")?;
    let short = |what: &str| format!("zip: {what} is truncated");
    let mut n_entries = u16_at(data, eocd + 10).ok_or_else(|| short("end record"))? as u64;
    let mut cd_size = u32_at(data, eocd + 12).ok_or_else(|| short("end record"))? as u64;
    let mut cd_offset = u32_at(data, eocd + 16).ok_or_else(|| short("end record"))? as u64;
    // zip64: the classic record holds 0xFFFF.. sentinels and a locator precedes it.
    if eocd >= 20 && u32_at(data, eocd - 20) == Some(ZIP64_LOCATOR_MAGIC) {
        let at = u64_at(data, eocd - 20 + 8).ok_or_else(|| short("zip64 locator"))?;
        let at = usize::try_from(at).map_err(|_| short("zip64 end record"))?;
        if u32_at(data, at) != Some(ZIP64_EOCD_MAGIC) {
            return Err("zip: zip64 locator points at no zip64 end record".into());
        }
        n_entries = u64_at(data, at + 32).ok_or_else(|| short("zip64 end record"))?;
        cd_size = u64_at(data, at + 40).ok_or_else(|| short("zip64 end record"))?;
        cd_offset = u64_at(data, at + 48).ok_or_else(|| short("zip64 end record"))?;
    }
    let file_len = data.len() as u64;
    if cd_offset
        .checked_add(cd_size)
        .is_none_or(|end| end > file_len)
    {
        return Err(format!(
            "zip: central directory [{cd_offset}, +{cd_size}) runs past the end of the file ({file_len} bytes)"
        ));
    }
    if n_entries
        .checked_mul(CENTRAL_LEN as u64)
        .is_none_or(|n| n > cd_size)
    {
        return Err(format!(
            "zip: {n_entries} entries cannot fit in a {cd_size}-byte central directory"
        ));
    }
    let cd = &data[cd_offset as usize..(cd_offset + cd_size) as usize];
    let mut entries = Vec::with_capacity((n_entries as usize).min(1 << 16));
    let mut pos = 0usize;
    for i in 0..n_entries {
        let bad = |what: &str| format!("zip: central directory entry #{i}: {what}");
        if u32_at(cd, pos) != Some(CENTRAL_MAGIC) {
            return Err(bad("bad signature"));
        }
        let flags = u16_at(cd, pos + 8).ok_or_else(|| bad("truncated"))?;
        let method = u16_at(cd, pos + 10).ok_or_else(|| bad("truncated"))?;
        let mut comp_size = u32_at(cd, pos + 20).ok_or_else(|| bad("truncated"))? as u64;
        let mut size = u32_at(cd, pos + 24).ok_or_else(|| bad("truncated"))? as u64;
        let name_len = u16_at(cd, pos + 28).ok_or_else(|| bad("truncated"))? as usize;
        let extra_len = u16_at(cd, pos + 30).ok_or_else(|| bad("truncated"))? as usize;
        let comment_len = u16_at(cd, pos + 32).ok_or_else(|| bad("truncated"))? as usize;
        let mut local = u32_at(cd, pos + 42).ok_or_else(|| bad("truncated"))? as u64;
        let name_at = pos + CENTRAL_LEN;
        let name = cd
            .get(name_at..name_at + name_len)
            .ok_or_else(|| bad("name runs past the directory"))?;
        let name = String::from_utf8_lossy(name).into_owned();
        let extra = cd
            .get(name_at + name_len..name_at + name_len + extra_len)
            .ok_or_else(|| bad("extra field runs past the directory"))?;
        // zip64 extended information: 64-bit values for whichever fields hold 0xFFFFFFFF.
        let mut e = 0usize;
        while e + 4 <= extra.len() {
            let id = u16_at(extra, e).unwrap_or(0);
            let len = u16_at(extra, e + 2).unwrap_or(0) as usize;
            if id == 1 {
                let mut f = e + 4;
                for field in [&mut size, &mut comp_size, &mut local] {
                    if *field == 0xFFFF_FFFF {
                        *field = u64_at(extra, f).ok_or_else(|| bad("short zip64 field"))?;
                        f += 8;
                    }
                }
            }
            e += 4 + len;
        }
        if flags & 1 != 0 {
            return Err(format!("zip: entry `{name}` is encrypted"));
        }
        if method != 0 {
            return Err(format!(
                "zip: entry `{name}` is compressed (method {method}); torch.save writes stored entries only"
            ));
        }
        if comp_size != size {
            return Err(format!("zip: stored entry `{name}` has differing sizes"));
        }
        let local = usize::try_from(local).map_err(|_| bad("local header offset overflows"))?;
        if u32_at(data, local) != Some(LOCAL_MAGIC) {
            return Err(format!(
                "zip: entry `{name}`: no local header at byte {local}"
            ));
        }
        let l_name = u16_at(data, local + 26).ok_or_else(|| bad("truncated local header"))?;
        let l_extra = u16_at(data, local + 28).ok_or_else(|| bad("truncated local header"))?;
        let start = local as u64 + LOCAL_LEN as u64 + l_name as u64 + l_extra as u64;
        let end = start
            .checked_add(size)
            .filter(|&end| end <= file_len)
            .ok_or_else(|| {
                format!(
                    "zip: entry `{name}` ({size} bytes at {start}) runs past the end of the file"
                )
            })?;
        entries.push(ZipEntry {
            name,
            start: start as usize,
            end: end as usize,
        });
        pos = name_at + name_len + extra_len + comment_len;
    }
    Ok(entries)
}

/// The end-of-central-directory record is in the last 22 + 65535 bytes (its comment is at most
/// 65535 bytes long); scan backwards for its signature.
fn find_eocd(data: &[u8]) -> Option<usize> {
    if data.len() < EOCD_LEN {
        return None;
    }
    let lowest = data.len().saturating_sub(EOCD_LEN + 0xFFFF);
    (lowest..=data.len() - EOCD_LEN)
        .rev()
        .find(|&at| u32_at(data, at) == Some(EOCD_MAGIC))
}
