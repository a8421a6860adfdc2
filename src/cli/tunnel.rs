//! `adit tunnel create/route/list/info/delete`: clients of the admin API.

use std::process::ExitCode;

use super::TunnelCommand;

pub fn run(cmd: TunnelCommand) -> anyhow::Result<ExitCode> {
    let _ = cmd;
    todo!()
}
