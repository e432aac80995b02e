//! What the inventory says about the dumping machine: kernel release, XSAVE features and size, tool version.

use std::time::{SystemTime, UNIX_EPOCH};

use dormant_image::records::Pid;
use dormant_image::InventoryInfo;

use crate::error::{DumpError, Result};
use crate::task::regs;

/// XCR0: the XSAVE features the OS enabled (what a restored XSAVE area may contain).
pub use dormant_sys::cpu::xcr0;

/// The inventory facts for an image whose root task is `root`.
pub fn info(root: Pid) -> Result<InventoryInfo> {
    let uts = nix::sys::utsname::uname().map_err(|e| DumpError::Host {
        what: "uname",
        source: e.into(),
    })?;
    let created_unix_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(InventoryInfo {
        arch: std::env::consts::ARCH.to_string(),
        kernel_release: uts.release().to_string_lossy().into_owned(),
        xsave_features: xcr0(),
        xsave_size: regs::xsave_size() as u32,
        tool_version: format!("dormant-engine {}", env!("CARGO_PKG_VERSION")),
        created_unix_secs,
        root_pid: root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xcr0_has_x87_and_sse() {
        assert_eq!(xcr0() & 0b11, 0b11);
    }

    #[test]
    fn info_fields() {
        let i = info(Pid(1)).unwrap();
        assert_eq!(i.arch, "x86_64");
        assert!(!i.kernel_release.is_empty());
        assert!(i.xsave_size >= 512);
    }
}
