//! Highlighting of errors and warnings on stderr: on a terminal unless `NO_COLOR` is set, or
//! as `--color always|never` says.

use std::io::IsTerminal;

/// `--color`: when errors and warnings on stderr are coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// When stderr is a terminal, `NO_COLOR` is unset or empty and `TERM` is not `dumb`.
    #[default]
    Auto,
    Always,
    Never,
}

/// How this process writes its messages on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    color: bool,
}

const RED_BOLD: &str = "\x1b[1;31m";
const YELLOW_BOLD: &str = "\x1b[1;33m";
const RESET: &str = "\x1b[0m";

impl Style {
    /// The style for stderr under `choice`, given this process's environment.
    pub fn for_stderr(choice: ColorChoice) -> Style {
        let env_allows = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && std::env::var_os("TERM").is_none_or(|t| t != "dumb");
        Style::decide(choice, env_allows, std::io::stderr().is_terminal())
    }

    /// `--color` wins over the environment; `auto` needs both a terminal and the environment.
    fn decide(choice: ColorChoice, env_allows: bool, terminal: bool) -> Style {
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => env_allows && terminal,
        };
        Style { color }
    }

    /// Whether escape sequences go to stderr (also for the `-v` log lines).
    pub fn colours(&self) -> bool {
        self.color
    }

    /// `ferry: error: MESSAGE`, "error:" in bold red when colouring.
    pub fn error(&self, message: impl std::fmt::Display) -> String {
        self.label("error", RED_BOLD, message)
    }

    /// `ferry: warning: MESSAGE`, "warning:" in bold yellow when colouring.
    pub fn warning(&self, message: impl std::fmt::Display) -> String {
        self.label("warning", YELLOW_BOLD, message)
    }

    fn label(&self, label: &str, colour: &str, message: impl std::fmt::Display) -> String {
        match self.color {
            true => format!("ferry: {colour}{label}:{RESET} {message}"),
            false => format!("ferry: {label}: {message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_colours_only_on_a_terminal_the_environment_allows() {
        let auto = |env, tty| Style::decide(ColorChoice::Auto, env, tty).error("x");
        assert_eq!(auto(true, true), "ferry: \x1b[1;31merror:\x1b[0m x");
        assert_eq!(auto(false, true), "ferry: error: x");
        assert_eq!(auto(true, false), "ferry: error: x");
    }

    #[test]
    fn the_option_wins_over_the_environment() {
        let always = Style::decide(ColorChoice::Always, false, false);
        assert_eq!(always.warning("w"), "ferry: \x1b[1;33mwarning:\x1b[0m w");
        let never = Style::decide(ColorChoice::Never, true, true);
        assert_eq!(never.warning("w"), "ferry: warning: w");
    }
}
