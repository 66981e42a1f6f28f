//! The QEMU command line: a pure function of a [`Machine`], so what ferry runs is exactly
//! what `qemu.args` records and what the unit tests below pin down.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::arch::Arch;
use crate::profile::DiskBus;

/// The accelerator one QEMU process runs with (`auto` is resolved before this point).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccelKind {
    Kvm,
    Tcg,
}

/// Firmware files for one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum FirmwareFiles {
    /// QEMU's built-in SeaBIOS.
    Bios,
    /// OVMF: read-only code, and a writable copy of the variable store for this VM.
    Uefi { code: PathBuf, vars: PathBuf },
}

/// QEMU's cache mode for the target disk, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    None,
    Writeback,
    Unsafe,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disk {
    pub path: PathBuf,
    pub bus: DiskBus,
    pub cache: CacheMode,
    /// Serial number shown to the guest (NVMe requires one).
    pub serial: Option<String>,
    /// Model shown to the guest (IDE `model=`, SCSI `product=`).
    pub model: Option<String>,
    pub writes: DiskWrites,
}

/// Whether the guest's writes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskWrites {
    Kept,
    /// Into a temporary overlay QEMU deletes when it ends (`snapshot=on`): the disk is read,
    /// never written.
    Discarded,
}

/// Where the installer image is read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Media {
    /// A local (verified) file.
    File { path: PathBuf },
    /// ferry's verified stream: an NBD export on a unix socket in the run directory
    /// (`crate::fetch::stream::NbdServer`), for an image too large to store.
    Nbd { socket: PathBuf, export: String },
}

impl Media {
    /// The `-drive` value attaching this image as drive `id`: a raw, read-only CD-ROM.
    pub fn drive(&self, id: &str) -> String {
        let source = match self {
            Media::File { path } => format!("file={}", escape(path)),
            // QEMU 7.2's nbd block driver; -drive takes its options as `file.*`.
            Media::Nbd { socket, export } => format!(
                "file.driver=nbd,file.server.type=unix,file.server.path={},file.export={}",
                escape(socket),
                escape_str(export)
            ),
        };
        format!("if=none,id={id},media=cdrom,readonly=on,format=raw,{source}")
    }
}

/// Direct kernel boot: the installer's kernel taken from its own boot menu.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelBoot {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// The kernel command line: never in QEMU's argv (see [`command_line_for`]).
    pub append: String,
}

/// Everything that decides one QEMU process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Machine {
    pub accel: AccelKind,
    pub memory_mib: u64,
    pub cpus: u32,
    pub firmware: FirmwareFiles,
    pub disk: Disk,
    /// The installer image, attached as a CD-ROM (installers look for their media there).
    pub cdrom: Option<Media>,
    pub kernel: Option<KernelBoot>,
    /// The NIC's MAC address; QEMU picks one when absent.
    pub mac: Option<String>,
    /// A guest address whose TCP connections QEMU hands to a program on the host.
    pub guestfwd: Option<GuestFwd>,
    pub serial_socket: PathBuf,
    pub qmp_socket: PathBuf,
    /// A second QMP monitor for reading the VGA screen ([`screen_monitor_args`]).
    pub screen_socket: Option<PathBuf>,
}

/// The address of this machine as a guest on QEMU's user networking (`-netdev user`) sees it:
/// the guest's connections there reach this machine's loopback.
pub const USER_NET_HOST: &str = "10.0.2.2";

/// `guestfwd=tcp:ADDR:PORT-cmd:PROGRAM ARGS`: QEMU runs the program once per guest
/// connection, the connection on its stdin and stdout (the `chardev:` form carries one
/// connection only), so the host needs no listening port for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestFwd {
    pub addr: String,
    pub port: u16,
    pub command: Vec<String>,
}

impl GuestFwd {
    /// The `-netdev user` option: libslirp splits the command like a shell (quotes are
    /// honoured) and QEMU's option parser needs commas doubled.
    fn option(&self) -> String {
        let words: Vec<String> = self.command.iter().map(|w| quote_word(w)).collect();
        format!(
            ",guestfwd=tcp:{}:{}-cmd:{}",
            self.addr,
            self.port,
            escape_str(&words.join(" "))
        )
    }
}

/// The arguments (without the program) that run `machine` on x86-64.
pub fn command_line(machine: &Machine) -> Vec<String> {
    command_line_for(Arch::X86_64, machine)
}

/// The arguments (without the program) that run `machine` as an `arch` guest
/// (`qemu-system-x86_64` or `qemu-system-aarch64`).
///
/// aarch64 is QEMU's `virt` board with a GICv3: UEFI (AAVMF in the pflash pair) is its only
/// firmware, so [`FirmwareFiles::Bios`] there means none (direct kernel boot only); it has no
/// IDE, so the CD-ROM is a SCSI CD on its own virtio-scsi controller and a SATA disk sits on
/// an AHCI controller; the serial port is a PL011, `ttyAMA0` in the guest
/// ([`Arch::serial_console`]).
pub fn command_line_for(arch: Arch, machine: &Machine) -> Vec<String> {
    let mut args = Args::default();
    // No default devices: every device below is one ferry chose and can name.
    args.push(["-nodefaults", "-no-user-config", "-no-reboot"]);
    match arch {
        // i440fx: its IDE controller (ata_piix) is in every Linux kernel, AHCI is not (Debian's
        // cloud kernel lacks it), so the CD-ROM and a SATA-style disk are seen everywhere.
        Arch::X86_64 => args.push(["-machine", "pc"]),
        Arch::Aarch64 => args.push(["-machine", "virt,gic-version=3"]),
    }
    match machine.accel {
        AccelKind::Kvm => args.push(["-accel", "kvm"]),
        AccelKind::Tcg => args.push(["-accel", "tcg"]),
    }
    // `-cpu host` fails under TCG; `max` works under both.
    args.push(["-cpu", "max"]);
    args.push(["-m".to_string(), machine.memory_mib.to_string()]);
    args.push(["-smp".to_string(), machine.cpus.to_string()]);
    if let FirmwareFiles::Uefi { code, vars } = &machine.firmware {
        args.push([
            "-drive".to_string(),
            format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                escape(code)
            ),
        ]);
        args.push([
            "-drive".to_string(),
            format!("if=pflash,format=raw,unit=1,file={}", escape(vars)),
        ]);
    }
    disk_args(&mut args, arch, &machine.disk);
    if let Some(media) = &machine.cdrom {
        args.push(["-drive".to_string(), media.drive("installer")]);
        // Without a kernel to boot, the CD boots through its own loader: before the disk,
        // which may hold the system being replaced.
        let first = if machine.kernel.is_none() {
            ",bootindex=0"
        } else {
            ""
        };
        match arch {
            // The secondary IDE channel: the guest sees /dev/sr0.
            Arch::X86_64 => args.push([
                "-device".to_string(),
                format!("ide-cd,drive=installer,bus=ide.1{first}"),
            ]),
            Arch::Aarch64 => args.push([
                "-device".to_string(),
                "virtio-scsi-pci,id=cdscsi".to_string(),
                "-device".to_string(),
                format!("scsi-cd,drive=installer,bus=cdscsi.0{first}"),
            ]),
        }
    }
    if let Some(boot) = &machine.kernel {
        args.push(["-kernel".to_string(), boot.kernel.display().to_string()]);
        if let Some(initrd) = &boot.initrd {
            args.push(["-initrd".to_string(), initrd.display().to_string()]);
        }
        // The command line may carry secrets, and every local user can read QEMU's argv: QEMU
        // waits before building the machine, and `Qemu::start` sets it over QMP.
        args.push(["--preconfig"]);
    }
    let guestfwd = machine.guestfwd.as_ref().map(GuestFwd::option);
    args.push([
        "-netdev".to_string(),
        format!("user,id=net0{}", guestfwd.unwrap_or_default()),
    ]);
    let mut nic = "virtio-net-pci,netdev=net0,romfile=".to_string();
    if let Some(mac) = &machine.mac {
        nic.push_str(&format!(",mac={mac}"));
    }
    args.push(["-device".to_string(), nic]);
    // wait=on: QEMU starts the guest only once ferry is connected, so no early byte is lost.
    args.push([
        "-chardev".to_string(),
        format!(
            "socket,id=serial0,path={},server=on,wait=on",
            escape(&machine.serial_socket)
        ),
    ]);
    args.push(["-serial", "chardev:serial0"]);
    // wait=on here too: QEMU accepts the connection while it starts, as for the serial port.
    // With wait=off its main loop and its monitor thread both watch the listening socket for
    // a moment at start-up; a connection in that moment can be accepted by the monitor thread
    // while the main loop blocks in accept(2) for ever, so no command is ever answered (seen
    // here about once in 400 starts on a busy host: `qmp_capabilities` never answered).
    args.push([
        "-qmp".to_string(),
        format!("unix:{},server=on,wait=on", escape(&machine.qmp_socket)),
    ]);
    if let Some(socket) = &machine.screen_socket {
        args.push(screen_monitor_args(socket));
    }
    // A display device, not shown anywhere, so QMP screendump can capture graphical
    // installers (`virt` has no VGA).
    match arch {
        Arch::X86_64 => args.push(["-vga", "std", "-display", "none"]),
        Arch::Aarch64 => args.push(["-device", "virtio-gpu-pci", "-display", "none"]),
    }
    args.0
}

/// A second QMP monitor, for the VGA screen reader (`super::vga`): its reads every quarter
/// second then never wait behind the run's own commands, nor they behind its reads. Accepted
/// at start-up like the first (`wait=on`), after it.
fn screen_monitor_args(socket: &Path) -> [String; 2] {
    [
        "-qmp".to_string(),
        format!("unix:{},server=on,wait=on", escape(socket)),
    ]
}

fn disk_args(args: &mut Args, arch: Arch, disk: &Disk) {
    let cache = match disk.cache {
        // aio=native needs O_DIRECT, which cache=none gives.
        CacheMode::None => "cache=none,aio=native",
        CacheMode::Writeback => "cache=writeback",
        CacheMode::Unsafe => "cache=unsafe",
    };
    let snapshot = match disk.writes {
        DiskWrites::Kept => "",
        DiskWrites::Discarded => ",snapshot=on",
    };
    args.push([
        "-drive".to_string(),
        format!(
            "if=none,id=target,format=raw,file={},{cache},discard=unmap{snapshot}",
            escape(&disk.path)
        ),
    ]);
    // QEMU's limits: 20 characters of serial (virtio-blk, IDE, NVMe), 40 of IDE model, 16
    // of SCSI product.
    let clip = |s: &str, n: usize| {
        let kept: String = s
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(n)
            .collect();
        escape_str(&kept)
    };
    let serial = disk
        .serial
        .as_deref()
        .map(|s| format!(",serial={}", clip(s, 20)))
        .unwrap_or_default();
    match disk.bus {
        DiskBus::Virtio | DiskBus::Auto => args.push([
            "-device".to_string(),
            format!("virtio-blk-pci,drive=target,bootindex=1{serial}"),
        ]),
        DiskBus::Sata => {
            let model = disk
                .model
                .as_deref()
                .map(|m| format!(",model={}", clip(m, 40)))
                .unwrap_or_default();
            // `pc` has IDE built in; `virt` needs an AHCI controller for the disk.
            let bus = match arch {
                Arch::X86_64 => "ide.0",
                Arch::Aarch64 => {
                    args.push(["-device", "ich9-ahci,id=ahci"]);
                    "ahci.0"
                }
            };
            args.push([
                "-device".to_string(),
                format!("ide-hd,drive=target,bus={bus},bootindex=1{serial}{model}"),
            ])
        }
        DiskBus::Scsi => {
            let model = disk
                .model
                .as_deref()
                .map(|m| format!(",product={}", clip(m, 16)))
                .unwrap_or_default();
            args.push(["-device", "virtio-scsi-pci,id=scsi0"]);
            args.push([
                "-device".to_string(),
                format!("scsi-hd,drive=target,bus=scsi0.0,bootindex=1{serial}{model}"),
            ]);
        }
        DiskBus::Nvme => {
            // QEMU refuses an NVMe controller without a serial number.
            let serial = disk.serial.as_deref().unwrap_or("ferry-disk");
            args.push([
                "-device".to_string(),
                format!("nvme,drive=target,serial={},bootindex=1", clip(serial, 20)),
            ]);
        }
    }
}

/// QEMU option values separate with commas; a literal comma is written twice.
fn escape(path: &Path) -> String {
    escape_str(&path.display().to_string())
}

fn escape_str(value: &str) -> String {
    value.replace(',', ",,")
}

#[derive(Default)]
struct Args(Vec<String>);

impl Args {
    fn push<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, items: I) {
        self.0.extend(items.into_iter().map(Into::into));
    }
}

/// A command line as a shell would need it typed, for `qemu.args` and error messages.
pub fn shell_quote(program: &Path, args: &[String]) -> String {
    std::iter::once(program.display().to_string())
        .chain(args.iter().cloned())
        .map(|a| quote_word(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One word as a POSIX shell (or GLib's `g_shell_parse_argv`) reads it back.
pub fn quote_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            accel: AccelKind::Tcg,
            memory_mib: 1024,
            cpus: 2,
            firmware: FirmwareFiles::Bios,
            disk: Disk {
                path: "/tmp/disk.img".into(),
                bus: DiskBus::Virtio,
                cache: CacheMode::Writeback,
                serial: None,
                model: None,
                writes: DiskWrites::Kept,
            },
            cdrom: Some(Media::File {
                path: "/isos/tiny.iso".into(),
            }),
            kernel: Some(KernelBoot {
                kernel: "/run/k".into(),
                initrd: Some("/run/i".into()),
                append: "quiet console=ttyS0,115200n8".into(),
            }),
            mac: Some("52:54:00:12:34:56".into()),
            guestfwd: None,
            serial_socket: "/run/serial.sock".into(),
            qmp_socket: "/run/qmp.sock".into(),
            screen_socket: None,
        }
    }

    fn joined(m: &Machine) -> String {
        command_line(m).join(" ")
    }

    #[test]
    fn install_machine() {
        assert_eq!(
            joined(&machine()),
            "-nodefaults -no-user-config -no-reboot -machine pc -accel tcg -cpu max -m 1024 -smp 2 \
             -drive if=none,id=target,format=raw,file=/tmp/disk.img,cache=writeback,discard=unmap \
             -device virtio-blk-pci,drive=target,bootindex=1 \
             -drive if=none,id=installer,media=cdrom,readonly=on,format=raw,file=/isos/tiny.iso \
             -device ide-cd,drive=installer,bus=ide.1 \
             -kernel /run/k -initrd /run/i --preconfig \
             -netdev user,id=net0 -device virtio-net-pci,netdev=net0,romfile=,mac=52:54:00:12:34:56 \
             -chardev socket,id=serial0,path=/run/serial.sock,server=on,wait=on -serial chardev:serial0 \
             -qmp unix:/run/qmp.sock,server=on,wait=on -vga std -display none"
        );
    }

    #[test]
    fn streamed_media_is_a_read_only_nbd_drive() {
        let media = Media::Nbd {
            socket: "/run/ferry/a,b/installer.nbd".into(),
            export: "installer".into(),
        };
        assert_eq!(
            media.drive("installer"),
            "if=none,id=installer,media=cdrom,readonly=on,format=raw,file.driver=nbd,\
             file.server.type=unix,file.server.path=/run/ferry/a,,b/installer.nbd,file.export=installer"
        );
    }

    #[test]
    fn the_kernel_command_line_is_never_an_argument() {
        let args = command_line(&machine());
        assert!(
            args.iter()
                .all(|a| a != "-append" && !a.contains("console="))
        );
        assert!(args.iter().any(|a| a == "--preconfig"), "{args:?}");
    }

    #[test]
    fn verify_machine_has_only_the_disk() {
        let mut m = machine();
        m.cdrom = None;
        m.kernel = None;
        let line = joined(&m);
        assert!(
            !line.contains("-kernel") && !line.contains("installer") && !line.contains("preconfig")
        );
        assert!(line.contains("virtio-blk-pci,drive=target,bootindex=1"));
    }

    #[test]
    fn discarded_writes_go_to_a_snapshot() {
        let mut m = machine();
        m.disk.writes = DiskWrites::Discarded;
        assert!(joined(&m).contains(
            "-drive if=none,id=target,format=raw,file=/tmp/disk.img,cache=writeback,\
             discard=unmap,snapshot=on "
        ));
        assert!(!joined(&machine()).contains("snapshot"));
    }

    #[test]
    fn loader_boot_puts_the_cd_first_and_reads_the_screen() {
        let mut m = machine();
        m.kernel = None;
        m.screen_socket = Some("/run/screen.sock".into());
        let line = joined(&m);
        assert!(!line.contains("-kernel"), "{line}");
        assert!(
            line.contains("-device ide-cd,drive=installer,bus=ide.1,bootindex=0"),
            "{line}"
        );
        assert!(
            line.contains("-qmp unix:/run/screen.sock,server=on,wait=on -vga std"),
            "{line}"
        );
        let arm = command_line_for(Arch::Aarch64, &m).join(" ");
        assert!(
            arm.contains("scsi-cd,drive=installer,bus=cdscsi.0,bootindex=0"),
            "{arm}"
        );
    }

    #[test]
    fn uefi_uses_pflash_code_and_vars_copy() {
        let mut m = machine();
        m.firmware = FirmwareFiles::Uefi {
            code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
            vars: "/run/vars.fd".into(),
        };
        let line = joined(&m);
        assert!(line.contains(
            "-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
             -drive if=pflash,format=raw,unit=1,file=/run/vars.fd"
        ));
    }

    #[test]
    fn disk_buses() {
        let mut m = machine();
        m.disk.cache = CacheMode::None;
        m.disk.bus = DiskBus::Nvme;
        m.disk.serial = Some("S4EWNX0R".into());
        let line = joined(&m);
        assert!(line.contains("cache=none,aio=native"));
        assert!(line.contains("-device nvme,drive=target,serial=S4EWNX0R,bootindex=1"));
        m.disk.bus = DiskBus::Sata;
        assert!(
            joined(&m)
                .contains("-device ide-hd,drive=target,bus=ide.0,bootindex=1,serial=S4EWNX0R")
        );
        m.disk.model = Some("Samsung SSD 870 EVO 1TB, rev".into());
        assert!(
            joined(&m).contains("bootindex=1,serial=S4EWNX0R,model=Samsung SSD 870 EVO 1TB,, rev")
        );
        m.disk.serial = Some("0123456789abcdefghijKLMN".into());
        assert!(joined(&m).contains(",serial=0123456789abcdefghij,model="));
        m.disk.serial = Some("S4EWNX0R".into());
        m.disk.model = None;
        m.disk.bus = DiskBus::Scsi;
        assert!(
            joined(&m).contains(
                "-device virtio-scsi-pci,id=scsi0 -device scsi-hd,drive=target,bus=scsi0.0"
            )
        );
        m.disk.serial = None;
        m.disk.bus = DiskBus::Nvme;
        assert!(joined(&m).contains("nvme,drive=target,serial=ferry-disk"));
    }

    #[test]
    fn kvm_and_commas_in_paths() {
        let mut m = machine();
        m.accel = AccelKind::Kvm;
        m.disk.path = "/tmp/a,b.img".into();
        let line = joined(&m);
        assert!(line.contains("-accel kvm"));
        assert!(line.contains("file=/tmp/a,,b.img,"));
    }

    #[test]
    fn aarch64_virt_machine() {
        let mut m = machine();
        m.firmware = FirmwareFiles::Uefi {
            code: "/b/share/qemu/AAVMF_CODE.fd".into(),
            vars: "/run/vars.fd".into(),
        };
        m.kernel.as_mut().unwrap().append = "console=ttyAMA0".into();
        assert_eq!(
            command_line_for(Arch::Aarch64, &m).join(" "),
            "-nodefaults -no-user-config -no-reboot -machine virt,gic-version=3 -accel tcg -cpu max -m 1024 -smp 2 \
             -drive if=pflash,format=raw,unit=0,readonly=on,file=/b/share/qemu/AAVMF_CODE.fd \
             -drive if=pflash,format=raw,unit=1,file=/run/vars.fd \
             -drive if=none,id=target,format=raw,file=/tmp/disk.img,cache=writeback,discard=unmap \
             -device virtio-blk-pci,drive=target,bootindex=1 \
             -drive if=none,id=installer,media=cdrom,readonly=on,format=raw,file=/isos/tiny.iso \
             -device virtio-scsi-pci,id=cdscsi -device scsi-cd,drive=installer,bus=cdscsi.0 \
             -kernel /run/k -initrd /run/i --preconfig \
             -netdev user,id=net0 -device virtio-net-pci,netdev=net0,romfile=,mac=52:54:00:12:34:56 \
             -chardev socket,id=serial0,path=/run/serial.sock,server=on,wait=on -serial chardev:serial0 \
             -qmp unix:/run/qmp.sock,server=on,wait=on -device virtio-gpu-pci -display none"
        );
        m.disk.bus = DiskBus::Sata;
        assert!(command_line_for(Arch::Aarch64, &m).join(" ").contains(
            "-device ich9-ahci,id=ahci -device ide-hd,drive=target,bus=ahci.0,bootindex=1"
        ));
        assert_eq!(command_line(&m), command_line_for(Arch::X86_64, &m));
    }

    #[test]
    fn shell_quoting() {
        let q = shell_quote(
            Path::new("/usr/bin/qemu"),
            &["-append".into(), "a b 'c'".into(), "x=1,y".into()],
        );
        assert_eq!(q, r"/usr/bin/qemu -append 'a b '\''c'\''' x=1,y");
    }
}
