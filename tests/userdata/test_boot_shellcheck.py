"""shellcheck (Debian's binary, from .ci/apt-packages.txt) on every boot script:
the sources in userdata/ and the comment-stripped copies the user data embeds."""

import shutil
import subprocess

import pytest

from bootlab import KVM_HOST, MANAGEMENT, REPO, ROUTER, boot_files, render
from components import boot as ud

SHELLCHECK = shutil.which("shellcheck")
SCRIPTS = sorted(p.name for p in (REPO / "userdata").glob("*.sh"))
OWN_SCRIPTS = ["common.sh", "library.sh", "management-server.sh", "kvm-host.sh", "router.sh", "stage2.sh"]


def shellcheck(*paths, cwd):
    assert SHELLCHECK, "shellcheck is missing: install Debian's shellcheck (listed in .ci/apt-packages.txt)"
    return subprocess.run([SHELLCHECK, "-x", "-s", "bash", *map(str, paths)], cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)


def test_own_scripts_are_all_present():
    assert set(OWN_SCRIPTS) <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_source_script_is_shellcheck_clean(name):
    r = shellcheck(REPO / "userdata" / name, cwd=REPO / "userdata")
    assert r.returncode == 0, r.stdout


@pytest.mark.parametrize("boot", [MANAGEMENT, KVM_HOST, ROUTER], ids=["management", "kvm-host", "router"])
def test_rendered_user_data_and_embedded_scripts_are_shellcheck_clean(boot, tmp_path):
    payload = ud.decode_user_data(render(boot))
    (tmp_path / "user-data.sh").write_text(payload)
    files = boot_files()
    for name in OWN_SCRIPTS:
        (tmp_path / name).write_text(ud.embedded_script(name, files[name]))
    r = shellcheck(tmp_path / "user-data.sh", *[tmp_path / n for n in OWN_SCRIPTS], cwd=tmp_path)
    assert r.returncode == 0, r.stdout


def test_stripping_removes_only_comment_lines():
    text = ("#!/bin/bash\n# a comment\n  # indented\nx=1  # trailing stays\necho '#not a line comment'\n"
            "# shellcheck disable=SC2034\n")
    out = ud.strip_comments(text, "t.sh").splitlines()
    assert out[0] == "#!/bin/bash"
    assert "# shellcheck disable=SC2034" in out
    assert "x=1  # trailing stays" in out and "echo '#not a line comment'" in out
    assert "# a comment" not in out and "  # indented" not in out


def test_dedenting_keeps_python_indentation_and_drops_shell_indentation():
    text = ("f() {\n    if x; then\n        y\n    fi\n    v=$(python3 -c '\nimport sys\nfor a in b:\n"
            "    print(a)\n' \"$1\")\n    echo done\n}\n")
    out = ud.dedent_shell(text).splitlines()
    assert out[:4] == ["f() {", "if x; then", "y", "fi"]
    assert "    print(a)" in out, "python block untouched"
    assert "echo done" in out
    # Every script the user data dedents has its python blocks in that form.
    for name in ud.DEDENTED_SCRIPTS:
        source = boot_files()[name]
        for line in source.splitlines():
            if "python3 -c '" in line and not line.rstrip().endswith("python3 -c '"):
                assert line.count("'") % 2 == 0, f"{name}: a one-line python block must close on its line: {line}"
