#!/usr/bin/env python3
"""Start-up overhead: from launching `ferry install` to the guest's first serial byte, against
launching a bare qemu-system-x86_64 with the same arguments (taken from the run's qemu.args),
measured the same way: launch, then watch for the first byte. Median of N runs each, the two
kinds interleaved.

The guest is the tiny fixture ISO's kernel with early serial output, so its first byte comes
~70 ms after QEMU starts, always the same: a first byte from the installer's user space would
come seconds later and vary by hundreds of milliseconds under TCG, drowning what is measured.

usage: bench-startup.py FERRY ISO [N]
"""
import json, os, shlex, shutil, socket, statistics, subprocess, sys, tempfile, time

def ferry_first_byte(ferry, profile, scratch):
    runs = os.path.join(scratch, "runs")
    disk = os.path.join(scratch, "disk.img")
    if os.path.exists(disk):
        os.remove(disk)
    t0 = time.monotonic()
    proc = subprocess.Popen([ferry, "install", profile, "--disk", disk, "--size", "1G", "--yes",
                             "--accel", "tcg", "--runs-dir", runs, "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = None
    run_dir = None
    while first is None and proc.poll() is None:
        if run_dir is None and os.path.isdir(runs):
            dirs = sorted(os.listdir(runs))
            if dirs:
                run_dir = os.path.join(runs, dirs[-1])
        if run_dir:
            try:
                if os.path.getsize(os.path.join(run_dir, "serial.log")) > 0:
                    first = time.monotonic() - t0
            except FileNotFoundError:
                pass
        time.sleep(0.0005)
    # The kernel and initrd ferry extracted are removed when it ends: the bare QEMU gets
    # copies, taken while ferry still runs (otherwise it would fail at once, and that
    # failure would pass for its first byte).
    args = open(os.path.join(run_dir, "qemu.args")).read()
    for name in ("kernel", "initrd"):
        shutil.copy(os.path.join(run_dir, name), os.path.join(scratch, name))
        args = args.replace(os.path.join(run_dir, name), os.path.join(scratch, name))
    proc.terminate()
    proc.wait()
    # ferry sets the kernel command line over QMP (never in QEMU's argv); the bare QEMU gets
    # it as -append instead of waiting in --preconfig.
    cmdline = json.load(open(os.path.join(run_dir, "plan.json")))["boot"]["cmdline"]
    return first, args.replace("--preconfig", "-append " + shlex.quote(cmdline))

def qemu_first_byte(args, scratch):
    argv = shlex.split(args)
    sock = argv[argv.index("-chardev") + 1].split("path=")[1].split(",")[0]
    qmp = argv[argv.index("-qmp") + 1].split("unix:")[1].split(",")[0]
    for path in (sock, qmp):
        if os.path.exists(path):
            os.remove(path)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    s = socket.socket(socket.AF_UNIX)
    while True:
        try:
            s.connect(sock)
            break
        except OSError:
            time.sleep(0.0005)
    if not s.recv(1):
        sys.exit(f"bare qemu ended before printing anything: {shlex.join(argv)}")
    first = time.monotonic() - t0
    proc.kill()
    proc.wait()
    s.close()
    return first

PROFILE = """description = "start-up benchmark: the tiny fixture's kernel, talking from its first instant"
[image]
path = "{iso}"
[vm]
memory = "512M"
cpus = 1
firmware = "bios"
[boot]
# The debug entry has no `quiet`; earlyprintk makes the kernel's setup code print at once.
entry = "install-debug"
append = "earlyprintk=serial,ttyS0,115200"
[[steps]]
name = "first serial byte"
expect = "never printed"
timeout = "1m"
"""

def main():
    ferry, iso = sys.argv[1], os.path.abspath(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    with tempfile.TemporaryDirectory(prefix="ferry-bench-") as scratch:
        profile = os.path.join(scratch, "startup.toml")
        with open(profile, "w") as f:
            f.write(PROFILE.format(iso=iso))
        ferry_times, qemu_times = [], []
        for i in range(n):
            t, args = ferry_first_byte(ferry, profile, os.path.join(scratch, f"f{i}"))
            ferry_times.append(t)
            qemu_times.append(qemu_first_byte(args, scratch))
    f, q = statistics.median(ferry_times), statistics.median(qemu_times)
    print(f"ferry start -> first serial byte: median {f*1000:.0f} ms  ({', '.join(f'{t*1000:.0f}' for t in ferry_times)})")
    print(f"bare qemu   -> first serial byte: median {q*1000:.0f} ms  ({', '.join(f'{t*1000:.0f}' for t in qemu_times)})")
    overhead = (f - q) * 1000
    print(f"overhead: {overhead:.0f} ms; target <= 100 ms: {'met' if overhead <= 100 else 'NOT met'}")
    sys.exit(0 if overhead <= 100 else 1)

main()
