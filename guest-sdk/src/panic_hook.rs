//! The panic hook every SDK-built module installs (wasm32 only): before a
//! panic aborts (`panic = "abort"`, a trap), hand its message and location to
//! the host through the ABI's one import, `minotaur`.`panic(ptr, len)`, so
//! operators see `chaos: asked to panic at src/lib.rs:70:29` instead of
//! `<wasm function 935>`. Installed by the generated exports on every entry
//! (once; later entries cost one check).
//!
//! Invariants: the hook allocates nothing (it may run because memory ran out):
//! it formats into a fixed buffer of `MAX_PANIC_BYTES` on the stack, cut at a
//! character boundary.

use std::fmt::Write;
use std::sync::Once;

use minotaur_abi::imports::MAX_PANIC_BYTES;

#[link(wasm_import_module = "minotaur")]
unsafe extern "C" {
    /// `minotaur_abi::imports::PANIC`.
    #[link_name = "panic"]
    fn host_panic(ptr: i32, len: i32);
}

static INSTALL: Once = Once::new();

/// Make sure the hook is installed; called at the top of every export.
pub fn install() {
    INSTALL.call_once(|| std::panic::set_hook(Box::new(report)));
}

fn report(info: &std::panic::PanicHookInfo<'_>) {
    let mut buf = Fixed::new();
    let payload = info
        .payload_as_str()
        .unwrap_or("(a panic with a non-text payload)");
    let _ = match info.location() {
        Some(at) => write!(
            buf,
            "{payload} at {}:{}:{}",
            at.file(),
            at.line(),
            at.column()
        ),
        None => write!(buf, "{payload}"),
    };
    let text = buf.as_bytes();
    // SAFETY: the host only reads `len` bytes at `ptr`, during this call.
    unsafe { host_panic(text.as_ptr() as usize as i32, text.len() as i32) };
}

/// A stack buffer that keeps what fits and drops the rest, at a char boundary.
struct Fixed {
    bytes: [u8; MAX_PANIC_BYTES],
    len: usize,
}

impl Fixed {
    fn new() -> Self {
        Fixed {
            bytes: [0; MAX_PANIC_BYTES],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Write for Fixed {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = MAX_PANIC_BYTES - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}
