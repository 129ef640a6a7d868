fn main() {
    // The `sol!` bindings read the committed artifacts at compile time: rebuild when they change.
    println!("cargo:rerun-if-changed=artifacts");
}
