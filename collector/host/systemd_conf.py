"""systemd's configuration files as systemd reads them: the INI syntax (parse_conf), which
drop-ins apply and in what order (dropins, conf_files, unit_files), the value syntax of
numbers and sizes (time spans: collector/host/timespans.py). Every path through the
injectable root (collector/host/hostroot.py HostFiles), so unit tests read recorded trees.
"""
import math

# A daemon's NAME.conf: the main file is the first of these that exists (newer systemd ships it
# in /usr/lib only), then every drop-in *.conf of the NAME.conf.d dirs. A drop-in name found
# in several dirs is taken from the first dir (/etc over /run over /usr/local/lib over
# /usr/lib); all are applied in lexical order of their names, a later one winning.
CONF_DIRS = ("/etc/systemd", "/run/systemd", "/usr/local/lib/systemd", "/usr/lib/systemd")
# the system manager's unit search path, highest priority first (systemd.unit(5))
UNIT_DIRS = ("/etc/systemd/system.control", "/run/systemd/system.control",
             "/run/systemd/transient", "/run/systemd/generator.early",
             "/etc/systemd/system", "/etc/systemd/system.attached", "/run/systemd/system",
             "/run/systemd/system.attached", "/run/systemd/generator",
             "/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system",
             "/run/systemd/generator.late")


def parse_unsigned(text):
    s = text.strip()
    if not s.isdigit() or not s.isascii():
        raise ValueError(f"{text!r} is not an unsigned integer")
    return int(s)


def parse_size(text):
    """Bytes of a journald.conf size ("512M", "1G", "4096"; base 1024); ValueError."""
    s = text.strip()
    factors = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50,
               "E": 1 << 60}
    f = 1
    if s and s[-1] in factors:
        s, f = s[:-1], factors[s[-1]]
    try:
        v = float(s)
    except ValueError:
        raise ValueError(f"{text!r} is not a size (like 512M, 1G)") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{text!r} is not a size (like 512M, 1G)")
    return int(v * f)


def parse_conf(text):
    """[(section, key, value)] of a systemd INI file in order: comments (# ;) skipped,
    a trailing backslash continues a line."""
    out, section, pending = [], None, ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, sep, value = line.partition("=")
        if sep:
            out.append((section, key.strip(), value.strip()))
    return out


def dropins(files, dirs, suffix=".conf"):
    """[host path] of the drop-ins in `dirs` (highest priority first): one per file name,
    from the first dir that has it, in lexical order of the names; masked ones left out."""
    chosen = {}
    for d in dirs:
        for name in files.listdir(d):
            if name.endswith(suffix) and name not in chosen:
                chosen[name] = f"{d}/{name}"
    return [chosen[n] for n in sorted(chosen) if not files.masked(chosen[n])]


def _unit_names(unit):
    """The names whose drop-ins apply to `unit`, least specific first: the unit type
    ("service.d"), the "-" prefixes ("a-.service.d" for a-b.service), the template
    ("x@.service.d" for x@1.service), the unit itself (systemd.unit(5))."""
    stem, dot, kind = unit.rpartition(".")
    if not dot:
        return [unit]
    names = [kind]
    base = stem.split("@", 1)[0]
    pieces = base.split("-")
    for i in range(1, len(pieces)):
        names.append("-".join(pieces[:i]) + "-." + kind)
    if "@" in stem:
        names.append(stem.split("@", 1)[0] + "@." + kind)
    names.append(unit)
    return names


def conf_files(files, name):
    """[host path] a daemon reads its settings from ("journald.conf"), in the order it
    applies them: the main file, then its drop-ins."""
    main = next((f"{d}/{name}" for d in CONF_DIRS if files.isfile(f"{d}/{name}")), None)
    return ([main] if main else []) + dropins(files, [f"{d}/{name}.d" for d in CONF_DIRS])


def unit_files(files, unit):
    """[host path] of `unit`'s file and drop-ins in the order systemd applies them
    (no file: drop-ins only; masked: [])."""
    stem, _, kind = unit.rpartition(".")
    template = stem.split("@", 1)[0] + "@." + kind if "@" in stem else None
    main = None
    for d in UNIT_DIRS:
        for name in (unit, template):
            if name and files.lexists(f"{d}/{name}"):
                main = f"{d}/{name}"
                break
        if main:
            break
    if main and files.masked(main):
        return []
    dirs = [f"{d}/{name}.d" for name in _unit_names(unit) for d in UNIT_DIRS]
    return ([main] if main else []) + dropins(files, dirs)
