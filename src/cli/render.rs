//! `secretstore render`: expand the references of manifests into pod wiring.

use super::args::RenderArgs;
use super::exit;
use super::{read_inputs, usage_error};
use crate::render::{self, Input, Options};
use crate::sysio;
use std::io::{self, Write};
use std::process::ExitCode;

pub fn run(args: RenderArgs) -> ExitCode {
    let settings = match args.config.settings() {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let inputs = match read_inputs(&args.files) {
        Ok(i) => i,
        Err(e) => return usage_error(&e),
    };
    let inputs: &'static [Input] = sysio::keep_until_exit(inputs);
    let options = Options {
        allow_empty: args.allow_empty,
    };
    match render::render(inputs, &settings, &options) {
        Ok(rendered) => {
            for w in &rendered.warnings {
                eprintln!("{w}");
            }
            let rendered = sysio::keep_until_exit(rendered);
            if let Err(e) = sysio::write_stdout(rendered.pieces(), rendered.output_len()) {
                if e.kind() == io::ErrorKind::BrokenPipe {
                    return ExitCode::from(exit::OK);
                }
                return usage_error(&format!("cannot write the output: {e}"));
            }
            ExitCode::from(exit::OK)
        }
        Err(err) => {
            let errors = err
                .diagnostics
                .iter()
                .filter(|d| d.severity == crate::diag::Severity::Error)
                .count();
            for d in &err.diagnostics {
                eprintln!("{d}");
            }
            eprintln!(
                "secretstore: render refused the input ({errors} error{}); nothing was written",
                if errors == 1 { "" } else { "s" }
            );
            if let Some(krm) = err.krm_output {
                let _ = io::stdout().write_all(&krm);
            }
            ExitCode::from(exit::FINDINGS)
        }
    }
}
