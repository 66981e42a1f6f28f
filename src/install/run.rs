//! Running a plan: boot → drive → finish → verify, each stage timed and recorded.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::plan::{Plan, VerifyPlan};
use super::progress::Progress;
use super::serve::Listener;
use crate::Error;
use crate::console::{Console, ExpectError, Expectation, transcript};
use crate::image::Iso;
use crate::profile::Firmware;
use crate::qemu::{self, AccelKind, Disk, FirmwareFiles, KernelBoot, Machine, Qemu};

/// How long a guest under KVM may stay silent before ferry concludes KVM hangs guests here.
/// A kernel prints within a second under KVM; TCG needs a few seconds.
pub const KVM_SILENCE_LIMIT: Duration = Duration::from_secs(8);

/// Set by the signal handler: the run is being interrupted.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Plan,
    Fetch,
    Boot,
    Drive,
    Finish,
    Verify,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Plan => "plan",
            Stage::Fetch => "fetch",
            Stage::Boot => "boot",
            Stage::Drive => "drive",
            Stage::Finish => "finish",
            Stage::Verify => "verify",
        }
    }
}

/// What a finished install reports.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub run_dir: PathBuf,
    pub disk: PathBuf,
    pub accel: AccelKind,
    pub stages: Vec<(Stage, f64)>,
    /// Seconds from the verify boot's start to the login prompt, when verified.
    pub verified_after: Option<f64>,
    pub cpu: CpuUse,
}

/// CPU time used by ferry itself and by the QEMU processes it ran. Under TCG every cycle
/// ferry spends is taken from the guest, so this is worth watching.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    pub ferry_seconds: f64,
    pub qemu_seconds: f64,
}

impl CpuUse {
    /// Measured with getrusage: QEMU's time counts once its process has been reaped.
    pub fn now() -> CpuUse {
        use nix::sys::resource::{UsageWho, getrusage};
        let seconds = |who| {
            getrusage(who).map_or(0.0, |u| {
                let t =
                    |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
                t(u.user_time()) + t(u.system_time())
            })
        };
        CpuUse {
            ferry_seconds: seconds(UsageWho::RUSAGE_SELF),
            qemu_seconds: seconds(UsageWho::RUSAGE_CHILDREN),
        }
    }
}

/// Runs `plan` with its answer files served by `listener`, recording into `run_dir`.
pub fn execute(
    plan: &Plan,
    listener: Listener,
    run_dir: &Path,
    progress: &Progress,
) -> Result<Outcome, Error> {
    let mut stages = Vec::new();
    let mut timer = Instant::now();
    let mut lap = |stage: Stage, stages: &mut Vec<(Stage, f64)>| {
        stages.push((stage, timer.elapsed().as_secs_f64()));
        timer = Instant::now();
    };

    plan.disk.target.create_if_needed()?;
    let files = plan
        .files
        .iter()
        .map(|f| (f.name.clone(), f.content.clone()))
        .collect();
    let _server = listener.start(files)?;
    let (boot, scratch) = boot_files(plan, run_dir)?;
    let firmware = firmware_files(plan, run_dir, "install")?;

    progress.stage(
        Stage::Boot,
        &format!(
            "starting QEMU ({}, {} MiB, {} CPUs) with \"{}\"",
            accel_name(plan.accel.first),
            plan.memory_mib,
            plan.cpus,
            plan.boot()?.title()
        ),
    );
    let machine = |accel| Machine {
        accel,
        memory_mib: plan.memory_mib,
        cpus: plan.cpus,
        firmware: firmware.clone(),
        disk: target_disk(plan),
        cdrom: plan.boot.as_ref().and_then(|b| b.iso.clone()),
        kernel: Some(boot.clone()),
        mac: plan.mac.clone(),
        serial_socket: run_dir.join("serial.sock"),
        qmp_socket: run_dir.join("qmp.sock"),
    };
    let (mut vm, mut console, accel) = boot_with_fallback(plan, &machine, run_dir, progress)?;
    lap(Stage::Boot, &mut stages);

    let total = plan.steps.len();
    for (i, step) in plan.steps.iter().enumerate() {
        check_interrupted()?;
        if !step.expect.is_empty() {
            let waiting: Vec<String> = step.expect.iter().map(ToString::to_string).collect();
            progress.stage(
                Stage::Drive,
                &format!(
                    "[{}/{total}] {}: waiting for {}",
                    i + 1,
                    step.name,
                    waiting.join(" or ")
                ),
            );
            let expectation = Expectation::new(&step.name, step.expect.clone(), step.timeout)
                .failing_on(step.fail.clone());
            let matched = match console.expect(&expectation) {
                Ok(matched) => matched,
                Err(e) => {
                    let error = stage_error(Stage::Drive, e, run_dir);
                    if matches!(error, Error::Step { .. })
                        && crate::ops::live::after_failure(
                            &mut vm,
                            Stage::Drive.name(),
                            &step.name,
                            &error.to_string(),
                            run_dir,
                        ) == crate::ops::live::Decision::Resume
                    {
                        continue;
                    }
                    return Err(error);
                }
            };
            tracing::info!(step = %step.name, after = ?matched.elapsed, text = %matched.text, "matched");
        }
        if let Some(text) = &step.send {
            progress.stage(
                Stage::Drive,
                &format!("[{}/{total}] {}: sending {:?}", i + 1, step.name, text),
            );
            console.send(text.as_bytes())?;
        }
    }
    lap(Stage::Drive, &mut stages);

    progress.stage(
        Stage::Finish,
        "waiting for the installer to power the VM off",
    );
    if let Err(e) = console.wait_closed(plan.finish.poweroff_timeout) {
        crate::ops::live::screenshot(&mut vm, Stage::Finish.name(), run_dir);
        return Err(stage_error(Stage::Finish, e, run_dir));
    }
    check_interrupted()?;
    let status = vm.wait_timeout(Duration::from_secs(30))?;
    tracing::info!(?status, "installer VM exited");
    drop(console);
    drop(vm);
    plan.disk.target.flush()?;
    super::esp::finish(plan, progress)?;
    // The installer's kernel and initrd can be large, and a rescue system's disk is its RAM.
    for file in scratch {
        let _ = std::fs::remove_file(file);
    }
    lap(Stage::Finish, &mut stages);

    let mut verified_after = None;
    if let Some(verify) = &plan.finish.verify {
        verified_after = Some(verify_boot(plan, verify, accel, run_dir, progress)?.as_secs_f64());
        lap(Stage::Verify, &mut stages);
    }
    Ok(Outcome {
        run_dir: run_dir.to_path_buf(),
        disk: plan.disk.target.path.clone(),
        accel,
        stages,
        verified_after,
        cpu: CpuUse::now(),
    })
}

/// Starts the VM. Under `auto`, KVM that crashes QEMU or leaves the guest silent is given up
/// for TCG: /dev/kvm can open and still not run guests (nested or paravirtual KVM).
fn boot_with_fallback(
    plan: &Plan,
    machine: &dyn Fn(AccelKind) -> Machine,
    record_dir: &Path,
    progress: &Progress,
) -> Result<(Qemu, Console, AccelKind), Error> {
    let accel = plan.accel.first;
    let attempt = start_vm(plan, &machine(accel), record_dir);
    if accel != AccelKind::Kvm || !plan.accel.fallback_to_tcg {
        let (vm, console) = attempt?;
        return Ok((vm, console, accel));
    }
    let why = match attempt {
        Ok((vm, mut console)) => {
            if console.wait_for_output(KVM_SILENCE_LIMIT) {
                return Ok((vm, console, accel));
            }
            format!(
                "no output from the guest under KVM within {}s",
                KVM_SILENCE_LIMIT.as_secs()
            )
        }
        Err(e) => format!(
            "QEMU failed under KVM ({})",
            e.to_string().lines().last().unwrap_or_default()
        ),
    };
    check_interrupted()?;
    let why = format!(
        "{why}: /dev/kvm opens but does not run guests here (nested or paravirtual KVM?); restarting under TCG"
    );
    tracing::warn!("{why}");
    progress.stage(Stage::Boot, &why);
    let (vm, console) = start_vm(plan, &machine(AccelKind::Tcg), record_dir)?;
    Ok((vm, console, AccelKind::Tcg))
}

fn start_vm(plan: &Plan, machine: &Machine, record_dir: &Path) -> Result<(Qemu, Console), Error> {
    let binary = plan.qemu()?;
    let args = qemu::command_line(machine);
    let mut program_and_args = binary.pre_args.clone();
    program_and_args.extend(args.iter().cloned());
    std::fs::write(
        record_dir.join("qemu.args"),
        qemu::shell_quote(&binary.program, &program_and_args) + "\n",
    )?;
    tracing::info!(accel = ?machine.accel, "starting QEMU");
    let vm = Qemu::start(
        binary,
        &args,
        &machine.serial_socket,
        &machine.qmp_socket,
        &record_dir.join("qemu.stderr"),
    )?;
    let title = format!("ferry: {}", plan.profile.display());
    let mut sinks = transcript::create(record_dir, &title)?;
    sinks.push(Box::new(crate::ops::live::Fanout));
    let stream = vm.serial.try_clone()?;
    let console = Console::start(stream, sinks)?;
    crate::ops::live::set_console(console.input_handle().ok());
    Ok((vm, console))
}

/// Boots the installed disk alone, with the same firmware kind, and waits for a login prompt.
fn verify_boot(
    plan: &Plan,
    verify: &VerifyPlan,
    accel: AccelKind,
    run_dir: &Path,
    progress: &Progress,
) -> Result<Duration, Error> {
    let dir = run_dir.join("verify");
    std::fs::create_dir_all(&dir)?;
    let patterns: Vec<String> = verify.expect.iter().map(ToString::to_string).collect();
    progress.stage(
        Stage::Verify,
        &format!(
            "booting {} alone, waiting for {}",
            plan.disk.target.path.display(),
            patterns.join(" or ")
        ),
    );
    // A fresh variable store: the real machine's NVRAM has none of the entries the installer
    // wrote into the install VM's, so the disk must boot without them.
    let machine = Machine {
        accel,
        memory_mib: plan.memory_mib,
        cpus: plan.cpus,
        firmware: firmware_files(plan, run_dir, "verify")?,
        disk: target_disk(plan),
        cdrom: None,
        kernel: None,
        mac: plan.mac.clone(),
        serial_socket: dir.join("serial.sock"),
        qmp_socket: dir.join("qmp.sock"),
    };
    let started = Instant::now();
    let (mut vm, mut console) = start_vm(plan, &machine, &dir)?;
    let expectation = Expectation::new("boot check", verify.expect.clone(), verify.timeout)
        .failing_on(verify.fail.clone());
    let result = console.expect(&expectation);
    let elapsed = started.elapsed();
    if result.is_err() {
        crate::ops::live::screenshot(&mut vm, Stage::Verify.name(), run_dir);
    }
    drop(console);
    vm.stop()?;
    result.map_err(|e| stage_error(Stage::Verify, e, run_dir))?;
    Ok(elapsed)
}

fn target_disk(plan: &Plan) -> Disk {
    Disk {
        path: plan.disk.target.path.clone(),
        bus: plan.disk.bus,
        cache: plan.disk.cache,
        serial: plan.disk.serial.clone(),
        model: plan.disk.model.clone(),
    }
}

/// The kernel and initrd to boot: netboot files as they are; from an ISO, copied out of it
/// (several initrds become one: concatenated cpio archives are what the kernel expects).
/// Returns the boot and the scratch files to remove once the installer has run.
fn boot_files(plan: &Plan, run_dir: &Path) -> Result<(KernelBoot, Vec<PathBuf>), Error> {
    let boot = plan.boot()?;
    let Some(iso_path) = &boot.iso else {
        let initrd = boot.initrd.first().map(PathBuf::from);
        let files = KernelBoot {
            kernel: PathBuf::from(&boot.kernel),
            initrd,
            append: boot.cmdline.clone(),
        };
        return Ok((files, Vec::new()));
    };
    let iso = Iso::open(iso_path)?;
    let kernel = run_dir.join("kernel");
    let initrd = (!boot.initrd.is_empty()).then(|| run_dir.join("initrd"));
    let initrd_parts: Vec<&str> = boot.initrd.iter().map(String::as_str).collect();
    // Tens of megabytes each, copied before QEMU can start: both at once.
    std::thread::scope(|scope| {
        let initrd = initrd
            .as_ref()
            .map(|path| scope.spawn(|| iso.extract(&initrd_parts, path)));
        iso.extract(&[boot.kernel.as_str()], &kernel)?;
        if let Some(extracting) = initrd {
            extracting.join().expect("initrd extraction panicked")?;
        }
        Ok::<_, crate::image::IsoError>(())
    })?;
    let scratch = [Some(kernel.clone()), initrd.clone()]
        .into_iter()
        .flatten()
        .collect();
    Ok((
        KernelBoot {
            kernel,
            initrd,
            append: boot.cmdline.clone(),
        },
        scratch,
    ))
}

/// SeaBIOS needs nothing; OVMF gets its own copy of the variable store per VM.
fn firmware_files(plan: &Plan, run_dir: &Path, which: &str) -> Result<FirmwareFiles, Error> {
    match plan.firmware {
        Firmware::Uefi => {
            let (code, vars_template) = qemu::find_ovmf_in(plan.qemu()?.firmware_dir.as_deref())?;
            let vars = run_dir.join(format!("{which}-efivars.fd"));
            std::fs::copy(&vars_template, &vars)?;
            Ok(FirmwareFiles::Uefi { code, vars })
        }
        Firmware::Bios | Firmware::Auto => Ok(FirmwareFiles::Bios),
    }
}

/// Whether a signal asked the run to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn check_interrupted() -> Result<(), Error> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}

/// An expect failure in a stage, or the interruption that caused it.
fn stage_error(stage: Stage, error: ExpectError, run_dir: &Path) -> Error {
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Error::Interrupted;
    }
    Error::Step {
        stage: stage.name(),
        source: Box::new(error),
        run_dir: run_dir.to_path_buf(),
    }
}

fn accel_name(accel: AccelKind) -> &'static str {
    match accel {
        AccelKind::Kvm => "KVM",
        AccelKind::Tcg => "TCG",
    }
}
