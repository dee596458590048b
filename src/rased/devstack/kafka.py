"""A single-node Kafka broker in KRaft mode, run from Kafka's own jars on Maven Central."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from pathlib import Path
from typing import ClassVar

from aiokafka.admin import AIOKafkaAdminClient

from rased.devstack.base import ManagedServer, Progress, StackError, run_checked
from rased.devstack.maven import install_jars


def _new_cluster_id() -> str:
    """Return a cluster id as Kafka writes one: a random UUID in URL-safe base64, unpadded."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # Kafka's Uuid.randomUuid() avoids a leading dash too, so the id never reads as an option.
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaServer(ManagedServer):
    """Kafka as combined broker and controller (KRaft), with the JVM's java and a modest heap."""

    name = "kafka"

    NODE_ID: ClassVar[int] = 1
    # Large enough for one compiled transaction (the ingestion flush bound stays below it);
    # topics set max.message.bytes up to this value (rased.adapters.kafka.topics).
    MESSAGE_MAX_BYTES: ClassVar[int] = 4 * 1024 * 1024
    HEAP: ClassVar[tuple[str, str]] = ("-Xms256m", "-Xmx768m")
    MAIN_CLASS: ClassVar[str] = "kafka.Kafka"
    STORAGE_TOOL: ClassVar[str] = "kafka.tools.StorageTool"

    # -- folders ------------------------------------------------------------------------

    @property
    def lib_dir(self) -> Path:
        """Folder holding the broker's classpath for the configured Kafka version."""
        return self.home / f"lib-{self.settings.kafka_version}"

    @property
    def data_dir(self) -> Path:
        """The broker's log.dirs (topic partitions and the KRaft metadata log)."""
        return self.home / "data"

    @property
    def config_file(self) -> Path:
        """The broker's server.properties."""
        return self.home / "server.properties"

    @property
    def cluster_id_file(self) -> Path:
        """File keeping the cluster id the storage was formatted with."""
        return self.home / "cluster.id"

    @property
    def pom(self) -> Path:
        """Maven pom that resolves the broker and its runtime dependencies."""
        return self.repo / "stack" / "kafka" / "pom.xml"

    @property
    def log4j_config(self) -> Path:
        """Logging config of the broker (INFO to stdout, which the stack sends to server.log)."""
        return self.repo / "stack" / "kafka" / "log4j2.yaml"

    # -- ManagedServer ------------------------------------------------------------------

    @property
    def ports(self) -> dict[str, int]:
        """Client port first, then the KRaft controller port."""
        return {
            "kafka_port": self.settings.kafka_port,
            "kafka_controller_port": self.settings.kafka_controller_port,
        }

    def install(self, progress: Progress) -> None:
        """Copy Kafka's jars from Maven Central (through ~/.m2) into the state folder, once."""
        version = self.settings.kafka_version
        install_jars(
            "kafka",
            self.pom,
            "kafka.version",
            version,
            self.lib_dir,
            f"kafka_2.13-{version}.jar",
            progress,
        )

    def prepare(self, progress: Progress) -> None:
        """Write server.properties and format the storage once (an existing one is kept)."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self._server_properties())
        meta = self.data_dir / "meta.properties"
        if meta.is_file():
            found = re.search(r"^cluster\.id=(\S+)$", meta.read_text(), re.MULTILINE)
            if found and not self.cluster_id_file.is_file():
                self.cluster_id_file.write_text(found.group(1) + "\n")
            return
        if self.cluster_id_file.is_file():
            cluster_id = self.cluster_id_file.read_text().strip()
        else:
            cluster_id = _new_cluster_id()
            self.cluster_id_file.write_text(cluster_id + "\n")
        progress(f"kafka: formatting {self.data_dir} for cluster {cluster_id}")
        run_checked(
            [
                *self._java(heap=("-Xmx256m",)),
                self.STORAGE_TOOL,
                "format",
                "--cluster-id",
                cluster_id,
                "--config",
                str(self.config_file),
                "--ignore-formatted",
            ],
            "kafka: storage format",
            cwd=self.home,
        )

    def command(self) -> list[str]:
        """Run the broker in the foreground with its properties file."""
        return [*self._java(heap=self.HEAP), self.MAIN_CLASS, str(self.config_file)]

    async def probe(self) -> str:
        """Fetch cluster metadata over the client port and describe the cluster."""
        host, port = self._advertised_host(), self.settings.kafka_port
        # A closed port fails here quietly; aiokafka would log an error line for every try.
        _, writer = await asyncio.open_connection(host, port)
        writer.close()
        await writer.wait_closed()
        admin = AIOKafkaAdminClient(
            bootstrap_servers=f"{host}:{port}",
            client_id="rased-devstack-probe",
            request_timeout_ms=5000,
        )
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
        finally:
            await admin.close()
        brokers = len(cluster["brokers"])
        if brokers == 0:
            raise StackError("kafka: metadata lists no broker yet")
        plural = "broker" if brokers == 1 else "brokers"
        return (
            f"Kafka {self.settings.kafka_version} (KRaft), {brokers} {plural}, "
            f"cluster {cluster['cluster_id']}"
        )

    # -- helpers --------------------------------------------------------------------------

    def _advertised_host(self) -> str:
        """Address clients and the controller quorum connect to (a wildcard bind is not one)."""
        return "127.0.0.1" if self.settings.host in ("", "0.0.0.0") else self.settings.host

    def _java(self, heap: tuple[str, ...]) -> list[str]:
        """Return the java command line up to (not including) the main class."""
        return [
            "java",
            *heap,
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_config}",
            "-cp",
            f"{self.lib_dir}/*",
        ]

    def _server_properties(self) -> str:
        """Return server.properties for one combined broker + controller node."""
        host = self.settings.host
        advertised = self._advertised_host()
        port = self.settings.kafka_port
        controller_port = self.settings.kafka_controller_port
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(self.NODE_ID),
            # A static voter set is read from this file at every start, so a changed controller
            # port takes effect; a dynamic quorum (format --standalone) keeps the endpoint it was
            # formatted with in the metadata log.
            "controller.quorum.voters": f"{self.NODE_ID}@{advertised}:{controller_port}",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{advertised}:{port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            # One node: every internal topic and the defaults can have one replica only.
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Topics are created on purpose (rased.adapters.kafka.topics), never by a typo.
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "message.max.bytes": str(self.MESSAGE_MAX_BYTES),
            "replica.fetch.max.bytes": str(self.MESSAGE_MAX_BYTES),
            # Consumers in tests join a fresh group at once instead of waiting 3 s.
            "group.initial.rebalance.delay.ms": "0",
            # Two cores: a few threads are plenty and leave CPU to the rest of the stack.
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.retention.hours": "168",
            "log.segment.bytes": str(256 * 1024 * 1024),
        }
        lines = ["# Written by rased.devstack.kafka at every `prepare`; edits are overwritten."]
        lines += [f"{key}={value}" for key, value in settings.items()]
        return "\n".join(lines) + "\n"


SERVER = KafkaServer
