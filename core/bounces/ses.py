"""Amazon SES notifications received by email (an SNS topic with an email
subscription): JSON bodies saying Bounce, Complaint or Delivery."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from core.bounces.dsn import find_status


@dataclass(frozen=True)
class SesRecipient:
    address: str
    status: str | None
    diagnostic: str | None


@dataclass(frozen=True)
class SesNotification:
    type: str  # "bounce", "complaint", "delivery"
    permanent: bool  # a bounce's bounceType is Permanent
    recipients: tuple[SesRecipient, ...]
    detail: str


def _json(body: str) -> dict[str, Any] | None:
    start = body.find("{")
    if start < 0 or ('"notificationType"' not in body and '"eventType"' not in body):
        return None
    end = body.rfind("}")
    text = body[start : end + 1]
    for candidate in (text, re.sub(r"\r?\n[ \t]", "", text), re.sub(r"\r?\n", "", text)):
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict):
            if isinstance(data.get("Message"), str):  # the raw SNS envelope
                try:
                    inner = json.loads(data["Message"])
                except ValueError:
                    return None
                return inner if isinstance(inner, dict) else None
            return data
    return None


def ses_notification(body: str) -> SesNotification | None:
    data = _json(body)
    if data is None:
        return None
    kind = str(data.get("notificationType") or data.get("eventType") or "").lower()
    if kind == "bounce":
        bounce = data.get("bounce") or {}
        permanent = str(bounce.get("bounceType", "")).lower() == "permanent"
        recipients = tuple(
            SesRecipient(
                str(r.get("emailAddress", "")),
                find_status(str(r.get("status", ""))),
                _diagnostic(r.get("diagnosticCode")),
            )
            for r in bounce.get("bouncedRecipients") or []
            if isinstance(r, dict) and r.get("emailAddress")
        )
        detail = f"Amazon SES bounce: {bounce.get('bounceType')}/{bounce.get('bounceSubType')}"
        return SesNotification("bounce", permanent, recipients, detail)
    if kind == "complaint":
        complaint = data.get("complaint") or {}
        recipients = tuple(
            SesRecipient(str(r.get("emailAddress")), None, None)
            for r in complaint.get("complainedRecipients") or []
            if isinstance(r, dict) and r.get("emailAddress")
        )
        ftype = complaint.get("complaintFeedbackType") or "abuse"
        return SesNotification("complaint", False, recipients, f"Amazon SES complaint: {ftype}")
    if kind == "delivery":
        return SesNotification("delivery", False, (), "Amazon SES delivery notification")
    return None


def _diagnostic(value: object) -> str | None:
    if not value:
        return None
    text = str(value)
    if ";" in text[:12]:
        text = text.split(";", 1)[1]
    return text.strip() or None
