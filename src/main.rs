fn main() {
    std::process::exit(kprov::cli::main());
}
