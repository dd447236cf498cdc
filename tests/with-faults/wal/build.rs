//! Compiles this package's sources with svault's test hooks (`cfg(svault_faults)`).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(svault_faults)");
    println!("cargo::rustc-cfg=svault_faults");
}
