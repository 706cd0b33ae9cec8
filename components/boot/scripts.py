"""The files of the top-level ``userdata/`` package: which ones each role needs, where the
user data puts them on the instance, and the compact copy it embeds.

  /usr/local/lib/cloudstack-ec2/{common.sh,stage2.sh,overlay-network.sh}
      (+ ROLE_EXTRA_SCRIPTS: overlay-router.sh, the router's part of overlay-network.sh,
      on the router; console-forwards.sh on the management servers)
  /usr/local/lib/cloudstack-ec2/{library.sh,<role script>}   installed by stage2.sh (verified)
  /usr/local/sbin/cloudstack-ec2-boot -> stage2.sh (re-run entry point)
  /etc/systemd/system/cloudstack-ec2-{overlay,boot}.service (+ the members' firewall)
  /etc/cloudstack-ec2/boot.env     settings of the scripts (CSEC2_*, with CSEC2_STAGE2_*)
  /etc/cloudstack-ec2/overlay.env  settings of overlay-network.sh
"""

from __future__ import annotations

from importlib import resources

from components.boot.checks import UserDataError

# Where the user data puts things on the instance (the scripts' production
# defaults; see userdata/common.sh).
LIB_DIR = "/usr/local/lib/cloudstack-ec2"
ETC_DIR = "/etc/cloudstack-ec2"
UNIT_DIR = "/etc/systemd/system"
BOOT_LINK = "/usr/local/sbin/cloudstack-ec2-boot"

ROLE_SCRIPTS = {"router": "router.sh", "management": "management-server.sh", "kvm-host": "kvm-host.sh"}
#: The launcher the user data runs: it fetches, verifies and execs the role script.
STAGE2_LAUNCHER = "stage2.sh"
#: Stage 2's script of every role besides its own: the CloudWatch agent's installer
#: (run by csec2_cloudwatch_agent in library.sh), an object of the boot-script bucket too.
AGENT_SCRIPT = "cloudwatch-agent.sh"
#: The second part of the shared library (the first, common.sh, is in the user data): what
#: the role scripts use and stage 1 does not; an object of the boot-script bucket that
#: stage2.sh installs beside common.sh before the role script.
LIBRARY_SCRIPT = "library.sh"
#: Scripts of one role that stage 1 writes beside the shared ones: the router's part of
#: overlay-network.sh (its overlay unit needs it before the network works); the management
#: servers' console forwards publisher (run by its timer, outside the boot).
ROLE_EXTRA_SCRIPTS = {"router": ("overlay-router.sh",), "management": ("console-forwards.sh",), "kvm-host": ()}
ROLE_UNITS = {
    "router": ("cloudstack-ec2-overlay.service", "cloudstack-ec2-boot.service",
               "cloudstack-ec2-forwards.service", "cloudstack-ec2-forwards.timer"),
    "management": ("cloudstack-ec2-overlay.service", "cloudstack-ec2-boot.service",
                   "cloudstack-ec2-host-firewall.service", "cloudstack-ec2-console-forwards.service",
                   "cloudstack-ec2-console-forwards.timer"),
    "kvm-host": ("cloudstack-ec2-overlay.service", "cloudstack-ec2-boot.service",
                 "cloudstack-ec2-host-firewall.service"),
}


def load_boot_files() -> dict[str, str]:
    """The package's userdata/ files the user data embeds or the bucket holds (name -> text).

    Raises UserDataError naming a file missing from the installed package."""
    names = ["common.sh", "overlay-network.sh", *sorted({s for extra in ROLE_EXTRA_SCRIPTS.values() for s in extra}),
             STAGE2_LAUNCHER, *ROLE_SCRIPTS.values(), AGENT_SCRIPT, LIBRARY_SCRIPT,
             *sorted({u for units in ROLE_UNITS.values() for u in units})]
    root = resources.files("userdata")
    files = {}
    for name in names:
        item = root.joinpath(name)
        if not item.is_file():
            raise UserDataError(f"userdata/{name} is missing from the package")
        files[name] = item.read_text(encoding="utf-8")
    return files


def strip_comments(text: str, source: str) -> str:
    """Drops full-line comments (keeps a first-line shebang): the scripts are
    documented in the repository; on the instance every byte counts against
    EC2's 16 KiB. Only lines whose first non-blank character is '#' go (but
    shellcheck directives), which
    in these files are comments, shellcheck directives or comments of embedded
    config files; tests run the stripped scripts."""
    lines = text.splitlines()
    kept = []
    if lines and lines[0].startswith("#!"):
        kept.append(lines[0])
        lines = lines[1:]
    kept.append(f"# {source} of cloudstack-ec2 (comments stripped; see the repository)")
    # shellcheck directives stay, so the embedded copies pass shellcheck as well.
    kept.extend(line for line in lines
                if not line.lstrip().startswith("#") or line.lstrip().startswith("# shellcheck "))
    return "\n".join(kept) + "\n"


#: Scripts whose indentation carries no meaning except inside `python3 -c '`
#: blocks (heredocs: SQL, nft); their embedded copies lose leading blanks. Scripts
#: of other owners (kvm-host.sh) keep theirs: one whitespace-sensitive heredoc
#: would break silently.
DEDENTED_SCRIPTS = ("common.sh", "management-server.sh", "overlay-network.sh", "overlay-router.sh", "router.sh")


def dedent_shell(text: str) -> str:
    """Drops leading blanks of every line but those inside a `python3 -c '` block
    (from the line ending in `python3 -c '` to the line starting with `'`), where
    indentation is syntax. Saves about 3 % of the compressed user data."""
    out, in_python = [], False
    for line in text.splitlines():
        if in_python:
            in_python = not line.startswith("'")
            out.append(line)
            continue
        out.append(line.lstrip(" \t"))
        in_python = line.rstrip().endswith("python3 -c '")
    return "\n".join(out) + "\n"


def embedded_script(name: str, text: str) -> str:
    """The copy of userdata/`name` the user data writes: comments stripped, and
    dedented for DEDENTED_SCRIPTS."""
    text = strip_comments(text, f"userdata/{name}")
    return dedent_shell(text) if name in DEDENTED_SCRIPTS else text
