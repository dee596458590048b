"""The JSON body of a result notification, built once per delivery and sent on every attempt."""

from __future__ import annotations

import json
from typing import Any

from rased.v1 import pipeline_pb2, scoring_pb2

_SCORES = (
    "bot_detection",
    "keystroke_dynamics",
    "location_anomaly",
    "device_fingerprint",
    "behavioral_anomaly",
    "overall_confidence",
)


def body(notification: pipeline_pb2.ResultNotification, include_scores: bool) -> str:
    """Return the Standard Webhooks style body `{type, timestamp, data}` of a notification.

    `data` says which transaction finished and its status; the scores, recommendations and
    reason codes only when the endpoint asked for them (`include_scores`). The user id is
    never sent: the client's backend already knows whom its session belongs to.
    """
    result = notification.result
    data: dict[str, Any] = {
        "organization_id": result.organization_id,
        "session_id": result.session_id,
        "transaction_id": result.transaction_id,
        "segment": result.segment,
        "status": "completed",
        "risk_level": scoring_pb2.RiskLevel.Name(result.risk_level).removeprefix("RISK_LEVEL_"),
        "degraded": result.degraded,
        "scored_at": result.scored_at.ToJsonString() if result.HasField("scored_at") else None,
    }
    if include_scores:
        data["scores"] = {name: getattr(result.scores, name) for name in _SCORES}
        data["recommendations"] = [
            scoring_pb2.Recommendation.Name(r).removeprefix("RECOMMENDATION_")
            for r in result.recommendations
        ]
        data["reason_codes"] = [
            {"code": r.code, "description": r.description} for r in result.reason_codes
        ]
        data["model_version"] = result.model_version
    document = {
        "type": notification.event_type or "transaction.scored",
        "timestamp": data["scored_at"],
        "data": data,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True)
