//! Raw `bpf(2)` map creation for tests that must stand in for an older
//! agent: a map of an earlier layout, created and pinned the way that agent's
//! loader did, without an eBPF object of that version at hand.

use std::ffi::CString;
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use anyhow::{Context as _, Result, bail};

/// `BPF_MAP_TYPE_HASH`.
pub const BPF_MAP_TYPE_HASH: u32 = 1;
/// `BPF_MAP_TYPE_LRU_HASH`.
pub const BPF_MAP_TYPE_LRU_HASH: u32 = 9;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_OBJ_PIN: libc::c_long = 6;

/// `union bpf_attr`, as large as any command here needs (the kernel
/// accepts a larger, zero-filled tail).
#[repr(C, align(8))]
struct Attr([u8; 128]);

/// The size passed with every command.
const ATTR_SIZE: libc::c_uint = 128;

impl Attr {
    fn new() -> Self {
        Attr([0; 128])
    }
    fn u32_at(&mut self, offset: usize, value: u32) -> &mut Self {
        self.0[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
        self
    }
    fn u64_at(&mut self, offset: usize, value: u64) -> &mut Self {
        self.0[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
        self
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, writable bpf_attr of the size passed; the
    // pointers inside it (set by the callers) outlive the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), ATTR_SIZE) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A map created with `BPF_MAP_CREATE`, held by its descriptor.
#[derive(Debug)]
pub struct RawMap {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
}

impl RawMap {
    /// Creates a map (`map_type`, sizes, capacity, kernel name `name`) and
    /// pins it at `pin`.
    pub fn create_pinned(
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        name: &str,
        pin: &Path,
    ) -> Result<Self> {
        let mut attr = Attr::new();
        attr.u32_at(0, map_type)
            .u32_at(4, key_size)
            .u32_at(8, value_size)
            .u32_at(12, max_entries);
        // map_name (offset 28, 16 bytes, NUL-terminated).
        let name = name.as_bytes();
        let len = name.len().min(15);
        attr.0[28..28 + len].copy_from_slice(&name[..len]);
        let fd = bpf(BPF_MAP_CREATE, &mut attr).context("BPF_MAP_CREATE")?;
        let fd = i32::try_from(fd).context("map fd")?;
        // SAFETY: BPF_MAP_CREATE returned a new descriptor we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let map = RawMap {
            fd,
            key_size: key_size as usize,
            value_size: value_size as usize,
        };
        let path = CString::new(pin.as_os_str().as_bytes()).context("pin path")?;
        let mut attr = Attr::new();
        attr.u64_at(0, path.as_ptr() as u64).u32_at(8, raw(&map.fd));
        bpf(BPF_OBJ_PIN, &mut attr).with_context(|| format!("BPF_OBJ_PIN {}", pin.display()))?;
        Ok(map)
    }

    /// Inserts or replaces one entry.
    pub fn update(&self, key: &[u8], value: &[u8]) -> Result<()> {
        if key.len() != self.key_size || value.len() != self.value_size {
            bail!(
                "entry of {}+{} bytes for a map of {}+{}",
                key.len(),
                value.len(),
                self.key_size,
                self.value_size
            );
        }
        let mut attr = Attr::new();
        attr.u32_at(0, raw(&self.fd))
            .u64_at(8, key.as_ptr() as u64)
            .u64_at(16, value.as_ptr() as u64);
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).context("BPF_MAP_UPDATE_ELEM")?;
        Ok(())
    }
}

fn raw(fd: &OwnedFd) -> u32 {
    use std::os::fd::AsRawFd as _;
    u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX)
}
