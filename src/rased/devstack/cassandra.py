"""A single-node Cassandra 5.0, run with `java` from Cassandra's own jars on Maven Central."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import string
import zipfile
from pathlib import Path
from typing import ClassVar

from cassandra.cluster import (
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
)
from cassandra.policies import WhiteListRoundRobinPolicy

from rased.devstack.base import ManagedServer, Progress, StackError
from rased.devstack.maven import COMPLETE_MARKER, install_jars, java_home_binary

# Cassandra's bin/cassandra passes these from conf/jvm17-server.options; only the jar is on
# Maven Central, so they are reproduced here. Without them the node stops at once on Java 17
# ("FATAL: Cassandra is unable to access required classes": IllegalAccessException on
# sun.nio.ch.DirectBuffer in FileUtils); Chronicle, jamm and netty need the rest.
JAVA17_MODULE_OPTIONS: tuple[str, ...] = (
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports=java.sql/java.sql=ALL-UNNAMED",
    "--add-exports=java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports=jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    # Netty: direct buffers through Unsafe, and the allocator defaults Cassandra relies on.
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
)

# conf/jvm-server.options and jvm17-server.options, less what only pays off on a big
# production box: -XX:+AlwaysPreTouch would fault in the whole heap before the first log
# line (slower start, full RSS at once) and -XX:+UseNUMA means nothing on one socket.
GENERAL_JVM_OPTIONS: tuple[str, ...] = (
    "-ea",
    "-da:net.openhft...",
    "-XX:+UseThreadPriorities",
    "-XX:+HeapDumpOnOutOfMemoryError",
    "-Xss256k",
    "-XX:+UseTLAB",
    "-XX:+ResizeTLAB",
    "-XX:+PerfDisableSharedMem",
    "-Djava.net.preferIPv4Stack=true",
    "-XX:+UseG1GC",
    "-XX:+ParallelRefProcEnabled",
    "-XX:MaxTenuringThreshold=1",
    "-XX:G1HeapRegionSize=16m",
    "-XX:G1RSetUpdatingPauseTimePercent=5",
    "-XX:MaxGCPauseMillis=300",
    "-XX:InitiatingHeapOccupancyPercent=70",
    # cassandra-env.sh kills the JVM on OutOfMemoryError (state may be corrupt): exit likewise.
    "-XX:+ExitOnOutOfMemoryError",
)

# Start-up and shutdown of a single node: these only shorten waits meant for multi-node clusters.
FAST_START_PROPERTIES: tuple[str, ...] = (
    # No other node can change the gossip state, so do not wait for it to settle.
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    # Waits for peers' schema and tokens before joining the ring (30 s by default).
    "-Dcassandra.ring_delay_ms=100",
    "-Dcassandra.schema_delay_ms=100",
    "-Dcassandra.migration_delay_ms=100",
    # Create the default roles right away instead of 10 s after start.
    "-Dcassandra.superuser_setup_delay_ms=0",
    # No 2 s pause on shutdown to tell peers about it: there are none.
    "-Dcassandra.shutdown_announce_in_ms=0",
)


class CassandraServer(ManagedServer):
    """Cassandra 5.0 as one seed node, with a 1 GiB heap, no auth and no JMX port."""

    name = "cassandra"

    # Equal -Xms and -Xmx as Cassandra recommends (no heap resizing pauses); no -Xmn with G1
    # (cassandra-env.sh refuses that combination: it overrides the pause-time goal).
    HEAP: ClassVar[tuple[str, ...]] = ("-Xms1G", "-Xmx1G")
    MAIN_CLASS: ClassVar[str] = "org.apache.cassandra.service.CassandraDaemon"
    # What the driver sees: system.local has exactly one row, the node itself.
    PROBE_QUERY: ClassVar[str] = "SELECT release_version FROM system.local"
    PROBE_TIMEOUT_S: ClassVar[float] = 5.0
    # Bytes a process may lock (see _no_mlock): the usual default, far below any heap.
    MEMLOCK_LIMIT: ClassVar[int] = 64 * 1024

    # -- folders ------------------------------------------------------------------------

    @property
    def version(self) -> str:
        """Cassandra version (cassandra-all on Maven Central)."""
        return self.settings.cassandra_version

    @property
    def lib_dir(self) -> Path:
        """Folder holding the node's classpath for the configured version."""
        return self.home / f"lib-{self.version}"

    @property
    def installed_marker(self) -> Path:
        """File written once every jar of the classpath has been copied."""
        return self.lib_dir / COMPLETE_MARKER

    @property
    def conf_dir(self) -> Path:
        """Folder with the generated cassandra.yaml, logback.xml and JIT hints."""
        return self.home / "conf"

    @property
    def config_file(self) -> Path:
        """The node's cassandra.yaml."""
        return self.conf_dir / "cassandra.yaml"

    @property
    def storage_dir(self) -> Path:
        """Parent of every folder the node writes data to (cassandra.storagedir)."""
        return self.home / "storage"

    @property
    def pom(self) -> Path:
        """Maven pom that resolves cassandra-all and its runtime dependencies."""
        return self.repo / "stack" / "cassandra" / "pom.xml"

    @property
    def template(self) -> Path:
        """Template of cassandra.yaml in the repository."""
        return self.repo / "stack" / "cassandra" / "cassandra.yaml.template"

    # -- ManagedServer ------------------------------------------------------------------

    @property
    def ports(self) -> dict[str, int]:
        """CQL native port first, then the storage (gossip) port."""
        return {
            "cassandra_port": self.settings.cassandra_port,
            "cassandra_storage_port": self.settings.cassandra_storage_port,
        }

    def install(self, progress: Progress) -> None:
        """Copy Cassandra's jars from Maven Central (through ~/.m2) into the state folder, once."""
        install_jars(
            "cassandra",
            self.pom,
            "cassandra.version",
            self.version,
            self.lib_dir,
            self._main_jar().name,
            progress,
        )

    def prepare(self, progress: Progress) -> None:
        """Write cassandra.yaml and logging config; create missing data folders, keep the rest."""
        if not self.installed_marker.is_file():
            raise StackError(f"cassandra: {self.version} is not installed; run install() first")
        folders = (self.conf_dir / "triggers", *self._data_dirs().values(), self.home / "logs")
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self._render_yaml())
        shutil.copyfile(
            self.repo / "stack" / "cassandra" / "logback.xml", self.conf_dir / "logback.xml"
        )
        # The JIT hints Cassandra ships as conf/hotspot_compiler are also in the jar.
        with zipfile.ZipFile(self._main_jar()) as jar:
            (self.conf_dir / "hotspot_compiler").write_bytes(jar.read("META-INF/hotspot_compiler"))
        progress(f"cassandra: config {self.config_file}, data in {self.storage_dir}")

    def command(self) -> list[str]:
        """Run CassandraDaemon in the foreground, as bin/cassandra -f would, without the script."""
        logs = self.home / "logs"
        return [
            *self._no_mlock(),
            str(self._java_binary()),
            *self.HEAP,
            *GENERAL_JVM_OPTIONS,
            *JAVA17_MODULE_OPTIONS,
            f"-XX:HeapDumpPath={logs}",
            "-XX:CompileCommand=quiet",
            f"-XX:CompileCommandFile={self.conf_dir / 'hotspot_compiler'}",
            # jamm measures object sizes (memtable accounting) best as an agent.
            f"-javaagent:{self._jar('jamm-')}",
            f"-Dcassandra.config={self.config_file.as_uri()}",
            f"-Dcassandra.storagedir={self.storage_dir}",
            f"-Dcassandra.logdir={logs}",
            f"-Dlogback.configurationFile={self.conf_dir / 'logback.xml'}",
            # Otherwise it looks for conf/triggers next to the working directory and warns.
            f"-Dcassandra.triggers_dir={self.conf_dir / 'triggers'}",
            # Otherwise the daemon closes stdout and stderr once started: the log would stop.
            "-Dcassandra-foreground=yes",
            # No cassandra.jmx.local.port: no JMX port to collide with other local servers
            # (nodetool needs it; nothing in the stack uses nodetool).
            *FAST_START_PROPERTIES,
            "-cp",
            f"{self.lib_dir}/*",
            self.MAIN_CLASS,
        ]

    def environment(self) -> dict[str, str]:
        """Limit glibc malloc arenas as cassandra-env.sh does (less native memory per thread)."""
        return {"MALLOC_ARENA_MAX": "4"}

    async def probe(self) -> str:
        """Ask the node for its release version over CQL and describe it."""
        version = await asyncio.to_thread(self._release_version)
        return f"Cassandra {version}"

    # -- helpers --------------------------------------------------------------------------

    def client_host(self) -> str:
        """Address clients connect to (a wildcard bind is not one)."""
        return "127.0.0.1" if self.settings.host in ("", "0.0.0.0") else self.settings.host

    def _release_version(self) -> str:
        """Connect with the (blocking) driver, read system.local once, and disconnect."""
        host = self.client_host()
        profile = ExecutionProfile(
            load_balancing_policy=WhiteListRoundRobinPolicy([host]),
            request_timeout=self.PROBE_TIMEOUT_S,
        )
        cluster = Cluster(
            contact_points=[host],
            port=self.settings.cassandra_port,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=self.PROBE_TIMEOUT_S,
            control_connection_timeout=self.PROBE_TIMEOUT_S,
            # Cassandra 5.0 speaks v5; naming it skips the driver's downgrade dance and warnings.
            protocol_version=5,
        )
        try:
            row = cluster.connect().execute(self.PROBE_QUERY).one()
        finally:
            cluster.shutdown()
        if row is None:
            raise StackError("cassandra: system.local returned no row")
        return str(row.release_version)

    def _no_mlock(self) -> list[str]:
        """Return a launcher prefix under which the daemon's mlockall() fails at once.

        CassandraDaemon always calls mlockall(MCL_CURRENT) (no option turns it off) so that a
        production node is never swapped out. It succeeds for root, or with an unlimited
        RLIMIT_MEMLOCK, and then faults in the whole heap and every mapped jar before going
        on: 3-4 s of start-up and 1.2 GiB resident at once on a small machine. With a small
        memlock limit and, for root, without CAP_IPC_LOCK, it logs a warning and moves on.
        prlimit and setpriv (util-linux, on every Debian) exec the command: the pid stays.
        """
        prefix = ["prlimit", f"--memlock={self.MEMLOCK_LIMIT}:{self.MEMLOCK_LIMIT}", "--"]
        if os.geteuid() == 0:
            prefix += ["setpriv", "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", "--"]
        return prefix

    def _java_binary(self) -> Path:
        """Return the java to run: $JAVA_HOME/bin/java when set, else the one on PATH."""
        from_home = java_home_binary()
        if from_home is not None:
            return from_home
        found = shutil.which("java")
        if found is None:
            raise StackError("cassandra: `java` is not on PATH; install Java 17")
        return Path(found)

    def _main_jar(self) -> Path:
        """The cassandra-all jar of the configured version."""
        return self.lib_dir / f"cassandra-all-{self.version}.jar"

    def _jar(self, prefix: str) -> Path:
        """Return the one jar of the classpath whose name starts with prefix."""
        found = sorted(self.lib_dir.glob(f"{prefix}*.jar"))
        if len(found) != 1:
            raise StackError(
                f"cassandra: expected one {prefix}*.jar in {self.lib_dir}, found {len(found)}"
            )
        return found[0]

    def _data_dirs(self) -> dict[str, Path]:
        """Folders of cassandra.yaml that hold the node's state, keyed by template name."""
        return {
            "data_dir": self.storage_dir / "data",
            "commitlog_dir": self.storage_dir / "commitlog",
            "saved_caches_dir": self.storage_dir / "saved_caches",
            "hints_dir": self.storage_dir / "hints",
            "cdc_raw_dir": self.storage_dir / "cdc_raw",
        }

    def _render_yaml(self) -> str:
        """Fill the template's placeholders; paths become quoted YAML (JSON) strings."""
        wildcard = self.settings.host in ("", "0.0.0.0")
        values = {name: json.dumps(str(path)) for name, path in self._data_dirs().items()}
        values.update(
            listen_address=self.client_host(),
            # Cassandra may not listen on a wildcard; clients may, if it names itself to them.
            rpc_address="0.0.0.0" if wildcard else self.settings.host,
            broadcast_rpc_address=self.client_host(),
            storage_port=str(self.settings.cassandra_storage_port),
            native_transport_port=str(self.settings.cassandra_port),
        )
        return string.Template(self.template.read_text()).substitute(values)


SERVER = CassandraServer
