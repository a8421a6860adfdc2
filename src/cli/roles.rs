//! The long-running roles: edge, connector, quick tunnel, origin.

use std::process::ExitCode;

use super::{EdgeArgs, OriginArgs, QuickArgs, RunArgs};

pub fn edge(args: EdgeArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    todo!()
}

pub fn connector(args: RunArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    todo!()
}

pub fn quick(args: QuickArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    todo!()
}

pub fn origin(args: OriginArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    todo!()
}
