"""Notify's use cases: which SMS a worker gets for which event, and what it remembers.

Each handler is idempotent: profiles and stages are conditional updates, and each SMS
is keyed by its cause and template (`case closed` by case: intake's and the partner's
closure announce one and the same outcome), so a redelivered event sends nothing twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from lintas_shared.crypto import CaseKeyMissingError
from lintas_shared.envelope import CloudEvent
from lintas_shared.events import (
    CaseClosed,
    CaseDetailsCorrected,
    CaseErased,
    CaseSubmitted,
    DeadlineApproaching,
    ReferralAccepted,
    ReferralClosed,
    ReferralOffered,
    ReferralProgressed,
    SmsPreferenceChanged,
    parse_payload,
)
from lintas_shared.ids import deterministic_id

from lintas_notify.dispatch import SOURCE, Dispatcher
from lintas_notify.domain.encoding import sms_cost
from lintas_notify.domain.message import OutgoingSms
from lintas_notify.domain.profile import CaseProfile
from lintas_notify.domain.stage import Stage
from lintas_notify.domain.templates import TemplateCatalogue
from lintas_notify.phones import PhoneLookup
from lintas_notify.ports import (
    CaseProfileStore,
    MessageStore,
    PreferenceStore,
    ReplyBudget,
)

Clock = Callable[[], datetime]


@dataclass
class NotifyHandlers:
    """The event handlers, bound to their adapters by the composition root."""

    messages: MessageStore
    profiles: CaseProfileStore
    preferences: PreferenceStore
    dispatcher: Dispatcher
    catalogue: TemplateCatalogue
    clock: Clock
    #: Notify's own look-up hash of a phone (the event's `phone_hash` is not used).
    phones: PhoneLookup
    #: Answers per phone and window: its records hold the phone's hash, and go with it.
    reply_budget: ReplyBudget
    #: An event older than this sends no SMS (e.g. history replayed by a new consumer
    #: group): news that old would mislead more than help. It is recorded as suppressed.
    max_event_age: timedelta = timedelta(days=7)

    def _by_type(self) -> dict[str, Callable[[CloudEvent], Awaitable[None]]]:
        return {
            ReferralOffered.TYPE: self.on_referral_offered,
            ReferralAccepted.TYPE: self.on_referral_accepted,
            ReferralProgressed.TYPE: self.on_referral_progressed,
            DeadlineApproaching.TYPE: self.on_deadline_approaching,
            ReferralClosed.TYPE: self.on_referral_closed,
            CaseClosed.TYPE: self.on_case_closed,
            CaseDetailsCorrected.TYPE: self.on_details_corrected,
            SmsPreferenceChanged.TYPE: self.on_preference_changed,
        }

    async def replay(self, event: CloudEvent) -> None:
        """Handle an event that overtook its case (as its consumer would)."""
        await self._by_type()[event.type](event)

    # --- case events (intake) ----------------------------------------------------------

    async def on_case_submitted(self, event: CloudEvent) -> None:
        """Remember how to reach the worker, and tell her the case was received."""
        case = parse_payload(event, CaseSubmitted)
        try:
            phone, phone_hash = await self.phones.reveal(case.case_id, case.worker.phone)
        except CaseKeyMissingError:
            # Erased before notify heard of it (a replay): remember only that.
            await self.profiles.erase(case.case_id)
            return
        profile, waiting = await self.profiles.add(case, phone_hash)
        if profile is None:
            return  # erased meanwhile
        await self._notify(
            event, case.case_id, "case_received", event.dedupe_key, profile=profile, phone=phone
        )
        handlers = self._by_type()
        for early in waiting:  # events that overtook this one, kept in the profile
            await handlers[early.event.type](early.event)
            await self.profiles.done(case.case_id, early)

    async def on_details_corrected(self, event: CloudEvent) -> None:
        """A corrected phone, language or whereabouts replaces what notify holds."""
        change = parse_payload(event, CaseDetailsCorrected)
        if await self._profile(event, change.case_id) is None:
            return
        if change.worker is not None:
            try:
                phone_hash = await self.phones.of_sealed(change.case_id, change.worker.phone)
            except CaseKeyMissingError:
                return  # erased meanwhile: its `case erased` event follows
            await self.profiles.correct_worker(
                change.case_id, change.worker, phone_hash, change.corrected_at
            )

    async def on_preference_changed(self, event: CloudEvent) -> None:
        """The NGO opted her phone out of SMS, or back in, through intake's API.

        The phone is the case's, as notify holds it (the event names the case only).
        Notify's own announcements of a change she texted come back on the same topic:
        they are already applied, so they are skipped.
        """
        change = parse_payload(event, SmsPreferenceChanged)
        if event.source == SOURCE:
            return
        profile = await self._profile(event, change.case_id)
        if profile is None:
            return
        await self.preferences.change(
            profile.phone_hash, change.opted_out, change.changed_at, change.channel
        )

    async def on_case_closed(self, event: CloudEvent) -> None:
        """Tell her the outcome in plain words (never an amount)."""
        closed = parse_payload(event, CaseClosed)
        await self._close(event, closed.case_id, closed.outcome, closed.closed_at)

    async def on_case_erased(self, event: CloudEvent) -> None:
        """Forget her: the profile, any message not yet sent, and every trace of her
        phone's hash on the case; with her phone's last case, the phone's own records
        (opt-out, daily limit, replies) too. The profile goes last, so a redelivery after
        a crash in between finds the hash and finishes the job."""
        erased = parse_payload(event, CaseErased)
        case_id = erased.case_id
        self.phones.forget(case_id)
        profile = await self.profiles.state(case_id)
        reference = profile.reference if isinstance(profile, CaseProfile) else None
        forgotten = await self.messages.forget_case(case_id, reference, self.clock())
        if isinstance(profile, CaseProfile):
            others = await self.profiles.case_ids_for_phone(profile.phone_hash)
            if [c for c in others if c != case_id]:
                await self.preferences.forget_case(profile.phone_hash, case_id)
            else:
                forgotten += await self.messages.forget_worker(profile.phone_hash)
                await self.preferences.forget(profile.phone_hash)
                await self.reply_budget.forget(profile.phone_hash)
        await self.dispatcher.forget(forgotten)
        await self.profiles.erase(case_id)  # and the events waiting in it

    # --- referral events -------------------------------------------------------------

    async def on_referral_offered(self, event: CloudEvent) -> None:
        """Only the stage moves: an offer may still be declined, so no SMS yet."""
        offer = parse_payload(event, ReferralOffered)
        if await self.profiles.set_stage(offer.case_id, Stage.OFFERED, offer.offered_at):
            return  # the usual case: one update
        # No live profile moved: the event waits for one not known yet (erased, or already
        # at a later stage: nothing to do). The profile may have arrived since the update
        # missed (the case's `submitted` comes on the other topic): then move it now.
        if await self._profile(event, offer.case_id) is not None:
            await self.profiles.set_stage(offer.case_id, Stage.OFFERED, offer.offered_at)

    async def on_referral_accepted(self, event: CloudEvent) -> None:
        """Tell her a lawyer took the case, naming the country, never the lawyer."""
        accepted = parse_payload(event, ReferralAccepted)
        profile = await self._profile(event, accepted.case_id)
        if profile is None:
            return
        await self.profiles.set_stage(accepted.case_id, Stage.WITH_LAWYER, accepted.at)
        await self._notify(
            event,
            accepted.case_id,
            "referral_accepted",
            event.dedupe_key,
            profile=profile,
            country=accepted.country,
        )

    async def on_referral_progressed(self, event: CloudEvent) -> None:
        """Documents or action needed from her: tell her; a filing only moves the stage."""
        progress = parse_payload(event, ReferralProgressed)
        profile = await self._profile(event, progress.case_id)
        if profile is None:
            return
        if progress.documents_needed:
            await self.profiles.set_stage(progress.case_id, Stage.DOCUMENTS_NEEDED, progress.at)
            await self._notify(
                event, progress.case_id, "documents_needed", event.dedupe_key, profile=profile
            )
        elif progress.filed_at_forum:
            await self.profiles.set_stage(progress.case_id, Stage.FILED, progress.at)

    async def on_deadline_approaching(self, event: CloudEvent) -> None:
        """Tell her the date by which she must act (not the forum, not the claim)."""
        near = parse_payload(event, DeadlineApproaching)
        passed = near.deadline < self.clock().date()
        await self._notify(
            event,
            near.case_id,
            "deadline_approaching",
            event.dedupe_key,
            not_sent_because="the deadline has passed" if passed else None,
            deadline=near.deadline.strftime("%d-%m-%Y"),
        )

    async def on_referral_closed(self, event: CloudEvent) -> None:
        """The partner's closure: same SMS as the NGO's closure, sent once per case."""
        closed = parse_payload(event, ReferralClosed)
        await self._close(event, closed.case_id, closed.outcome, closed.at)

    # --- shared steps ----------------------------------------------------------------

    async def _close(self, event: CloudEvent, case_id: str, outcome: str, at: datetime) -> None:
        profile = await self._profile(event, case_id)
        if profile is None:
            return
        await self.profiles.set_stage(case_id, Stage.CLOSED, at)
        await self._notify(event, case_id, "case_closed", case_id, profile=profile, outcome=outcome)

    async def _profile(self, event: CloudEvent, case_id: str) -> CaseProfile | None:
        """The case's profile; None (after keeping the event for later) if not known yet,
        or None if the case was erased."""
        state = await self.profiles.state(case_id)
        if state is None:
            # Kept in the case's document; or the profile arrived meanwhile.
            state = await self.profiles.keep_waiting(case_id, event, self.clock())
        return state if isinstance(state, CaseProfile) else None

    async def _notify(
        self,
        event: CloudEvent,
        case_id: str,
        template: str,
        cause: str,
        *,
        not_sent_because: str | None = None,
        profile: CaseProfile | None = None,
        phone: str | None = None,
        **values: str,
    ) -> None:
        """Render, record the decision (once per cause + template), and try to send
        (`profile` and `phone`: as the caller holds them, not read again)."""
        profile = profile or await self._profile(event, case_id)
        if profile is None:
            return
        body, language = self.catalogue.render(
            template, profile.language, reference=profile.reference, **values
        )
        cost = sms_cost(body)
        sms = OutgoingSms(
            id=deterministic_id("sms", cause, template),
            case_id=case_id,
            case_reference=profile.reference,
            to="",  # decrypted only when it is sent
            to_sealed=profile.phone_sealed,
            phone_hash=profile.phone_hash,
            body=body,
            language=language,
            template=template,
            encoding=cost.encoding,
            segments=cost.segments,
            causing_event=event.dedupe_key,
        )
        if not profile.sms_consent:
            not_sent_because = "consent does not cover sms_updates"
        elif self.clock() - event.time > self.max_event_age:
            not_sent_because = f"event older than {self.max_event_age.days} days"
        if not_sent_because is not None:
            await self.messages.record_suppressed(sms, not_sent_because, self.clock())
            return
        await self.dispatcher.send_new(
            sms,
            current_country=profile.current_country,
            time_zone=profile.time_zone,
            phone=phone if profile.phone_sealed == sms.to_sealed else None,
        )
