//! The raw side of the wasm exports: regions, ownership and the output buffer.
//! Called only by the code `export_game!` generates, and only on wasm32.

#[cfg(target_arch = "wasm32")]
pub mod glue {
    use crate::{Game, GuestRuntime};
    use minotaur_abi::{encode, pack_region, Output, ABI_VERSION};
    use std::cell::RefCell;

    thread_local! {
        // The last result handed to the host; it stays valid until the next
        // call that produces one (info, init, event, snapshot, restore).
        static OUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }

    pub fn abi_version() -> i32 {
        ABI_VERSION as i32
    }

    /// A region of exactly `len` bytes the host writes an input into; the
    /// guest takes it back (and frees it) in the call it is passed to.
    pub fn alloc(len: i32) -> i32 {
        let mut buf = Vec::<u8>::with_capacity(len.max(0) as usize);
        let ptr = buf.as_mut_ptr();
        std::mem::forget(buf);
        ptr as i32
    }

    /// # Safety
    /// `ptr`/`len` must come from one `alloc(len)` not yet freed or taken.
    pub unsafe fn free(ptr: i32, len: i32) {
        drop(unsafe { take_input(ptr, len) });
    }

    /// Take ownership of an input region written by the host.
    ///
    /// # Safety
    /// `ptr`/`len` must come from one `alloc(len)` not yet freed or taken,
    /// with all `len` bytes written.
    pub unsafe fn take_input(ptr: i32, len: i32) -> Vec<u8> {
        let len = len.max(0) as usize;
        // `Vec::with_capacity(n)` allocates exactly `n` for `u8`, so this
        // rebuilds the very allocation `alloc` made.
        unsafe { Vec::from_raw_parts(ptr as usize as *mut u8, len, len) }
    }

    fn publish(bytes: Vec<u8>) -> i64 {
        OUT.with(|out| {
            let mut out = out.borrow_mut();
            *out = bytes;
            pack_region(out.as_ptr() as usize as u32, out.len() as u32) as i64
        })
    }

    pub fn output(out: &Output) -> i64 {
        // Output holds only plain data; encoding cannot fail.
        publish(encode(out).unwrap_or_default())
    }

    pub fn info<G: Game>() -> i64 {
        publish(encode(&G::info()).unwrap_or_default())
    }

    /// Traps if there is no state to give (never initialised) or it cannot be
    /// encoded: the host must not store an empty or partial snapshot.
    pub fn snapshot<G: Game>(rt: &GuestRuntime<G>) -> i64 {
        match rt.snapshot() {
            Ok(bytes) => publish(bytes),
            Err(e) => panic!("cannot take a snapshot: {e}"),
        }
    }
}
