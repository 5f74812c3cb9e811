"""The DTMF test number (dial_codes.dtmf_test, 1999 by default): operators and tests call it
to check which keys a phone sends, and how.

"Key in digits, then press hash." ... "You entered: 0 9 0 ..." "Thank you for calling."
The server log gets one INFO line `dtmf-test digits=<keys>` and, at DEBUG, the transport each
key came by (rfc4733, info or inband).
"""

from __future__ import annotations

import logging

from .runtime import Call

log = logging.getLogger(__name__)

MAX_DIGITS = 32
FIRST_DIGIT_TIMEOUT = 10.0
INTER_DIGIT_TIMEOUT = 5.0


async def dtmf_test(call: Call) -> None:
    digits = await call.collect(prompt="dtmf_test_intro", max_digits=MAX_DIGITS, end="#",
                                first_digit_timeout=FIRST_DIGIT_TIMEOUT,
                                inter_digit_timeout=INTER_DIGIT_TIMEOUT)
    for event in call.last_collected:
        log.debug("dtmf-test key %s by %s", event.digit, event.source)
    log.info("dtmf-test digits=%s", digits)
    if digits:
        await call.play(["you_entered", *call.prompts.digits_readout(digits)])
    else:
        await call.play("no_input")
    await call.play("goodbye")
    await call.hangup()
