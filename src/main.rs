use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Before any worker touches its heap; failing only costs memory (see the function).
    let _ = adit::runtime::disable_huge_pages();
    let cli = adit::cli::Cli::parse();
    match adit::cli::run(cli) {
        Ok(code) => code,
        // Output piped into a reader that stopped (`| head`) is not an error worth a line.
        Err(err) if adit::cli::is_broken_pipe(&err) => std::process::ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {}", adit::cli::report(&err));
            std::process::ExitCode::FAILURE
        }
    }
}
