"""Install Debian packages the local stack needs, without letting them start their own services."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from rased.devstack.base import Progress, StackError, run_checked

# invoke-rc.d and deb-systemd-invoke ask this script before a maintainer script starts a
# service; exit 101 means "not allowed" (Debian policy, section 9.3.3.1).
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
_DENY_STARTS = "#!/bin/sh\n# Written by rased.devstack.apt while it installs packages.\nexit 101\n"

# Whether this process already ran `apt-get update` (once is enough per process).
_lists = {"updated": False}


def package_is_installed(package: str) -> bool:
    """Tell whether dpkg reports the package as installed."""
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    # Status is "want flag status": "install ok installed"; a removed package keeps
    # "deinstall ok config-files", an unknown one makes dpkg-query fail.
    return result.returncode == 0 and result.stdout.split()[-1:] == ["installed"]


def _privileged(cmd: list[str]) -> list[str]:
    """Prefix a command with sudo when we are not root (and sudo can run without a prompt)."""
    if os.geteuid() == 0:
        return cmd
    if shutil.which("sudo") is None:
        raise StackError(
            f"installing Debian packages needs root: run `{' '.join(cmd)}` as root, or run "
            "the stack as root"
        )
    return ["sudo", "-n", *cmd]


def ensure_apt_packages(
    packages: list[str], progress: Progress, *, start_services: bool = False
) -> list[str]:
    """Install the missing Debian packages; return those it installed.

    The stack runs its own servers on its own ports, so by default a package's maintainer
    scripts may not start the distribution's service (Debian's redis-server would take
    port 6379, its postgresql a cluster on 5432) while they install.
    """
    missing = [package for package in packages if not package_is_installed(package)]
    if not missing:
        return []
    if shutil.which("apt-get") is None:
        raise StackError(f"packages {', '.join(missing)} are missing and apt-get is not available")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _lists["updated"]:
        progress("apt: updating the package lists")
        run_checked(_privileged(["apt-get", "update"]), "apt-get update", env=env)
        _lists["updated"] = True
    progress(f"apt: installing {', '.join(missing)}")
    # Only our own policy file is removed afterwards; one already there (Docker images ship
    # one that denies every start) is the machine's and stays as it is.
    wrote_policy = not start_services and not POLICY_RC_D.exists() and os.geteuid() == 0
    if wrote_policy:
        POLICY_RC_D.write_text(_DENY_STARTS)
        POLICY_RC_D.chmod(0o755)
    try:
        run_checked(
            _privileged(
                [
                    "apt-get",
                    "install",
                    "-y",
                    "--no-install-recommends",
                    # Wait for a concurrent apt run (unattended-upgrades) instead of failing.
                    "-o",
                    "DPkg::Lock::Timeout=300",
                    *missing,
                ]
            ),
            f"apt-get install {' '.join(missing)}",
            env=env,
        )
    finally:
        if wrote_policy:
            POLICY_RC_D.unlink(missing_ok=True)
    still_missing = [package for package in missing if not package_is_installed(package)]
    if still_missing:
        raise StackError(f"apt-get install finished without installing {', '.join(still_missing)}")
    return missing
