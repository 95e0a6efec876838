//! The guest's one optional import, `minotaur`.`panic(ptr, len)`: a guest about
//! to trap because it panicked hands its panic message to the host, which keeps
//! it in the store and attaches it to the trap that ends the call
//! (`GuestError::Panicked`). Linked once by `Runtime::new`; read by `instance`.
//!
//! Invariants: the message is untrusted bytes. At most
//! [`MAX_PANIC_BYTES`] are read (bounds-checked, never trapping); they are
//! decoded as lossy UTF-8 and every control or bidi-override character is
//! escaped, so a message can neither forge log lines nor reorder a terminal's
//! text. The import itself never fails: a bad region just gives a placeholder.

use minotaur_abi::imports::{MAX_PANIC_BYTES, MODULE, PANIC};
use wasmtime::{Caller, Extern, Linker};

use crate::instance::StoreData;

/// Define `minotaur.panic` on `linker`.
pub(crate) fn link(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        PANIC,
        |mut caller: Caller<'_, StoreData>, ptr: i32, len: i32| {
            let message = read_message(&mut caller, ptr, len);
            caller.data_mut().set_panic(message);
        },
    )?;
    Ok(())
}

/// The message at `ptr`/`len` in the caller's memory, cut and cleaned.
fn read_message(caller: &mut Caller<'_, StoreData>, ptr: i32, len: i32) -> String {
    let Some(Extern::Memory(memory)) = caller.get_export(minotaur_abi::exports::MEMORY) else {
        return "(panic message unreadable: no memory export)".into();
    };
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    let data = memory.data(&caller);
    let take = len.min(MAX_PANIC_BYTES);
    match ptr.checked_add(take).and_then(|end| data.get(ptr..end)) {
        Some(bytes) => clean(bytes, len > take),
        None => format!("(panic message unreadable: region {ptr:#x}+{len} is outside memory)"),
    }
}

/// Untrusted bytes → one line of printable text: lossy UTF-8, control and
/// bidi-override characters escaped (`\n`, `\u{1b}`), `…` if `cut`.
pub(crate) fn clean(bytes: &[u8], cut: bool) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        if c.is_control() || is_bidi_control(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if cut {
        out.push('…');
    }
    out
}

/// Characters that reorder displayed text (the "Trojan Source" set).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn messages_become_one_printable_line() {
        assert_eq!(clean(b"plain text", false), "plain text");
        assert_eq!(
            clean(b"two\nlines\r\x1b[31mred", false),
            "two\\nlines\\r\\u{1b}[31mred"
        );
        assert_eq!(clean(b"bad \xff utf8", false), "bad \u{FFFD} utf8");
        assert_eq!(
            clean("a\u{202E}b".as_bytes(), false),
            "a\\u{202e}b",
            "a bidi override is escaped"
        );
        assert_eq!(clean("é ✓".as_bytes(), true), "é ✓…");
    }
}
