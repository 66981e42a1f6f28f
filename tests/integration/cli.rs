//! The command line itself: shell completions, man pages, `-v`/`FERRY_LOG`, `--color`.

use std::process::Output;

use crate::support::{Scratch, ferry, text};

fn plan(scratch: &Scratch, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let key = scratch.dir.path().join("k.pub");
    std::fs::write(
        &key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0000000000000000000000000000000000000000000 t\n",
    )
    .unwrap();
    ferry()
        .args(extra)
        .args(["plan", "debian-12", "--size", "2G", "--accel", "tcg"])
        .arg("--disk")
        .arg(scratch.disk())
        .arg("--ssh-key")
        .arg(&key)
        .env_remove("FERRY_LOG")
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn bash_completion_loads_and_completes_subcommands() {
    // What an operator pastes into ~/.bashrc, then what TAB after `ferry ins` offers.
    let script = format!(
        "source <({ferry} completions bash) && complete -p ferry && \
         COMP_WORDS=(ferry ins) COMP_CWORD=1 COMP_LINE='ferry ins' COMP_POINT=9 && \
         _ferry ferry ins ferry && echo \"offered: ${{COMPREPLY[*]}}\"",
        ferry = env!("CARGO_BIN_EXE_ferry")
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("-F _ferry ferry"), "{stdout}");
    let offered = stdout
        .lines()
        .find_map(|l| l.strip_prefix("offered: "))
        .unwrap();
    let words: Vec<&str> = offered.split_whitespace().collect();
    assert!(
        words.contains(&"install") && words.contains(&"inspect"),
        "{offered}"
    );
    assert!(
        !words.contains(&"plan") && !words.contains(&"supervise"),
        "{offered}"
    );
}

#[test]
fn zsh_and_fish_completions_name_the_commands() {
    for (shell, marker) in [("zsh", "#compdef ferry"), ("fish", "complete -c ferry")] {
        let out = ferry().args(["completions", shell]).output().unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{shell}: {stderr}");
        assert!(
            stdout.contains(marker) && stdout.contains("install"),
            "{shell}"
        );
    }
    let out = ferry().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("possible values: bash"),
        "{}",
        text(&out).1
    );
}

#[test]
fn man_pages_cover_every_visible_command_with_option_help() {
    let scratch = Scratch::new();
    let dir = scratch.dir.path().join("man1");
    let out = ferry().arg("man").arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    for page in [
        "ferry.1",
        "ferry-install.1",
        "ferry-plan.1",
        "ferry-recipe-show.1",
    ] {
        assert!(dir.join(page).is_file(), "{page} missing");
    }
    assert!(
        !dir.join("ferry-supervise.1").exists(),
        "internal commands get no page"
    );
    let install = std::fs::read_to_string(dir.join("ferry-install.1")).unwrap();
    assert!(install.contains("\n.TH ferry-install 1"), "{install}");
    assert!(install.contains("The initrd to boot with"), "{install}");
    assert!(
        install.contains("ferry install debian\\-12 \\-\\-disk /dev/sda"),
        "{install}"
    );
}

#[test]
fn verbose_logs_on_stderr_and_ferry_log_overrides_it() {
    let scratch = Scratch::new();
    let quiet = plan(&scratch, &[], &[]);
    assert!(quiet.status.success(), "{}", text(&quiet).1);
    assert!(!text(&quiet).1.contains("INFO"), "{}", text(&quiet).1);

    let verbose = plan(&scratch, &["-v"], &[]);
    let (_, stderr) = text(&verbose);
    assert!(
        stderr.contains("INFO ferry::install::plan: plan made"),
        "{stderr}"
    );
    assert!(!stderr.contains("DEBUG"), "{stderr}");

    let filtered = plan(&scratch, &["-v"], &[("FERRY_LOG", "ferry=warn")]);
    assert!(!text(&filtered).1.contains("INFO"), "{}", text(&filtered).1);

    let bad = plan(&scratch, &[], &[("FERRY_LOG", "ferry=loud")]);
    let (_, stderr) = text(&bad);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("ferry: error: FERRY_LOG=ferry=loud: "),
        "{stderr}"
    );
}

#[test]
fn errors_are_coloured_as_color_and_no_color_say() {
    let scratch = Scratch::new();
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let out = ferry()
            .args(extra)
            .args(["plan", "no-such-recipe", "--disk"])
            .arg(scratch.disk())
            .env_remove("NO_COLOR")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        text(&out).1
    };
    // Not a terminal: plain unless asked for; --color always wins over NO_COLOR.
    assert!(run(&[], &[]).starts_with("ferry: error: "));
    let always = run(&["--color", "always"], &[("NO_COLOR", "1")]);
    assert!(
        always.starts_with("ferry: \x1b[1;31merror:\x1b[0m "),
        "{always:?}"
    );
    assert!(run(&["--color", "never"], &[]).starts_with("ferry: error: "));
}

#[test]
fn catalog_names_plan_with_their_recipe_or_say_what_exists() {
    let scratch = Scratch::new();
    let plan = |name: &str| {
        ferry()
            .args(["plan", name, "--size", "20G", "--json", "--disk"])
            .arg(scratch.disk())
            .args(["--var", "ssh_key=ssh-ed25519 AAAA t"])
            .output()
            .unwrap()
    };
    let by_image = plan("ubuntu-24.04-server");
    assert!(by_image.status.success(), "{}", text(&by_image).1);
    let json: serde_json::Value = serde_json::from_slice(&by_image.stdout).unwrap();
    assert!(
        json["profile"]
            .as_str()
            .unwrap()
            .contains("recipe:ubuntu-24.04/"),
        "{json}"
    );

    let no_recipe = plan("debian-12-netboot");
    let (_, stderr) = text(&no_recipe);
    assert_eq!(no_recipe.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("debian-12-netboot is a catalog image without a built-in recipe"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[image] name = \"debian-12-netboot\""),
        "{stderr}"
    );

    let unknown = plan("no-such-thing");
    let (_, stderr) = text(&unknown);
    assert_eq!(unknown.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("recipes: debian-12,"), "{stderr}");
    assert!(
        stderr.contains("images: ") && stderr.contains("ubuntu-24.04-server"),
        "{stderr}"
    );
}

/// Writes a run directory as ferry does: status.json with `state`, `pid` and `updated`.
fn fake_run(runs: &std::path::Path, id: &str, state: &str, pid: u32, updated: &str) {
    let dir = runs.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let status = serde_json::json!({
        "schema_version": 1, "run_dir": dir, "profile": "p.toml", "disk": "d.img",
        "pid": pid, "state": state, "stage": "drive", "step": "",
        "started": updated, "updated": updated, "exit_code": null,
    });
    std::fs::write(dir.join("status.json"), status.to_string()).unwrap();
    std::fs::write(dir.join("serial.log"), "console").unwrap();
}

#[test]
fn runs_prune_removes_old_ended_runs_and_never_a_live_one() {
    let scratch = Scratch::new();
    let runs = scratch.runs();
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let alive = std::process::id();
    let old = "2020-01-01T00:00:00Z";
    let recent = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    fake_run(&runs, "20200101-000000-finished", "finished", alive, old);
    fake_run(&runs, "20200101-000001-crashed", "running", gone.id(), old);
    fake_run(&runs, "20200101-000002-live", "running", alive, old);
    fake_run(&runs, "20200101-000003-paused", "paused", alive, old);
    fake_run(&runs, "20991231-000000-recent", "failed", alive, &recent);
    std::fs::create_dir_all(runs.join("not-a-run")).unwrap();

    let out = ferry()
        .args(["runs", "prune", "--older-than", "7d", "--runs-dir"])
        .arg(&runs)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout,
        "removed 20200101-000001-crashed\nremoved 20200101-000000-finished\n"
    );
    assert!(
        stderr.contains("removed 2 run(s) that ended over 7days ago; kept 2 live run(s)"),
        "{stderr}"
    );
    let mut left: Vec<String> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "20200101-000002-live",
            "20200101-000003-paused",
            "20991231-000000-recent",
            "not-a-run"
        ]
    );

    let bad = ferry()
        .args(["runs", "prune", "--older-than", "a week", "--runs-dir"])
        .arg(&runs)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).1.contains("--older-than"), "{}", text(&bad).1);
}

/// `ferry images --json | head -1`: a reader that went away before ferry wrote ends ferry
/// quietly, as it ends `cat`, not with a panic on stderr.
#[test]
fn a_report_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    // A catalog whose listing is larger than a pipe holds: ferry must meet the closed pipe
    // even if another test's child briefly held its read end while starting.
    let scratch = Scratch::new();
    let catalog = scratch.dir.path().join("catalog");
    std::fs::create_dir(&catalog).unwrap();
    for n in 0..400 {
        std::fs::write(
            catalog.join(format!("image-{n}.toml")),
            format!(
                "name = \"image-{n}\"\ndescription = \"a test image\"\nos = \"debian\"\n\
                 version = \"12\"\narch = \"x86_64\"\nkind = \"iso\"\n\
                 urls = [\"https://example.org/{n}.iso\"]\nsha256 = \"{:064}\"\n",
                0
            ),
        )
        .unwrap();
    }
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    drop(reader);
    let out = ferry()
        .args(["images", "--json", "--catalog"])
        .arg(&catalog)
        .stdout(std::process::Stdio::from(writer))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(out.status.signal(), Some(nix::libc::SIGPIPE));
}

/// The fenced blocks of README.md whose info string is `lang`, in order.
fn readme_blocks(lang: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(crate::support::repo().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) if info.trim() == lang => current = Some(String::new()),
            (Some(block), Some(_)) => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), None) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// README's examples work: every option its command summary names exists in that command's
/// help, its profile example plans against the fixture ISO, its network file is accepted, and
/// its loader example is what tests/fixtures/tiny-screen.toml runs.
#[test]
fn readme_examples_work() {
    let summary = &readme_blocks("")[0];
    for line in summary.lines().filter(|l| l.starts_with("ferry ")) {
        let usage = line.split(" # ").next().unwrap();
        // `ferry recipe list | show NAME`: an alternative without `ferry` is a subcommand of
        // the first one's command.
        let mut parent = None;
        for alternative in usage.split(" | ") {
            let words: Vec<&str> = alternative.split_whitespace().collect();
            let mut command: Vec<&str> = match words[0] == "ferry" {
                true => Vec::new(),
                false => parent.into_iter().collect(),
            };
            command.extend(
                words
                    .iter()
                    .skip_while(|w| **w == "ferry")
                    .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
                    .filter(|w| !w.starts_with('-')),
            );
            parent = parent.or(command.first().copied());
            let help = ferry().args(&command).arg("--help").output().unwrap();
            let (stdout, stderr) = text(&help);
            assert!(help.status.success(), "{line}: {stderr}");
            for option in words.iter().filter_map(|w| {
                let w = w.trim_start_matches('[');
                w.starts_with('-')
                    .then(|| w.split(['=', ']']).next().unwrap())
            }) {
                assert!(
                    stdout.contains(option),
                    "README names `{option}` for `ferry {}`, its help does not:\n{stdout}",
                    command.join(" ")
                );
            }
        }
    }

    let scratch = Scratch::new();
    let dir = scratch.dir.path();
    let toml = readme_blocks("toml");
    let profile = toml
        .iter()
        .find(|b| b.contains("[image]") && b.contains("[[steps]]"))
        .expect("README's profile example");
    let fixtures = crate::support::repo().join("tests/fixtures");
    let profile = profile
        .replace("\"build/", &format!("\"{}/build/", fixtures.display()))
        .replace(
            "\"answers.sh.j2\"",
            &format!("\"{}/answers.sh.j2\"", fixtures.display()),
        );
    std::fs::write(dir.join("readme.toml"), profile).unwrap();
    let network = toml
        .iter()
        .find(|b| b.contains("predicted_name"))
        .expect("README's network example");
    std::fs::write(dir.join("network.toml"), network).unwrap();
    let plan = ferry()
        .arg("plan")
        .arg(dir.join("readme.toml"))
        .arg("--disk")
        .arg(scratch.disk())
        .args(["--size", "2G", "--network"])
        .arg(dir.join("network.toml"))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&plan);
    assert!(plan.status.success(), "{stderr}");
    assert!(stdout.contains("confirm the disk"), "{stdout}");
    assert!(stdout.contains("90:1b:0e:aa:bb:cc"), "{stdout}");

    let loader = toml
        .iter()
        .find(|b| b.contains("mode = \"loader\""))
        .expect("README's loader example");
    let screen = std::fs::read_to_string(fixtures.join("tiny-screen.toml")).unwrap();
    for line in loader.lines().filter(|l| !l.trim().is_empty()) {
        let setting = line.split(" #").next().unwrap().trim_end();
        assert!(
            screen.contains(setting),
            "README's loader example has `{setting}`, tests/fixtures/tiny-screen.toml does not"
        );
    }
}
