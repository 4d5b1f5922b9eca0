//! Running helper programs and turning their failures into [`Error::CommandFailed`].

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::error::{Error, Result};

/// `program arg arg ...`, for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        let arg = arg.to_string_lossy();
        if arg.is_empty() || arg.contains([' ', '\'', '"']) {
            s.push_str(&format!("{arg:?}"));
        } else {
            s.push_str(&arg);
        }
    }
    s
}

/// Runs `cmd` to completion (stdin: `input` or nothing), failing unless it exits 0.
pub(crate) fn run(cmd: &mut Command, input: Option<&[u8]>) -> Result<Output> {
    let output = run_unchecked(cmd, input)?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(failed(cmd, &output))
    }
}

/// Runs `cmd` to completion and returns its output whatever its exit status.
pub(crate) fn run_unchecked(cmd: &mut Command, input: Option<&[u8]>) -> Result<Output> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        program: describe(cmd),
        source,
    })?;
    let output = std::thread::scope(|scope| {
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            // A separate thread, so a large input cannot deadlock against a full stdout pipe.
            scope.spawn(move || {
                let _ = stdin.write_all(input);
            });
        }
        child.wait_with_output()
    });
    output.map_err(|source| Error::Spawn {
        program: describe(cmd),
        source,
    })
}

pub(crate) fn failed(cmd: &Command, output: &Output) -> Error {
    Error::CommandFailed {
        command: describe(cmd),
        status: output.status.to_string(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
