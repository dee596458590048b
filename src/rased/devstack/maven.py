"""Jars of the JVM servers (Kafka, Cassandra), resolved from Maven Central by a pom in stack/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rased.devstack.apt import ensure_apt_packages
from rased.devstack.base import Progress, StackError, run_checked

COMPLETE_MARKER = ".complete"


def java_home_binary() -> Path | None:
    """Return $JAVA_HOME/bin/java when JAVA_HOME names a JDK or JRE."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return Path(java_home) / "bin" / "java"
    return None


def ensure_java_and_maven(progress: Progress) -> None:
    """Install Java 17 and Maven from Debian's packages where the machine lacks them."""
    # Bookworm's Maven runs on its default JRE, which is Java 17.
    missing = [
        package
        for tool, package in (("java", "openjdk-17-jre-headless"), ("mvn", "maven"))
        if shutil.which(tool) is None and not (tool == "java" and java_home_binary())
    ]
    if missing:
        ensure_apt_packages(missing, progress)


def install_jars(
    server: str,
    pom: Path,
    version_property: str,
    version: str,
    lib_dir: Path,
    main_jar: str,
    progress: Progress,
) -> None:
    """Copy the pom's runtime classpath into lib_dir once; later calls return at once.

    Maven keeps its own cache (~/.m2), so a second install on the same machine downloads
    nothing; the marker file makes a complete lib_dir skip Maven altogether.
    """
    marker = lib_dir / COMPLETE_MARKER
    if marker.is_file():
        return
    ensure_java_and_maven(progress)
    progress(f"{server}: resolving {version_property} {version} with Maven")
    lib_dir.mkdir(parents=True, exist_ok=True)
    run_checked(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(pom),
            f"-D{version_property}={version}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={lib_dir}",
        ],
        f"{server}: maven dependency:copy-dependencies",
    )
    jars = sorted(path.name for path in lib_dir.glob("*.jar"))
    if main_jar not in jars:
        raise StackError(f"{server}: maven finished but {lib_dir} lacks {main_jar}")
    marker.write_text("\n".join(jars) + "\n")
    progress(f"{server}: {len(jars)} jars in {lib_dir}")
