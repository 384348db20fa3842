//! No C runtime start files: the binary's entry point is our own `_start`,
//! so neither std's runtime nor C's `main` machinery is linked in. libc is
//! linked for `memcpy`, `memset` and `memcmp` only, which `core` calls and
//! which are not std.

fn main() {
    println!("cargo:rustc-link-arg-bins=-nostartfiles");
    println!("cargo:rustc-link-arg-bins=-lc");
}
