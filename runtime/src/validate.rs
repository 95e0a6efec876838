//! Load-time checks of a compiled module against the guest ABI: no imports but
//! the optional `minotaur`.`panic`,
//! every required export with its exact signature. Called by `Runtime::load`.

use minotaur_abi::{exports, imports};
use wasmtime::{ExternType, FuncType, Module, ModuleExport, ValType};

use crate::LoadError;

/// Export locations resolved once per module, so instantiating is a few
/// index lookups instead of string searches.
#[derive(Clone, Copy)]
pub(crate) struct ExportIndices {
    pub(crate) abi_version: ModuleExport,
    pub(crate) alloc: ModuleExport,
    pub(crate) info: ModuleExport,
    pub(crate) init: ModuleExport,
    pub(crate) event: ModuleExport,
    pub(crate) snapshot: ModuleExport,
    pub(crate) restore: ModuleExport,
    pub(crate) memory: ModuleExport,
}

/// The wasm signature the ABI requires of each function export.
fn expected(name: &str) -> (&'static [ValType], &'static [ValType]) {
    const I32: ValType = ValType::I32;
    const I64: ValType = ValType::I64;
    match name {
        exports::ABI_VERSION => (&[], &[I32]),
        exports::ALLOC => (&[I32], &[I32]),
        exports::FREE => (&[I32, I32], &[]),
        exports::INFO | exports::SNAPSHOT => (&[], &[I64]),
        exports::INIT | exports::EVENT | exports::RESTORE => (&[I32, I32], &[I64]),
        other => unreachable!("`{other}` is not in REQUIRED_FUNCS"),
    }
}

/// Minotaur links one function, `minotaur`.`panic` (optional); any other
/// import would fail at instantiation, so say why at load instead.
pub(crate) fn check_imports(module: &Module) -> Result<(), LoadError> {
    let imports: Vec<String> = module
        .imports()
        .filter(|i| !is_panic_import(i.module(), i.name(), &i.ty()))
        .map(|i| format!("`{}`.`{}` ({})", i.module(), i.name(), describe(&i.ty())))
        .collect();
    if imports.is_empty() {
        return Ok(());
    }
    Err(LoadError::ForbiddenImport(format!(
        "module imports {}; Minotaur provides no imports (no WASI, clock, randomness, \
         filesystem or network) but `{}`.`{}` (i32, i32) -> ()",
        imports.join(", "),
        imports::MODULE,
        imports::PANIC
    )))
}

/// The panic import, with exactly its ABI signature.
fn is_panic_import(module: &str, name: &str, ty: &ExternType) -> bool {
    let ExternType::Func(ft) = ty else {
        return false;
    };
    module == imports::MODULE
        && name == imports::PANIC
        && ft.results().len() == 0
        && ft.params().len() == 2
        && ft.params().all(|p| ValType::eq(&p, &ValType::I32))
}

/// An import's kind, and a function's signature (so a wrong panic import says why).
fn describe(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(ft) => format!("function {}", render(ft.params(), ft.results())),
        other => kind(other).to_owned(),
    }
}

pub(crate) fn check_exports(module: &Module) -> Result<ExportIndices, LoadError> {
    for name in exports::REQUIRED_FUNCS {
        match module.get_export(name) {
            None => return Err(missing(name)),
            Some(ExternType::Func(ft)) => check_signature(name, &ft)?,
            Some(other) => {
                return Err(LoadError::MissingExport(format!(
                    "export `{name}` is a {}, expected a function {}",
                    kind(&other),
                    render(expected(name).0.iter(), expected(name).1.iter())
                )))
            }
        }
    }
    match module.get_export(exports::MEMORY) {
        Some(ExternType::Memory(_)) => {}
        None => return Err(missing(exports::MEMORY)),
        Some(other) => {
            return Err(LoadError::MissingExport(format!(
                "export `{}` is a {}, expected a memory",
                exports::MEMORY,
                kind(&other)
            )))
        }
    }
    let index = |name: &str| module.get_export_index(name).ok_or_else(|| missing(name));
    Ok(ExportIndices {
        abi_version: index(exports::ABI_VERSION)?,
        alloc: index(exports::ALLOC)?,
        info: index(exports::INFO)?,
        init: index(exports::INIT)?,
        event: index(exports::EVENT)?,
        snapshot: index(exports::SNAPSHOT)?,
        restore: index(exports::RESTORE)?,
        memory: index(exports::MEMORY)?,
    })
}

fn check_signature(name: &str, ft: &FuncType) -> Result<(), LoadError> {
    let (params, results) = expected(name);
    let same = |got: &mut dyn ExactSizeIterator<Item = ValType>, want: &[ValType]| {
        got.len() == want.len() && got.zip(want).all(|(g, w)| ValType::eq(&g, w))
    };
    if same(&mut ft.params(), params) && same(&mut ft.results(), results) {
        return Ok(());
    }
    Err(LoadError::MissingExport(format!(
        "export `{name}` has type {}, expected {}",
        render(ft.params(), ft.results()),
        render(params.iter(), results.iter())
    )))
}

fn missing(name: &str) -> LoadError {
    LoadError::MissingExport(format!("missing export `{name}`"))
}

/// `(i32, i32) -> i64`, the way the ABI docs write signatures.
fn render(
    params: impl Iterator<Item = impl std::fmt::Display>,
    results: impl Iterator<Item = impl std::fmt::Display>,
) -> String {
    let params: Vec<String> = params.map(|t| t.to_string()).collect();
    let results: Vec<String> = results.map(|t| t.to_string()).collect();
    let results = match results.as_slice() {
        [one] => one.clone(),
        many => format!("({})", many.join(", ")),
    };
    format!("({}) -> {results}", params.join(", "))
}

fn kind(ty: &ExternType) -> &'static str {
    match ty {
        ExternType::Func(_) => "function",
        ExternType::Global(_) => "global",
        ExternType::Table(_) => "table",
        ExternType::Memory(_) => "memory",
        ExternType::Tag(_) => "tag",
    }
}
