"""The dial-code -> flow table, and what every service flow shares: whose line it acts on, and
how it ends.

A dial code acts on the caller's own line (`call.subscriber`, the subscriber whose phone
authenticated); the remote-access number on the line whose number and PIN the caller keyed.
Every flow ends by hanging up, whatever happened:

- three wrong or missing entries of one question (`GaveUp`): "ご利用ありがとうございました";
- a data SIM, or no subscriber at all: "ご契約の回線では、このサービスはご利用になれません";
- a refusal a flow did not tell itself, or a failure (the store down): "ただいまお取り扱い
  できません" — the failure logged, never with a PIN in it (none is ever in an exception).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from ..services.errors import NotAvailable, NotSubscribed, ServiceError, UnknownSubscriber
from . import blocklist, forwarding, remote_control, voicemail
from .context import FlowContext, LineFlow
from .dtmf_test import dtmf_test
from .guidance import GaveUp, Guidance
from .runtime import Call, Flow

log = logging.getLogger(__name__)


def build_flows(context: FlowContext) -> dict[str, Flow]:
    """The flow for each dial code, keyed by its name in config `dial_codes`."""
    return {
        "voicemail_start": on_own_line(context, voicemail.start),
        "voicemail_stop": on_own_line(context, voicemail.stop),
        "voicemail_playback": on_own_line(context, voicemail.playback),
        "voicemail_settings": on_own_line(context, voicemail.settings),
        "forwarding_start": on_own_line(context, forwarding.start),
        "forwarding_stop": on_own_line(context, forwarding.stop),
        "forwarding_settings": on_own_line(context, forwarding.settings),
        "blocklist_register_last": on_own_line(context, blocklist.register_last_caller),
        "blocklist_menu": on_own_line(context, blocklist.menu),
        "remote_access": guided(context, remote_control.remote_access),
        "dtmf_test": dtmf_test,
    }


def on_own_line(context: FlowContext, body: LineFlow) -> Flow:
    """A dial code's flow: `body` acts on the caller's own line, a voice SIM's."""

    async def body_on_line(guide: Guidance, context: FlowContext) -> None:
        number = guide.call.subscriber
        line = None if number is None else context.line(number)
        if number is None or line is None or not line.is_voice:
            await guide.call.play("not_available")
            return
        await body(guide, context, number)

    return guided(context, body_on_line)


def guided(context: FlowContext,
           body: Callable[[Guidance, FlowContext], Awaitable[None]]) -> Flow:
    """The flow that runs `body` with the call's guidance and ends the call as the module doc
    says."""

    async def flow(call: Call) -> None:
        guide = Guidance(call, context.menus)
        try:
            await body(guide, context)
        except GaveUp:
            await call.play("goodbye")
        except (NotAvailable, UnknownSubscriber):
            await call.play("not_available")
        except NotSubscribed:
            await call.play("blocklist_not_subscribed")
        except ServiceError as error:
            log.warning("call to %s refused: %s", call.called, error)
            await call.play("try_later")
        except Exception:
            log.exception("the flow of %s failed", call.called)
            await call.play("try_later")
        await call.hangup()

    return flow
