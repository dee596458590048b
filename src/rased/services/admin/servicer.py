"""gRPC servicer of AdminService: translates protobuf to Administration calls and back."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from google.protobuf import timestamp_pb2

from rased.adapters.postgres.audit import AuditEntry, AuditOutcome
from rased.adapters.postgres.erasure import ErasureJobRecord, ErasureStatus, SubjectKind
from rased.adapters.postgres.keys import ApiKeyKind, ApiKeyRecord, EncryptionKeyRecord
from rased.adapters.postgres.organizations import OrganizationRecord
from rased.adapters.postgres.webhook_deliveries import DeliveryRecord, DeliveryStatus
from rased.adapters.postgres.webhooks import EndpointChanges, WebhookEndpointRecord
from rased.common.interceptors.base import Context
from rased.services.admin.administration import Administration, IssuedKey
from rased.services.admin.erasure import Erasures
from rased.services.admin.webhook_deliveries import WebhookDeliveries
from rased.services.admin.webhook_endpoints import WebhookEndpoints
from rased.v1 import admin_pb2, admin_pb2_grpc

_KINDS_TO_PROTO = {
    ApiKeyKind.PUBLISHABLE: admin_pb2.API_KEY_KIND_PUBLISHABLE,
    ApiKeyKind.SECRET: admin_pb2.API_KEY_KIND_SECRET,
}
_KINDS_FROM_PROTO = {value: key for key, value in _KINDS_TO_PROTO.items()}
_DELIVERY_STATUSES = {
    DeliveryStatus.PENDING: admin_pb2.DELIVERY_STATUS_PENDING,
    DeliveryStatus.SUCCEEDED: admin_pb2.DELIVERY_STATUS_SUCCEEDED,
    DeliveryStatus.DEAD_LETTERED: admin_pb2.DELIVERY_STATUS_DEAD_LETTERED,
    DeliveryStatus.CANCELLED: admin_pb2.DELIVERY_STATUS_CANCELLED,
}
_DELIVERY_STATUSES_FROM_PROTO = {value: key for key, value in _DELIVERY_STATUSES.items()}
_SUBJECT_KINDS = {
    SubjectKind.SESSION: admin_pb2.SUBJECT_KIND_SESSION,
    SubjectKind.USER: admin_pb2.SUBJECT_KIND_USER,
}
_SUBJECT_KINDS_FROM_PROTO = {value: key for key, value in _SUBJECT_KINDS.items()}
_ERASURE_STATUSES = {
    ErasureStatus.PENDING: admin_pb2.ERASURE_STATUS_PENDING,
    ErasureStatus.RUNNING: admin_pb2.ERASURE_STATUS_RUNNING,
    ErasureStatus.SUCCEEDED: admin_pb2.ERASURE_STATUS_SUCCEEDED,
    ErasureStatus.FAILED: admin_pb2.ERASURE_STATUS_FAILED,
}
_OUTCOMES = {
    AuditOutcome.ALLOWED: admin_pb2.AUDIT_OUTCOME_ALLOWED,
    AuditOutcome.DENIED: admin_pb2.AUDIT_OUTCOME_DENIED,
}


def _authorization(context: Context) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == "authorization" and isinstance(value, str):
            return value
    return None


def _timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _overlap(seconds: int) -> timedelta | None:
    return timedelta(seconds=seconds) if seconds else None


def organization_message(record: OrganizationRecord) -> admin_pb2.Organization:
    """Return the protobuf form of an organization."""
    return admin_pb2.Organization(
        organization_id=record.organization_id,
        name=record.name,
        retention_days=record.retention_days,
        create_time=_timestamp(record.created_at),
        allow_private_webhook_targets=record.allow_private_webhook_targets,
    )


def api_key_message(record: ApiKeyRecord) -> admin_pb2.ApiKey:
    """Return the protobuf form of a key, which has no field for its text."""
    return admin_pb2.ApiKey(
        key_id=record.key_id,
        organization_id=record.organization_id,
        kind=_KINDS_TO_PROTO[record.kind],
        prefix=record.prefix,
        allowed_origins=record.allowed_origins,
        label=record.label,
        create_time=_timestamp(record.created_at),
        expire_time=_timestamp(record.expires_at),
        revoke_time=_timestamp(record.revoked_at),
    )


def _issued(key: IssuedKey) -> admin_pb2.ApiKeySecret:
    return admin_pb2.ApiKeySecret(key=api_key_message(key.record), secret=key.secret)


def _encryption_key(record: EncryptionKeyRecord) -> admin_pb2.EncryptionKey:
    return admin_pb2.EncryptionKey(
        key_id=record.key_id,
        public_jwk=json.dumps(record.public_jwk, sort_keys=True),
        algorithm=record.algorithm,
        encryption=record.encryption,
        create_time=_timestamp(record.created_at),
    )


def _endpoint(record: WebhookEndpointRecord) -> admin_pb2.WebhookEndpoint:
    return admin_pb2.WebhookEndpoint(
        endpoint_id=record.endpoint_id,
        organization_id=record.organization_id,
        url=record.url,
        event_types=record.event_types,
        enabled=record.enabled,
        include_scores=record.include_scores,
        create_time=_timestamp(record.created_at),
        disabled_reason=record.disabled_reason,
    )


def _delivery(record: DeliveryRecord) -> admin_pb2.WebhookDelivery:
    return admin_pb2.WebhookDelivery(
        delivery_id=record.delivery_id,
        endpoint_id=record.endpoint_id,
        event_type=record.event_type,
        transaction_id=record.transaction_id,
        status=_DELIVERY_STATUSES[record.status],
        attempts=record.attempts,
        next_attempt_time=_timestamp(record.next_attempt_at),
        last_status_code=record.last_status_code,
        last_error=record.last_error,
        create_time=_timestamp(record.created_at),
    )


def _erasure_job(record: ErasureJobRecord) -> admin_pb2.ErasureJob:
    return admin_pb2.ErasureJob(
        job_id=record.job_id,
        organization_id=record.organization_id,
        subject_kind=_SUBJECT_KINDS[record.subject_kind],
        subject_id=record.subject_id,
        status=_ERASURE_STATUSES[record.status],
        erased_counts=record.erased_counts,
        error=record.error,
        create_time=_timestamp(record.created_at),
        finish_time=_timestamp(record.finished_at),
    )


def _audit_event(entry: AuditEntry) -> admin_pb2.AuditEvent:
    return admin_pb2.AuditEvent(
        event_id=entry.event_id,
        organization_id=entry.organization_id or "",
        actor=entry.actor,
        action=entry.action,
        target=entry.target,
        outcome=_OUTCOMES[entry.outcome],
        create_time=_timestamp(entry.created_at),
    )


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    """Translates AdminService calls to the Administration domain."""

    def __init__(
        self,
        administration: Administration,
        webhooks: WebhookEndpoints,
        deliveries: WebhookDeliveries,
        erasures: Erasures,
    ) -> None:
        self.admin = administration
        self.webhooks = webhooks
        self.deliveries = deliveries
        self.erasures = erasures

    async def CreateOrganization(  # noqa: N802 - gRPC's method name
        self, request: admin_pb2.CreateOrganizationRequest, context: Context
    ) -> admin_pb2.CreateOrganizationResponse:
        """Create an organization and its first keys."""
        created = await self.admin.create_organization(
            _authorization(context),
            request.name,
            request.retention_days,
            request.allow_private_webhook_targets,
        )
        return admin_pb2.CreateOrganizationResponse(
            organization=organization_message(created.organization),
            publishable_key=_issued(created.publishable_key),
            secret_key=_issued(created.secret_key),
        )

    async def GetOrganization(  # noqa: N802 - gRPC's method name
        self, request: admin_pb2.GetOrganizationRequest, context: Context
    ) -> admin_pb2.GetOrganizationResponse:
        """Return one organization."""
        found = await self.admin.get_organization(_authorization(context), request.organization_id)
        return admin_pb2.GetOrganizationResponse(organization=organization_message(found))

    async def ListOrganizations(  # noqa: N802 - gRPC's method name
        self, request: admin_pb2.ListOrganizationsRequest, context: Context
    ) -> admin_pb2.ListOrganizationsResponse:
        """Return a page of organizations."""
        page, token = await self.admin.list_organizations(
            _authorization(context), request.page_size, request.page_token
        )
        return admin_pb2.ListOrganizationsResponse(
            organizations=[organization_message(o) for o in page], next_page_token=token
        )

    async def SetRetention(  # noqa: N802 - gRPC's method name
        self, request: admin_pb2.SetRetentionRequest, context: Context
    ) -> admin_pb2.SetRetentionResponse:
        """Set the organization's retention."""
        updated = await self.admin.set_retention(
            _authorization(context), request.organization_id, request.retention_days
        )
        return admin_pb2.SetRetentionResponse(organization=organization_message(updated))

    async def CreateApiKey(  # noqa: N802 - gRPC's method name
        self, request: admin_pb2.CreateApiKeyRequest, context: Context
    ) -> admin_pb2.CreateApiKeyResponse:
        """Create an API key."""
        issued = await self.admin.create_api_key(
            _authorization(context),
            request.organization_id,
            _KINDS_FROM_PROTO[request.kind],
            list(request.allowed_origins),
            request.label,
        )
        return admin_pb2.CreateApiKeyResponse(api_key=_issued(issued))

    async def ListApiKeys(  # noqa: N802 - gRPC's method name
        self, request: admin_pb2.ListApiKeysRequest, context: Context
    ) -> admin_pb2.ListApiKeysResponse:
        """List the organization's keys."""
        keys = await self.admin.list_api_keys(
            _authorization(context), request.organization_id, request.include_inactive
        )
        return admin_pb2.ListApiKeysResponse(api_keys=[api_key_message(k) for k in keys])

    async def RevokeApiKey(  # noqa: N802 - gRPC's method name
        self, request: admin_pb2.RevokeApiKeyRequest, context: Context
    ) -> admin_pb2.RevokeApiKeyResponse:
        """Revoke a key."""
        revoked = await self.admin.revoke_api_key(
            _authorization(context), request.organization_id, request.key_id
        )
        return admin_pb2.RevokeApiKeyResponse(api_key=api_key_message(revoked))

    async def RotateApiKey(  # noqa: N802 - gRPC's method name
        self, request: admin_pb2.RotateApiKeyRequest, context: Context
    ) -> admin_pb2.RotateApiKeyResponse:
        """Replace a key, keeping the old one for the overlap window."""
        new, old = await self.admin.rotate_api_key(
            _authorization(context),
            request.organization_id,
            request.key_id,
            _overlap(request.overlap_seconds),
        )
        return admin_pb2.RotateApiKeyResponse(new_key=_issued(new), old_key=api_key_message(old))

    async def GetEncryptionKey(  # noqa: N802 - gRPC's method name
        self, request: admin_pb2.GetEncryptionKeyRequest, context: Context
    ) -> admin_pb2.GetEncryptionKeyResponse:
        """Return the current public key for encrypted batches."""
        key = await self.admin.get_encryption_key(_authorization(context), request.organization_id)
        return admin_pb2.GetEncryptionKeyResponse(key=_encryption_key(key))

    async def RotateEncryptionKey(  # noqa: N802 - gRPC's method name
        self, request: admin_pb2.RotateEncryptionKeyRequest, context: Context
    ) -> admin_pb2.RotateEncryptionKeyResponse:
        """Generate a new key pair for encrypted batches."""
        key = await self.admin.rotate_encryption_key(
            _authorization(context), request.organization_id, _overlap(request.overlap_seconds)
        )
        return admin_pb2.RotateEncryptionKeyResponse(key=_encryption_key(key))

    async def CreateWebhookEndpoint(  # noqa: N802 - gRPC's method name
        self, request: admin_pb2.CreateWebhookEndpointRequest, context: Context
    ) -> admin_pb2.CreateWebhookEndpointResponse:
        """Register a webhook endpoint."""
        endpoint, secret = await self.webhooks.create(
            _authorization(context),
            request.organization_id,
            request.url,
            list(request.event_types),
            request.include_scores,
        )
        return admin_pb2.CreateWebhookEndpointResponse(endpoint=_endpoint(endpoint), secret=secret)

    async def ListWebhookEndpoints(  # noqa: N802 - gRPC's method name
        self, request: admin_pb2.ListWebhookEndpointsRequest, context: Context
    ) -> admin_pb2.ListWebhookEndpointsResponse:
        """List the organization's webhook endpoints."""
        endpoints = await self.webhooks.list(_authorization(context), request.organization_id)
        return admin_pb2.ListWebhookEndpointsResponse(endpoints=[_endpoint(e) for e in endpoints])

    async def UpdateWebhookEndpoint(  # noqa: N802 - gRPC's method name
        self, request: admin_pb2.UpdateWebhookEndpointRequest, context: Context
    ) -> admin_pb2.UpdateWebhookEndpointResponse:
        """Change a webhook endpoint."""
        changes = EndpointChanges(
            url=request.url if request.HasField("url") else None,
            enabled=request.enabled if request.HasField("enabled") else None,
            include_scores=request.include_scores if request.HasField("include_scores") else None,
            event_types=list(request.event_types) if request.replace_event_types else None,
        )
        endpoint = await self.webhooks.update(
            _authorization(context), request.organization_id, request.endpoint_id, changes
        )
        return admin_pb2.UpdateWebhookEndpointResponse(endpoint=_endpoint(endpoint))

    async def DeleteWebhookEndpoint(  # noqa: N802 - gRPC's method name
        self, request: admin_pb2.DeleteWebhookEndpointRequest, context: Context
    ) -> admin_pb2.DeleteWebhookEndpointResponse:
        """Delete a webhook endpoint."""
        await self.webhooks.delete(
            _authorization(context), request.organization_id, request.endpoint_id
        )
        return admin_pb2.DeleteWebhookEndpointResponse(endpoint_id=request.endpoint_id)

    async def RotateWebhookSecret(  # noqa: N802 - gRPC's method name
        self, request: admin_pb2.RotateWebhookSecretRequest, context: Context
    ) -> admin_pb2.RotateWebhookSecretResponse:
        """Issue a new signing secret."""
        secret, previous_expires = await self.webhooks.rotate_secret(
            _authorization(context),
            request.organization_id,
            request.endpoint_id,
            _overlap(request.overlap_seconds),
        )
        return admin_pb2.RotateWebhookSecretResponse(
            secret=secret, previous_secret_expire_time=_timestamp(previous_expires)
        )

    async def ListAuditEvents(  # noqa: N802 - gRPC's method name
        self, request: admin_pb2.ListAuditEventsRequest, context: Context
    ) -> admin_pb2.ListAuditEventsResponse:
        """Return a page of the organization's audit log."""
        entries, token = await self.admin.list_audit_events(
            _authorization(context), request.organization_id, request.page_size, request.page_token
        )
        return admin_pb2.ListAuditEventsResponse(
            events=[_audit_event(e) for e in entries], next_page_token=token
        )

    async def ListWebhookDeliveries(  # noqa: N802 - gRPC's method name
        self, request: admin_pb2.ListWebhookDeliveriesRequest, context: Context
    ) -> admin_pb2.ListWebhookDeliveriesResponse:
        """Return a page of the organization's webhook deliveries, newest first."""
        deliveries, token = await self.deliveries.list(
            _authorization(context),
            request.organization_id,
            _DELIVERY_STATUSES_FROM_PROTO.get(request.status),
            request.page_size,
            request.page_token,
        )
        return admin_pb2.ListWebhookDeliveriesResponse(
            deliveries=[_delivery(d) for d in deliveries], next_page_token=token
        )

    async def RedeliverWebhook(  # noqa: N802 - gRPC's method name
        self, request: admin_pb2.RedeliverWebhookRequest, context: Context
    ) -> admin_pb2.RedeliverWebhookResponse:
        """Schedule a delivery again, first attempt now."""
        delivery = await self.deliveries.redeliver(
            _authorization(context), request.organization_id, request.delivery_id
        )
        return admin_pb2.RedeliverWebhookResponse(delivery=_delivery(delivery))

    async def EraseSubject(  # noqa: N802 - gRPC's method name
        self, request: admin_pb2.EraseSubjectRequest, context: Context
    ) -> admin_pb2.EraseSubjectResponse:
        """Accept an erasure of a session or user; the job runs in the background."""
        job = await self.erasures.request(
            _authorization(context),
            request.organization_id,
            _SUBJECT_KINDS_FROM_PROTO[request.subject_kind],
            request.subject_id,
        )
        return admin_pb2.EraseSubjectResponse(job=_erasure_job(job))

    async def GetErasureJob(  # noqa: N802 - gRPC's method name
        self, request: admin_pb2.GetErasureJobRequest, context: Context
    ) -> admin_pb2.GetErasureJobResponse:
        """Return where an erasure job stands."""
        job = await self.erasures.get(
            _authorization(context), request.organization_id, request.job_id
        )
        return admin_pb2.GetErasureJobResponse(job=_erasure_job(job))
