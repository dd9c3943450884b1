//! The `dattavani-asr` command line. Exit codes (README "Exit codes"): 0 success; 1 some input
//! files failed; 2 usage error; 3 model error; 4 device error; 5 internal error.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Mesa's device-select Vulkan layer prints "error: XDG_RUNTIME_DIR is invalid" on every
    // start where that variable is unset (containers, CI), which reads like our own error line.
    // The layer only reorders adapters, and we choose adapters by type ourselves.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none()
        && std::env::var_os("NODEVICE_SELECT").is_none()
    {
        // SAFETY: at the top of main, before any thread exists.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
    let args = cli::Cli::parse_from(cli::rewrite_args(std::env::args_os()));
    match cli::run(args) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
