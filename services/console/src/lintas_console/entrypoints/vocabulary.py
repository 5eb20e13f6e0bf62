"""The words for the API's codes (statuses, claim types, sectors...), in the person's
language. The codes come from the contracts in lintas_shared; these are only labels."""

from __future__ import annotations

from collections.abc import Callable

from lintas_shared.values import ClaimType, ConsentPurpose, Sector


def _(message: str) -> str:
    """Marks a label for the catalogs; it is translated when shown (`label`)."""
    return message


CASE_STATUSES = {
    "submitted": _("Submitted"),
    "awaiting_consent": _("Awaiting consent"),
    "referred": _("Referred"),
    "accepted": _("Accepted by a lawyer"),
    "in_progress": _("In progress"),
    "unassigned": _("Needs a caseworker"),
    "closed": _("Closed"),
    "erased": _("Erased"),
}
REFERRAL_STATUSES = {
    "offered": _("Offered"),
    "accepted": _("Accepted"),
    "in_progress": _("In progress"),
    "declined": _("Declined"),
    "expired": _("Expired"),
    "withdrawn": _("Withdrawn"),
    "closed": _("Closed"),
    "handed_on": _("Handed on"),
}
CLAIM_TYPES = {
    ClaimType.UNPAID_WAGES.value: _("Unpaid wages"),
    ClaimType.UNDERPAYMENT.value: _("Underpayment"),
    ClaimType.ILLEGAL_DEDUCTIONS.value: _("Illegal deductions"),
    ClaimType.EXCESS_PLACEMENT_FEES.value: _("Excess placement fees"),
    ClaimType.WRONGFUL_DISMISSAL.value: _("Wrongful dismissal"),
    ClaimType.WORK_INJURY.value: _("Work injury"),
    ClaimType.ABUSE.value: _("Abuse"),
    ClaimType.DOCUMENT_RETENTION.value: _("Documents held by the employer"),
    ClaimType.OTHER.value: _("Other"),
}
SECTORS = {
    Sector.DOMESTIC_WORK.value: _("Domestic work"),
    Sector.CARE_WORK.value: _("Care work"),
    Sector.CONSTRUCTION.value: _("Construction"),
    Sector.MANUFACTURING.value: _("Manufacturing"),
    Sector.PLANTATION.value: _("Plantation"),
    Sector.FISHING.value: _("Fishing"),
    Sector.OTHER.value: _("Other"),
}
PURPOSES = {
    ConsentPurpose.LEGAL_REFERRAL.value: _("Referral to a legal partner"),
    ConsentPurpose.SMS_UPDATES.value: _("SMS updates"),
}
CHANNELS = {
    "in_person": _("In person"),
    "phone": _("By phone"),
    "paper_form": _("Paper form"),
}
GENDERS = {
    "female": _("Female"),
    "male": _("Male"),
    "other": _("Other"),
    "undisclosed": _("Prefers not to say"),
}
OUTCOMES = {
    "recovered": _("Recovered"),
    "settled": _("Settled"),
    "unsuccessful": _("Unsuccessful"),
    "withdrawn": _("Withdrawn"),
    "unreachable": _("Worker unreachable"),
}
DOCUMENT_KINDS = {
    "identity": _("Identity"),
    "contract": _("Contract"),
    "payslip": _("Payslip"),
    "medical": _("Medical"),
    "correspondence": _("Correspondence"),
    "evidence": _("Evidence"),
    "other": _("Other"),
}
#: What happened, by the timeline entry's event type.
TIMELINE = {
    "org.lintas.case.submitted": _("Case submitted"),
    "org.lintas.case.details_corrected": _("Case details corrected"),
    "org.lintas.case.consent_recorded": _("Consent recorded"),
    "org.lintas.case.consent_withdrawn": _("Consent withdrawn"),
    "org.lintas.case.sms_preference_changed": _("SMS preference changed"),
    "org.lintas.notification.sms_preference_texted": _("SMS preference texted by the worker"),
    "org.lintas.case.closed": _("Case closed"),
    "org.lintas.case.erased": _("Personal data erased"),
    "case.note_added": _("Note added"),
    "case.document_recorded": _("Document recorded"),
    "org.lintas.referral.offered": _("Offered to a legal partner"),
    "org.lintas.referral.routing_blocked": _("Could not be referred"),
    "org.lintas.referral.accepted": _("Accepted by the legal partner"),
    "org.lintas.referral.declined": _("Declined by the legal partner"),
    "org.lintas.referral.expired": _("Offer expired"),
    "org.lintas.referral.withdrawn": _("Referral withdrawn"),
    "org.lintas.referral.progressed": _("Progress reported by the legal partner"),
    "org.lintas.referral.closed": _("Closed by the legal partner"),
    "org.lintas.referral.deadline_approaching": _("Filing deadline approaching"),
    "org.lintas.notification.sms_sent": _("SMS sent to the worker"),
    "org.lintas.notification.sms_delivery_reported": _("SMS delivery reported"),
}
#: Timeline entries whose detail is free text worth showing (a reason), not a code.
TIMELINE_WITH_REASON = frozenset(
    {"org.lintas.referral.declined", "org.lintas.referral.routing_blocked"}
)
COUNTRIES = {
    "ID": _("Indonesia"),
    "HK": _("Hong Kong"),
    "SG": _("Singapore"),
    "MY": _("Malaysia"),
    "TW": _("Taiwan"),
    "SA": _("Saudi Arabia"),
}
CURRENCIES = ("HKD", "SGD", "IDR", "MYR", "TWD", "SAR", "USD")
LANGUAGES = {"id": "Bahasa Indonesia", "en": "English"}
TIME_ZONES = (
    "Asia/Jakarta",
    "Asia/Makassar",
    "Asia/Jayapura",
    "Asia/Hong_Kong",
    "Asia/Singapore",
    "UTC",
)


def labels(translate: Callable[[str], str]) -> dict[str, dict[str, str]]:
    """Every vocabulary, translated, for the templates."""
    groups = {
        "case_status": CASE_STATUSES,
        "referral_status": REFERRAL_STATUSES,
        "claim_type": CLAIM_TYPES,
        "sector": SECTORS,
        "purpose": PURPOSES,
        "channel": CHANNELS,
        "gender": GENDERS,
        "outcome": OUTCOMES,
        "document_kind": DOCUMENT_KINDS,
        "country": COUNTRIES,
        "timeline": TIMELINE,
    }
    return {name: {k: translate(v) for k, v in group.items()} for name, group in groups.items()}


def timeline_text(entry: dict[str, str], translate: Callable[[str], str]) -> str:
    """A timeline entry in the person's words: the event's label, and the reason where
    the entry has one (a decline, a blocked routing), else the service's own summary."""
    label = TIMELINE.get(entry.get("type", ""))
    if label is None:
        return entry.get("summary", "")
    text = translate(label)
    detail = entry.get("summary", "").partition(": ")[2]
    if detail and entry.get("type") in TIMELINE_WITH_REASON:
        text += f": {detail}"
    elif detail and entry.get("type") == "org.lintas.case.closed":
        text += f": {translate(OUTCOMES.get(detail, detail))}"
    elif detail and entry.get("type") == "case.document_recorded":
        text += f": {translate(DOCUMENT_KINDS.get(detail, detail))}"
    return text
