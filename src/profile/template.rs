//! Rendering the profile's templates (answer files, kernel arguments, text to send) with
//! minijinja. Undefined variables are errors, found before anything runs.

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, Value};
use serde::Serialize;

/// A template that failed to render: where, and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message}")]
pub struct TemplateError {
    pub location: String,
    pub message: String,
}

/// Renders templates against one context (the variables of a plan).
pub struct Renderer {
    env: Environment<'static>,
    context: Value,
}

impl Renderer {
    pub fn new(context: &impl Serialize) -> Renderer {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Answer files are line-oriented: a final newline is part of the file.
        let syntax = SyntaxConfig::builder().keep_trailing_newline(true).build();
        env.set_syntax(syntax.expect("default delimiters are valid"));
        Renderer {
            env,
            context: Value::from(Serde(context)),
        }
    }

    /// Renders `text`; `location` (e.g. `profile.toml:12:10` or `answers.j2`) names it in errors.
    pub fn render(&self, location: &str, text: &str) -> Result<String, TemplateError> {
        let fail = |e: minijinja::Error| self.error(location, text, e);
        let template = self.env.template_from_str(text).map_err(fail)?;
        template.render(&self.context).map_err(fail)
    }

    fn error(&self, location: &str, text: &str, e: minijinja::Error) -> TemplateError {
        let mut message = match e.detail() {
            Some(detail) => format!("{}: {detail}", e.kind()),
            None => e.kind().to_string(),
        };
        if e.kind() == minijinja::ErrorKind::UndefinedError {
            let missing = self.missing_variables(text);
            if !missing.is_empty() {
                let how = if missing.iter().any(|m| m == "`vars.ssh_key`") {
                    "with --ssh-key FILE, in [vars], with --var NAME=VALUE"
                } else {
                    "in [vars], with --var NAME=VALUE"
                };
                message = format!(
                    "undefined variable {} (set it {how}, or use `| default(...)`)",
                    missing.join(", ")
                );
            }
        }
        let location = match e.line() {
            Some(line) if line > 1 => format!("{location} (template line {line})"),
            _ => location.to_string(),
        };
        TemplateError { location, message }
    }

    /// The dotted variable paths the template uses that the context lacks.
    fn missing_variables(&self, text: &str) -> Vec<String> {
        let Ok(template) = self.env.template_from_str(text) else {
            return Vec::new();
        };
        let mut missing: Vec<String> = template
            .undeclared_variables(true)
            .into_iter()
            .filter(|path| !self.has_path(path) && !guarded(text, path))
            .map(|path| format!("`{path}`"))
            .collect();
        missing.sort();
        missing
    }

    fn has_path(&self, path: &str) -> bool {
        let mut value = self.context.clone();
        for key in path.split('.') {
            match value.get_attr(key) {
                Ok(v) if !v.is_undefined() => value = v,
                _ => return false,
            }
        }
        true
    }
}

/// Whether the template only uses `path` behind `| default(...)` or an `is defined` test,
/// where being undefined is fine.
fn guarded(text: &str, path: &str) -> bool {
    let path = regex::escape(path);
    let uses = regex::Regex::new(&format!(
        r"\b{path}\b(\s*(\|\s*default\b|is\s+(not\s+)?defined\b))?"
    ))
    .expect("valid");
    uses.captures_iter(text).all(|c| c.get(1).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn renderer() -> Renderer {
        Renderer::new(&json!({"vars": {"hostname": "box"}, "disk": {"guest_path": "/dev/vda"}}))
    }

    #[test]
    fn renders_variables_and_keeps_trailing_newline() {
        let out = renderer().render(
            "t",
            "DISK={{ disk.guest_path }}\nHOST={{ vars.hostname }}\n",
        );
        assert_eq!(out.unwrap(), "DISK=/dev/vda\nHOST=box\n");
    }

    #[test]
    fn default_filter_covers_missing_variables() {
        let out = renderer()
            .render("t", "{{ vars.efi | default(\"yes\") }}")
            .unwrap();
        assert_eq!(out, "yes");
    }

    #[test]
    fn missing_variable_is_named() {
        let e = renderer()
            .render("answers.j2", "A\nB={{ vars.hostnam }}\n")
            .unwrap_err();
        assert_eq!(e.location, "answers.j2 (template line 2)");
        assert!(
            e.message.starts_with("undefined variable `vars.hostnam`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn only_unguarded_variables_are_named() {
        let e = renderer().render(
            "t",
            "{{ vars.a | default('x') }}{% if vars.b is defined %}{% endif %}{{ vars.c }}",
        );
        assert!(
            e.unwrap_err()
                .message
                .starts_with("undefined variable `vars.c` (")
        );
    }

    #[test]
    fn syntax_error_is_reported() {
        let e = renderer()
            .render("p.toml:3:10", "{{ vars.hostname ")
            .unwrap_err();
        assert_eq!(e.location, "p.toml:3:10");
        assert!(e.message.contains("syntax error"), "{}", e.message);
    }
}
