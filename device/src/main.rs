fn main() -> std::process::ExitCode {
    avsc_device::cli::main()
}
