//! Bounded fuzzing inside `cargo test`: seeded random inputs for the parsers that read what
//! an image, a profile or a guest hands ferry. Each target must return (an error is fine)
//! without panicking, aborting or growing without bound. The default run is short;
//! `FERRY_FUZZ_CASES=N` runs N cases per target, `FERRY_FUZZ_SEED=S` picks another seed.
//! A crash found here becomes a named test in the module it concerns.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Cases per target in the default run.
const DEFAULT_CASES: u64 = 100;

fn cases() -> u64 {
    std::env::var("FERRY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

fn rng(target: u64) -> StdRng {
    let seed: u64 = std::env::var("FERRY_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    StdRng::seed_from_u64(seed ^ target.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Text built from `vocabulary` words, with random bytes mixed in.
fn soup(rng: &mut StdRng, vocabulary: &[&str], words: usize) -> String {
    let mut out = String::new();
    for _ in 0..rng.gen_range(0..words) {
        if rng.gen_bool(0.05) {
            out.push(char::from(rng.r#gen::<u8>() & 0x7f));
        } else {
            out.push_str(vocabulary[rng.gen_range(0..vocabulary.len())]);
        }
    }
    out
}

/// `base` with a few bytes flipped, inserted, deleted or the tail cut.
fn mutate(rng: &mut StdRng, base: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    for _ in 0..rng.gen_range(1..8) {
        let at = rng.gen_range(0..=out.len());
        match rng.gen_range(0..4) {
            0 if at < out.len() => out[at] = rng.r#gen(),
            1 => out.insert(at, rng.r#gen()),
            2 if at < out.len() => {
                out.remove(at);
            }
            3 => out.truncate(at),
            _ => {}
        }
    }
    out
}

/// Runs `case` for each case number; a panic names the case (rerun with the same seed and
/// `FERRY_FUZZ_CASES` past it to reproduce). A target whose cases are slow (a menu that
/// includes itself is read up to its bounds) runs `cases() / slow` of them.
fn run(target: u64, slow: u64, mut case: impl FnMut(&mut StdRng)) {
    let mut rng = rng(target);
    for n in 0..(cases() / slow).max(1) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&mut rng)));
        assert!(outcome.is_ok(), "target {target}: case {n} panicked");
    }
}

#[test]
fn profile_parser() {
    let base = include_str!("../tests/fixtures/tiny.toml").as_bytes();
    run(1, 1, |rng| {
        let text = String::from_utf8_lossy(&mutate(rng, base)).into_owned();
        let _ = crate::profile::Profile::parse(std::path::Path::new("f.toml"), text);
    });
}

const GRUB_WORDS: &[&str] = &[
    "submenu ",
    "menuentry ",
    "'t' ",
    "\"x $a\" ",
    "{",
    "}",
    "\n",
    ";",
    "set ",
    "a=",
    "b=",
    "$a",
    "${b}",
    "${a}${a}",
    "linux ",
    "/k ",
    "initrd ",
    "/i ",
    "source ",
    "/boot/grub/grub.cfg ",
    "configfile ",
    "/boot/grub/x.cfg ",
    "then ",
    "if ",
    "fi ",
    "default=",
    "1>0",
    "\\",
    "'",
    "\"",
    "#c\n",
    "unset ",
    "--id ",
    "($root)",
    "(",
    ")",
    " ",
];

#[test]
fn grub_parser() {
    run(2, 4, |rng| {
        let main = soup(rng, GRUB_WORDS, 400);
        let other = soup(rng, GRUB_WORDS, 100);
        let _ = crate::image::parse_in_memory(
            crate::image::grub::parse,
            "/boot/grub/grub.cfg",
            &[("/boot/grub/grub.cfg", &main), ("/boot/grub/x.cfg", &other)],
        );
    });
}

const SYSLINUX_WORDS: &[&str] = &[
    "label l\n",
    "LABEL x\n",
    "menu begin m\n",
    "menu end\n",
    "menu label L\n",
    "menu default\n",
    "kernel /k a=b\n",
    "linux vmlinuz\n",
    "initrd a,b\n",
    "append initrd=i - x\n",
    "append -\n",
    "include isolinux.cfg\n",
    "menu include sub.cfg T\n",
    "text help\n",
    "endtext\n",
    "default l\n",
    "ontimeout x\n",
    "localboot 0\n",
    "menu title T\n",
    "#\n",
    "\n",
    " ",
    "\t",
];

#[test]
fn syslinux_parser() {
    run(3, 4, |rng| {
        let main = soup(rng, SYSLINUX_WORDS, 300);
        let sub = soup(rng, SYSLINUX_WORDS, 60);
        let _ = crate::image::parse_in_memory(
            crate::image::syslinux::parse,
            "/isolinux/isolinux.cfg",
            &[
                ("/isolinux/isolinux.cfg", &main),
                ("/isolinux/sub.cfg", &sub),
            ],
        );
    });
}

#[test]
fn iso9660_reader() {
    let dir = tempfile::tempdir().unwrap();
    let built = crate::image::iso9660::tests::build_iso(
        dir.path(),
        &["-R", "-J"],
        &[
            (
                "/isolinux/isolinux.cfg",
                b"label l\nkernel /k\ninclude x.cfg\n",
            ),
            ("/boot/grub/grub.cfg", b"menuentry a { linux /k }\n"),
            ("/a/b/c/d.txt", b"d"),
        ],
    );
    let image = std::fs::read(&built).unwrap();
    let path = dir.path().join("fuzzed.iso");
    // The descriptors and directories live in the first blocks; mutate there.
    let head = image.len().min(64 << 10);
    run(4, 1, |rng| {
        let mut bytes = image.clone();
        let mutated = mutate(rng, &image[16 * 2048..head]);
        let n = mutated.len().min(head - 16 * 2048);
        bytes[16 * 2048..16 * 2048 + n].copy_from_slice(&mutated[..n]);
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(iso) = crate::image::Iso::open(&path) {
            let _ = crate::image::boot_entries(&iso);
            let _ = iso.read_dir("/");
            let _ = iso.read_dir("/a/b/c");
            let _ = iso.read("/a/b/c/d.txt");
            let _ = iso.extract(&["/a/b/c/d.txt"], &dir.path().join("out"));
        }
    });
}

#[test]
fn escape_sequence_stripper() {
    let words: &[&str] = &[
        "\x1b[",
        "\x1b]",
        "\x1bP",
        "\x1b(B",
        "\x07",
        "\x1b\\",
        "0",
        "1;2",
        ";",
        "H",
        "C",
        "m",
        "J",
        "K",
        "?25l",
        "\r",
        "\n",
        "a",
        "é",
        "\u{9b}",
        "\x1b",
        "999999999999",
        "\x00",
    ];
    run(5, 1, |rng| {
        let text = soup(rng, words, 200);
        let mut s = crate::console::ansi::Stripper::new();
        let mut out = Vec::new();
        let bytes = text.as_bytes();
        // Fed in random pieces: a sequence split across reads must not matter for safety.
        let mut at = 0;
        while at < bytes.len() {
            let end = rng.gen_range(at..=bytes.len()).max(at + 1);
            s.feed(&bytes[at..end], &mut out);
            at = end;
        }
        s.finish(&mut out);
        assert!(out.len() <= bytes.len() * 2 + 2, "output bounded by input");
        assert_eq!(
            out,
            crate::console::ansi::strip(bytes),
            "pieces or whole, the same"
        );
    });
}

#[test]
fn expect_engine() {
    use std::io::Write;
    let words: &[&str] = &[
        "login: ", "\x1b[2J", "\r\n", "x", "password", "\x1b[5C", "ok\n",
    ];
    // Fewer cases: each one runs a console with its reader thread.
    let cases = (cases() / 10).max(5);
    let mut rng = rng(6);
    for _ in 0..cases {
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut console = crate::console::Console::start(ours, Vec::new()).unwrap();
        let text = soup(&mut rng, words, 300);
        theirs.write_all(text.as_bytes()).unwrap();
        drop(theirs);
        let pattern = if rng.gen_bool(0.5) {
            crate::console::Pattern::literal(words[rng.gen_range(0..words.len())])
        } else {
            crate::console::Pattern::regex(r"(?m)login: ?$|x+ok")
        };
        let e = crate::console::Expectation::new(
            "fuzz",
            vec![pattern],
            std::time::Duration::from_secs(5),
        );
        let _ = console.expect(&e);
    }
}
