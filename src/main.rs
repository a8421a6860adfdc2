use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = adit::cli::Cli::parse();
    match adit::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", adit::cli::report(&err));
            std::process::ExitCode::FAILURE
        }
    }
}
