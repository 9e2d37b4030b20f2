//! Where a statement comes from: the code addresses on the stack when it ran, and, only when a
//! finding is reported, the functions of ours they belong to.
//!
//! Why the stack: an N+1 is the same statement issued again and again *from one place*, so the
//! detector groups statements by fingerprint and by the stack they ran on. Looking up the
//! sender's account on one line and the recipient's on the next are two places, not a loop.
//! `#[track_caller]` stops at the first `.await` and a tracing span names a function only where
//! someone remembered `#[instrument]`; but the metric callback runs synchronously inside the
//! query's future, so the stack at that moment holds the poll frames of every `async fn`
//! awaiting it, down to the one that built the query.
//!
//! The walk is cheap because nothing is resolved to a name on the way: each frame contributes
//! its return address to a hash, and the walk stops at the outermost scope's own poll frame
//! (found by stack address, see [`Boundary`]; that frame included, since an optimised build
//! inlines the application's code into it), so the runtime's frames below it, which differ
//! from poll to poll, never split a loop in two. Recursion does not either: an address already
//! seen is not hashed again. Names, files and lines are resolved (with the `backtrace` crate,
//! from the binary's line tables, inlined functions included) only for a stack a finding names.
//! A release build needs that information for the application's own crates: `debug = "limited"`
//! in their profile (line tables alone name an inlined `async fn` `{async_fn#0}`, without its
//! path).

use std::{
    cell::Cell,
    hash::{DefaultHasher, Hash, Hasher},
    sync::Arc,
};

/// The most frames a statement's walk looks at: deeper stacks are cut, never followed further.
const MAX_FRAMES: usize = 128;

thread_local! {
    /// The stack address of the outermost scope boundary being polled on this thread, or 0.
    static OUTERMOST: Cell<usize> = const { Cell::new(0) };
}

/// Marks the poll frame of a scope (or of a task carried into one) as the end of every walk
/// made while it is on the stack, unless an outer one already is. Dropped when the poll ends.
#[derive(Debug)]
pub(crate) struct Boundary {
    previous: usize,
}

impl Boundary {
    /// `marker` is a local of the poll function: frames called from it lie below its address.
    pub(crate) fn enter(marker: &u8) -> Self {
        let address = std::ptr::from_ref(std::hint::black_box(marker)) as usize;
        let previous = OUTERMOST.get();
        if previous == 0 {
            OUTERMOST.set(address);
        }
        Self { previous }
    }
}

impl Drop for Boundary {
    fn drop(&mut self) {
        OUTERMOST.set(self.previous);
    }
}

/// A statement's origin: the return addresses of its frames inside the scope, innermost first,
/// and those of the task that spawned it, if it runs in a carried task.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    /// Equal for two statements issued from the same place by the same path.
    pub(crate) key: u64,
    pub(crate) addresses: Arc<[usize]>,
}

impl Origin {
    /// The stack of the current thread up to the outermost boundary, joined to `outer` (the
    /// origin of the spawning task, when this one was spawned inside a scope).
    pub(crate) fn here(outer: Option<&Origin>) -> Self {
        let boundary = OUTERMOST.get();
        // On the stack, not the heap: this runs for every statement while the detector is on,
        // and the only allocation it needs is the `Arc` it keeps.
        let mut frames = [0usize; MAX_FRAMES];
        let mut walked = 0;
        backtrace::trace(|frame| {
            // The boundary's own frame is walked too, and is the last: in an optimised build
            // the code it polls is often inlined into it, and its return address is then the
            // very line of ours that awaited the statement.
            frames[walked] = frame.ip() as usize;
            walked += 1;
            let inside = boundary == 0 || (frame.sp() as usize) <= boundary;
            inside && walked < MAX_FRAMES
        });
        // Recursion folded: an address already seen is dropped. The stacks are short (tens of
        // frames), where a linear scan beats hashing.
        let mut kept = 0;
        for index in 0..walked {
            let address = frames[index];
            if !frames[..kept].contains(&address) {
                frames[kept] = address;
                kept += 1;
            }
        }
        let own = &frames[..kept];
        let mut hasher = DefaultHasher::new();
        own.hash(&mut hasher);
        let addresses: Arc<[usize]> = match outer {
            Some(outer) => {
                outer.key.hash(&mut hasher);
                own.iter()
                    .copied()
                    .chain(outer.addresses.iter().copied().filter(|a| !own.contains(a)))
                    .collect()
            }
            None => Arc::from(own),
        };
        Self {
            key: hasher.finish(),
            addresses,
        }
    }

    /// The functions of `own_crates` on this stack, innermost first, as `path (file:line)`,
    /// each function once, skipping the frames of `excluded` (this crate).
    pub(crate) fn own_functions(&self, own_crates: &[String], excluded: &str) -> Vec<String> {
        let mut functions: Vec<(String, String)> = Vec::new();
        for &address in self.addresses.iter() {
            // Innermost first: inlined functions come before the one they were inlined into.
            backtrace::resolve(address as *mut std::ffi::c_void, |symbol| {
                let Some(name) = symbol.name() else {
                    return;
                };
                let path = clean_function(&format!("{name:#}"));
                // `<my_app::x::Y as Trait>::f` belongs to the crate of the type.
                let owner = path.trim_start_matches('<');
                let ours = own_crates
                    .iter()
                    .any(|krate| owner.starts_with(&format!("{krate}::")));
                if !ours || owner.starts_with(excluded) {
                    return;
                }
                let location = match (symbol.filename(), symbol.lineno()) {
                    (Some(file), Some(line)) => {
                        format!("{} ({}:{line})", path, shorten(&file.to_string_lossy()))
                    }
                    _ => path.clone(),
                };
                if !functions.iter().any(|(known, _)| *known == path) {
                    functions.push((path, location));
                }
            });
        }
        functions.into_iter().map(|(_, shown)| shown).collect()
    }
}

/// Drops what says nothing to a reader: async closure suffixes and symbol hashes.
fn clean_function(function: &str) -> String {
    let mut path = function.to_owned();
    if let Some((before, hash)) = path.rsplit_once("::h")
        && hash.len() == 16
        && hash.chars().all(|c| c.is_ascii_hexdigit())
    {
        path = before.to_owned();
    }
    while let Some(stripped) = path.strip_suffix("::{{closure}}") {
        path = stripped.to_owned();
    }
    path
}

/// `/work/x/my_app/src/orders.rs` → `my_app/src/orders.rs`: the path from the crate directory.
fn shorten(file: &str) -> String {
    let relative = file
        .find("/src/")
        .or_else(|| file.find("/tests/"))
        .or_else(|| file.find("/examples/"))
        .and_then(|src| file[..src].rfind('/').map(|dir| &file[dir + 1..]))
        .unwrap_or(file);
    relative.trim_start_matches("./").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn async_suffixes_and_hashes_are_removed() {
        assert_eq!(
            clean_function("service::loading::lazy::{{closure}}::{{closure}}"),
            "service::loading::lazy"
        );
        assert_eq!(
            clean_function("service::a::b::h0123456789abcdef"),
            "service::a::b"
        );
    }

    #[test]
    fn files_are_shown_from_the_crate_directory() {
        assert_eq!(
            shorten("/work/wt/service/src/loading.rs"),
            "service/src/loading.rs"
        );
        assert_eq!(
            shorten("/work/wt/lab/tests/observe.rs"),
            "lab/tests/observe.rs"
        );
        assert_eq!(shorten("./src/main.rs"), "src/main.rs");
    }

    // Neither inlined nor a tail call (which would leave no frame of its own to find).
    #[inline(never)]
    fn origin_of_a_helper() -> Origin {
        let origin = Origin::here(None);
        std::hint::black_box(&origin);
        origin
    }

    #[test]
    fn this_test_is_found_as_its_own_call_site() {
        let origin = origin_of_a_helper();
        let functions =
            origin.own_functions(&["sql_observe".to_owned()], "sql_observe::callsite::Origin");
        assert!(
            functions
                .first()
                .is_some_and(|f| f.contains("origin_of_a_helper")),
            "{functions:?}"
        );
        assert!(
            functions
                .iter()
                .any(|f| f.contains("this_test_is_found_as_its_own_call_site")),
            "{functions:?}"
        );
    }

    #[test]
    fn the_same_line_gives_the_same_key_and_another_line_another() {
        let in_a_loop: Vec<u64> = (0..3).map(|_| origin_of_a_helper().key).collect();
        let elsewhere = origin_of_a_helper().key;
        assert!(in_a_loop.windows(2).all(|pair| pair[0] == pair[1]));
        assert_ne!(in_a_loop[0], elsewhere);
    }
}
