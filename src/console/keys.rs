//! Typed keys: Packer's boot-command syntax turned into key presses and releases.
//!
//! Text is typed as it is written, on a US keyboard (capitals and symbols press Shift).
//! `<name>` is a special key, with Packer's names and, like Packer, in any case:
//! `<enter>`/`<return>`, `<esc>`, `<tab>`, `<bs>`, `<del>`, `<spacebar>`, `<insert>`, `<home>`,
//! `<end>`, `<pageUp>`, `<pageDown>`, `<up>`, `<down>`, `<left>`, `<right>`, `<f1>`…`<f12>`,
//! `<menu>`, and the modifiers `<leftAlt>`, `<rightAlt>`, `<leftCtrl>`, `<rightCtrl>`,
//! `<leftShift>`, `<rightShift>`, `<leftSuper>`, `<rightSuper>` — pressed and released, or held
//! with an `On` suffix (`<leftCtrlOn>c<leftCtrlOff>` is Ctrl-C). `<wait>` pauses a second,
//! `<wait5>` five seconds, `<wait1m30s>` or `<wait500ms>` that long. A line feed in the text
//! is Enter.
//!
//! Unlike Packer, an unknown `<name>` is an error rather than typed as it stands, so a typo
//! such as `<entr>` is caught when the profile is read; a `<` that does not start a name (`a < b`,
//! `<<`) is typed.

use std::fmt;
use std::time::Duration;

/// One thing to do on the keyboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
    /// Press (`down`) or release a key, by QEMU key code name (QMP `QKeyCode`).
    Key { qcode: &'static str, down: bool },
    /// Pause before the next key.
    Wait(Duration),
}

/// A key text that cannot be typed. Displays as one line naming the culprit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    #[error(
        "unknown key <{name}> at character {at}; special keys are <enter>, <esc>, <tab>, <bs>, <del>, <spacebar>, <up>, <down>, <left>, <right>, <f1>…<f12>, <home>, <end>, <pageUp>, <pageDown>, <insert>, <leftCtrlOn>…, <wait>, <wait5>, <wait1m30s>"
    )]
    UnknownKey { name: String, at: usize },
    #[error(
        "bad pause <{text}> at character {at}: write <wait>, <wait5> (seconds) or a duration such as <wait1m30s> or <wait500ms>"
    )]
    BadWait { text: String, at: usize },
    #[error(
        "{ch:?} at character {at} is not on a US keyboard; type it with its special key or leave it out"
    )]
    NotTypable { ch: char, at: usize },
}

impl KeysError {
    /// A key text is part of a profile: a bad one is a usage error.
    pub fn exit_code(&self) -> i32 {
        2
    }
}

/// A parsed key text, ready to be typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The text as written, for the transcript and progress lines.
    pub source: String,
    pub actions: Vec<KeyAction>,
}

impl fmt::Display for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Modifier keys: their Packer names (without `left`/`right`) and QEMU key codes.
const MODIFIERS: &[(&str, &str, &str)] = &[
    ("alt", "alt", "alt_r"),
    ("ctrl", "ctrl", "ctrl_r"),
    ("shift", "shift", "shift_r"),
    ("super", "meta_l", "meta_r"),
];

/// Packer's special keys (lower case) and their QEMU key codes.
const SPECIAL: &[(&str, &str)] = &[
    ("bs", "backspace"),
    ("del", "delete"),
    ("enter", "ret"),
    ("return", "ret"),
    ("esc", "esc"),
    ("tab", "tab"),
    ("spacebar", "spc"),
    ("insert", "insert"),
    ("home", "home"),
    ("end", "end"),
    ("pageup", "pgup"),
    ("pagedown", "pgdn"),
    ("up", "up"),
    ("down", "down"),
    ("left", "left"),
    ("right", "right"),
    ("menu", "menu"),
    ("f1", "f1"),
    ("f2", "f2"),
    ("f3", "f3"),
    ("f4", "f4"),
    ("f5", "f5"),
    ("f6", "f6"),
    ("f7", "f7"),
    ("f8", "f8"),
    ("f9", "f9"),
    ("f10", "f10"),
    ("f11", "f11"),
    ("f12", "f12"),
];

/// What a special key name stands for.
enum Special {
    Press(&'static str),
    Hold(&'static str, bool),
    Wait(Duration),
}

impl Keys {
    /// Parses a key text (see the module documentation).
    pub fn parse(text: &str) -> Result<Keys, KeysError> {
        let mut actions = Vec::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, ch)) = chars.next() {
            if ch == '<'
                && let Some(end) = name_end(&text[at + 1..])
            {
                let name = &text[at + 1..at + 1 + end];
                match special(name, at)? {
                    Special::Press(q) => press(&mut actions, q, false),
                    Special::Hold(q, down) => actions.push(KeyAction::Key { qcode: q, down }),
                    Special::Wait(d) => actions.push(KeyAction::Wait(d)),
                }
                // Skip the name and the closing `>`.
                while chars.next_if(|&(i, _)| i <= at + 1 + end).is_some() {}
                continue;
            }
            let (qcode, shift) = typed(ch).ok_or(KeysError::NotTypable { ch, at })?;
            press(&mut actions, qcode, shift);
        }
        Ok(Keys {
            source: text.to_string(),
            actions,
        })
    }
}

/// With `rest` just after a `<`: the length of a `name>` (letters and digits) it starts with.
fn name_end(rest: &str) -> Option<usize> {
    let end = rest.find(|c: char| !c.is_ascii_alphanumeric())?;
    (end > 0 && rest[end..].starts_with('>')).then_some(end)
}

fn special(name: &str, at: usize) -> Result<Special, KeysError> {
    let lower = name.to_ascii_lowercase();
    if let Some(wait) = lower.strip_prefix("wait") {
        return wait_duration(wait)
            .map(Special::Wait)
            .ok_or_else(|| KeysError::BadWait {
                text: name.to_string(),
                at,
            });
    }
    if let Some(&(_, q)) = SPECIAL.iter().find(|(n, _)| *n == lower) {
        return Ok(Special::Press(q));
    }
    let (side, rest) = if let Some(r) = lower.strip_prefix("left") {
        (0, r)
    } else if let Some(r) = lower.strip_prefix("right") {
        (1, r)
    } else {
        return Err(unknown(name, at));
    };
    let (modifier, hold) = if let Some(m) = rest.strip_suffix("on") {
        (m, Some(true))
    } else if let Some(m) = rest.strip_suffix("off") {
        (m, Some(false))
    } else {
        (rest, None)
    };
    let &(_, l, r) = MODIFIERS
        .iter()
        .find(|(n, _, _)| *n == modifier)
        .ok_or_else(|| unknown(name, at))?;
    let qcode = if side == 0 { l } else { r };
    Ok(match hold {
        Some(down) => Special::Hold(qcode, down),
        None => Special::Press(qcode),
    })
}

fn unknown(name: &str, at: usize) -> KeysError {
    KeysError::UnknownKey {
        name: name.to_string(),
        at,
    }
}

/// `""` is a second, digits are seconds, else a duration (`1m30s`, `500ms`).
fn wait_duration(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return Some(Duration::from_secs(1));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().map(Duration::from_secs);
    }
    humantime::parse_duration(text).ok()
}

/// Presses and releases `qcode`, with Shift around it if `shift`.
fn press(actions: &mut Vec<KeyAction>, qcode: &'static str, shift: bool) {
    let key = |qcode, down| KeyAction::Key { qcode, down };
    if shift {
        actions.push(key("shift", true));
    }
    actions.push(key(qcode, true));
    actions.push(key(qcode, false));
    if shift {
        actions.push(key("shift", false));
    }
}

/// The key (and whether Shift is needed) that types `ch` on a US keyboard.
fn typed(ch: char) -> Option<(&'static str, bool)> {
    const LETTERS: [&str; 26] = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r",
        "s", "t", "u", "v", "w", "x", "y", "z",
    ];
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    // Punctuation: unshifted, then shifted, on the same key.
    const PUNCT: &[(char, char, &str)] = &[
        ('-', '_', "minus"),
        ('=', '+', "equal"),
        ('[', '{', "bracket_left"),
        (']', '}', "bracket_right"),
        ('\\', '|', "backslash"),
        (';', ':', "semicolon"),
        ('\'', '"', "apostrophe"),
        ('`', '~', "grave_accent"),
        (',', '<', "comma"),
        ('.', '>', "dot"),
        ('/', '?', "slash"),
    ];
    const SHIFTED_DIGITS: &str = ")!@#$%^&*(";
    Some(match ch {
        'a'..='z' => (LETTERS[(ch as u8 - b'a') as usize], false),
        'A'..='Z' => (LETTERS[(ch as u8 - b'A') as usize], true),
        '0'..='9' => (DIGITS[(ch as u8 - b'0') as usize], false),
        ' ' => ("spc", false),
        '\n' | '\r' => ("ret", false),
        '\t' => ("tab", false),
        _ => {
            if let Some(i) = SHIFTED_DIGITS.find(ch) {
                (DIGITS[i], true)
            } else {
                let &(plain, _, q) = PUNCT.iter().find(|(p, s, _)| *p == ch || *s == ch)?;
                (q, ch != plain)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down(q: &'static str) -> KeyAction {
        KeyAction::Key {
            qcode: q,
            down: true,
        }
    }

    fn up(q: &'static str) -> KeyAction {
        KeyAction::Key {
            qcode: q,
            down: false,
        }
    }

    fn actions(text: &str) -> Vec<KeyAction> {
        Keys::parse(text).unwrap().actions
    }

    /// The keys pressed, in order, as `name` or `+name`/`-name` for holds: easier to read.
    fn presses(text: &str) -> Vec<String> {
        let a = actions(text);
        let mut out = Vec::new();
        let mut i = 0;
        while i < a.len() {
            match (a[i], a.get(i + 1)) {
                (
                    KeyAction::Key { qcode, down: true },
                    Some(&KeyAction::Key {
                        qcode: q2,
                        down: false,
                    }),
                ) if qcode == q2 => {
                    out.push(qcode.to_string());
                    i += 2;
                }
                (KeyAction::Key { qcode, down }, _) => {
                    out.push(format!("{}{qcode}", if down { '+' } else { '-' }));
                    i += 1;
                }
                (KeyAction::Wait(d), _) => {
                    out.push(format!("wait {}", humantime::format_duration(d)));
                    i += 1;
                }
            }
        }
        out
    }

    #[test]
    fn plain_text_is_typed_with_shift_where_needed() {
        assert_eq!(presses("ls -l"), ["l", "s", "spc", "minus", "l"]);
        assert_eq!(
            actions("A"),
            [down("shift"), down("a"), up("a"), up("shift")]
        );
        assert_eq!(
            presses("Hi!"),
            ["+shift", "h", "-shift", "i", "+shift", "1", "-shift"]
        );
    }

    #[test]
    fn every_printable_ascii_character_has_a_key() {
        for b in 0x20u8..0x7f {
            let ch = b as char;
            let (_, shift) = typed(ch).unwrap_or_else(|| panic!("{ch:?} has no key"));
            let expect_shift = ch.is_ascii_uppercase() || "~!@#$%^&*()_+{}|:\"<>?".contains(ch);
            assert_eq!(shift, expect_shift, "{ch:?}");
        }
        assert_eq!(typed('_'), Some(("minus", true)));
        assert_eq!(typed('"'), Some(("apostrophe", true)));
        assert_eq!(typed('~'), Some(("grave_accent", true)));
        assert_eq!(typed('\\'), Some(("backslash", false)));
        assert_eq!(typed('?'), Some(("slash", true)));
        assert_eq!(typed(')'), Some(("0", true)));
    }

    /// Packer's documented table of special keys, each with the QEMU key it must press.
    #[test]
    fn packer_special_keys() {
        let table = [
            ("<bs>", "backspace"),
            ("<del>", "delete"),
            ("<enter>", "ret"),
            ("<return>", "ret"),
            ("<esc>", "esc"),
            ("<tab>", "tab"),
            ("<spacebar>", "spc"),
            ("<insert>", "insert"),
            ("<home>", "home"),
            ("<end>", "end"),
            ("<pageUp>", "pgup"),
            ("<pageDown>", "pgdn"),
            ("<up>", "up"),
            ("<down>", "down"),
            ("<left>", "left"),
            ("<right>", "right"),
            ("<f1>", "f1"),
            ("<f5>", "f5"),
            ("<f10>", "f10"),
            ("<f12>", "f12"),
            ("<leftAlt>", "alt"),
            ("<rightAlt>", "alt_r"),
            ("<leftCtrl>", "ctrl"),
            ("<rightCtrl>", "ctrl_r"),
            ("<leftShift>", "shift"),
            ("<rightShift>", "shift_r"),
            ("<leftSuper>", "meta_l"),
            ("<rightSuper>", "meta_r"),
            ("<menu>", "menu"),
        ];
        for (text, qcode) in table {
            assert_eq!(actions(text), [down(qcode), up(qcode)], "{text}");
        }
    }

    #[test]
    fn special_keys_ignore_case() {
        assert_eq!(actions("<ENTER>"), actions("<enter>"));
        assert_eq!(actions("<PageUp>"), actions("<pageup>"));
        assert_eq!(actions("<LEFTCTRLON>"), [down("ctrl")]);
    }

    #[test]
    fn held_modifiers() {
        assert_eq!(
            actions("<leftCtrlOn>c<leftCtrlOff>"),
            [down("ctrl"), down("c"), up("c"), up("ctrl")]
        );
        assert_eq!(
            presses("<leftAltOn><f2><leftAltOff><rightShiftOn>x<rightShiftOff>"),
            ["+alt", "f2", "-alt", "+shift_r", "x", "-shift_r"]
        );
        assert_eq!(
            presses("<rightCtrlOn><rightAltOn><del><rightAltOff><rightCtrlOff>"),
            ["+ctrl_r", "+alt_r", "delete", "-alt_r", "-ctrl_r"]
        );
        assert_eq!(
            presses("<leftSuperOn><rightSuperOff>"),
            ["+meta_l", "-meta_r"]
        );
    }

    #[test]
    fn waits() {
        assert_eq!(actions("<wait>"), [KeyAction::Wait(Duration::from_secs(1))]);
        assert_eq!(
            actions("<wait5>"),
            [KeyAction::Wait(Duration::from_secs(5))]
        );
        assert_eq!(
            actions("<wait10>"),
            [KeyAction::Wait(Duration::from_secs(10))]
        );
        assert_eq!(
            actions("<wait10s>"),
            [KeyAction::Wait(Duration::from_secs(10))]
        );
        assert_eq!(
            actions("<wait1m20s>"),
            [KeyAction::Wait(Duration::from_secs(80))]
        );
        assert_eq!(
            actions("<wait500ms>"),
            [KeyAction::Wait(Duration::from_millis(500))]
        );
        assert_eq!(
            presses("<esc><wait>boot<enter>"),
            ["esc", "wait 1s", "b", "o", "o", "t", "ret"]
        );
    }

    #[test]
    fn a_packer_boot_command() {
        // A typical OpenBSD/FreeBSD style command line.
        assert_eq!(
            presses("set tty com0<enter><wait2>boot -s\n"),
            [
                "s", "e", "t", "spc", "t", "t", "y", "spc", "c", "o", "m", "0", "ret", "wait 2s",
                "b", "o", "o", "t", "spc", "minus", "s", "ret"
            ]
        );
    }

    #[test]
    fn a_lone_angle_bracket_is_typed() {
        assert_eq!(
            presses("a < b<<"),
            [
                "a", "spc", "+shift", "comma", "-shift", "spc", "b", "+shift", "comma", "-shift",
                "+shift", "comma", "-shift"
            ]
        );
        assert_eq!(presses("<a-b>")[..4], ["+shift", "comma", "-shift", "a"]);
        assert_eq!(presses("<"), ["+shift", "comma", "-shift"]);
        assert_eq!(
            presses("<>"),
            ["+shift", "comma", "-shift", "+shift", "dot", "-shift"]
        );
        assert_eq!(presses("<up"), ["+shift", "comma", "-shift", "u", "p"]);
    }

    #[test]
    fn errors_name_the_culprit() {
        assert_eq!(
            Keys::parse("ab<entr>").unwrap_err(),
            KeysError::UnknownKey {
                name: "entr".into(),
                at: 2
            }
        );
        assert!(
            Keys::parse("<leftCtrlOnn>")
                .unwrap_err()
                .to_string()
                .starts_with("unknown key <leftCtrlOnn> at character 0;")
        );
        assert!(matches!(
            Keys::parse("<leftFoo>").unwrap_err(),
            KeysError::UnknownKey { .. }
        ));
        assert_eq!(
            Keys::parse("<wait5x>").unwrap_err().to_string(),
            "bad pause <wait5x> at character 0: write <wait>, <wait5> (seconds) or a duration such as <wait1m30s> or <wait500ms>"
        );
        assert_eq!(
            Keys::parse("é").unwrap_err(),
            KeysError::NotTypable { ch: 'é', at: 0 }
        );
        assert_eq!(Keys::parse("x").unwrap().to_string(), "x");
    }

    #[test]
    fn empty_text_types_nothing() {
        assert!(actions("").is_empty());
    }
}
