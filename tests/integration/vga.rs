//! The VGA text screen as a console and typed keys, on real QEMU (TCG): a hand-assembled
//! boot sector writes only to the screen (through the BIOS; there is no serial output at all),
//! echoes what is typed, and switches to a graphics mode on `G`.

use std::path::Path;
use std::time::Duration;

use ferry::console::keys::Keys;
use ferry::console::vga::{self, ScreenFeed};
use ferry::console::{Console, ExpectError, Expectation, Pattern, transcript};
use ferry::profile::DiskBus;
use ferry::qemu::vga::VgaMonitor;
use ferry::qemu::{
    AccelKind, CacheMode, Disk, DiskWrites, FirmwareFiles, Machine, Qemu, QemuBinary, command_line,
};

/// The boot sector's code (GNU as, `.code16`, linked at 0x7c00), then its data:
///
/// ```text
///   cli; xor %ax,%ax; mov %ax,%ds; mov %ax,%ss; mov $0x7c00,%sp; sti
///   mov $0x0003,%ax; int $0x10              # 80x25 text mode, screen cleared
///   mov $banner,%si; call puts
/// prompt: mov $promptmsg,%si; call puts
/// keys: xor %ah,%ah; int $0x16                # wait for a key: %al ASCII, %ah scan code
///   cmp $0x0d,%al; je enter
///   cmp $0x47,%al; je graphics              # 'G'
///   test %al,%al; jz special; cmp $0xe0,%al; je special
///   call putc; jmp keys
/// special: mov %ah,%bl; mov $0x5e,%al; call putc; mov %bl,%al; call putc; jmp keys   # ^scan
/// enter: mov $crlf,%si; call puts; jmp prompt
/// graphics: mov $0x0013,%ax; int $0x10; jmp keys                                    # mode 13h
/// puts: lodsb; test %al,%al; jz 1f; call putc; jmp puts; 1: ret
/// putc: push %bx; mov $0x0e,%ah; mov $0x0007,%bx; int $0x10; pop %bx; ret          # teletype
/// banner: .asciz "FERRY VGA TEST \x01\xc4\xb0\r\n"
/// promptmsg: .asciz "boot> "
/// crlf: .asciz "\r\n"
/// ```
const BOOT_CODE: &[u8] = &[
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0xfb, 0xb8, 0x03, 0x00, 0xcd, 0x10,
    0xbe, 0x67, 0x7c, 0xe8, 0x3c, 0x00, 0xbe, 0x7c, 0x7c, 0xe8, 0x36, 0x00, 0x30, 0xe4, 0xcd, 0x16,
    0x3c, 0x0d, 0x74, 0x1f, 0x3c, 0x47, 0x74, 0x23, 0x84, 0xc0, 0x74, 0x09, 0x3c, 0xe0, 0x74, 0x05,
    0xe8, 0x2a, 0x00, 0xeb, 0xe7, 0x88, 0xe3, 0xb0, 0x5e, 0xe8, 0x21, 0x00, 0x88, 0xd8, 0xe8, 0x1c,
    0x00, 0xeb, 0xd9, 0xbe, 0x83, 0x7c, 0xe8, 0x09, 0x00, 0xeb, 0xcb, 0xb8, 0x13, 0x00, 0xcd, 0x10,
    0xeb, 0xca, 0xac, 0x84, 0xc0, 0x74, 0x05, 0xe8, 0x03, 0x00, 0xeb, 0xf6, 0xc3, 0x53, 0xb4, 0x0e,
    0xbb, 0x07, 0x00, 0xcd, 0x10, 0x5b, 0xc3, 0x46, 0x45, 0x52, 0x52, 0x59, 0x20, 0x56, 0x47, 0x41,
    0x20, 0x54, 0x45, 0x53, 0x54, 0x20, 0x01, 0xc4, 0xb0, 0x0d, 0x0a, 0x00, 0x62, 0x6f, 0x6f, 0x74,
    0x3e, 0x20, 0x00, 0x0d, 0x0a, 0x00,
];

fn write_boot_disk(path: &Path) {
    let mut sector = vec![0u8; 512];
    sector[..BOOT_CODE.len()].copy_from_slice(BOOT_CODE);
    sector[510..].copy_from_slice(&[0x55, 0xaa]);
    std::fs::write(path, sector).unwrap();
}

/// QEMU booting the boot sector, its screen as a console recorded into `dir`.
fn boot(dir: &Path) -> (Qemu, Console, ScreenFeed) {
    let disk = dir.join("boot.img");
    write_boot_disk(&disk);
    let machine = Machine {
        accel: AccelKind::Tcg,
        memory_mib: 64,
        cpus: 1,
        firmware: FirmwareFiles::Bios,
        disk: Disk {
            path: disk,
            bus: DiskBus::Sata,
            cache: CacheMode::Writeback,
            serial: None,
            model: None,
            writes: DiskWrites::Kept,
        },
        cdrom: None,
        kernel: None,
        mac: None,
        guestfwd: None,
        serial_socket: dir.join("serial.sock"),
        qmp_socket: dir.join("qmp.sock"),
        screen_socket: Some(dir.join("screen.sock")),
    };
    let args = command_line(&machine);
    let binary = QemuBinary::find(None).expect("qemu-system-x86_64 on PATH");
    let stderr = dir.join("qemu.stderr");
    let file = Box::new(std::fs::File::create(&stderr).unwrap());
    let mut vm = Qemu::start(&binary, &args, &machine, &stderr, file).unwrap();
    let screen = vm
        .screen
        .take()
        .expect("the screen monitor, connected at start-up");
    let monitor = VgaMonitor::connect(screen, dir).unwrap();
    let (stream, feed) = vga::start(monitor, Duration::from_millis(100)).unwrap();
    let console = Console::start(stream, transcript::create(dir, "vga test").unwrap()).unwrap();
    (vm, console, feed)
}

fn wait(pattern: Pattern, seconds: u64) -> Expectation {
    Expectation::new("screen", vec![pattern], Duration::from_secs(seconds))
}

#[test]
fn the_screen_is_read_typed_at_and_its_mode_seen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut vm, mut console, feed) = boot(dir.path());

    // Code page 437: 0x01 is a smiley, 0xC4 a box line, 0xB0 a light shade.
    let m = console
        .expect(&wait(
            Pattern::regex(r"(?m)^FERRY VGA TEST ☺─░\nboot>$"),
            60,
        ))
        .unwrap();
    assert!(m.text.ends_with("boot>"), "{m:?}");

    let keys = Keys::parse("echo Hi ~<leftCtrlOn>c<leftCtrlOff><up><f1><enter>").unwrap();
    assert!(
        vm.qmp
            .type_keys(&keys, Duration::from_millis(20), &|| false)
            .unwrap()
    );
    console.record_input(&keys.source);
    // Ctrl-C is ASCII 3, drawn as a heart; arrows and F1 come as scan codes 0x48 ('H') and
    // 0x3B (';') after the boot sector's '^'. The echo joins the prompt's line (the prompt
    // itself was taken by the last match), then Enter's new prompt ends the text.
    let m = console
        .expect(&wait(Pattern::regex(r".*\nboot>$"), 30))
        .unwrap();
    assert_eq!(m.text, " echo Hi ~♥^H^;\nboot>");

    // A step waiting for text that never comes shows the last screen.
    let e = console
        .expect(&wait(Pattern::literal("never shown"), 1))
        .unwrap_err();
    assert!(matches!(e, ExpectError::Timeout { .. }));
    let shown = e.to_string();
    assert!(shown.contains("| boot> echo Hi ~♥^H^;"), "{shown}");
    assert_eq!(
        feed.last_lines(3),
        ["FERRY VGA TEST ☺─░", "boot> echo Hi ~♥^H^;", "boot>"]
    );

    // 'G' switches to mode 13h: said once in the stream.
    vm.qmp
        .type_keys(
            &Keys::parse("G").unwrap(),
            Duration::from_millis(20),
            &|| false,
        )
        .unwrap();
    console
        .expect(&wait(
            Pattern::literal("[ferry: the screen is in a graphics mode"),
            30,
        ))
        .unwrap();
    assert_eq!(feed.capture(), Some(vga::Capture::Graphics));

    drop(console);
    drop(feed);
    vm.stop().unwrap();
    // The transcript holds the screen's text as output and the typed keys as input.
    let cast = std::fs::read_to_string(dir.path().join(transcript::TRANSCRIPT_CAST)).unwrap();
    let events: Vec<serde_json::Value> = cast
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let input: Vec<&str> = events
        .iter()
        .filter(|e| e[1] == "i")
        .map(|e| e[2].as_str().unwrap())
        .collect();
    assert_eq!(input, [keys.source.as_str()]);
    let output: String = events
        .iter()
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap())
        .collect();
    assert!(
        output.contains("FERRY VGA TEST ☺─░\r\nboot> echo Hi"),
        "{output}"
    );
}
