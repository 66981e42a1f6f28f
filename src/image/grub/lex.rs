//! GRUB script text into words (with their `$variables`) and commands with their blocks.

use super::MAX_MENU_DEPTH;

// ---------------------------------------------------------------------------------------
// Lexing

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Piece {
    Lit(String),
    Var { name: String, quoted: bool },
}

pub(super) type Word = Vec<Piece>;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Word(Word),
    /// Newline or `;`.
    Sep,
    Open,
    Close,
}

pub(super) fn lex(text: &str) -> Vec<Tok> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\r' => i += 1,
            '\\' if chars.get(i + 1) == Some(&'\n') => i += 2,
            '\n' | ';' => {
                toks.push(Tok::Sep);
                i += 1;
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '{' => {
                toks.push(Tok::Open);
                i += 1;
            }
            '}' => {
                toks.push(Tok::Close);
                i += 1;
            }
            _ => {
                let (word, next) = lex_word(&chars, i);
                toks.push(Tok::Word(word));
                i = next;
            }
        }
    }
    toks
}

/// One word starting at `i`; returns it and the index after it.
pub(super) fn lex_word(chars: &[char], mut i: usize) -> (Word, usize) {
    let mut word = Vec::new();
    let mut lit = String::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\r' | '\n' | ';' => break,
            '\'' => {
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                lit.extend(&chars[start..i]);
                i += 1;
                // '' is an empty word, not nothing.
                flush(&mut word, &mut lit);
                if word.is_empty() {
                    word.push(Piece::Lit(String::new()));
                }
            }
            '"' => {
                i += 1;
                let mut any = false;
                while i < chars.len() && chars[i] != '"' {
                    match chars[i] {
                        '\\' => match chars.get(i + 1) {
                            Some('\n') => i += 2,
                            Some(&e @ ('$' | '"' | '\\')) => {
                                lit.push(e);
                                i += 2;
                            }
                            _ => {
                                lit.push('\\');
                                i += 1;
                            }
                        },
                        '$' => i = lex_dollar(chars, i, true, &mut word, &mut lit),
                        ch => {
                            lit.push(ch);
                            i += 1;
                        }
                    }
                    any = true;
                }
                i += 1;
                flush(&mut word, &mut lit);
                if !any && word.is_empty() {
                    word.push(Piece::Lit(String::new()));
                }
            }
            '\\' => {
                match chars.get(i + 1) {
                    Some('\n') => {}
                    Some(&e) => lit.push(e),
                    None => lit.push('\\'),
                }
                i += 2;
            }
            '$' => i = lex_dollar(chars, i, false, &mut word, &mut lit),
            ch => {
                lit.push(ch);
                i += 1;
            }
        }
    }
    flush(&mut word, &mut lit);
    (word, i)
}

/// `$name`, `${name}` or a special like `$1`/`$?` at `i` (which holds `$`).
/// Ends the literal piece being collected, if any.
pub(super) fn flush(word: &mut Word, lit: &mut String) {
    if !lit.is_empty() {
        word.push(Piece::Lit(std::mem::take(lit)));
    }
}

/// A `$` in a word: a variable reference becomes its own piece, a lone `$` stays literal.
/// Returns the index after it.
pub(super) fn lex_dollar(
    chars: &[char],
    i: usize,
    quoted: bool,
    word: &mut Word,
    lit: &mut String,
) -> usize {
    let (var, next) = lex_var(chars, i, quoted);
    match var {
        Some(v) => {
            flush(word, lit);
            word.push(v);
        }
        None => lit.push('$'),
    }
    next
}

pub(super) fn lex_var(chars: &[char], i: usize, quoted: bool) -> (Option<Piece>, usize) {
    let var = |name: String| Some(Piece::Var { name, quoted });
    match chars.get(i + 1) {
        Some('{') => {
            let start = i + 2;
            let mut j = start;
            while j < chars.len() && chars[j] != '}' {
                j += 1;
            }
            (var(chars[start..j].iter().collect()), j + 1)
        }
        Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            (var(chars[i + 1..j].iter().collect()), j)
        }
        Some(c) if c.is_ascii_digit() || matches!(c, '?' | '#' | '@' | '*') => {
            (var(c.to_string()), i + 2)
        }
        _ => (None, i + 1),
    }
}

// ---------------------------------------------------------------------------------------
// Commands

#[derive(Debug, Clone)]
pub(super) struct Cmd {
    pub(super) words: Vec<Word>,
    pub(super) block: Option<Vec<Cmd>>,
}

/// The commands of a file; `None` when its blocks nest deeper than [`MAX_MENU_DEPTH`].
pub(super) fn parse_cmds(toks: &[Tok]) -> Option<Vec<Cmd>> {
    let mut i = 0;
    parse_block(toks, &mut i, 0)
}

/// The commands up to the `}` closing a block `depth` levels deep (0: the file).
pub(super) fn parse_block(toks: &[Tok], i: &mut usize, depth: usize) -> Option<Vec<Cmd>> {
    if depth > MAX_MENU_DEPTH {
        return None;
    }
    let mut cmds = Vec::new();
    while *i < toks.len() {
        match &toks[*i] {
            Tok::Sep => *i += 1,
            Tok::Close => {
                *i += 1;
                if depth > 0 {
                    return Some(cmds);
                }
            }
            Tok::Open => {
                *i += 1;
                let block = parse_block(toks, i, depth + 1)?;
                cmds.push(Cmd {
                    words: Vec::new(),
                    block: Some(block),
                });
            }
            Tok::Word(_) => {
                let mut words = Vec::new();
                while let Some(Tok::Word(w)) = toks.get(*i) {
                    words.push(w.clone());
                    *i += 1;
                }
                let mut block = None;
                let takes_block = matches!(
                    literal(&words[0]).as_deref(),
                    Some("menuentry" | "submenu" | "function" | "hiddenentry")
                );
                // A block may start on the next line after a menuentry.
                let mut j = *i;
                if takes_block {
                    while toks.get(j) == Some(&Tok::Sep) {
                        j += 1;
                    }
                }
                if toks.get(j) == Some(&Tok::Open) {
                    *i = j + 1;
                    block = Some(parse_block(toks, i, depth + 1)?);
                }
                cmds.push(Cmd { words, block });
            }
        }
    }
    Some(cmds)
}

/// The text of a word without variables, if it has none.
pub(super) fn literal(word: &Word) -> Option<String> {
    let mut s = String::new();
    for p in word {
        match p {
            Piece::Lit(l) => s.push_str(l),
            Piece::Var { .. } => return None,
        }
    }
    Some(s)
}
