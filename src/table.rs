//! Plain-text tables (`ferry inspect`, `ferry images`): columns padded to their widest cell and
//! two spaces apart; on a terminal narrower than that, the widest columns are narrowed to fit
//! and their long cells wrap onto further lines of the row (an entry's kernel command line is
//! what tells entries apart, so it is wrapped rather than cut).

use std::io::IsTerminal;

/// Columns between two cells.
const GAP: usize = 2;

/// A column is never narrowed below this many characters (nor below its heading), so that a table
/// too wide for a very narrow terminal still says something in each column; such a table
/// overflows the line instead.
const MIN_CUT: usize = 8;

/// The width of the terminal on stdout; `None` when stdout is not a terminal (a pipe or a
/// file keeps every cell whole).
pub fn stdout_width() -> Option<usize> {
    match std::io::stdout().is_terminal() {
        true => Some(usize::from(console::Term::stdout().size().1)),
        false => None,
    }
}

/// `rows` (the first is the heading) as lines, each ending in a newline and without trailing
/// spaces; with `fit`, no line is wider than `fit` columns where the floors above allow it.
pub fn render<const N: usize>(rows: &[[String; N]], fit: Option<usize>) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    if let (Some(fit), Some(heading)) = (fit, rows.first()) {
        let floors: [usize; N] =
            std::array::from_fn(|i| widths[i].min(MIN_CUT.max(heading[i].chars().count())));
        cut_to_fit(&mut widths, &floors, fit);
    }
    let mut out = String::new();
    for row in rows {
        let pieces: Vec<Vec<String>> = row.iter().zip(&widths).map(|(c, &w)| wrap(c, w)).collect();
        let height = pieces.iter().map(Vec::len).max().unwrap_or(1);
        for k in 0..height {
            let mut line = String::new();
            for (i, (column, &w)) in pieces.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.extend(std::iter::repeat_n(' ', GAP));
                }
                let piece = column.get(k).map_or("", String::as_str);
                line.push_str(piece);
                line.extend(std::iter::repeat_n(' ', w - piece.chars().count()));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

/// Narrows the widest column by one until the table fits `fit` or every column is at its floor:
/// short columns stay whole and the long ones end up sharing the room evenly.
fn cut_to_fit(widths: &mut [usize], floors: &[usize], fit: usize) {
    let gaps = GAP * widths.len().saturating_sub(1);
    while widths.iter().sum::<usize>() + gaps > fit {
        let widest = (0..widths.len())
            .filter(|&i| widths[i] > floors[i])
            .max_by_key(|&i| (widths[i], std::cmp::Reverse(i)));
        match widest {
            Some(i) => widths[i] -= 1,
            None => break,
        }
    }
}

/// `cell` as lines of at most `width` characters, broken after the last space that fits (a
/// path or a long argument without one is broken at the edge).
fn wrap(cell: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut rest: Vec<char> = cell.chars().collect();
    while rest.len() > width && width > 0 {
        let cut = match rest[..=width].iter().rposition(|&c| c == ' ') {
            Some(space) if space > 0 => space + 1,
            _ => width,
        };
        let line: String = rest[..cut].iter().collect();
        lines.push(line.trim_end().to_string());
        rest.drain(..cut);
    }
    lines.push(rest.into_iter().collect());
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<[String; 3]> {
        [
            ["", "NAME", "CMDLINE"],
            ["*", "short", "init=/nix/store/abc/init root=LABEL=x quiet"],
            ["", "a much longer entry name", "-"],
        ]
        .iter()
        .map(|r| r.map(String::from))
        .collect()
    }

    #[test]
    fn without_a_width_every_cell_is_whole_and_aligned() {
        let table = render(&rows(), None);
        assert_eq!(
            table,
            "   NAME                      CMDLINE\n\
             *  short                     init=/nix/store/abc/init root=LABEL=x quiet\n   \
             a much longer entry name  -\n"
        );
    }

    #[test]
    fn a_narrow_width_wraps_the_widest_columns_within_their_row() {
        let table = render(&rows(), Some(40));
        assert_eq!(
            table,
            "   NAME               CMDLINE\n\
             *  short              init=/nix/store/ab\n   \
             \x20                  c/init\n   \
             \x20                  root=LABEL=x quiet\n   \
             a much longer      -\n   \
             entry name\n"
        );
        for line in table.lines() {
            assert!(line.chars().count() <= 40, "{line:?} in\n{table}");
        }
    }

    #[test]
    fn a_wide_enough_terminal_changes_nothing() {
        assert_eq!(render(&rows(), Some(200)), render(&rows(), None));
    }

    #[test]
    fn columns_are_not_narrowed_below_their_floor_and_words_longer_than_a_line_break() {
        let table = render(&rows(), Some(10));
        assert!(
            table.starts_with("   NAME      CMDLINE\n*  short     init=/ni\n"),
            "{table}"
        );
        assert!(table.contains("\n             x/store/\n"), "{table}");
    }

    #[test]
    fn wrapping_keeps_every_character_but_the_breaking_spaces() {
        let cell = "init=/nix/store/8q2x-nixos/init root=LABEL=nixos boot.shell_on_fail";
        for width in 1..cell.len() + 2 {
            let lines = wrap(cell, width);
            assert!(
                lines.iter().all(|l| l.chars().count() <= width),
                "{lines:?}"
            );
            let kept: String = lines.concat().split(' ').collect();
            assert_eq!(kept, cell.replace(' ', ""), "width {width}");
            assert_eq!(
                lines.len() == 1,
                width >= cell.len(),
                "width {width}: {lines:?}"
            );
        }
    }
}
