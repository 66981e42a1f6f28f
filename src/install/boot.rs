//! The boot stage: the installer's kernel and initrd, the firmware's files, QEMU started with
//! the disk attached and its serial console recorded — under KVM, or TCG when KVM turns out
//! not to run guests here. The boot check boots through [`start_vm`] too.

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::Live;
use super::plan::{GuestFirmware, IsoSource, Plan, PlanError};
use super::serve;
use crate::Error;
use crate::console::vga::{self, ScreenFeed};
use crate::console::{Console, Sink, transcript};
use crate::fetch::stream::{NbdServer, StreamedImage};
use crate::image::{Iso, IsoError};
use crate::profile::BootMode;
use crate::qemu::cmdline::{GuestFwd, Media};
use crate::qemu::vga::VgaMonitor;
use crate::qemu::{
    self, AccelKind, Disk, DiskWrites, FirmwareFiles, KernelBoot, Machine, ProcessError, Qemu,
};
use crate::run::secrets::Redacting;
use crate::run::{Record, RunDir, Stage};

/// How long a guest under KVM may stay silent before ferry concludes KVM hangs guests here.
/// A kernel prints within a second under KVM; TCG needs a few seconds.
pub const KVM_SILENCE_LIMIT: Duration = Duration::from_secs(8);

/// How often the VGA screen is read: a boot loader's prompt is seen within a quarter second,
/// at about 4 ms of QEMU's time a read (see `console::vga`).
pub const SCREEN_INTERVAL: Duration = Duration::from_millis(250);

/// The VGA text screen as a second console (steps with `console = "screen"`).
pub struct Screen {
    pub console: Console,
    /// The reading thread; the last screen, for errors and status.
    pub feed: ScreenFeed,
}

/// The installer VM, running.
pub struct Booted {
    pub vm: Qemu,
    pub console: Console,
    /// The screen console, when a step reads the screen.
    pub screen: Option<Screen>,
    /// The accelerator it runs under (the boot check uses the same).
    pub accel: AccelKind,
    /// Files copied out of the ISO, removed once the installer has run.
    pub scratch: BootFiles,
    /// The streamed image's server, stopped (its socket removed) when dropped: after `vm`,
    /// the field before it, so QEMU is gone first.
    pub stream: Option<NbdServer>,
    /// The streamed image, whose first changed chunk ends the install at once.
    pub streamed: Option<Arc<StreamedImage>>,
}

/// The installer's kernel and initrd, copied out of the ISO into the run directory by a thread
/// while QEMU loads: QEMU reads them only when it builds the machine ([`Qemu::spawn`]), so the
/// copy and QEMU's own start-up overlap. Tens of megabytes, on a rescue system in RAM: removed
/// when dropped — after the installer ran, and when a run fails or is interrupted on the way.
#[derive(Debug, Default)]
pub struct BootFiles {
    copying: Option<JoinHandle<Result<(), IsoError>>>,
    paths: Vec<PathBuf>,
}

impl BootFiles {
    /// Waits until the files are whole; the copy's error, once.
    fn ready(&mut self) -> Result<(), Error> {
        match self.copying.take() {
            Some(copying) => Ok(copying.join().expect("boot file copy panicked")?),
            None => Ok(()),
        }
    }
}

impl Drop for BootFiles {
    fn drop(&mut self) {
        // A copy still running would write the files again.
        if let Some(copying) = self.copying.take() {
            let _ = copying.join();
        }
        for file in &self.paths {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// The NBD export QEMU asks for.
const EXPORT: &str = "installer";

/// Boots the installer; a streamed image (`streamed`, the plan's `IsoSource::Stream`) is
/// served over NBD from the run directory for as long as the VM runs.
pub fn boot(
    plan: &Plan,
    streamed: Option<&Arc<StreamedImage>>,
    record: &Record,
    live: &dyn Live,
) -> Result<Booted, Error> {
    let install = machine(plan, &record.dir, plan.accel.first)?;
    let stream = match (&install.cdrom, streamed) {
        (Some(Media::Nbd { socket, export }), Some(image)) => {
            Some(NbdServer::start(socket, export, image.clone())?)
        }
        (Some(Media::Nbd { .. }), None) => {
            return Err(PlanError::NotFetched("the streamed image was not opened").into());
        }
        _ => None,
    };
    let mut scratch = match &install.kernel {
        Some(kernel) => copy_boot_files(plan, streamed, kernel)?,
        None => BootFiles::default(),
    };
    copy_vars_store(plan, &install.firmware)?;
    record.progress(
        Stage::Boot,
        &format!(
            "starting QEMU ({}, {} MiB, {}) with \"{}\"",
            accel_name(plan.accel.first),
            plan.memory_mib,
            crate::host::cpus_text(plan.cpus),
            plan.boot()?.title()
        ),
    );
    let machine = |accel| Machine {
        accel,
        ..install.clone()
    };
    let (started, accel) = boot_with_fallback(plan, &machine, &mut scratch, record, live)?;
    let (vm, console, screen) = started;
    Ok(Booted {
        vm,
        console,
        screen,
        accel,
        scratch,
        stream,
        streamed: streamed.cloned(),
    })
}

/// The installer's VM under `accel`, its files at their places in the run directory `dir`:
/// nothing is copied or started, so `ferry plan --render` shows the command line an install
/// runs ([`command_line`]).
pub fn machine(plan: &Plan, dir: &RunDir, accel: AccelKind) -> Result<Machine, Error> {
    let boot = plan.boot()?;
    let kernel = match boot.mode {
        BootMode::Kernel => Some(kernel_boot(plan, dir)?),
        BootMode::Loader => None,
    };
    Ok(Machine {
        accel,
        memory_mib: plan.memory_mib,
        cpus: plan.cpus,
        firmware: firmware_files(plan, dir, "install")?,
        disk: target_disk(plan),
        cdrom: boot.iso.as_ref().map(|iso| match iso {
            IsoSource::File(path) => Media::File { path: path.clone() },
            IsoSource::Stream { .. } => Media::Nbd {
                socket: dir.nbd_socket(),
                export: EXPORT.into(),
            },
        }),
        kernel,
        mac: plan.mac.clone(),
        guestfwd: Some(answers_forward(dir)?),
        serial_socket: dir.serial_socket(),
        qmp_socket: dir.qmp_socket(),
        screen_socket: plan.reads_screen().then(|| dir.screen_socket()),
    })
}

/// QEMU's command line for `machine`, shell-quoted, as the run directory's `qemu.args` holds
/// it (before redaction).
pub fn command_line(plan: &Plan, machine: &Machine) -> Result<String, Error> {
    let binary = plan.qemu()?;
    let mut program_and_args = binary.pre_args.clone();
    program_and_args.extend(qemu::command_line_for(plan.arch, machine));
    Ok(qemu::shell_quote(&binary.program, &program_and_args))
}

/// A started VM, its serial console and its screen console (if the machine has one).
type Started = (Qemu, Console, Option<Screen>);

/// Starts the VM. Under `auto`, KVM that crashes QEMU or leaves the guest silent is given up
/// for TCG: /dev/kvm can open and still not run guests (nested or paravirtual KVM). A guest
/// booting through its own loader speaks on the screen first, so that is where silence counts.
fn boot_with_fallback(
    plan: &Plan,
    machine: &dyn Fn(AccelKind) -> Machine,
    boot_files: &mut BootFiles,
    record: &Record,
    live: &dyn Live,
) -> Result<(Started, AccelKind), Error> {
    let mut start = |accel| -> Result<Started, Error> {
        let machine = machine(accel);
        let (mut vm, console) = start_vm(
            plan,
            &machine,
            &record.dir,
            Some(&mut *boot_files),
            record,
            live,
        )?;
        let screen = match vm.screen.take() {
            Some(stream) => Some(start_screen(plan, stream, record)?),
            None => None,
        };
        Ok((vm, console, screen))
    };
    let accel = plan.accel.first;
    let attempt = start(accel);
    if accel != AccelKind::Kvm || !plan.accel.fallback_to_tcg {
        return Ok((attempt?, accel));
    }
    let why = match attempt {
        Ok((vm, mut console, mut screen)) => {
            let watched = match (&mut screen, plan.boot()?.mode) {
                (Some(screen), BootMode::Loader) => &mut screen.console,
                _ => &mut console,
            };
            if watched.wait_for_output(KVM_SILENCE_LIMIT) {
                return Ok(((vm, console, screen), accel));
            }
            format!(
                "no output from the guest under KVM within {}s",
                KVM_SILENCE_LIMIT.as_secs()
            )
        }
        // QEMU's own words (often an assertion) are in qemu.stderr and ferry.log; one calm
        // line is enough on the operator's terminal.
        Err(e @ (Error::Process(_) | Error::Qemu(_))) => {
            tracing::warn!("QEMU under KVM: {e}");
            "QEMU stopped under KVM".to_string()
        }
        // Not QEMU's doing (the boot files, the run directory): TCG would fail the same way.
        Err(e) => return Err(e),
    };
    super::check_stop(record)?;
    // Kept for this boot: later plans and installs start under TCG straight away.
    crate::host::kvm::Verdict::record(false, &why);
    let why = format!(
        "{why}: KVM does not run guests here (nested or paravirtual KVM?); going on under TCG, \
         as later installs on this boot will"
    );
    tracing::warn!("{why}");
    record.progress(Stage::Boot, &why);
    Ok((start(AccelKind::Tcg)?, AccelKind::Tcg))
}

/// Starts QEMU for `machine`, recording its arguments, stderr and serial console into `dir`
/// (the record's secrets redacted, a record that cannot be written noted in its losses);
/// attached viewers see the console and may type into it. The guest starts once `boot_files`
/// are whole.
pub fn start_vm(
    plan: &Plan,
    machine: &Machine,
    dir: &RunDir,
    boot_files: Option<&mut BootFiles>,
    record: &Record,
    live: &dyn Live,
) -> Result<(Qemu, Console), Error> {
    let secrets = &record.secrets;
    let binary = plan.qemu()?;
    let args = qemu::command_line_for(plan.arch, machine);
    // A full run directory is named: the boot files may be filling it meanwhile.
    let naming = |path: PathBuf| {
        move |e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))
        }
    };
    std::fs::write(
        dir.qemu_args(),
        secrets.redact(&command_line(plan, machine)?) + "\n",
    )
    .map_err(naming(dir.qemu_args()))?;
    tracing::info!(accel = ?machine.accel, "starting QEMU");
    let stderr = File::create(dir.qemu_stderr()).map_err(naming(dir.qemu_stderr()))?;
    let stderr = secrets.writer(stderr);
    let spawned = Qemu::spawn(binary, &args, machine, &dir.qemu_stderr(), Box::new(stderr))?;
    if let Some(files) = boot_files {
        files.ready()?;
    }
    let vm = spawned.connect(machine)?;
    let title = format!("ferry: {}", plan.profile.display());
    let mut sinks: Vec<Box<dyn Sink>> = transcript::create(dir.path(), &title)?
        .into_iter()
        .map(|sink| recorded(sink, record))
        .collect();
    // Attached viewers (`ferry attach`) see the console redacted too.
    sinks.push(Box::new(Redacting::new(live.console_sink(), secrets)));
    let stream = vm.serial.try_clone()?;
    let console = Console::start(stream, sinks)?;
    live.console_started(console.input_handle().ok());
    Ok((vm, console))
}

/// A console record as the run keeps it: secrets redacted, a write failure noted.
fn recorded(sink: Box<dyn Sink>, record: &Record) -> Box<dyn Sink> {
    record
        .losses
        .noting(Box::new(Redacting::new(sink, &record.secrets)))
}

/// Reads the VGA screen through QEMU's second monitor at `socket` into a console recorded as
/// `screen.log` and `screen.cast`.
fn start_screen(plan: &Plan, stream: UnixStream, record: &Record) -> Result<Screen, Error> {
    let dir = &record.dir;
    let monitor = VgaMonitor::connect(stream, dir.path()).map_err(ProcessError::from)?;
    let (stream, feed) = vga::start(monitor, SCREEN_INTERVAL)?;
    let title = format!("ferry: {} (VGA screen)", plan.profile.display());
    let sinks = transcript::create_screen(dir.path(), &title)?;
    let sinks = sinks.into_iter().map(|s| recorded(s, record)).collect();
    let console = Console::start(stream, sinks)?;
    Ok(Screen { console, feed })
}

/// The guest's way to the answer server: QEMU runs `ferry relay SOCKET` for each connection
/// to the answer URL, with no port on the host (see [`serve`]).
fn answers_forward(dir: &RunDir) -> Result<GuestFwd, Error> {
    let ferry = std::env::current_exe()?;
    Ok(GuestFwd {
        addr: serve::GUEST_ADDR.to_string(),
        port: serve::GUEST_PORT,
        command: vec![
            ferry.display().to_string(),
            "relay".to_string(),
            dir.answers_socket().display().to_string(),
        ],
    })
}

/// The plan's disk as QEMU attaches it.
pub fn target_disk(plan: &Plan) -> Disk {
    Disk {
        path: plan.disk.target.path.clone(),
        bus: plan.disk.bus.into(),
        cache: plan.disk.cache,
        serial: plan.disk.serial.clone(),
        model: plan.disk.model.clone(),
        writes: DiskWrites::Kept,
    }
}

/// The kernel and initrd to boot: netboot files as they are; from an ISO, the run directory's
/// copies ([`extract_boot_files`]).
fn kernel_boot(plan: &Plan, run_dir: &RunDir) -> Result<KernelBoot, Error> {
    let boot = plan.boot()?;
    let (kernel, initrd) = match &boot.iso {
        None => (
            PathBuf::from(&boot.kernel),
            boot.initrd.first().map(PathBuf::from),
        ),
        Some(_) => (
            run_dir.kernel(),
            (!boot.initrd.is_empty()).then(|| run_dir.initrd()),
        ),
    };
    Ok(KernelBoot {
        kernel,
        initrd,
        append: boot.cmdline.clone(),
    })
}

/// Starts copying the kernel and initrd out of the ISO to `files`' paths (several initrds
/// become one: concatenated cpio archives are what the kernel expects); netboot files stay
/// where they are. A streamed image's are read through its verification, as QEMU's reads are.
fn copy_boot_files(
    plan: &Plan,
    streamed: Option<&Arc<StreamedImage>>,
    files: &KernelBoot,
) -> Result<BootFiles, Error> {
    let boot = plan.boot()?;
    let Some(source) = &boot.iso else {
        return Ok(BootFiles::default());
    };
    let iso = match (source, streamed) {
        (IsoSource::File(path), _) => Iso::open(path)?,
        (IsoSource::Stream { url }, Some(image)) => {
            Iso::from_source(Box::new(image.clone()), Path::new(url))?
        }
        (IsoSource::Stream { .. }, None) => {
            return Err(PlanError::NotFetched("the streamed image was not opened").into());
        }
    };
    let (kernel, initrd) = (files.kernel.clone(), files.initrd.clone());
    let paths = [Some(kernel.clone()), initrd.clone()]
        .into_iter()
        .flatten()
        .collect();
    let (kernel_part, initrd_parts) = (boot.kernel.clone(), boot.initrd.clone());
    let copying = std::thread::spawn(move || {
        // Tens of megabytes each: both at once.
        std::thread::scope(|scope| {
            let initrd = initrd.as_ref().map(|path| {
                scope.spawn(|| {
                    let parts: Vec<&str> = initrd_parts.iter().map(String::as_str).collect();
                    iso.extract(&parts, path)
                })
            });
            iso.extract(&[kernel_part.as_str()], &kernel)?;
            if let Some(extracting) = initrd {
                extracting.join().expect("initrd extraction panicked")?;
            }
            Ok(())
        })
    });
    // Removed when dropped, even after a failed copy.
    Ok(BootFiles {
        copying: Some(copying),
        paths,
    })
}

/// SeaBIOS needs nothing; OVMF (AAVMF) gets its own copy of the variable store per VM, in the
/// run directory ([`copy_vars_store`] makes it).
pub fn firmware_files(plan: &Plan, run_dir: &RunDir, vm: &str) -> Result<FirmwareFiles, Error> {
    match plan.firmware {
        GuestFirmware::Uefi => {
            let (code, _) = qemu::find_uefi_in(plan.arch, plan.qemu()?.firmware_dir.as_deref())?;
            Ok(FirmwareFiles::Uefi {
                code,
                vars: run_dir.efivars(vm),
            })
        }
        GuestFirmware::Bios => Ok(FirmwareFiles::Bios),
    }
}

/// Copies the firmware's variable store template to the VM's own copy (UEFI only).
pub fn copy_vars_store(plan: &Plan, firmware: &FirmwareFiles) -> Result<(), Error> {
    if let FirmwareFiles::Uefi { vars, .. } = firmware {
        let (_, template) = qemu::find_uefi_in(plan.arch, plan.qemu()?.firmware_dir.as_deref())?;
        std::fs::copy(&template, vars)?;
    }
    Ok(())
}

fn accel_name(accel: AccelKind) -> &'static str {
    match accel {
        AccelKind::Kvm => "KVM",
        AccelKind::Tcg => "TCG",
    }
}
