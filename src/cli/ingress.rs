//! `adit tunnel ingress validate/rule`.

use std::process::ExitCode;

use super::IngressCommand;

pub fn run(cmd: IngressCommand) -> anyhow::Result<ExitCode> {
    let _ = cmd;
    todo!()
}
