//! A compiled pattern set and how far back each search must start (see the engine's
//! documentation in `super`).

use std::ops::Range;

use aho_corasick::AhoCorasick;
use memchr::memmem;
use regex_automata::meta;
use regex_syntax::hir::{Class, Hir, HirKind};

use super::{ExpectError, Expectation, Pattern};

/// A compiled pattern set: fail patterns first, then want patterns.
pub(super) struct Matcher {
    engine: Engine,
    pub(super) n_fail: usize,
    lookback: Lookback,
}

enum Engine {
    One(Box<memmem::Finder<'static>>),
    Many(AhoCorasick),
    Regex(meta::Regex),
}

/// How far back a search must start to catch matches straddling the previous end of text.
#[derive(Debug, Default)]
struct Lookback {
    /// Longest match of the bounded-length patterns.
    max_len: usize,
    /// Some unbounded pattern cannot match `\n`: its matches lie within one line.
    line: bool,
    /// Some unbounded pattern can match `\n`: rescan the whole window.
    all: bool,
}

impl Lookback {
    fn add(&mut self, max_len: Option<usize>, newline: bool) {
        match max_len {
            Some(l) => self.max_len = self.max_len.max(l),
            None if newline => self.all = true,
            None => self.line = true,
        }
    }
}

/// Whether a regex can match a `\n` (conservatively: true if unsure).
fn can_match_newline(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => false,
        HirKind::Literal(lit) => lit.0.contains(&b'\n'),
        HirKind::Class(Class::Unicode(c)) => c
            .ranges()
            .iter()
            .any(|r| r.start() <= '\n' && '\n' <= r.end()),
        HirKind::Class(Class::Bytes(c)) => c
            .ranges()
            .iter()
            .any(|r| r.start() <= b'\n' && b'\n' <= r.end()),
        HirKind::Repetition(r) => r.max != Some(0) && can_match_newline(&r.sub),
        HirKind::Capture(c) => can_match_newline(&c.sub),
        HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().any(can_match_newline),
    }
}

impl Matcher {
    pub(super) fn new(e: &Expectation) -> Result<Matcher, ExpectError> {
        let patterns: Vec<&Pattern> = e.fail.iter().chain(&e.want).collect();
        let mut lookback = Lookback::default();
        let engine = if patterns.iter().all(|p| matches!(p, Pattern::Literal(_))) {
            let lits: Vec<&str> = patterns
                .iter()
                .map(|p| match p {
                    Pattern::Literal(s) | Pattern::Regex(s) => s.as_str(),
                })
                .collect();
            for l in &lits {
                lookback.add(Some(l.len()), false);
            }
            if lits.len() == 1 {
                Engine::One(Box::new(memmem::Finder::new(lits[0]).into_owned()))
            } else {
                let ac = AhoCorasick::builder()
                    .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                    .build(&lits)
                    .map_err(|err| ExpectError::BadPattern {
                        pattern: lits.join(", "),
                        reason: err.to_string(),
                    })?;
                Engine::Many(ac)
            }
        } else {
            let mut sources = Vec::with_capacity(patterns.len());
            for p in &patterns {
                let src = match p {
                    Pattern::Literal(s) => regex_syntax::escape(s),
                    Pattern::Regex(r) => r.clone(),
                };
                let hir = regex_syntax::ParserBuilder::new()
                    .multi_line(true)
                    .build()
                    .parse(&src)
                    .map_err(|err| ExpectError::BadPattern {
                        pattern: p.to_string(),
                        reason: err.to_string(),
                    })?;
                lookback.add(hir.properties().maximum_len(), can_match_newline(&hir));
                sources.push(src);
            }
            let re = meta::Regex::builder()
                .syntax(regex_automata::util::syntax::Config::new().multi_line(true))
                .build_many(&sources)
                .map_err(|err| ExpectError::BadPattern {
                    pattern: patterns
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    reason: err.to_string(),
                })?;
            Engine::Regex(re)
        };
        Ok(Matcher {
            engine,
            n_fail: e.fail.len(),
            lookback,
        })
    }

    /// The leftmost match starting at or after `from` (bytes before `from` are look-behind
    /// context only): pattern id and range.
    pub(super) fn find(&self, hay: &[u8], from: usize) -> Option<(usize, Range<usize>)> {
        match &self.engine {
            Engine::One(f) => f
                .find(&hay[from..])
                .map(|s| (0, from + s..from + s + f.needle().len())),
            Engine::Many(ac) => ac
                .find(aho_corasick::Input::new(hay).span(from..hay.len()))
                .map(|m| (m.pattern().as_usize(), m.range())),
            Engine::Regex(re) => re
                .search(&regex_automata::Input::new(hay).span(from..hay.len()))
                .map(|m| (m.pattern().as_usize(), m.range())),
        }
    }

    /// Where to search after text was appended at `old_end`: the earliest position a match
    /// not yet found could start at.
    pub(super) fn scan_from(&self, buf: &[u8], old_end: usize, base: usize) -> usize {
        if self.lookback.all {
            return base;
        }
        let mut from = old_end.saturating_sub(self.lookback.max_len.saturating_sub(1));
        if self.lookback.line && old_end > base {
            let line_start =
                memchr::memrchr(b'\n', &buf[base..old_end]).map_or(base, |p| base + p + 1);
            from = from.min(line_start);
        }
        from.max(base)
    }
}
